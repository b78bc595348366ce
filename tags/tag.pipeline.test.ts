import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createPii } from '../core/pii.js'
import { chDateTime } from '../core/time.js'
import { generateDemo } from '../demo/demo.generator.js'
import { createTagCatalog } from './tag.catalog.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from './tag.pack.js'
import { createTagRepository } from './tag.repository.js'
import { createKeyService } from '../tenants/keys.service.js'
import { createTenantService, type Tenant } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { newRunId } from '../core/run-id.js'
import { boundaryDays, dropSupersededDays } from './event-daily.js'
import { runTags, type TagRunResult } from './tag.pipeline.js'

/**
 * The banking pack over the demo bank: an incremental run after a new day of events (plus a late
 * event, an identity link and a changed consent) leaves exactly the values a full recompute
 * gives; history answers what a value was at a time; a backfill writes history only.
 */

const T0 = new Date('2026-03-10T04:00:00Z') // 12:00 in Shanghai
const DAY = 86_400_000
const T1 = new Date(T0.getTime() + DAY)

let e: TestEngine
let tenant: Tenant
const repo = () => createTagRepository({ db: e.db })

const valueRow = z.object({ tag: z.string(), customer_key: z.coerce.number(), value: z.string(), num: z.coerce.number() })
async function snapshot() {
  const rows = await e.db.forTenant(tenant.id).query(
    `SELECT toString(tag) AS tag, customer_key, value, num FROM tag_values FINAL
     WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0 ORDER BY tag, customer_key`,
    {},
    valueRow,
  )
  return rows.map((r) => `${r.tag}|${r.customer_key}|${r.value}|${r.num}`)
}

/** (tag, value) pairs whose current bitmap differs from the customers tag_values holds. */
async function bitmapMismatches(): Promise<string[]> {
  const rows = await e.db.forTenant(tenant.id).query(
    `SELECT tag, value FROM (
       SELECT toString(b.tag) AS tag, b.value AS value, arraySort(bitmapToArray(b.keys)) AS ks FROM tag_bitmaps AS b
       INNER JOIN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16}) AS s ON s.tag = toString(b.tag) AND s.build = b.build
       WHERE b.tenant_id = {tenant:UInt16} AND b.lo = b.hi) AS x
     FULL OUTER JOIN (
       SELECT tag, v AS value, arraySort(groupArray(customer_key)) AS ks FROM (
         SELECT toString(tag) AS tag, customer_key, arrayJoin(arrayConcat(if(empty(list), [value], list), ['*'])) AS v
         FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0)
       GROUP BY tag, value) AS y USING (tag, value)
     WHERE x.ks != y.ks AND tag NOT IN (SELECT DISTINCT toString(tag) FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND lo != hi)`,
    {},
    z.object({ tag: z.string(), value: z.string() }),
  )
  const out = rows.map((r) => `${r.tag}=${r.value}`)
  // Bucketed numbers and dates: every customer in exactly the bucket holding its value.
  const buckets = await e.db.forTenant(tenant.id).query(
    `SELECT toString(b.tag) AS tag, b.lo AS lo, b.hi AS hi, bitmapToArray(b.keys) AS ks FROM tag_bitmaps AS b
     INNER JOIN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16}) AS s ON s.tag = toString(b.tag) AND s.build = b.build
     WHERE b.tenant_id = {tenant:UInt16} AND b.value != '*' AND b.tag IN (SELECT tag FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND lo != hi)`,
    {},
    z.object({ tag: z.string(), lo: z.number(), hi: z.number(), ks: z.array(z.coerce.number()) }),
  )
  const values = await e.db.forTenant(tenant.id).query(
    `SELECT toString(tag) AS tag, customer_key, num FROM tag_values FINAL
     WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0 AND tag IN {tags:Array(String)}`,
    { tags: [...new Set(buckets.map((b) => b.tag))] },
    z.object({ tag: z.string(), customer_key: z.coerce.number(), num: z.number() }),
  )
  const where = new Map(buckets.flatMap((b) => b.ks.map((k) => [`${b.tag}|${k}`, b] as const)))
  for (const v of values) {
    const b = where.get(`${v.tag}|${v.customer_key}`)
    if (!b || v.num < b.lo || v.num > b.hi || (v.num === b.hi && b.lo !== b.hi)) out.push(`${v.tag}:${v.customer_key}=${v.num}`)
  }
  const members = buckets.reduce((n, b) => n + b.ks.length, 0)
  if (members !== values.length) out.push(`bucket members ${members} != values ${values.length}`)
  return out
}

