import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { phaseFigures, quantile, startOpenLoop, type Shot } from './open-loop.js'

/** A server that holds every answer while `stalled` is set, then answers with `status`. */
async function stallingServer(status = 200) {
  const held: http.ServerResponse[] = []
  const state = { stalled: false, received: 0 }
  const server = http.createServer((req, res) => {
    state.received++
    req.resume()
    if (state.stalled) held.push(res)
    else res.writeHead(status).end('{}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    state,
    release() {
      state.stalled = false
      for (const res of held.splice(0)) res.writeHead(status).end('{}')
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

const closers: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of closers.splice(0)) await c()
})

describe('the open-loop load', () => {
  it('keeps sending on schedule while the server answers nothing, and counts the stall from each schedule', async () => {
    const srv = await stallingServer()
    closers.push(srv.close)
    srv.state.stalled = true
    const t0 = performance.now()
    const loop = startOpenLoop(srv.url, [{ kind: 'k', ratePerS: 100, make: () => ({ method: 'GET', path: '/' }) }], { timeoutMs: 10_000 })
    await new Promise((r) => setTimeout(r, 500))
    const elapsedMs = performance.now() - t0
    const sent = loop.shots.length
    // A closed loop would stop at its connection count; this one keeps the schedule (half of it
    // at least, on a busy machine whose timers run late: each tick catches up).
    expect(sent).toBeGreaterThanOrEqual(Math.max(25, Math.floor(elapsedMs / 20)))
    // ... and every request reaches the server though none was answered.
    await vi.waitFor(() => expect(srv.state.received).toBeGreaterThanOrEqual(sent), { timeout: 10_000 })
    srv.release()
    await loop.stop()
    expect(loop.shots.every((s) => s.status === 200)).toBe(true)
    // The first request was scheduled at the start and answered after the stall.
    const first = loop.shots[0]!
    expect(first.endMs - first.scheduledMs).toBeGreaterThanOrEqual(400)
  })

  it('marks what is still unanswered at the drain deadline as timed out', async () => {
    const srv = await stallingServer()
    closers.push(async () => {
      srv.release()
      await srv.close()
    })
    srv.state.stalled = true
    const loop = startOpenLoop(srv.url, [{ kind: 'k', ratePerS: 50, make: () => ({ method: 'POST', path: '/', body: '{}' }) }], { timeoutMs: 10_000 })
    await new Promise((r) => setTimeout(r, 200))
    await loop.stop(100)
    expect(loop.shots.length).toBeGreaterThan(0)
    expect(loop.shots.every((s) => s.status === 0 && s.error === 'timeout')).toBe(true)
  })
})

describe('phase figures', () => {
  const shot = (scheduledMs: number, latency: number, status: number, error?: string): Shot => ({ kind: 'k', scheduledMs, sentMs: scheduledMs + 1, endMs: scheduledMs + latency, status, ...(error ? { error } : {}) })

  it('takes the requests scheduled in the phase, with latency from the schedule and failures by kind', () => {
    const shots = [shot(0, 10, 200), shot(100, 20, 200), shot(200, 5000, 200), shot(300, 30, 503), shot(400, 60_000, 0, 'timeout'), shot(1000, 10, 200), { ...shot(500, 1, 200), kind: 'other' }]
    const f = phaseFigures(shots, 'k', 0, 1000)
    expect(f.offered).toBe(5)
    expect(f.completed).toBe(3)
    expect(f.non2xx).toBe(1)
    expect(f.errors).toBe(1)
    expect(f.failures).toEqual({ '503': 1, timeout: 1 })
    // Latencies of the answered ones (timeouts have none): 10, 20, 30, 5000.
    expect(f.p50Ms).toBe(20)
    expect(f.maxMs).toBe(5000)
    // 2xx answers that arrived inside [0, 1000): the first two.
    expect(f.achievedPerS).toBe(2)
    expect(f.offeredPerS).toBe(5)
  })

  it('quantile is nearest-rank', () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1)
    expect(quantile(v, 0.5)).toBe(50)
    expect(quantile(v, 0.99)).toBe(99)
    expect(quantile([7], 0.99)).toBe(7)
    expect(quantile([], 0.5)).toBeNaN()
  })
})
