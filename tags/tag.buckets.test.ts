import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import { preview } from '../segments/segment.preview.js'
import { parseSegment } from '../segments/segment.schema.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { runTags } from './tag.pipeline.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * A number with more than 64 distinct values is kept in buckets [lo, hi) by quantile, the largest
 * value in a bucket of its own [max, max]. Runs after the first bring the buckets up to date from
 * their changes while every new value falls inside them. When the one customer holding the
 * maximum moved down, that bucket emptied and went, and the last bucket left was [a, max): a later
 * value equal to max was counted inside it, where readers never look for max, so a segment
 * `opened_year >= max` missed that customer.
 */

const KEYS = Array.from({ length: 80 }, (_, i) => i + 1)
let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)
let clock = Date.parse('2026-01-01T00:00:00Z')

/** Customers who opened their account in `years[k]`, each row newer than the last write. */
async function opened(years: Record<number, number>) {
  clock += 60_000
  await db().insert(
    'customers',
    Object.entries(years).map(([k, y]) => ({ customer_key: Number(k), customer_no: `C${k}`, opened_at: `${y}-06-01 00:00:00.000`, updated_at: chDateTime(new Date(clock)) })),
  )
}
async function run() {
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId(), watermarkSlackMs: 0 })
  expect(r.failures).toEqual([])
  return r
}
/** The current build's buckets of opened_year. */
async function buckets() {
  return db().query(
    `SELECT b.lo AS lo, b.hi AS hi, arraySort(bitmapToArray(b.keys)) AS ks FROM tag_bitmaps AS b
     INNER JOIN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16}) AS s ON s.tag = toString(b.tag) AND s.build = b.build
     WHERE b.tenant_id = {tenant:UInt16} AND b.tag = 'opened_year' AND b.value != '*' ORDER BY lo`,
    {},
    z.object({ lo: z.number(), hi: z.number(), ks: z.array(z.coerce.number()) }),
  )
}
/** Customers whose bucket does not hold their value (a value v is in [lo, hi), or lo = hi = v). */
async function misplaced(years: Map<number, number>): Promise<string[]> {
  const out: string[] = []
  for (const b of await buckets()) {
    for (const k of b.ks) {
      const v = years.get(k)!
      if (!(b.lo === b.hi ? v === b.lo : v >= b.lo && v < b.hi)) out.push(`${k}:${v} in [${b.lo}, ${b.hi}${b.lo === b.hi ? ']' : ')'}`)
    }
  }
  return out
}
async function segment(rule: unknown): Promise<number[]> {
  const defs = new Map((await repo.list(T)).map((d) => [d.name, d]))
  const p = await preview(db(), parseSegment({ purpose: 'service', rule }), { defs, asOf: TAG_TEST_AS_OF, timeZone: TAG_TEST_TZ, sampleSize: 1000 })
  return p.sample
}

beforeAll(async () => {
  engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  T = (await tenants.create({ slug: 'bank-buckets', name: 'bank-buckets', timeZone: TAG_TEST_TZ })).id
  repo = createTagRepository({ db: engine.db })
  await repo.save(T, testTagDef('opened_year', 'number', { kind: 'sql', sql: 'SELECT customer_key, toYear(opened_at) AS value FROM $customers' }), 'test')
}, 60_000)
afterAll(async () => engine?.close())

const years = new Map(KEYS.map((k) => [k, 1940 + k]))
/** Customer `k` re-dated to `year`, then a run: every customer must still be in a bucket holding their value. */
async function move(k: number, year: number) {
  years.set(k, year)
  await opened({ [k]: year })
  await run()
  expect(await misplaced(years)).toEqual([])
}

