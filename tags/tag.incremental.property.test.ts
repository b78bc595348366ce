import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newRunId } from '../core/run-id.js'
import { chDateTime, DAY_MS } from '../core/time.js'
import { createRng, type Rng } from '../demo/demo.random.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { testTagDef } from '../test/fixtures.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { createIdentityService, type IdentityService } from '../ingest/identity.service.js'
import { createKeyAllocator } from '../ingest/key-allocator.js'
import { isAppError } from '../core/errors.js'
import { runTags, type TagRunResult } from './tag.pipeline.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * Incremental runs day after day (seeded): each day's events, late events for days up to ten
 * back, anonymous events whose device is linked to a customer later, customers merged into
 * others and merges undone, customers imported, re-dated and deleted, and now and then one or
 * several days without a run. Every few days a full run recomputing every tag from the raw events (no day
 * build reused) at the same time must find nothing to change: what the incremental runs kept up is what a recomputation gives. The tags
 * cover every measure, a window that skips its most recent days, thresholds, a lifecycle, a rule
 * and a score over window tags.
 */

const TZ = 'Asia/Shanghai'
/** Days of activity after the first full run. */
const DAYS = 20
let NOS: string[] = []
let KEYS: number[] = []
/** The customers' rows' update times, each newer than the last. */
let customerClock = Date.parse('2026-01-01T00:00:00Z')
let ids: IdentityService
const actor = { id: 'test', reason: 'test' }
/** Local midnight of 2026-03-01 in Shanghai. */
const DAY0 = Date.parse('2026-02-28T16:00:00Z')
let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)
let seq = 0

const event = (key: number, at: number, name: string, props: Record<string, unknown>, o: { type?: string; anon?: string } = {}) => ({
  customer_key: key,
  timestamp: chDateTime(new Date(at)),
  type: o.type ?? 'track',
  event: name,
  message_id: `p${++seq}`,
  anonymous_id: o.anon ?? `a${key}`,
  user_id: key ? NOS[KEYS.indexOf(key)]! : '',
  session_id: 's',
  properties: JSON.stringify(props),
  context: '{}',
  sent_at: chDateTime(new Date(at)),
  received_at: chDateTime(new Date()),
})

/** A day's activity (day d from DAY0), some of it late for earlier days, some anonymous. */
function activity(r: Rng, d: number, pendingLinks: string[]) {
  const rows: ReturnType<typeof event>[] = []
  const at = (day: number) => DAY0 + day * DAY_MS + r.int(0, DAY_MS / 1000 - 1) * 1000
  for (const k of KEYS) {
    if (!r.chance(0.35)) continue
    for (let i = r.int(1, 3); i > 0; i--) rows.push(event(k, at(d), 'login', {}))
    if (r.chance(0.5)) rows.push(event(k, at(d), 'pay', { amount: r.int(1, 500) / 4, channel: r.pick(['app', 'h5']) }))
    if (r.chance(0.5)) rows.push(event(k, at(d), r.pick(['home', 'loans', 'bills', 'funds']), {}, { type: 'screen' }))
  }
  // Late: events of up to ten days back, arriving now.
  for (let i = r.int(0, 3); i > 0; i--) {
    const back = Math.max(0, d - r.int(1, 10))
    rows.push(event(r.pick(KEYS), at(back), r.pick(['login', 'pay']), { amount: r.int(1, 500) / 4, channel: 'app' }))
  }
  // A device not yet linked to anyone, used on this day or a few before.
  if (r.chance(0.4)) {
    const anon = `dev-${d}`
    for (let i = r.int(1, 3); i > 0; i--) rows.push(event(0, at(Math.max(0, d - r.int(0, 4))), r.pick(['login', 'pay']), { amount: 10, channel: 'app' }, { anon }))
    pendingLinks.push(anon)
  }
  return rows
}

/** A customer's row as an import writes it. */
async function customerRow(key: number, no: string, openedAt: number, deleted = false) {
  customerClock += 60_000
  await db().insert('customers', [{ customer_key: key, customer_no: no, opened_at: chDateTime(new Date(openedAt)), deleted: deleted ? 1 : 0, updated_at: chDateTime(new Date(customerClock)) }])
}

/** Now and then a customer imported (opened on day `d`), one re-dated, one deleted or restored. */
async function customerChanges(r: Rng, d: number, deleted: Set<number>) {
  if (r.chance(0.25)) {
    const no = `N${d}-${r.int(0, 999)}`
    const [key] = await ids.keysFor(T, [no], 'test')
    NOS.push(no)
    KEYS.push(key!)
    await customerRow(key!, no, DAY0 + d * DAY_MS - r.int(0, 20) * DAY_MS)
  }
  if (r.chance(0.2)) {
    const i = r.int(0, KEYS.length - 1)
    await customerRow(KEYS[i]!, NOS[i]!, DAY0 + d * DAY_MS - r.int(0, 15) * DAY_MS, deleted.has(KEYS[i]!))
  }
  if (r.chance(0.15)) {
    const i = r.int(0, KEYS.length - 1)
    const k = KEYS[i]!
    if (deleted.has(k)) deleted.delete(k)
    else deleted.add(k)
    await customerRow(k, NOS[i]!, DAY0 - (i % 5) * 9 * DAY_MS, deleted.has(k))
  }
}