/**
 * Incremental runs go over customer-key ranges of 200 keys (several per bank), full runs over
 * one: the incremental == full checks cover the split staging and diff too. Full runs recompute
 * every tag unless `derive` (the tags computed from other tags alone then follow their inputs).
 */
async function run(mode: 'full' | 'incremental' | 'backfill', asOf: Date, o: { derive?: boolean } = {}): Promise<TagRunResult> {
  const keyRange = mode === 'incremental' ? 200 : 0
  const recompute = mode === 'full' && o.derive !== true
  return runTags({ db: e.db }, { tenantId: tenant.id, timeZone: tenant.timeZone, defs: await repo().list(tenant.id), mode, asOf, runId: newRunId(), watermarkSlackMs: 0, keyRange, recompute })
}

let afterFull: string[]
let full0: TagRunResult

beforeAll(async () => {
  e = await openTestEngine()
  const tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  const keys = createKeyService({ system: e.db.system, tenants, cacheTtlMs: 60_000 })
  await generateDemo({ db: e.db, tenants, keys, pii: createPii('p'.repeat(40)), log: e.log }, { customers: 1500, days: 30, seed: 11, now: T0 })
  tenant = await tenants.get('demo-qingshan')
  await applyDefinitions(repo(), tenant.id, readDefinitionFiles(BANKING_PACK), 'test')
  full0 = await run('full', T0)
  afterFull = await snapshot()
}, 120_000)

afterAll(async () => {
  await e?.close()
})

