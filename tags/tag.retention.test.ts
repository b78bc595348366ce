import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { addDays } from '../core/time.js'
import type { TestEngine } from '../test/engine.js'
import { localEvent, TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { loginEvent, openLoginBank } from './tag.fixture.js'
import { eventsKeptFrom } from './tag.job.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'

/**
 * A bank whose retention keeps raw events for less than a tag's window: the retention job
 * deletes the oldest events while the window still counts their days. An incremental run never
 * re-aggregates those days; a full run re-aggregated what was left of them, so the same tags
 * changed with the kind of run. Days before the retention's edge keep their builds in every
 * run. Run time 2026-03-15T04:00Z (12:00 in Shanghai).
 */

let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)
const run = async (o: { mode?: 'full' | 'incremental' | 'backfill'; recompute?: boolean; eventsKeptFrom?: string; asOf?: Date } = {}) =>
  runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId(), watermarkSlackMs: 0, ...o })
async function counts(tag = 'logins_30d'): Promise<Record<number, number | string>> {
  const rows = await db().query(
    `SELECT customer_key AS k, num, value FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY k`,
    { tag },
    z.object({ k: z.coerce.number(), num: z.coerce.number(), value: z.string() }),
  )
  return Object.fromEntries(rows.map((r) => [r.k, tag === 'first_login_30d' ? r.value : r.num]))
}
/** The values the days retention empties hold: first logins on 03-02, the screen seen only then. */
const HELD = { first: { 1: '2026-03-02', 2: '2026-03-02' }, screens: { 1: 2 } }
const held = async () => {
  const first = await counts('first_login_30d')
  const screens = await counts('screens_30d')
  return { first: { 1: first[1], 2: first[2] }, screens: { 1: screens[1] } }
}

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-r', timeZone: TAG_TEST_TZ, keys: [1, 2, 3, 4, 5] }))
  await repo.save(T, testTagDef('logins_30d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 30 }), 'test')
  // A time and a distinct measure too, each with a value only the day retention empties holds.
  await repo.save(T, testTagDef('first_login_30d', 'date', { kind: 'window', events: ['login'], measure: 'first_time', days: 30 }), 'test')
  await repo.save(T, testTagDef('screens_30d', 'number', { kind: 'window', events: ['view'], measure: 'distinct', property: 'screen', days: 30 }), 'test')
  await db().insert('events', [
    loginEvent(1, '2026-03-02 09:00'),
    loginEvent(2, '2026-03-02 10:00'),
    localEvent(1, '2026-03-02 09:05', 'view', { screen: 'loans' }),
    localEvent(1, '2026-03-12 10:05', 'view', { screen: 'home' }),
  ])
  await run()
  expect(await counts()).toEqual({ 1: 3, 2: 3, 3: 2, 4: 1, 5: 1 })
  expect(await held()).toEqual(HELD)
  // The retention job of a bank keeping events 10 days, run now: events before 03-05 12:00 go.
  await db().command(`DELETE FROM events WHERE tenant_id = {tenant:UInt16} AND timestamp < '2026-03-05 04:00:00'`)
})
afterAll(async () => engine?.close())

describe('events past the retention, inside a window', () => {
  it('the first day retention keeps whole: the day after the one holding its edge', () => {
    expect(eventsKeptFrom(TAG_TEST_AS_OF, 10, TAG_TEST_TZ)).toBe('2026-03-06')
    // 03-05 20:00Z is 03-06 04:00 in Shanghai: that day has lost events, the next has not.
    expect(eventsKeptFrom(new Date('2026-03-15T20:00:00Z'), 10, TAG_TEST_TZ)).toBe('2026-03-07')
  })

  it('full runs, recomputing or not, keep the builds of the days before it, as incremental runs do', async () => {
    const kept = '2026-03-06'
    const full = await run({ eventsKeptFrom: kept })
    expect(full.rebuiltDays).toEqual([])
    expect(full.changed).toBe(0)
    expect((await run({ eventsKeptFrom: kept, recompute: true })).changed).toBe(0)
    expect((await run({ mode: 'incremental', eventsKeptFrom: kept })).changed).toBe(0)
    expect(await counts()).toEqual({ 1: 3, 2: 3, 3: 2, 4: 1, 5: 1 })
  })

  it('a tag with a new measure added after the retention: the days it emptied keep what the other tags counted there', async () => {
    const kept = '2026-03-06'
    // Payments on 03-12: the new tag's only events, all kept.
    await db().insert('events', [{ ...loginEvent(3, '2026-03-12 11:00'), event: 'pay', message_id: 'pay-3' }])
    await repo.save(T, testTagDef('pays_30d', 'number', { kind: 'window', events: ['pay'], measure: 'count', days: 30 }), 'test')
    const full = await run({ eventsKeptFrom: kept })
    // The days before 03-06 are carried into the new measures; the rest are aggregated again.
    expect(full.carriedDays).toEqual(Array.from({ length: 20 }, (_, i) => addDays('2026-02-14', i)))
    expect(full.rebuiltDays).toEqual(Array.from({ length: 10 }, (_, i) => addDays('2026-03-06', i)))
    expect(await counts()).toEqual({ 1: 3, 2: 3, 3: 2, 4: 1, 5: 1 })
    expect(await held()).toEqual(HELD)
    const pays = await db().query(
      `SELECT customer_key AS k, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'pays_30d' AND is_deleted = 0 AND num > 0`,
      {},
      z.object({ k: z.coerce.number(), num: z.coerce.number() }),
    )
    expect(pays).toEqual([{ k: 3, num: 1 }])
    // Every kind of run agrees with it.
    expect((await run({ eventsKeptFrom: kept, recompute: true })).changed).toBe(0)
    expect((await run({ mode: 'incremental', eventsKeptFrom: kept })).changed).toBe(0)
    expect(await counts()).toEqual({ 1: 3, 2: 3, 3: 2, 4: 1, 5: 1 })
    // A backfill of a past day under other measures carries the days before the edge too.
    // (Its window, 02-12 to 03-13, begins two days before any build: those are aggregated.)
    await repo.save(T, testTagDef('refunds_7d', 'number', { kind: 'window', events: ['refund'], measure: 'count', days: 7 }), 'test')
    const backfill = await run({ mode: 'backfill', asOf: new Date('2026-03-13T15:59:59.999Z'), eventsKeptFrom: kept })
    expect(backfill.carriedDays).toEqual(full.carriedDays)
    expect(backfill.rebuiltDays).toEqual(['2026-02-12', '2026-02-13', ...Array.from({ length: 8 }, (_, i) => addDays('2026-03-06', i))])
    await repo.retire(T, 'refunds_7d', 'test')
    // Retired, its measure goes: the days are carried back, and the counts hold.
    await repo.retire(T, 'pays_30d', 'test')
    const back = await run({ eventsKeptFrom: kept })
    expect(back.carriedDays).toEqual(full.carriedDays)
    expect(await counts()).toEqual({ 1: 3, 2: 3, 3: 2, 4: 1, 5: 1 })
    expect(await held()).toEqual(HELD)
  })

  it('without it, a full run re-aggregates what retention left and the counts change with the kind of run', async () => {
    const full = await run()
    expect(full.rebuiltDays).toEqual(['2026-03-02'])
    expect(await counts()).toEqual({ 1: 2, 2: 2, 3: 2, 4: 1, 5: 1 })
  })
})
