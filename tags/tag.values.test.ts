import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import type { TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'

/**
 * A number tag holds finite numbers. NaN is not equal to itself, so a NaN stored as a value was
 * seen as changed by every run's comparison and written to history again each time; infinities
 * would stretch the bitmaps' buckets and leave JSON as null. A number that is not finite (a SQL
 * tag dividing by zero, a sum of +inf and -inf) is stored as no value.
 */

let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)

const run = async (hours: number, mode: 'full' | 'incremental' = 'full') =>
  runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode, asOf: new Date(TAG_TEST_AS_OF.getTime() + hours * 3_600_000), runId: newRunId() })

const count = async (table: 'tag_history' | 'tag_values', tag: string) => {
  const [r] = await db().query(`SELECT count() AS n FROM ${table} WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String}`, { tag }, z.object({ n: z.coerce.number() }))
  return r!.n
}

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-nonfinite', timeZone: TAG_TEST_TZ, keys: [1, 2, 3, 4] }))
  // 1: 0/0 (NaN), 2: 1/0 (+inf), 3: -1/0 (-inf), 4: 1.5.
  const sql = 'SELECT customer_key, multiIf(customer_key = 1, 0 / 0, customer_key = 2, 1 / 0, customer_key = 3, -1 / 0, 1.5) AS value FROM $customers'
  await repo.save(T, testTagDef('ratio', 'number', { kind: 'sql', sql }), 'test')
  // A rule taking its number from the tag reads no value where the tag has none.
  await repo.save(T, testTagDef('ratio_copy', 'number', { kind: 'rule', from: { tag: 'ratio' } }), 'test')
}, 60_000)
afterAll(async () => engine?.close())

describe('numbers that are not finite', () => {
  it('are stored as no value', async () => {
    expect((await run(0)).failures).toEqual([])
    for (const tag of ['ratio', 'ratio_copy']) {
      const rows = await db().query(
        `SELECT customer_key AS k, toString(num) AS num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY k`,
        { tag },
        z.object({ k: z.coerce.number(), num: z.string() }),
      )
      expect(rows, tag).toEqual([{ k: 4, num: '1.5' }])
    }
  })

  it('so a run after nothing changed changes nothing and writes no history', async () => {
    const history = await count('tag_history', 'ratio')
    const values = await count('tag_values', 'ratio')
    // Incremental runs compare a SQL tag row by row (a full run compares each tag as a whole first).
    for (const hours of [1, 2]) {
      const again = await run(hours, 'incremental')
      expect(again.mode).toBe('incremental')
      expect(again.tags.ratio?.changed, `run ${hours}`).toBe(0)
      expect(again.tags.ratio_copy?.changed ?? 0, `run ${hours}`).toBe(0)
    }
    expect(await count('tag_history', 'ratio')).toBe(history)
    expect(await count('tag_values', 'ratio')).toBe(values)
  })
})