/** Identity changes as the API makes them: a device linked, a customer merged into another, a merge undone. */
async function identityChanges(r: Rng, pending: string[], merges: string[]) {
  while (pending.length && r.chance(0.5)) await ids.link(T, pending.shift()!, r.pick(NOS), actor)
  try {
    if (r.chance(0.2)) {
      const [from, into] = [r.pick(NOS), r.pick(NOS)]
      const c = from === into ? undefined : await ids.merge(T, from, into, actor)
      if (c) merges.push(c.changeId)
    }
    if (merges.length && r.chance(0.15)) await ids.undo(T, merges.splice(r.int(0, merges.length - 1), 1)[0]!, 'test')
  } catch (err) {
    // A customer already merged, or merged into: the API refuses, nothing changes.
    if (!isAppError(err) || err.code !== 'CONFLICT') throw err
  }
}

async function run(mode: 'full' | 'incremental', day: number, recompute = false): Promise<TagRunResult> {
  // Runs at 04:00 local on the day after `day`.
  const asOf = new Date(DAY0 + (day + 1) * DAY_MS + 4 * 3_600_000)
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TZ, defs: await repo.list(T), mode, asOf, runId: newRunId(), watermarkSlackMs: 0, ...(recompute ? { recompute } : {}) })
  expect(r.failures).toEqual([])
  return r
}

beforeAll(async () => {
  engine = await openTestEngine()
  repo = createTagRepository({ db: engine.db })
  ids = createIdentityService({ db: engine.db, allocator: createKeyAllocator({ system: engine.db.system }) })
}, 60_000)
afterAll(async () => engine?.close())

/** A bank of its own per seed: 30 customers opened before DAY0, and the tags. */
async function openBank(seed: number) {
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  T = (await tenants.create({ slug: `bank-incremental-${seed}`, name: `bank-incremental-${seed}`, timeZone: TZ })).id
  NOS = Array.from({ length: 30 }, (_, i) => `C${i + 1}`)
  KEYS = await ids.keysFor(T, NOS, 'test')
  for (const [i, k] of KEYS.entries()) await customerRow(k, NOS[i]!, DAY0 - (i % 5) * 9 * DAY_MS)
  const tags: [string, string, Record<string, unknown>][] = [
    ['logins_7d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 7 }],
    ['pay_days_30d', 'number', { kind: 'window', events: ['pay'], measure: 'days', days: 30 }],
    ['pay_sum_prev_week', 'number', { kind: 'window', events: ['pay'], measure: 'sum', property: 'amount', days: 7, offsetDays: 7 }],
    ['logins_earlier', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 20, offsetDays: 15 }],
    ['app_pay_3d', 'boolean', { kind: 'window', events: ['pay'], where: [{ property: 'channel', op: 'eq', value: 'app' }], measure: 'count', days: 3, threshold: { op: 'gte', value: 1 } }],
    ['screens_14d', 'number', { kind: 'window', eventTypes: ['screen'], measure: 'distinct_events', days: 14 }],
    ['channels_10d', 'number', { kind: 'window', events: ['pay'], measure: 'distinct', property: 'channel', days: 10 }],
    ['first_login_30d', 'date', { kind: 'window', events: ['login'], measure: 'first_time', days: 30 }],
    ['last_pay_30d', 'date', { kind: 'window', events: ['pay'], measure: 'last_time', days: 30 }],
    ['lifecycle', 'enum', { kind: 'lifecycle', newDays: 10, activeDays: 5, dormantDays: 6, churnDays: 12 }],
    ['frequent', 'boolean', { kind: 'rule', when: { tag: 'logins_7d', op: 'gte', value: 4 } }],
    ['login_rank', 'number', { kind: 'score', method: 'quantile', input: { tag: 'logins_7d' }, buckets: 4 }],
  ]
  for (const [name, type, rule] of tags) {
    await repo.save(T, testTagDef(name, type, rule, type === 'enum' ? { values: ['new', 'active', 'reactivated', 'dormant', 'churned'] } : {}), 'test')
  }
}

describe('incremental runs day after day equal a recomputation', () => {
  // Seed 4 merges a customer whose device was linked before: the days of that device's events move too.
  for (const seed of [1, 4]) {
    it(`seed ${seed}`, async () => {
      await openBank(seed)
      const r = createRng(seed, 11)
      const pending: string[] = []
      const merges: string[] = []
      const deleted = new Set<number>()
      let skipTo = 0
      await db().insert('events', activity(r, 0, pending))
      await run('full', 0)
      let incrementalRuns = 0
      for (let d = 1; d <= DAYS; d++) {
        await db().insert('events', activity(r, d, pending))
        await identityChanges(r, pending, merges)
        await customerChanges(r, d, deleted)
        // No run that day, or for several days (up to the week after which a run is a full one).
        if (d < skipTo) continue
        if (r.chance(0.2) && d < DAYS - 2) {
          skipTo = d + r.int(1, 5)
          continue
        }
        const inc = await run('incremental', d)
        if (inc.mode === 'incremental') incrementalRuns++
        if (d % 3 === 0 || d === DAYS) {
          // From raw events: every day re-aggregated, not taken from the builds the runs kept
          // (a full run would reuse a day whose events and identities it finds unchanged).
          await db().command(`DELETE FROM tag_event_days WHERE tenant_id = {tenant:UInt16}`)
          const full = await run('full', d, true)
          expect(full.reusedDays ?? 0).toBe(0)
          const moved = Object.entries(full.tags).filter(([, t]) => t.changed > 0).map(([tag, t]) => `${tag}: ${t.changed}`)
          expect(moved, `day ${d}: a recomputation after the incremental runs changed`).toEqual([])
        }
      }
      expect(incrementalRuns).toBeGreaterThan(3)
    }, 120_000)
  }
})
