import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime, DAY_MS } from '../core/time.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { LONG_AGO, localEvent, TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { runTags, type TagRunResult } from './tag.pipeline.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * An incremental run recomputes an event tag only for the customers whose value of it can have
 * moved (event-daily.ts addScopeFromDays), and compares only those (tag, customer) pairs.
 *
 * The full run is at local 2026-03-15 (Shanghai), the incremental one a day later: logins_7d's
 * window leaves 03-09 behind, pays_30d's (and the span's) leaves 02-14, and 03-16 enters both.
 * - 1: a login on 03-09 (leaving logins_7d) and a payment on 03-10 (inside both windows);
 * - 2: a payment on 02-14 (leaving pays_30d);
 * - 3: a login on 03-16, received after the full run (the new day);
 * - 4: a login on 03-12, nothing at any edge;
 * - 9: known only by its events (no customer row), a login on 02-14: it leaves the span, so the
 *   customer has no values left (quiet_7d held for it), though no tag's measure was active at an
 *   edge of that tag's window.
 */

const TZ = TAG_TEST_TZ
const NEXT = new Date(TAG_TEST_AS_OF.getTime() + DAY_MS)
let engine: TestEngine
let repo: TagRepository
let T: number
let incremental: TagRunResult
let incrementalRun: string
const db = () => engine.db.forTenant(T)
const received = (e: ReturnType<typeof localEvent>) => ({ ...e, received_at: chDateTime(new Date()) })

const run = async (mode: 'full' | 'incremental', asOf: Date, o: { recompute?: boolean } = {}) => {
  const runId = newRunId()
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TZ, defs: await repo.list(T), mode, asOf, runId, ...o })
  return { r, runId }
}

async function values(): Promise<string[]> {
  const rows = await db().query(
    `SELECT tag, customer_key AS k, value FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0 ORDER BY tag, k`,
    {},
    z.object({ tag: z.string(), k: z.coerce.number(), value: z.string() }),
  )
  return rows.map((r) => `${r.tag} ${r.k} ${r.value}`)
}

async function staged(runId: string): Promise<string[]> {
  const rows = await db().query(
    `SELECT tag, customer_key AS k FROM tag_stage WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} ORDER BY k, tag`,
    { run: runId },
    z.object({ tag: z.string(), k: z.coerce.number() }),
  )
  return rows.map((r) => `${r.k} ${r.tag}`)
}

beforeAll(async () => {
  engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  T = (await tenants.create({ slug: 'scope-bank', name: 'scope-bank', timeZone: TZ })).id
  repo = createTagRepository({ db: engine.db })
  await db().insert('customers', [1, 2, 3, 4].map((k) => ({ customer_key: k, customer_no: `C${k}`, opened_at: LONG_AGO, updated_at: LONG_AGO })))
  await db().insert('events', [
    localEvent(1, '2026-03-09 10:00', 'login'),
    localEvent(1, '2026-03-10 10:00', 'pay'),
    localEvent(2, '2026-02-14 10:00', 'pay'),
    localEvent(4, '2026-03-12 10:00', 'login'),
    localEvent(9, '2026-02-14 10:00', 'login'),
  ])
  await repo.save(T, testTagDef('logins_7d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 7 }), 'test')
  await repo.save(T, testTagDef('pays_30d', 'number', { kind: 'window', events: ['pay'], measure: 'count', days: 30 }), 'test')
  // Holds for a customer without a login in 7 days: a value even without events.
  await repo.save(T, testTagDef('quiet_7d', 'boolean', { kind: 'window', events: ['login'], measure: 'count', days: 7, threshold: { op: 'lt', value: 1 } }), 'test')
  await run('full', TAG_TEST_AS_OF)
  await db().insert('events', [received(localEvent(3, '2026-03-16 09:00', 'login'))])
  ;({ r: incremental, runId: incrementalRun } = await run('incremental', NEXT))
}, 120_000)

afterAll(async () => {
  await engine?.close()
})

describe('an incremental run’s scope, tag by tag', () => {
  it('recomputes each customer’s tags whose measure was active on that tag’s edges or a rebuilt day, and every tag of a customer known only by events', async () => {
    expect(incremental.mode).toBe('incremental')
    const scope = await db().query(
      `SELECT customer_key AS k, min(narrowed) AS narrowed, arraySort(groupUniqArrayArray(event_tags)) AS tags FROM tag_scope
       WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} GROUP BY k ORDER BY k`,
      { run: incrementalRun },
      z.object({ k: z.coerce.number(), narrowed: z.coerce.number(), tags: z.array(z.string()) }),
    )
    expect(scope).toEqual([
      { k: 1, narrowed: 1, tags: ['logins_7d', 'quiet_7d'] },
      { k: 2, narrowed: 1, tags: ['pays_30d'] },
      { k: 3, narrowed: 1, tags: ['logins_7d', 'quiet_7d'] },
      { k: 9, narrowed: 0, tags: [] },
    ])
    // Counts of 0 and untrue flags are no value; customer 9 left the span: nothing is staged for it.
    expect(await staged(incrementalRun)).toEqual(['1 quiet_7d', '3 logins_7d'])
  })

  it('changes what moved, keeps the tags it did not recompute, and agrees with a recomputation of every tag', async () => {
    const after = await values()
    expect(after).toEqual(['logins_7d 3 1', 'logins_7d 4 1', 'pays_30d 1 1', 'quiet_7d 1 true', 'quiet_7d 2 true'])
    const { r } = await run('full', NEXT, { recompute: true })
    expect(r.changed).toBe(0)
    expect(await values()).toEqual(after)
  })
})
