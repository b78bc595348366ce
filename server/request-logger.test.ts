import { Writable } from 'node:stream'
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify'
import pino from 'pino'
import { describe, expect, it, vi } from 'vitest'
import { REDACT_PATHS } from '../core/log.js'
import { lazyRequestLogger } from './request-logger.js'

function memoryLogger() {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
      done()
    },
  })
  return { log: pino({ level: 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, sink), lines }
}

describe('lazyRequestLogger', () => {
  it('makes no child for a request that logs nothing, and the child it makes writes what fastify’s would', async () => {
    const { log, lines } = memoryLogger()
    const child = vi.spyOn(log, 'child')
    const app = Fastify({ loggerInstance: log as FastifyBaseLogger, childLoggerFactory: lazyRequestLogger, logController: new LogController({ disableRequestLogging: true }) })
    app.get('/quiet', async () => ({ ok: true }))
    app.get('/noisy', async (req) => {
      req.log.warn({ authorization: 'Bearer secret', n: 1 }, 'something to say')
      req.log.debug('below the level')
      return { level: req.log.level }
    })
    await app.ready()
    child.mockClear()

    expect((await app.inject({ url: '/quiet' })).json()).toEqual({ ok: true })
    expect(child).not.toHaveBeenCalled()

    const noisy = await app.inject({ url: '/noisy' })
    expect(noisy.json()).toEqual({ level: 'info' })
    expect(child).toHaveBeenCalledTimes(1)
    await new Promise((r) => setImmediate(r))
    expect(lines).toHaveLength(1)
    // The request id binding, the parent's redaction and level all hold in the child.
    expect(lines[0]).toMatchObject({ level: 40, reqId: expect.any(String), authorization: '[redacted]', n: 1, msg: 'something to say' })
    await app.close()
  })
})