describe('bucketed numbers kept up to date from a run’s changes', () => {

  it('the first run: quantile buckets, the maximum in a bucket of its own', async () => {
    await opened(Object.fromEntries(years))
    await run()
    const bs = await buckets()
    expect(bs.length).toBeGreaterThan(20)
    expect(bs.at(-1)).toEqual({ lo: 2020, hi: 2020, ks: [80] })
    expect(await misplaced(years)).toEqual([])
  })

  it('the only customer at the maximum moves down: every customer is still in the bucket holding their value', async () => {
    await move(80, 1950)
    expect(await segment({ tag: 'opened_year', op: 'gte', value: 2019 })).toEqual([79])
  })

  it('another customer reaches the old maximum: found by a segment on it', async () => {
    await move(79, 2020)
    expect(await segment({ tag: 'opened_year', op: 'gte', value: 2020 })).toEqual([79])
    expect(await segment({ tag: 'opened_year', op: 'eq', value: 2020 })).toEqual([79])
    expect(await segment({ tag: 'opened_year', op: 'between', value: [2015, 2020] })).toEqual([75, 76, 77, 78, 79])
  })

  it('an emptied bucket is kept, with its edges', async () => {
    await move(79, 1951)
    expect((await buckets()).at(-1)).toEqual({ lo: 2020, hi: 2020, ks: [] })
    expect(await segment({ tag: 'opened_year', op: 'gte', value: 2019 })).toEqual([])
  })

  it('a build that lost a bucket (written before they were kept): a value in the gap is still found', async () => {
    await db().command(
      `DELETE FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND tag = 'opened_year' AND lo = 2020 AND hi = 2020
         AND build = (SELECT build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'opened_year')`,
    )
    expect((await buckets()).at(-1)).toMatchObject({ hi: 2020 })
    await move(78, 2020)
    expect(await segment({ tag: 'opened_year', op: 'gte', value: 2020 })).toEqual([78])
  })

  it('a value past the maximum widens the last bucket: the other buckets keep their edges, no quantiles again', async () => {
    const before = await buckets()
    await move(77, 2031)
    const after = await buckets()
    expect(after.slice(0, -1).map((b) => [b.lo, b.hi])).toEqual(before.slice(0, -1).map((b) => [b.lo, b.hi]))
    expect(after.at(-1)).toEqual({ lo: before.at(-1)!.lo, hi: 2032, ks: [77, 78] })
    expect(await segment({ tag: 'opened_year', op: 'gte', value: 2030 })).toEqual([77])
    expect(await segment({ tag: 'opened_year', op: 'eq', value: 2031 })).toEqual([77])
    expect(await segment({ tag: 'opened_year', op: 'between', value: [2015, 2031] })).toEqual([75, 76, 77, 78])
    expect(await segment({ tag: 'opened_year', op: 'gt', value: 2031 })).toEqual([])
  })

  it('a value below the minimum widens the first bucket', async () => {
    const before = await buckets()
    await move(1, 1900)
    const after = await buckets()
    expect(after.map((b) => b.hi)).toEqual(before.map((b) => b.hi))
    expect(after[0]).toMatchObject({ lo: 1900, hi: before[0]!.hi })
    expect(after[0]!.ks).toContain(1)
    expect(await segment({ tag: 'opened_year', op: 'lt', value: 1941 })).toEqual([1])
    expect(await segment({ tag: 'opened_year', op: 'between', value: [1900, 1942] })).toEqual([1, 2])
  })

  it('a widened bucket holding more than twice its share is rebuilt by quantiles', async () => {
    const moved = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [60 + i, 2032 + i]))
    for (const [k, y] of Object.entries(moved)) years.set(Number(k), y)
    await opened(moved)
    await run()
    expect(await misplaced(years)).toEqual([])
    expect((await buckets()).at(-1)).toEqual({ lo: 2039, hi: 2039, ks: [67] })
    expect(await segment({ tag: 'opened_year', op: 'gte', value: 2031 })).toEqual([60, 61, 62, 63, 64, 65, 66, 67, 77])
    years.set(1, 1941)
    await opened({ 1: 1941 })
    await run()
    expect(await misplaced(years)).toEqual([])
  })
  it('a value in a gap between buckets (a build that lost a middle bucket) rebuilds them by quantiles', async () => {
    const mid = (await buckets())[10]!
    await db().command(
      `DELETE FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND tag = 'opened_year' AND lo = {lo:Float64}
         AND build = (SELECT build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'opened_year')`,
      { lo: mid.lo },
    )
    await move(5, mid.lo)
    const after = await buckets()
    expect(after.some((b) => b.lo <= mid.lo && mid.lo < b.hi && b.ks.includes(5))).toBe(true)
    expect(after.at(-1)).toMatchObject({ lo: 2039, hi: 2039 })
    expect(await segment({ tag: 'opened_year', op: 'eq', value: mid.lo })).toContain(5)
  })
})
