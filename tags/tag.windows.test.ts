import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { runTags } from './tag.pipeline.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'
import { localEvent, testTagDef } from '../test/fixtures.js'

/**
 * Window and lifecycle tags against events placed by hand around a fixed run time:
 * 2026-03-15T04:00Z, 12:00 in Shanghai, local date 2026-03-15. Local day arithmetic:
 * today - 6 = 03-09, - 29 = 02-14, - 30 = 02-13, - 89 = 2025-12-16, - 90 = 12-15,
 * - 179 = 2025-09-17, - 180 = 09-16. Shanghai is UTC+8: local 00:00-07:59 is the previous UTC day.
 */

const TZ = 'Asia/Shanghai'
const AS_OF = new Date('2026-03-15T04:00:00Z')
const OLD = '2020-01-01 00:00:00.000'

let engine: TestEngine
let repo: TagRepository
let A: number
let B: number
let D: number // a lifecycle alone, with churnDays just past activeDays + dormantDays
let firstRunA: Awaited<ReturnType<typeof runTags>>

const customer = (k: number, openedAt = OLD) => ({ customer_key: k, customer_no: `C${k}`, opened_at: openedAt, updated_at: OLD })
const def = testTagDef
const event = localEvent
const transfer = { events: ['transfer_completed'] }
const LIFECYCLE = ['new', 'active', 'reactivated', 'dormant', 'churned']
const DEFS = [
  def('taps_7d', 'number', { kind: 'window', ...transfer, measure: 'count', days: 7,
    where: [{ property: 'success', op: 'eq', value: true }, { property: 'amount', op: 'gte', value: 100 }] }),
  def('amount_7d', 'number', { kind: 'window', ...transfer, measure: 'sum', property: 'amount', days: 7 }),
  def('products_30d', 'number', { kind: 'window', events: ['product_viewed'], measure: 'distinct', property: 'product_id', days: 30 }),
  def('channels_30d', 'number', { kind: 'window', measure: 'distinct', property: 'channel', days: 30 }),
  def('active_days_30d', 'number', { kind: 'window', measure: 'days', days: 30 }),
  def('first_seen_30d', 'date', { kind: 'window', measure: 'first_time', days: 30 }),
  def('last_seen_30d', 'date', { kind: 'window', measure: 'last_time', days: 30 }),
  def('frequent_7d', 'boolean', { kind: 'window', eventTypes: ['track'], measure: 'count', days: 7, threshold: { op: 'gte', value: 3 } }),
  def('active_30_90', 'boolean', { kind: 'window', measure: 'count', days: 60, offsetDays: 30, threshold: { op: 'gt', value: 0 } }),
  def('lifecycle', 'enum', { kind: 'lifecycle' }, { values: LIFECYCLE }),
]

const run = async (tenantId: number) =>
  runTags({ db: engine.db }, { tenantId, timeZone: TZ, defs: await repo.list(tenantId), mode: 'full', asOf: AS_OF, runId: newRunId() })

async function rows(tenant: number, tag: string) {
  return engine.db.forTenant(tenant).query(
    `SELECT customer_key AS k, value, num FROM tag_values FINAL
     WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY k`,
    { tag },
    z.object({ k: z.coerce.number(), value: z.string(), num: z.coerce.number() }),
  )
}
const values = async (tenant: number, tag: string) => Object.fromEntries((await rows(tenant, tag)).map((r) => [r.k, r.value]))
const nums = async (tenant: number, tag: string) => Object.fromEntries((await rows(tenant, tag)).map((r) => [r.k, r.num]))
const count = async (tenant: number, sql: string) => {
  const [r] = await engine.db.forTenant(tenant).query(sql, {}, z.object({ n: z.coerce.number() }))
  return r!.n
}

