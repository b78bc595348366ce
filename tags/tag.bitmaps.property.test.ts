import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime, DAY_MS } from '../core/time.js'
import { createRng, type Rng } from '../demo/demo.random.js'
import { createBitmapStore, type BitmapStore } from '../segments/bitmap.store.js'
import { loadRoaring } from '../segments/roaring.js'
import { materializeSegment } from '../segments/segment.materialize.js'
import { preview } from '../segments/segment.preview.js'
import { createSegmentRepository } from '../segments/segment.repository.js'
import { parseSegment } from '../segments/segment.schema.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { runTags } from './tag.pipeline.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * Runs after the first bring a tag's bitmaps up to date from their changes instead of rebuilding
 * them. Random sequences of changes (seeded) to a number and a date tag — values spread past 64
 * distinct ones (buckets) and narrowed to a few (a bitmap per value), new extremes, the holders of
 * an extreme moved away, customers deleted and restored — must leave after every run the bitmaps
 * a reader trusts: each customer with a value in exactly one bitmap that holds that value, and
 * segments on the tags equal to the values, from the engine and from the bitmaps held in memory;
 * a saved segment materialized after each run holds the same members, and its entries and exits
 * replayed give them too.
 */

const N = 120
const YEAR0 = Date.UTC(1970, 0, 1)
let engine: TestEngine
let repo: TagRepository
let store: BitmapStore
let T: number
const db = () => engine.db.forTenant(T)
let clock = Date.parse('2026-01-01T00:00:00Z')

/** A customer's account opened on day `day` after 1970-01-01 (UTC), or deleted. */
type Customer = { day: number; deleted: boolean }

async function write(cs: Map<number, Customer>, keys: readonly number[]) {
  clock += 60_000
  await db().insert(
    'customers',
    keys.map((k) => {
      const c = cs.get(k)!
      return {
        customer_key: k,
        customer_no: `C${k}`,
        opened_at: chDateTime(new Date(YEAR0 + c.day * DAY_MS)),
        deleted: c.deleted ? 1 : 0,
        updated_at: chDateTime(new Date(clock)),
      }
    }),
  )
}

const yearOf = (c: Customer) => new Date(YEAR0 + c.day * DAY_MS).getUTCFullYear()
/** The date tag's number: days since 1970-01-01. */
const dateNum = (c: Customer) => c.day

/** What readers rely on, per tag: every holder in exactly one bitmap holding its value, `*` = the holders. */
async function bitmapFaults(tag: string, expected: Map<number, number>): Promise<string[]> {
  const rows = await db().query(
    `SELECT b.value AS value, b.lo AS lo, b.hi AS hi, bitmapToArray(b.keys) AS ks FROM tag_bitmaps AS b
     INNER JOIN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16}) AS s ON s.tag = toString(b.tag) AND s.build = b.build
     WHERE b.tenant_id = {tenant:UInt16} AND b.tag = {tag:String}`,
    { tag },
    z.object({ value: z.string(), lo: z.number(), hi: z.number(), ks: z.array(z.coerce.number()) }),
  )
  const out: string[] = []
  const star = rows.find((r) => r.value === '*')
  const holders = [...expected.keys()].sort((a, b) => a - b)
  if (JSON.stringify([...(star?.ks ?? [])].sort((a, b) => a - b)) !== JSON.stringify(holders)) out.push(`${tag}: * differs`)
  const seen = new Map<number, number>()
  for (const r of rows.filter((x) => x.value !== '*')) {
    for (const k of r.ks) {
      seen.set(k, (seen.get(k) ?? 0) + 1)
      const v = expected.get(k)
      const holds = v !== undefined && (r.lo === r.hi ? v === r.lo : v >= r.lo && v < r.hi)
      if (!holds) out.push(`${tag}: ${k}=${v} in ${r.value} [${r.lo}, ${r.hi}]`)
    }
  }
  for (const k of holders) if (seen.get(k) !== 1) out.push(`${tag}: ${k} in ${seen.get(k) ?? 0} bitmaps`)
  return out
}

/** A segment's members, from the engine and from the bitmaps held in memory (they must agree). */
/** The saved segment's members after materializing it as `build`: stored, and replayed from its entries and exits. */
async function materialized(segmentId: string, build: string, at: Date): Promise<{ stored: number[]; replayed: number[] }> {
  const segment = await createSegmentRepository({ db: engine.db }).get(T, segmentId)
  const defs = new Map((await repo.list(T)).map((d) => [d.name, d]))
  await materializeSegment({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, segment, defs, asOf: at, build, trigger: 'test' })
  const [m] = await db().query(
    `SELECT arraySort(bitmapToArray(keys)) AS ks FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {b:UInt64}`,
    { sid: segmentId, b: build },
    z.object({ ks: z.array(z.coerce.number()) }),
  )
  const replayed = await db().query(
    `SELECT customer_key AS k FROM segment_events WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String}
     GROUP BY customer_key HAVING argMax(toString(kind), (at, build)) = 'enter' ORDER BY k`,
    { sid: segmentId },
    z.object({ k: z.coerce.number() }),
  )
  return { stored: m?.ks ?? [], replayed: replayed.map((r) => r.k) }
}

async function segment(rule: unknown): Promise<number[]> {
  const defs = new Map((await repo.list(T)).map((d) => [d.name, d]))
  const opts = { defs, asOf: TAG_TEST_AS_OF, timeZone: TAG_TEST_TZ, sampleSize: 1000 }
  const eng = await preview(db(), parseSegment({ purpose: 'service', rule }), opts)
  const mem = await preview(db(), parseSegment({ purpose: 'service', rule }), { ...opts, store })
  expect(mem.executor).toBe('memory')
  expect(mem.sample, JSON.stringify(rule)).toEqual(eng.sample)
  return eng.sample
}

