import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Fastify from 'fastify'
import { afterAll, describe, expect, it } from 'vitest'
import { createMetrics } from '../core/metrics.js'
import { registerConsoleRoutes } from './console.routes.js'
import { registerErrorHandling } from './error-handler.js'

const dirs: string[] = []
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))

async function appWith(dir: string) {
  const app = Fastify()
  registerErrorHandling(app, createMetrics({ collectDefault: false }))
  registerConsoleRoutes(app, { dir })
  await app.ready()
  return app
}

describe('the console at /console', () => {
  it('answers 503 with what to run when the console is not built', async () => {
    const app = await appWith(path.join(os.tmpdir(), 'qianmian-no-console-here'))
    for (const url of ['/console', '/console/', '/console/assets/x.js']) {
      const res = await app.inject({ url })
      expect(res.statusCode).toBe(503)
      expect(res.json().error.message).toContain('npm run build')
    }
    await app.close()
  })

  it('serves the build: the page fresh, hashed assets for a year, a strict CSP', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-console-'))
    dirs.push(dir)
    fs.mkdirSync(path.join(dir, 'assets'))
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>console</title>')
    fs.writeFileSync(path.join(dir, 'assets', 'index-abc123.js'), 'console.log(1)')
    const app = await appWith(dir)

    const bare = await app.inject({ url: '/console' })
    expect(bare.statusCode).toBe(301)
    expect(bare.headers.location).toBe('/console/')

    const page = await app.inject({ url: '/console/' })
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toContain('text/html')
    expect(page.headers['cache-control']).toBe('no-cache')
    expect(page.headers['content-security-policy']).toContain("script-src 'self'")

    const asset = await app.inject({ url: '/console/assets/index-abc123.js' })
    expect(asset.statusCode).toBe(200)
    expect(asset.headers['cache-control']).toContain('immutable')

    expect((await app.inject({ url: '/console/../package.json' })).statusCode).toBe(404)
    expect((await app.inject({ url: '/console/missing.js' })).json().error.code).toBe('ROUTE_NOT_FOUND')
    await app.close()
  })
})