beforeAll(async () => {
  engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  A = (await tenants.create({ slug: 'bank-a', name: 'A', timeZone: TZ })).id
  B = (await tenants.create({ slug: 'bank-b', name: 'B', timeZone: TZ })).id
  D = (await tenants.create({ slug: 'bank-d', name: 'D', timeZone: TZ })).id
  repo = createTagRepository({ db: engine.db })
  const a = engine.db.forTenant(A)
  await a.insert('customers', [
    customer(1), customer(2), customer(3), customer(4),
    customer(11, '2026-02-13 17:00:00.000'), // 2026-02-14 01:00 local: tenure 29 days (UTC would say 30)
    customer(12), customer(13), customer(14), customer(15),
    customer(16, '2026-02-13 15:00:00.000'), // 2026-02-13 23:00 local: tenure exactly 30, not new
  ])
  await a.insert('events', [
    // 1: transfers around the 7-day window [03-09, 03-15].
    event(1, '2026-03-10 10:00', 'transfer_completed', { success: true, amount: 150, channel: 'app' }), // a
    event(1, '2026-03-12 09:00', 'transfer_completed', { success: false, amount: 500, channel: 'app' }), // b
    event(1, '2026-03-13 09:00', 'transfer_completed', { success: true, amount: 99.5, channel: 'web' }), // c
    event(1, '2026-03-09 00:00:00.000', 'transfer_completed', { success: true, amount: 100 }), // d: first instant of the window
    event(1, '2026-03-08 23:59:59.999', 'transfer_completed', { success: true, amount: 1000 }), // e: last instant before it
    event(1, '2026-03-14 23:30', 'transfer_started', { success: true, amount: 200, channel: 'app' }), // f: another event
    event(1, '2026-03-14 08:00', '', {}, 'identify'), // g: not a track event
    // 2: product views around the 30-day window [02-14, 03-15].
    event(2, '2026-02-13 23:50', 'product_viewed', { product_id: 'P9' }), // outside (local 02-13)
    event(2, '2026-02-14 00:10', 'product_viewed', { product_id: 'P2' }), // inside; UTC date 02-13
    event(2, '2026-03-01 10:00', 'product_viewed', { product_id: 'P1', channel: 'app' }),
    event(2, '2026-03-05 00:30', 'product_viewed', { product_id: 'P2', channel: 'web' }), // UTC 03-04
    event(2, '2026-03-05 22:00', 'product_viewed', { product_id: 'P1', channel: 'app' }), // UTC 03-05, same local day
    event(2, '2026-03-15 00:30', 'product_viewed', { product_id: 'P3' }), // UTC 03-14
    // 3, 4: the edges of the 30-90 days window [2025-12-16, 2026-02-13].
    event(3, '2025-12-16 00:00:00.000', 'login'),
    event(4, '2025-12-15 23:59:59.000', 'login'),
    event(4, '2026-02-14 00:00:00.000', 'login'),
    // Lifecycle: recent [02-14, 03-15], gap [2025-12-16, 02-13], prior [2025-09-17, 2025-12-15].
    event(12, '2026-03-10 12:00', 'home', {}, 'screen'), // recent (screens count) ...
    event(12, '2026-01-10 12:00', 'login'), // ... and the gap: active
    event(13, '2026-03-01 12:00', 'offers', {}, 'page'), // recent, nothing in the gap ...
    event(13, '2025-11-01 12:00', 'login'), // ... activity before it: reactivated
    event(14, '2026-01-05 12:00', 'login'), // nothing recent, activity in 180 days: dormant
    event(15, '2025-09-16 12:00', 'login'), // 180 days back: outside
    event(15, '2026-03-10 12:00', '', {}, 'identify'), // identify is not activity: churned
    event(16, '2026-03-14 12:00', 'login'),
    event(30, '2026-03-14 10:00', 'login'), // known only to the app: no customers row
  ])
  for (const d of DEFS) await repo.save(A, d, 'test')

  // B: the same keys and tags, its own events, which must never reach A.
  const b = engine.db.forTenant(B)
  await b.insert('customers', [customer(1)])
  await b.insert('events', [
    ...[1, 2, 3].map((i) => event(1, `2026-03-14 1${i}:00`, 'transfer_completed', { success: true, amount: 5000 })),
    event(50, '2026-03-14 10:00', 'login'),
  ])
  for (const d of DEFS) await repo.save(B, d, 'test')

  const d = engine.db.forTenant(D)
  await d.insert('customers', [customer(1)])
  await d.insert('events', [event(1, '2026-03-10 12:00', 'login'), event(1, '2025-12-15 12:00', 'login')])
  await expect(repo.save(D, def('lifecycle_90', 'enum', { kind: 'lifecycle', churnDays: 90 }, { values: LIFECYCLE }), 'test')).rejects.toMatchObject({
    code: 'VALIDATION_FAILED',
    issues: [{ field: 'rule.churnDays' }],
  })
  await repo.save(D, def('lifecycle_90', 'enum', { kind: 'lifecycle', churnDays: 91 }, { values: LIFECYCLE }), 'test')

  firstRunA = await run(A)
  await run(B)
  await run(D)
})
afterAll(async () => engine?.close())

