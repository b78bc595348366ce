import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import type { TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'

/**
 * Day builds no window reaches any longer: a bank's longest tag window shrinks from 90 days to 7
 * (the 90-day tag is retired). The builds of days more than a month before the 7-day window are
 * never read again, so a run drops them (in one batch, once enough are held); backfills, whose
 * window is in the past, drop nothing. Run time 2026-03-15T04:00Z (12:00 in Shanghai).
 */

let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)
const run = async (o: { mode?: 'full' | 'incremental' | 'backfill'; recompute?: boolean; asOf?: Date } = {}) =>
  runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId(), watermarkSlackMs: 0, ...o })

/** The days holding builds, in tag_event_days and in tag_event_daily (days with rows), once the
 * table's mutations (the drop of rows runs as one, in the background) are done. */
async function builtDays(): Promise<{ days: number; first: string; rowsFirst: string; rowsBefore: number }> {
  const pending = z.object({ n: z.coerce.number() })
  for (let i = 0; i < 200; i++) {
    const [m] = await engine.db.system.query(
      `SELECT count() AS n FROM system.mutations WHERE database = currentDatabase() AND table = 'tag_event_daily' AND NOT is_done`,
      {},
      pending,
    )
    if (!m?.n) break
    await new Promise((r) => setTimeout(r, 50))
  }
  const [d] = await db().query(
    `SELECT uniqExact(day) AS days, toString(min(day)) AS first FROM tag_event_days WHERE tenant_id = {tenant:UInt16}`,
    {},
    z.object({ days: z.coerce.number(), first: z.string() }),
  )
  const [r] = await db().query(
    `SELECT toString(min(day)) AS first, countIf(day < '2026-02-06') AS before FROM tag_event_daily WHERE tenant_id = {tenant:UInt16}`,
    {},
    z.object({ first: z.string(), before: z.coerce.number() }),
  )
  return { days: d!.days, first: d!.first, rowsFirst: r!.first, rowsBefore: r!.before }
}

async function logins7d(): Promise<Record<number, number>> {
  const rows = await db().query(
    `SELECT customer_key AS k, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'logins_7d' AND is_deleted = 0 ORDER BY k`,
    {},
    z.object({ k: z.coerce.number(), num: z.coerce.number() }),
  )
  return Object.fromEntries(rows.map((r) => [r.k, r.num]))
}

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-o', timeZone: TAG_TEST_TZ, keys: [1, 2, 3, 4, 5] }))
  // Logins long before the 7-day window, counted by the 90-day tag.
  await db().command(
    `INSERT INTO events (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id, properties, context, sent_at, received_at)
     SELECT {tenant:UInt16}, 1 + number % 5, toDateTime64('2025-12-20 02:00:00', 3, 'UTC') + INTERVAL number DAY, 'track', 'login', concat('old', toString(number)),
            'a', '', 's', '{}', '{}', now64(3), now64(3)
     FROM numbers(60)`,
  )
  await repo.save(T, testTagDef('logins_90d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 90 }), 'test')
  const first = await run()
  expect(first.droppedDays).toBeUndefined()
  expect(await builtDays()).toMatchObject({ days: 90, first: '2025-12-16' })
})
afterAll(async () => engine?.close())

describe('day builds before the longest window', () => {
  it('a backfill drops nothing: its window is in the past', async () => {
    await repo.retire(T, 'logins_90d', 'test')
    // As of 03-01 the 7-day window starts on 02-24, and a month before it is 01-24: 39 older days.
    const r = await run({ mode: 'backfill', asOf: new Date('2026-03-01T16:00:00Z') })
    expect(r.droppedDays).toBeUndefined()
    expect((await builtDays()).first).toBe('2025-12-16')
  })

  it('once the longest window shrinks, a run drops the days more than a month before it, and the values stay', async () => {
    const before = await logins7d()
    expect(before).toEqual({ 1: 2, 2: 2, 3: 2, 4: 1, 5: 1 })
    const r = await run()
    // The 7-day window starts on 03-09; a month before it, 02-06, is the first day kept:
    // 2025-12-16 to 2026-02-05 go.
    expect(r.droppedDays).toBe(52)
    const held = await builtDays()
    expect(held).toMatchObject({ first: '2026-02-06', rowsBefore: 0 })
    expect(held.rowsFirst >= '2026-02-06').toBe(true)
    expect(await logins7d()).toEqual(before)
    // Nothing the runs read went: a recompute and an incremental run change nothing.
    expect((await run({ recompute: true })).changed).toBe(0)
    expect((await run({ mode: 'incremental' })).changed).toBe(0)
  })

  it('fewer old days than a batch are left alone', async () => {
    // A day later the window moves by one day: one more day falls out, not a batch.
    const r = await run({ asOf: new Date(TAG_TEST_AS_OF.getTime() + 86_400_000) })
    expect(r.droppedDays).toBeUndefined()
    expect((await builtDays()).first).toBe('2026-02-06')
  })
})
