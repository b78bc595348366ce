import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import type { TestEngine } from '../test/engine.js'
import { LONG_AGO, TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { loginEvent, openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'

/**
 * An incremental run computes event tags for the customers whose days changed; the customers
 * table changes too (the bank's imports add customers, correct opening dates, mark customers
 * deleted), and a lifecycle reads it. The run takes in the customers whose row changed since the
 * event tags were computed (against the customers as they were then, kept per print), so its
 * values equal a recomputation. Run time 2026-03-15T04:00Z, local date 03-15 in Shanghai.
 */

const KEYS = Array.from({ length: 10 }, (_, i) => i + 1)
const DAY = 86_400_000
const LIFECYCLE = ['new', 'active', 'reactivated', 'dormant', 'churned']

let engine: TestEngine
let repo: TagRepository
let T: number

const db = () => engine.db.forTenant(T)
async function run(o: { recompute?: boolean; asOf?: Date; mode?: 'full' | 'incremental' } = {}) {
  return runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId(), watermarkSlackMs: 0, ...o })
}
async function lifecycle(): Promise<Record<number, string>> {
  const rows = await db().query(
    `SELECT customer_key AS k, value FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'lifecycle' AND is_deleted = 0 ORDER BY k`,
    {},
    z.object({ k: z.coerce.number(), value: z.string() }),
  )
  return Object.fromEntries(rows.map((r) => [r.k, r.value]))
}
async function prints(): Promise<number> {
  const [r] = await db().query(`SELECT uniqExact(print) AS n FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ n: z.coerce.number() }))
  return r!.n
}
async function holders(tag: string): Promise<number[]> {
  const rows = await db().query(
    `SELECT customer_key AS k FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 AND value = 'true' ORDER BY k`,
    { tag },
    z.object({ k: z.coerce.number() }),
  )
  return rows.map((r) => r.k)
}
const customer = (k: number, openedAt: string, deleted = 0) => ({ customer_key: k, customer_no: `C${k}`, opened_at: openedAt, updated_at: chDateTime(new Date()), deleted })

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-c', timeZone: TAG_TEST_TZ, keys: KEYS }))
  await repo.save(T, testTagDef('lifecycle', 'enum', { kind: 'lifecycle' }, { values: LIFECYCLE }), 'test')
  // Over other tags alone: a rule that holds for a customer without logins, and a score.
  await repo.save(T, testTagDef('quiet', 'boolean', { kind: 'rule', when: { tag: 'logins_7d', op: 'lt', value: 1 } }), 'test')
  await repo.save(T, testTagDef('login_rank', 'number', { kind: 'score', method: 'quantile', input: { tag: 'logins_7d' }, buckets: 4 }), 'test')
  expect((await run()).mode).toBe('full')
})
afterAll(async () => engine?.close())

describe('incremental runs take in the customers that changed', () => {
  it('a customer imported, one re-dated and one deleted: the next day’s incremental run equals a recomputation', async () => {
    const before = await lifecycle()
    expect(before[4]).toBe('active')
    await db().insert('customers', [customer(31, '2026-03-14 02:00:00.000'), customer(4, '2026-03-10 02:00:00.000'), customer(9, LONG_AGO, 1)])
    const next = new Date(TAG_TEST_AS_OF.getTime() + DAY)
    const inc = await run({ mode: 'incremental', asOf: next })
    expect(inc.mode).toBe('incremental')
    const after = await lifecycle()
    expect(after[31]).toBe('new')
    expect(after[4]).toBe('new')
    // The rule over another tag is recomputed for the customers whose row changed (and those
    // whose input changed: none here), not for everyone; the score ranks everyone again.
    expect(inc.tags.quiet).toMatchObject({ changedInputs: [], changedCustomers: true })
    expect(await holders('quiet')).toEqual([31])
    expect(inc.tags.login_rank?.changedInputs).toBeUndefined()
    expect(inc.tags.login_rank?.skipped).toBeUndefined()
    expect((await run({ recompute: true, asOf: next })).changed).toBe(0)
    // One print is kept: the customers as the tags were last computed from.
    expect(await prints()).toBe(1)
  })

  it('with no customer changed, an incremental run writes no print', async () => {
    await db().insert('events', [loginEvent(2, '2026-03-16 09:00')])
    const later = new Date(TAG_TEST_AS_OF.getTime() + 2 * DAY)
    const [w] = await db().query(`SELECT count() AS n FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ n: z.coerce.number() }))
    const inc = await run({ mode: 'incremental', asOf: later })
    expect(inc.mode).toBe('incremental')
    const [w2] = await db().query(`SELECT count() AS n FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ n: z.coerce.number() }))
    expect(w2!.n).toBe(w!.n)
    expect((await run({ recompute: true, asOf: later })).changed).toBe(0)
  })

  it('without the customers as they were (kept before this version), the run recomputes for everyone', async () => {
    await db().command(`DELETE FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16}`)
    await db().insert('customers', [customer(32, '2026-03-16 02:00:00.000')])
    const later = new Date(TAG_TEST_AS_OF.getTime() + 3 * DAY)
    const r = await run({ mode: 'incremental', asOf: later })
    expect(r.mode).toBe('full')
    expect((await lifecycle())[32]).toBe('new')
    expect((await run({ recompute: true, asOf: later })).changed).toBe(0)
    expect(await prints()).toBe(1)
  })
})