describe('window tags', () => {
  it('count over 7 local days with an event filter and boolean and numeric property filters', async () => {
    // 1: a (success, 150) and d (success, 100 at 03-09 00:00) count; b failed, c is 99.5 < 100,
    // e (03-08 23:59:59.999) is just outside, f is transfer_started. Nobody else has a count.
    expect(await values(A, 'taps_7d')).toEqual({ 1: '2' })
  })

  it('sum of amount', async () => {
    // a + b + c + d = 150 + 500 + 99.5 + 100; e is outside the window, f another event.
    expect(await values(A, 'amount_7d')).toEqual({ 1: '849.5' })
  })

  it('distinct of a property', async () => {
    // 2: P2, P1, P2, P1, P3 in the window (P9 is on local 02-13): 3.
    expect(await values(A, 'products_30d')).toEqual({ 2: '3' })
  })

  // BUG (tags/tag.compile.ts, measureEventTuple): an event without the property adds the value
  // '' (JSONExtractRaw of a missing key), so 1 and 2 get 3 and everyone with any event gets 1.
  it('distinct ignores events that lack the property', async () => {
    // channel: 1 has "app" and "web" (d, e, g have none); 2 has "app" and "web".
    expect(await values(A, 'channels_30d')).toEqual({ 1: '2', 2: '2' })
  })

  it('days: distinct local days with any event (identify included)', async () => {
    // 1: 03-08 (e), 03-09, 03-10, 03-12, 03-13, 03-14 (f and g): 6.
    // 2: 02-14, 03-01, 03-05 (two events, two UTC days, one local day), 03-15: 4.
    // 4: 02-14. 12: 03-10. 13: 03-01. 15: 03-10 (identify). 16, 30: 03-14.
    expect(await values(A, 'active_days_30d')).toEqual({ 1: '6', 2: '4', 4: '1', 12: '1', 13: '1', 15: '1', 16: '1', 30: '1' })
  })

  it('first_time and last_time as local dates', async () => {
    // 2: first at local 02-14 00:10 (UTC 02-13), last at local 03-15 00:30 (UTC 03-14).
    // 1: first e at 03-08 23:59:59.999, last f at 03-14 23:30 (UTC 15:30, the same date).
    const first = { 1: '2026-03-08', 2: '2026-02-14', 4: '2026-02-14', 12: '2026-03-10', 13: '2026-03-01', 15: '2026-03-10', 16: '2026-03-14', 30: '2026-03-14' }
    const last = { ...first, 1: '2026-03-14', 2: '2026-03-15' }
    expect(await values(A, 'first_seen_30d')).toEqual(first)
    expect(await values(A, 'last_seen_30d')).toEqual(last)
    // Days since 1970: 2026-02-14 is 20498, 2026-03-15 is 20527.
    expect((await nums(A, 'first_seen_30d'))[2]).toBe(20498)
    expect((await nums(A, 'last_seen_30d'))[2]).toBe(20527)
  })

  it('a threshold turns the count into a boolean', async () => {
    // Track events in [03-09, 03-15]: 1 has a, b, c, d, f (5; g is identify, e outside);
    // 2 has one (03-15); 12's is a screen; 16 and 30 have one each.
    expect(await values(A, 'frequent_7d')).toEqual({ 1: 'true' })
  })

  it('offsetDays: activity 30-90 days ago, edges at local midnight', async () => {
    // [2025-12-16, 2026-02-13]: 2 (P9, 02-13 23:50), 3 (12-16 00:00), 12 (01-10), 14 (01-05).
    // 4's events are at 12-15 23:59:59 and 02-14 00:00, one day outside each edge; 13's is 11-01.
    expect(await values(A, 'active_30_90')).toEqual({ 2: 'true', 3: 'true', 12: 'true', 14: 'true' })
  })
})

describe('lifecycle', () => {
  it('new, active, reactivated, dormant and churned with the default day counts', async () => {
    // 11: tenure 29 < 30: new, with no events at all. 16: tenure 30, recent activity: active.
    // 1, 30: recent only: active. 2 (gap: P9 on 02-13) and 12 (gap: 01-10): recent and gap: active.
    // 13: recent, empty gap, prior (11-01): reactivated. 4: recent 02-14, empty gap, prior 12-15: reactivated.
    // 3 (12-16) and 14 (01-05): only the gap: dormant. 15: nothing in 180 days but an identify: churned.
    expect(await values(A, 'lifecycle')).toEqual({
      1: 'active', 2: 'active', 3: 'dormant', 4: 'reactivated', 11: 'new', 12: 'active', 13: 'reactivated',
      14: 'dormant', 15: 'churned', 16: 'active', 30: 'active',
    })
  })

  // churnDays 90 with 30 + 60 is refused (no room for activity before the gap). With 91 the
  // prior range is 1 day at offset 90, 2025-12-15, the last day of the span the run rebuilds.
  // 1: recent (03-10), empty gap, prior activity on 12-15: reactivated, whatever other tags the
  // tenant has.
  it('a lifecycle reads its prior range at the edge of its span', async () => {
    expect(await values(D, 'lifecycle_90')).toEqual({ 1: 'reactivated' })
  })
})

describe('tenants and reruns', () => {
  it('another tenant with the same customer keys keeps its own event aggregates', async () => {
    // B's customer 1: three successful 5000 transfers on 03-14.
    expect(await values(B, 'taps_7d')).toEqual({ 1: '3' })
    expect(await values(B, 'amount_7d')).toEqual({ 1: '15000' })
    expect(await values(B, 'lifecycle')).toEqual({ 1: 'active', 50: 'active' })
    expect(await values(A, 'taps_7d')).toEqual({ 1: '2' })
    expect(await values(A, 'amount_7d')).toEqual({ 1: '849.5' })
    expect(await count(A, 'SELECT count() AS n FROM tag_values WHERE tenant_id = {tenant:UInt16} AND customer_key = 50')).toBe(0)
  })

  it('a full rerun without data changes writes nothing', async () => {
    expect(firstRunA.changed).toBeGreaterThan(0)
    const history = 'SELECT count() AS n FROM tag_history WHERE tenant_id = {tenant:UInt16}'
    const before = await count(A, history)
    const again = await run(A)
    expect(again.changed).toBe(0)
    expect(await count(A, history)).toBe(before)
    expect(await values(A, 'taps_7d')).toEqual({ 1: '2' })
  })
})
