import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import type { TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ } from '../test/fixtures.js'
import { loginEvent, openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'
import { valuesAsOfSql } from './tag.values.js'

/**
 * Values as of a past time come from history: for each customer the change with the latest
 * `valid_from` at or before it. A backfill run again for the same time (after a late event, or a
 * corrected definition) writes its changes with the same `valid_from` as the first one; the later
 * run's row is the one that holds (history keeps the highest run id of equal keys once merged).
 * Before that merge, picking by `valid_from` alone tied and could return the first backfill's value.
 */

const KEYS = Array.from({ length: 20 }, (_, i) => i + 1)
let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)
const AT = new Date(TAG_TEST_AS_OF.getTime() - 86_400_000) // 03-14, 12:00 local

async function backfill() {
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'backfill', asOf: AT, runId: newRunId(), watermarkSlackMs: 0 })
  expect(r.failures).toEqual([])
  return r
}
async function asOf(at: Date): Promise<Record<number, number>> {
  const rows = await db().query(
    `SELECT customer_key AS k, num FROM ${valuesAsOfSql('{tags:Array(String)}', `{at:DateTime64(3, 'UTC')}`)} ORDER BY k`,
    { tags: ['logins_7d'], at: at.toISOString().replace('T', ' ').slice(0, 23) },
    z.object({ k: z.coerce.number(), num: z.coerce.number() }),
  )
  return Object.fromEntries(rows.map((r) => [r.k, r.num]))
}

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-asof', timeZone: TAG_TEST_TZ, keys: KEYS }))
  // History's parts stay apart, as they are between a run and the next merge.
  await engine.db.system.command('SYSTEM STOP MERGES tag_history')
}, 60_000)
afterAll(async () => {
  await engine?.db.system.command('SYSTEM START MERGES tag_history')
  await engine?.close()
})

describe('values as of a past time', () => {
  it('a backfill run again for the same time: the later run’s values hold', async () => {
    await backfill()
    expect((await asOf(AT))[5]).toBe(1)
    // Customers 4-8 logged in again on 03-13; the event arrived after the first backfill.
    await db().insert('events', [4, 5, 6, 7, 8].map((k) => loginEvent(k, '2026-03-13 20:00')))
    // The live run rebuilds that day (a backfill builds only days never built).
    await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId(), watermarkSlackMs: 0 })
    const again = await backfill()
    expect(again.tags.logins_7d?.changed).toBe(5)
    const values = await asOf(AT)
    for (const k of [4, 5, 6, 7, 8]) expect(values[k], `customer ${k}`).toBe(2)
    for (const k of [1, 2, 3]) expect(values[k], `customer ${k}`).toBe(2)
    for (const k of [9, 10, 20]) expect(values[k], `customer ${k}`).toBe(1)
  })
})
