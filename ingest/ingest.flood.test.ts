import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { createTokenBuckets } from './rate-limit.js'

/**
 * One tenant's flood degrades only that tenant: per-tenant request and event rates answer its
 * excess 429 with Retry-After, and the writer's shared queue holds at most a share per tenant.
 * (Latency figures with and without the flood: `npm run bench flood`.)
 */

describe('token buckets', () => {
  it('grant a burst, then the rate, and say how long to wait', () => {
    let now = 0
    const b = createTokenBuckets({ perSecond: 10, burst: 5 }, () => now)
    for (let i = 0; i < 5; i++) expect(b.take(1, 1)).toBe(0)
    expect(b.take(1, 1)).toBe(0) // at 0 tokens: not in debt yet, granted (now -1)
    expect(b.take(1, 1)).toBe(100) // 1 token of debt at 10/s
    expect(b.debt(1)).toBe(100) // said without taking
    expect(b.debt(1)).toBe(100)
    expect(b.take(2, 1)).toBe(0) // another key has its own bucket
    expect(b.debt(2)).toBe(0)
    now = 100
    expect(b.take(1, 1)).toBe(0)
    // A cost above the burst goes through once, then waits for the debt to be paid.
    now = 10_000
    expect(b.take(1, 50)).toBe(0)
    expect(b.take(1, 1)).toBe(4500)
    expect(createTokenBuckets({ perSecond: 0, burst: 1 }).take(1, 1e9)).toBe(0)
  })
})

let t: TestApp
let a: Awaited<ReturnType<typeof tenantWithKeys>>
let b: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp({
    INGEST_FLUSH_MS: '20',
    INGEST_RATE_REQUESTS_PER_S: '100',
    INGEST_RATE_REQUESTS_BURST: '50',
    INGEST_RATE_EVENTS_PER_S: '500',
    INGEST_RATE_EVENTS_BURST: '1000',
  })
  a = await tenantWithKeys(t, 'flooder')
  b = await tenantWithKeys(t, 'bystander')
})
afterAll(async () => t?.close())