describe('incremental runs', () => {
  it('a second run with nothing new changes nothing and rebuilds no day', async () => {
    const r = await run('incremental', T0)
    expect(r.mode).toBe('incremental')
    expect(r.changed).toBe(0)
    expect(r.rebuiltDays).toEqual([])
    expect(await snapshot()).toEqual(afterFull)
    // Rules over profile and stock data whose inputs did not move are left alone.
    expect(r.tags.aum_tier).toMatchObject({ skipped: true, changed: 0 })
    expect(r.tags.elder).toMatchObject({ skipped: true })
    expect(r.tags.rfm?.skipped).toBe(true)
    // A SQL tag cannot say what it reads: always recomputed.
    expect(r.tags.product_kinds?.skipped).toBeUndefined()
  })

  it('after a new day of events, a late event, a link and a consent change, equals a full recompute', async () => {
    const db = e.db.forTenant(tenant.id)
    // One new day: the last day's events again, a day later, with fresh ids.
    await db.command(
      `INSERT INTO events (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id, properties, context, sent_at, received_at)
       SELECT {tenant:UInt16}, customer_key, timestamp + INTERVAL 1 DAY, type, event, concat(message_id, '-d1'), anonymous_id, user_id, session_id,
              properties, context, sent_at + INTERVAL 1 DAY, now64(3)
       FROM events WHERE tenant_id = {tenant:UInt16} AND timestamp > {from:DateTime64(3, 'UTC')} - INTERVAL 1 DAY AND timestamp <= {from:DateTime64(3, 'UTC')}`,
      { from: chDateTime(T0) },
    )
    // A late event five days back for a customer with no activity then, a large transfer from a
    // new device for another, and an anonymous event whose device is then linked to a customer.
    const [a, b, c] = (await db.query(`SELECT customer_key FROM customers FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY customer_key LIMIT 3`, {}, z.object({ customer_key: z.coerce.number() }))).map((r) => r.customer_key)
    const ev = (key: number, at: Date, event: string, props: object, anon = '') => ({
      customer_key: key, timestamp: chDateTime(at), type: 'track', event, message_id: `late-${key}-${event}-${at.getTime()}`, anonymous_id: anon,
      user_id: '', session_id: 's', properties: JSON.stringify(props), context: '{}', sent_at: chDateTime(at), received_at: chDateTime(new Date()), violations: [],
    })
    await db.insert('events', [
      ev(a!, new Date(T0.getTime() - 5 * DAY), 'bill_paid', { amount: 120, for_family: true, biller: 'water' }),
      ev(b!, new Date(T1.getTime() - 3_600_000), 'signed_in', { method: 'password', new_device: true }),
      ev(b!, new Date(T1.getTime() - 3_000_000), 'transfer_completed', { amount: 80_000, payee: 'other' }),
      ev(0, new Date(T0.getTime() - 2 * DAY), 'voice_assistant_used', { intent: 'balance' }, 'anon-linked-later'),
      ev(0, new Date(T0.getTime() - 2 * DAY + 60_000), 'voice_assistant_used', { intent: 'pension' }, 'anon-linked-later'),
    ])
    await db.insert('identities', [{ id_kind: 'anonymous_id', id_value: 'anon-linked-later', customer_key: c!, source: 'test', created_at: chDateTime(new Date()), updated_at: chDateTime(new Date()) }])
    await db.insert('identity_changes', [
      { change_id: '00000000-0000-4000-8000-000000000001', action: 'link', id_kind: 'anonymous_id', id_value: 'anon-linked-later', from_key: 0, into_key: c!, actor: 'test', reason: 'identify', message_id: '', created_at: chDateTime(new Date()), undone_at: null, undone_by: '', updated_at: chDateTime(new Date()) },
    ])
    await db.insert('consents', [{ customer_key: a!, purpose: 'marketing', channel: 'push', granted: 0, source: 'app', updated_at: chDateTime(new Date()) }])

    const inc = await run('incremental', T1)
    expect(inc.mode).toBe('incremental')
    expect(inc.keyRanges).toBeGreaterThan(2)
    expect(inc.changed).toBeGreaterThan(0)
    // The new day, the late day and the linked device's day were rebuilt, not the whole window.
    expect(inc.rebuiltDays.length).toBeLessThan(10)
    expect(inc.scoped).toBeLessThan(1500)
    // Rules whose only moved inputs are event tags were recomputed for the customers those
    // changed; the pack's date-dependent rules (birthday_7d) for everyone.
    expect(inc.tags.dormant_30d?.changedInputs).toContain('active_days_30d')
    expect(inc.tags.vulnerable?.changedInputs).toBeDefined()
    expect(inc.tags.birthday_7d?.changedInputs).toBeUndefined()
    const incremental = await snapshot()
    // Bitmaps updated from the changes alone hold exactly the customers of each value (and
    // the demo has numbers in buckets, so both kinds are checked).
    const [bucketed] = await db.query(`SELECT uniqExact(tag) AS n FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND lo != hi`, {}, z.object({ n: z.coerce.number() }))
    expect(bucketed!.n).toBeGreaterThan(2)
    expect(await bitmapMismatches()).toEqual([])
    expect(incremental).toContain(`recent_fraud_risk|${b}|true|1`)

    // A full run as the pipeline runs it (tags computed from other tags follow their inputs),
    // then one that recomputes every tag: both find nothing to change.
    const derived = await run('full', T1, { derive: true })
    expect(derived.changed).toBe(0)
    expect(derived.tags.rfm?.skipped).toBe(true)
    expect(derived.tags.aum_tier?.skipped).toBeUndefined()
    expect(await snapshot()).toEqual(incremental)
    const full = await run('full', T1)
    expect(full.mode).toBe('full')
    expect(full.changed).toBe(0)
    expect(full.tags.rfm?.skipped).toBeUndefined()
    // The full run took the days whose events and identities did not move since their build.
    expect(full.reusedDays).toBeGreaterThan(20)
    expect(await snapshot()).toEqual(incremental)
    expect(await bitmapMismatches()).toEqual([])
    // And a recompute that re-aggregates every day from raw events agrees too.
    await db.command(`DELETE FROM tag_event_days WHERE tenant_id = {tenant:UInt16}`)
    const scratch = await run('full', T1)
    expect(scratch.reusedDays).toBe(0)
    expect(scratch.changed).toBe(0)
    expect(await snapshot()).toEqual(incremental)
  }, 120_000)

  it('drops superseded day builds without changing what readers see', async () => {
    const db = e.db.forTenant(tenant.id)
    const count = async (sql: string) => (await db.query(sql, {}, z.object({ n: z.coerce.number() })))[0]!.n
    const superseded = () => count(`SELECT uniqExact(day, build) - uniqExact(day) AS n FROM tag_event_daily WHERE tenant_id = {tenant:UInt16}`)
    const before = await snapshot()
    expect(await superseded()).toBeGreaterThan(0)
    expect(await dropSupersededDays(db, 1)).toBeGreaterThan(0)
    expect(await superseded()).toBe(0)
    // Recomputing from what remains finds nothing to change.
    expect((await run('incremental', T1)).changed).toBe(0)
    expect(await snapshot()).toEqual(before)
  }, 60_000)

  it('falls back to a full run when a window tag changes', async () => {
    const def = await repo().get(tenant.id, 'active_7d')
    const { version: _v, createdBy: _b, createdAt: _c, ...d } = def!
    await repo().save(tenant.id, { ...d, rule: { ...d.rule, days: 8 } }, 'test')
    const r = await run('incremental', T1)
    expect(r.mode).toBe('full')
    await repo().save(tenant.id, d, 'test')
    expect((await run('incremental', T1)).mode).toBe('full')
    // Two full runs over key ranges of 200 (several per bank, so fewer days per rebuild insert).
  }, 120_000)
})

