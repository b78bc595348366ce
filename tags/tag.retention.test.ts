import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import type { TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
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
const run = async (o: { mode?: 'full' | 'incremental'; recompute?: boolean; eventsKeptFrom?: string } = {}) =>
  runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId(), watermarkSlackMs: 0, ...o })
async function counts(): Promise<Record<number, number>> {
  const rows = await db().query(
    `SELECT customer_key AS k, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'logins_30d' AND is_deleted = 0 ORDER BY k`,
    {},
    z.object({ k: z.coerce.number(), num: z.coerce.number() }),
  )
  return Object.fromEntries(rows.map((r) => [r.k, r.num]))
}

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-r', timeZone: TAG_TEST_TZ, keys: [1, 2, 3, 4, 5] }))
  await repo.save(T, testTagDef('logins_30d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 30 }), 'test')
  await db().insert('events', [loginEvent(1, '2026-03-02 09:00'), loginEvent(2, '2026-03-02 10:00')])
  await run()
  expect(await counts()).toEqual({ 1: 3, 2: 3, 3: 2, 4: 1, 5: 1 })
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

  it('without it, a full run re-aggregates what retention left and the counts change with the kind of run', async () => {
    const full = await run()
    expect(full.rebuiltDays).toEqual(['2026-03-02'])
    expect(await counts()).toEqual({ 1: 2, 2: 2, 3: 2, 4: 1, 5: 1 })
  })
})
