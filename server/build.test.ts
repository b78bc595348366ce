import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROJECT_ROOT } from '../core/paths.js'
import { startServerProcess } from '../test/server-process.js'

/**
 * The production build: `npm start` runs the compiled server (dist/), which must find its
 * migrations, packs and console in the project, not beside the compiled files; and a server
 * without the native bitmaps refuses to start, saying how to install them.
 */
const run = promisify(execFile)
const dirs: string[] = []
const dist = path.join(PROJECT_ROOT, 'dist/cli/main.js')

beforeAll(async () => {
  // CI builds before testing; a checkout that was not built is compiled here.
  if (!fs.existsSync(dist)) await run(process.execPath, [path.join(PROJECT_ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(PROJECT_ROOT, 'tsconfig.build.json')], { cwd: PROJECT_ROOT, timeout: 300_000 })
}, 320_000)

afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

function dataDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-build-'))
  dirs.push(d)
  return d
}

describe('production build', () => {
  it('the compiled server migrates, serves the API docs and the console, and reports its version', { timeout: 120_000 }, async () => {
    const server = await startServerProcess({ QIANMIAN_DATA_DIR: dataDir() }, 90_000, [], { compiled: true })
    try {
      expect((await fetch(`${server.url}/ready`)).status).toBe(200)
      const docs = await fetch(`${server.url}/docs`)
      expect(docs.status).toBe(200)
      expect(Object.keys(((await docs.json()) as { paths: object }).paths).length).toBeGreaterThan(50)
      // The console is served when it was built (CI builds it); a checkout without it answers 503 saying so.
      const consoleBuilt = fs.existsSync(path.join(PROJECT_ROOT, 'console/dist/index.html'))
      expect((await fetch(`${server.url}/console/`)).status).toBe(consoleBuilt ? 200 : 503)
      expect(server.output()).toMatch(/Applied migrations: 001_tenants\.sql/)
    } finally {
      expect(await server.kill('SIGTERM')).toBe(0)
    }
    const { stdout } = await run(process.execPath, [dist, '--version'])
    const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
    expect(stdout.trim()).toBe(pkg.version)
  })

  it('without the native roaring package the server refuses to start and says how to install it', { timeout: 120_000 }, async () => {
    const loader = path.join(PROJECT_ROOT, 'test/loaders/no-roaring.mjs')
    const err = await startServerProcess({ QIANMIAN_DATA_DIR: dataDir() }, 90_000, ['--import', loader]).then(
      async (s) => {
        await s.kill('SIGKILL')
        return undefined
      },
      (e: unknown) => e as Error,
    )
    expect(err).toBeInstanceOf(Error)
    expect(err!.message).toMatch(/server exited/)
    expect(err!.message).toMatch(/DEPENDENCY_MISSING|roaring" is not installed/)
    expect(err!.message).toMatch(/npm rebuild roaring/)
  })
})