describe('history', () => {
  it('answers what a value was at a time, and now', async () => {
    const catalog = createTagCatalog({ db: e.db, repo: repo() })
    const key = Number(afterFull.find((l) => l.startsWith('sessions_30d|'))!.split('|')[1])
    const then = await catalog.customerTags(tenant.id, key, true, chDateTime(new Date(T0.getTime() + 1000)))
    const expected = afterFull.filter((l) => l.split('|')[1] === String(key)).map((l) => l.split('|')[0]).sort()
    expect(then.map((t) => t.name).sort()).toEqual(expected)
    const now = await catalog.customerTags(tenant.id, key, true)
    const current = (await snapshot()).filter((l) => l.split('|')[1] === String(key)).map((l) => l.split('|')[0]).sort()
    expect(now.map((t) => t.name).sort()).toEqual(current)
    // Before anything was computed, nothing held.
    expect(await catalog.customerTags(tenant.id, key, true, '2026-01-01 00:00:00.000')).toEqual([])
  })

  it('a backfill writes history for past days and leaves current values alone', async () => {
    const before = await snapshot()
    const r = await runTags(
      { db: e.db },
      { tenantId: tenant.id, timeZone: tenant.timeZone, defs: await repo().list(tenant.id), mode: 'backfill', asOf: new Date('2026-02-20T15:59:59.999Z'), runId: newRunId() },
    )
    expect(r.mode).toBe('backfill')
    expect(r.state.today).toBe('2026-02-20')
    expect(r.changed).toBeGreaterThan(0)
    expect(await snapshot()).toEqual(before)
    const [n] = await e.db.forTenant(tenant.id).query(
      `SELECT count() AS n FROM tag_history WHERE tenant_id = {tenant:UInt16} AND valid_from = '2026-02-20 15:59:59.999'`,
      {},
      z.object({ n: z.coerce.number() }),
    )
    expect(n!.n).toBe(r.changed)
    // The demo's events start on 2026-02-09: 12 days of activity by then, so 30-day sessions exist.
    const [s] = await e.db.forTenant(tenant.id).query(
      `SELECT count() AS n FROM tag_history WHERE tenant_id = {tenant:UInt16} AND tag = 'sessions_30d' AND valid_from = '2026-02-20 15:59:59.999'`,
      {},
      z.object({ n: z.coerce.number() }),
    )
    expect(s!.n).toBeGreaterThan(100)
  }, 60_000)
})

describe('a run whose lease was lost', () => {
  it('stops before its next step with the reason, and writes nothing', async () => {
    const before = await snapshot()
    const lease = new AbortController()
    lease.abort(new Error('the tags lease was lost'))
    const defs = await repo().list(tenant.id)
    await expect(
      runTags({ db: e.db }, { tenantId: tenant.id, timeZone: tenant.timeZone, defs, mode: 'full', recompute: true, asOf: new Date(T1.getTime() + DAY), runId: newRunId(), signal: lease.signal }),
    ).rejects.toThrow('the tags lease was lost')
    expect(await snapshot()).toEqual(before)
  })
})

describe('window edges', () => {
  it('lists the days that entered or left a window', () => {
    expect(boundaryDays([{ days: 7, offset: 0 }], '2026-03-10', '2026-03-11')).toEqual(['2026-03-04', '2026-03-11'])
    expect(boundaryDays([{ days: 30, offset: 30 }], '2026-03-10', '2026-03-10')).toEqual([])
  })

  it('the first full run rebuilt only the days holding events', () => {
    expect(full0.rebuiltDays.length).toBe(180)
    expect(full0.mode).toBe('full')
  })
})