const auth = (key: string) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` })
const batch = (n: number) => ({ batch: Array.from({ length: n }, () => ({ type: 'track', messageId: crypto.randomUUID(), userId: `C${crypto.randomInt(1000)}`, event: 'tap' })) })
const post = (key: string, n: number) => t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(key), payload: batch(n) })

describe('a flood from one tenant', () => {
  it("answers the flooder 429 with Retry-After and every one of the bystander's requests 200", async () => {
    let flooding = true
    const aStatus: number[] = []
    const retryAfter = new Set<string>()
    let limited: unknown
    const flood = (async () => {
      // Tenant A: 8 requests at a time, 50 events each, as fast as they are answered.
      while (flooding) {
        const rs = await Promise.all(Array.from({ length: 8 }, () => post(a.write, 50)))
        for (const r of rs) {
          aStatus.push(r.statusCode)
          if (r.statusCode === 429) {
            retryAfter.add(String(r.headers['retry-after']))
            limited ??= r.json()
          }
        }
      }
    })()
    // Tenant B: 40 requests of 2 events, 4 at a time, within its limits.
    const bStatus: number[] = []
    for (let i = 0; i < 10; i++) {
      const rs = await Promise.all(Array.from({ length: 4 }, () => post(b.write, 2)))
      for (const r of rs) bStatus.push(r.statusCode)
      await new Promise((r) => setTimeout(r, 25))
    }
    flooding = false
    await flood
    expect(bStatus).toHaveLength(40)
    expect(bStatus.every((s) => s === 200), JSON.stringify(bStatus)).toBe(true)
    expect(aStatus.filter((s) => s === 429).length, JSON.stringify(aStatus)).toBeGreaterThan(0)
    expect(aStatus.every((s) => s === 200 || s === 429)).toBe(true)
    expect([...retryAfter].every((s) => Number(s) >= 1)).toBe(true)
    expect(limited).toMatchObject({ error: { code: 'RATE_LIMITED' } })
    const metrics = await t.metrics.registry.getSingleMetricAsString('qianmian_ingest_rate_limited_total')
    expect(metrics).toContain(`tenant="${a.tenant.id}"`)
    expect(metrics).not.toContain(`tenant="${b.tenant.id}"`)
  })
})

describe('the request rate', () => {
  it('is counted before the body is parsed when the key is in a header (a flood of junk is 429, not parsed)', async () => {
    const c = await tenantWithKeys(t, 'junk-sender')
    const rs = await Promise.all(
      Array.from({ length: 120 }, () => t.app.inject({ method: 'POST', url: '/v1/batch', headers: { ...auth(c.write), 'content-type': 'application/json' }, payload: '{not json' })),
    )
    const codes = rs.map((r) => r.statusCode)
    expect(codes.filter((x) => x === 429).length).toBeGreaterThan(0)
    expect(codes.every((x) => x === 429 || x === 400)).toBe(true)
    expect(rs.find((r) => r.statusCode === 400)!.json().error.code).toBe('INVALID_JSON')
    // A beacon (the key in the body) is counted once its key is checked.
    const beacons = await Promise.all(
      Array.from({ length: 120 }, () =>
        t.app.inject({ method: 'POST', url: '/v1/t', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify({ type: 'track', userId: 'C1', event: 'tap', writeKey: c.write }) }),
      ),
    )
    expect(beacons.some((r) => r.statusCode === 429)).toBe(true)
  })
})

describe('the event rate', () => {
  it('refuses a tenant whose events are in debt before its next body is read or parsed (429, not a parse error)', async () => {
    const d = await tenantWithKeys(t, 'debtor')
    // 1,500 events against a burst of 1,000 at 500/s: granted once, a second in debt after.
    const big = await post(d.write, 1500)
    expect(big.statusCode, big.body).toBe(200)
    const junk = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { ...auth(d.write), 'content-type': 'application/json' }, payload: '{not json' })
    expect(junk.statusCode, junk.body).toBe(429)
    expect(junk.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } })
    expect(junk.json().error.message).toMatch(/events per second/)
    expect(Number(junk.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    // Another tenant's junk is still its own parse error.
    const other = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { ...auth(b.write), 'content-type': 'application/json' }, payload: '{not json' })
    expect(other.json().error.code).toBe('INVALID_JSON')
  })
})

describe("the writer's shared queue", () => {
  it('holds at most a share per tenant: the tenant over it gets 429, the others still get in', async () => {
    const { createEventWriter } = await import('./event-writer.js')
    const { createMetrics } = await import('../core/metrics.js')
    // A writer whose flush waits long enough for the queue to fill.
    const w = createEventWriter({
      db: t.engine.db,
      identities: t.ingest.identities,
      log: t.engine.log,
      metrics: createMetrics({ collectDefault: false }),
      options: { flushRows: 1_000_000, flushMs: 300, maxQueueEvents: 1000, tenantQueueShare: 0.5 },
    })
    const ev = () => ({ messageId: crypto.randomUUID(), type: 'track' as const, event: 'tap', userId: 'C1', anonymousId: '', sessionId: '', properties: '{}', context: '{}', timestamp: Date.now(), sentAt: Date.now(), receivedAt: Date.now(), violations: [] })
    const first = w.submit(a.tenant.id, Array.from({ length: 450 }, ev), 'k')
    const over = await w.submit(a.tenant.id, Array.from({ length: 100 }, ev), 'k').catch((e: unknown) => e)
    expect(over).toMatchObject({ code: 'RATE_LIMITED', status: 429, headers: { 'retry-after': '1' } })
    const other = w.submit(b.tenant.id, Array.from({ length: 450 }, ev), 'k')
    await expect(first).resolves.toMatchObject({ stored: 450 })
    await expect(other).resolves.toMatchObject({ stored: 450 })
    // Once the flush took A's events, A gets in again.
    await expect(w.submit(a.tenant.id, Array.from({ length: 100 }, ev), 'k')).resolves.toMatchObject({ stored: 100 })
    await w.close()
  })
})