/** One round's changes: which customers move, and where to. */
function change(r: Rng, cs: Map<number, Customer>): number[] {
  const keys = [...cs.keys()]
  const some = (n: number) => Array.from({ length: n }, () => r.pick(keys))
  const live = () => keys.filter((k) => !cs.get(k)!.deleted)
  const days = () => [...cs.values()].filter((c) => !c.deleted).map((c) => c.day)
  let moved: number[] = []
  switch (r.int(0, 6)) {
    case 0: // spread over a century: well over 64 distinct years and dates
      moved = some(r.int(20, N))
      for (const k of moved) cs.get(k)!.day = r.int(0, 36_500)
      break
    case 1: // narrowed to a few years
      moved = some(r.int(20, N))
      for (const k of moved) cs.get(k)!.day = 365 * r.int(50, 53)
      break
    case 2: // a few past the extremes
      moved = some(r.int(1, 4))
      for (const k of moved) cs.get(k)!.day = r.chance(0.5) ? Math.max(...days(), 0) + r.int(1, 800) : Math.max(0, Math.min(...days(), 36_500) - r.int(1, 800))
      break
    case 3: // the holders of the largest or smallest value move to the middle
      {
        const ds = days()
        const edge = r.chance(0.5) ? Math.max(...ds) : Math.min(...ds)
        moved = live().filter((k) => cs.get(k)!.day === edge)
        for (const k of moved) cs.get(k)!.day = 18_000 + r.int(0, 400)
      }
      break
    case 4: // a few to exactly a value someone else holds
      moved = some(r.int(1, 5))
      for (const k of moved) cs.get(k)!.day = cs.get(r.pick(keys))!.day
      break
    case 5: // deleted
      moved = some(r.int(1, 6))
      for (const k of moved) cs.get(k)!.deleted = true
      break
    default: // restored
      moved = keys.filter((k) => cs.get(k)!.deleted && r.chance(0.6))
      for (const k of moved) cs.get(k)!.deleted = false
  }
  return [...new Set(moved)]
}

beforeAll(async () => {
  const roaring = await loadRoaring()
  if (!roaring) throw new Error('the optional "roaring" package is not installed: the in-memory preview path cannot be tested')
  store = createBitmapStore({ roaring, maxBytes: 16 * 1024 ** 2, freshMs: 0 })
  engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  T = (await tenants.create({ slug: 'bank-bitmap-rounds', name: 'bank-bitmap-rounds', timeZone: TAG_TEST_TZ })).id
  repo = createTagRepository({ db: engine.db })
  await repo.save(T, testTagDef('opened_year', 'number', { kind: 'sql', sql: 'SELECT customer_key, toYear(opened_at) AS value FROM $customers' }), 'test')
  await repo.save(T, testTagDef('opened_on', 'date', { kind: 'sql', sql: "SELECT customer_key, toDate(opened_at, 'UTC') AS value FROM $customers" }), 'test')
}, 60_000)
afterAll(async () => engine?.close())

describe('bitmaps updated from changes, random rounds', () => {
  for (const seed of [1, 2]) {
    it(`seed ${seed}: after every run each holder is in exactly one bitmap holding its value, and segments find them`, async () => {
      const r = createRng(seed, 7)
      const sid = `recent-${seed}`
      await createSegmentRepository({ db: engine.db }).save(T, sid, { name: sid, purpose: 'service', rule: { tag: 'opened_year', op: 'gte', value: 2000 } }, 'test')
      const cs = new Map(Array.from({ length: N }, (_, i) => [i + 1 + seed * 1000, { day: r.int(0, 36_500), deleted: false } as Customer] as const))
      await write(cs, [...cs.keys()])
      for (let round = 0; round < 14; round++) {
        if (round > 0) {
          const moved = change(r, cs)
          if (moved.length) await write(cs, moved)
        }
        const run = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId(), watermarkSlackMs: 0 })
        expect(run.failures).toEqual([])
        const live = [...cs].filter(([, c]) => !c.deleted)
        // Other seeds' customers are deleted before this one starts (below), so these are all.
        const years = new Map(live.map(([k, c]) => [k, yearOf(c)]))
        const dates = new Map(live.map(([k, c]) => [k, dateNum(c)]))
        expect([...(await bitmapFaults('opened_year', years)), ...(await bitmapFaults('opened_on', dates))], `round ${round}`).toEqual([])
        const ys = [...years.values()].sort((a, b) => a - b)
        const at = ys[r.int(0, ys.length - 1)]!
        const want = (p: (y: number) => boolean) => live.filter(([k]) => p(years.get(k)!)).map(([k]) => k).sort((a, b) => a - b)
        expect(await segment({ tag: 'opened_year', op: 'gte', value: at }), `round ${round}: >= ${at}`).toEqual(want((y) => y >= at))
        expect(await segment({ tag: 'opened_year', op: 'eq', value: at }), `round ${round}: = ${at}`).toEqual(want((y) => y === at))
        expect(await segment({ tag: 'opened_year', op: 'lt', value: at }), `round ${round}: < ${at}`).toEqual(want((y) => y < at))
        const m = await materialized(sid, String(1000 + round), new Date(TAG_TEST_AS_OF.getTime() + round * 60_000))
        expect(m, `round ${round}: the saved segment`).toEqual({ stored: want((y) => y >= 2000), replayed: want((y) => y >= 2000) })
      }
      // Leave the bank empty for the next seed.
      for (const c of cs.values()) c.deleted = true
      await write(cs, [...cs.keys()])
    }, 120_000)
  }
})
