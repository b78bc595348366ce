import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import type { TestEngine } from '../test/engine.js'
import { LONG_AGO, TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'
import { valuesAsOfSql } from './tag.values.js'

/**
 * Features over a span of days cover whole local days ending with the run's date, as windows do:
 * `bills_paid_for_others_180d` on 2026-03-15 (Shanghai) counts payments from 2025-09-17 00:00
 * to 2026-03-15 23:59:59.999 local. It used to start a day earlier (181 days) and have no end,
 * so a backfill of a past day counted payments made after it.
 */

let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)

const paid = (no: string, forKey: number, local: string) => ({
  customer_key: forKey, bill_no: no, biller: 'water', amount: '10.00', due_date: '2025-09-30', status: 'paid',
  paid_at: chDateTime(new Date(`${local}+08:00`)), payer_key: 1, updated_at: LONG_AGO,
})
const numRow = z.object({ k: z.coerce.number(), num: z.coerce.number() })
const byKey = (rows: z.infer<typeof numRow>[]) => Object.fromEntries(rows.map((r) => [r.k, r.num]))

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-features', timeZone: TAG_TEST_TZ, keys: [1, 2, 3, 4] }))
  await db().insert('bills', [
    paid('b1', 2, '2025-09-16T23:59:59.999'), // the day before the 180: out
    paid('b2', 2, '2025-09-17T00:00:00.000'), // the first of the 180 days
    paid('b3', 3, '2026-03-10T12:00:00.000'),
    paid('b4', 3, '2026-03-15T23:59:59.999'), // the run's date: in
    paid('b5', 4, '2026-03-16T00:00:00.000'), // after the run's date: out
  ])
  await repo.save(T, testTagDef('paid_bills', 'number', { kind: 'rule', from: { feature: 'bills_paid_for_others_180d' } }), 'test')
  await repo.save(T, testTagDef('paid_people', 'number', { kind: 'rule', from: { feature: 'people_paid_for_180d' } }), 'test')
}, 60_000)
afterAll(async () => engine?.close())

describe('bills paid for others in 180 days', () => {
  it('counts the run date and the 179 local days before it, nothing after', async () => {
    const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId() })
    expect(r.failures).toEqual([])
    const values = (tag: string) =>
      db().query(`SELECT customer_key AS k, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0`, { tag }, numRow)
    expect(byKey(await values('paid_bills'))).toEqual({ 1: 3, 2: 0, 3: 0, 4: 0 })
    expect(byKey(await values('paid_people'))).toEqual({ 1: 2, 2: 0, 3: 0, 4: 0 })
  })

  it('a backfill of a past day counts the payments up to the end of that day', async () => {
    // 2026-03-12: 2025-09-14 .. 2026-03-12, so b1, b2 and b3.
    const asOf = new Date('2026-03-12T15:59:59.999Z')
    const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), only: ['paid_bills'], mode: 'backfill', asOf, runId: newRunId() })
    expect(r.failures).toEqual([])
    const rows = await db().query(`SELECT customer_key AS k, num FROM ${valuesAsOfSql('{tags:Array(String)}', `{at:DateTime64(3, 'UTC')}`)}`, { tags: ['paid_bills'], at: chDateTime(asOf) }, numRow)
    expect(byKey(rows)).toEqual({ 1: 3, 2: 0, 3: 0, 4: 0 })
  })
})
