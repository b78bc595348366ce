import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { loadConfig } from '../core/config.js'
import { AppError } from '../core/errors.js'
import { keys, setupFixture, UNIVERSE, type Fixture } from './segment.fixture.js'
import { preview } from './segment.preview.js'
import { parseSegment } from './segment.schema.js'

/** Preview from the segment bitmap, and the guardrails on event scans. */

let fx: Fixture
beforeAll(async () => {
  fx = await setupFixture()
  // Noise for the guardrails: 600k events of customer 1 on 2025-06-01, outside every other test's windows.
  await fx.engine.db.forTenant(fx.tenant).command(
    `INSERT INTO events (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id, properties, context, sent_at, received_at)
     SELECT {tenant:UInt16}, 1 + number % 149, toDateTime64('2025-06-01 02:00:00', 3, 'UTC') + number % 3600, 'track', 'noise', concat('n', toString(number)), 'a', 'u', 's',
            concat('{"page":"p', toString(number % 1000), '","amount":', toString(number % 97), '}'), '{}', now64(3), now64(3)
     FROM numbers(600000)`,
  )
})
afterAll(async () => fx?.engine.close())

const run = (rule: unknown, opts: Partial<Parameters<typeof preview>[2]> = {}, purpose = 'marketing') =>
  preview(fx.engine.db.forTenant(fx.tenant), parseSegment({ purpose, rule }), { ...fx.opts, ...opts })

describe('preview', () => {
  it('count, total, share, a sorted sample and a breakdown by tag values', async () => {
    // gold (k % 3 = 0, k % 7 != 0) with score < 40 (k % 10 != 0).
    const rule = { any: [{ tag: 'tier', op: 'eq', value: 'gold' }, { tag: 'score', op: 'lt', value: 40 }] }
    const expected = keys((k) => (k % 3 === 0 && k % 7 !== 0) || (k < 40 && k % 10 !== 0))
    const p = await run(rule, { breakdown: ['tier', 'flag', 'kinds'], sampleSize: 10 })
    expect(p.count).toBe(expected.length)
    expect(p.total).toBe(UNIVERSE.length)
    expect(p.share).toBeCloseTo(expected.length / 149, 10)
    expect(p.sample).toEqual(expected.slice(0, 10))
    const count = (f: (k: number) => boolean) => expected.filter(f).length
    expect(p.breakdown.tier).toEqual(
      [
        { value: 'gold', customers: count((k) => k % 3 === 0 && k % 7 !== 0) },
        { value: 'silver', customers: count((k) => k % 3 === 1 && k % 7 !== 0) },
        { value: 'bronze', customers: count((k) => k % 3 === 2 && k % 7 !== 0) },
      ].sort((a, b) => b.customers - a.customers || a.value.localeCompare(b.value)),
    )
    expect(p.breakdown.flag).toEqual([{ value: 'true', customers: count((k) => k % 3 === 0) }])
    expect(Object.fromEntries(p.breakdown.kinds!.map((x) => [x.value, x.customers]))).toEqual({
      even: count((k) => k % 2 === 0),
      three: count((k) => k % 3 === 0),
    })
    expect(p.plan.eventScans).toBe(0)
  })

  it('a sample after bitmapOr is sorted; an empty segment', async () => {
    const p = await run({ any: [{ tag: 'score', op: 'gt', value: 145 }, { tag: 'score', op: 'lt', value: 3 }] })
    expect(p.sample).toEqual([1, 2, 146, 147, 148, 149])
    const none = await run({ tag: 'score', op: 'gt', value: 1e6 }, { breakdown: ['tier'] })
    expect(none).toMatchObject({ count: 0, total: 149, share: 0, sample: [], breakdown: { tier: [] } })
  })

  it('breakdown tags are checked like rule tags', async () => {
    await expect(run({ tag: 'flag', op: 'exists' }, { breakdown: ['risky'] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'breakdown.0' }] })
    await expect(run({ tag: 'flag', op: 'exists' }, { breakdown: ['nope'] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
  })

  it('an event scan with the default limits works', async () => {
    const p = await run({ event: { names: ['noise'] }, measure: 'count', op: 'gte', value: 4000, window: { from: '2025-06-01', to: '2025-06-01' } })
    // 600000 events spread over 149 customers: 4026 or 4027 each.
    expect(p.count).toBe(149)
    expect(p.plan.eventScans).toBe(1)
  })
})

describe('guardrails', () => {
  const heavy = {
    all: [
      { event: { names: ['noise'], where: [{ property: 'page', op: 'ne', value: 'p1' }] }, measure: 'distinct', property: 'page', op: 'gte', value: 3, window: { lastDays: 400 } },
      { event: { names: ['noise'] }, measure: 'sum', property: 'amount', op: 'gt', value: 1, window: { lastDays: 400 } },
    ],
  }

  it('max_memory_usage exceeded: OVERLOADED naming the limit, never a partial answer', async () => {
    const e = await run(heavy, { maxMemoryUsage: 64 * 1024 }).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(AppError)
    expect(e).toMatchObject({ code: 'OVERLOADED', status: 503 })
    expect((e as AppError).message).toMatch(/max_memory_usage \(65536 bytes\)/)
  })

  it('max_execution_time exceeded: OVERLOADED', async () => {
    const e = await run(heavy, { maxExecutionTime: 0.001 }).catch((x: unknown) => x)
    expect(e).toMatchObject({ code: 'OVERLOADED' })
    expect((e as AppError).message).toMatch(/max_execution_time/)
  })

  it('the limits are per query: they do not stay in the engine session', async () => {
    await run(heavy, { maxMemoryUsage: 64 * 1024 }).catch(() => undefined)
    const [s] = await fx.engine.db.system.query(`SELECT getSetting('max_memory_usage') AS m, getSetting('max_execution_time') AS t`, {}, z.object({ m: z.coerce.number(), t: z.coerce.number() }))
    // What stays is the request lane's own limit (core/lanes.ts), not the failed query's 64 KiB.
    expect(s).toEqual({ m: loadConfig({}).lanes.request.maxMemoryBytes, t: 0 })
    const p = await run(heavy)
    expect(p.count).toBeGreaterThan(0)
  })

  it('limits out of range are refused', async () => {
    await expect(run({ tag: 'flag', op: 'exists' }, { maxExecutionTime: -1 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(run({ tag: 'flag', op: 'exists' }, { sampleSize: 5000 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
  })
})
