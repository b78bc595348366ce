import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { runTags } from '../tags/tag.pipeline.js'
import { createTagRepository } from '../tags/tag.repository.js'
import { createBitmapStore } from './bitmap.store.js'
import { decodeClickHouseBitmap, loadRoaring, type Roaring } from './roaring.js'
import { AS_OF, keys, setupFixture, TZ, UNIVERSE, type Fixture } from './segment.fixture.js'
import { preview } from './segment.preview.js'
import { parseSegment } from './segment.schema.js'

/** In-memory tag bitmaps: decoding the engine's states, freshness, eviction, and the preview's choice of executor. */

let fx: Fixture
let roaring: Roaring
beforeAll(async () => {
  fx = await setupFixture()
  const r = await loadRoaring()
  // CI installs the optional package; without it previews fall back to ClickHouse, but this file must say so loudly.
  if (!r) throw new Error('the optional "roaring" package is not installed: the in-memory preview path cannot be tested')
  roaring = r
})
afterAll(async () => fx?.engine.close())

const tdb = () => fx.engine.db.forTenant(fx.tenant)
const seg = (rule: unknown) => parseSegment({ purpose: 'marketing', rule })

describe('decodeClickHouseBitmap', () => {
  it('reads small and large groupBitmap states exactly as the engine lists them', async () => {
    for (const [n, step] of [
      [0, 1],
      [5, 7],
      [32, 3],
      [33, 3],
      [100_000, 1],
      [70_000, 131],
    ] as const) {
      const [row] = await fx.engine.db.system.query(
        `SELECT base64Encode(toString(groupBitmapState(toUInt32(number * {step:UInt32} + 1)))) AS state,
                arraySort(bitmapToArray(groupBitmapState(toUInt32(number * {step:UInt32} + 1)))) AS keys
         FROM numbers({n:UInt32})`,
        { n, step },
        z.object({ state: z.string(), keys: z.array(z.number()) }),
      )
      const bm = decodeClickHouseBitmap(roaring, Buffer.from(row!.state, 'base64'))
      expect(bm.size, `${n} x ${step}`).toBe(row!.keys.length)
      expect([...bm.toUint32Array()]).toEqual(row!.keys)
    }
  })

  it('refuses a truncated or foreign state instead of guessing', () => {
    expect(() => decodeClickHouseBitmap(roaring, Uint8Array.from([0, 3, 1, 0, 0, 0]))).toThrow(/truncated/)
    expect(() => decodeClickHouseBitmap(roaring, Uint8Array.from([7, 1, 0]))).toThrow(/not a groupBitmap state/)
  })
})

describe('the store', () => {
  it('answers tag-only previews from memory, and the same as the engine', async () => {
    const store = createBitmapStore({ roaring, maxBytes: 16 * 1024 ** 2, freshMs: 0 })
    const rule = { all: [{ tag: 'score', op: 'between', value: [20, 90] }, { not: { tag: 'tier', op: 'eq', value: 'gold' } }, { tag: 'views_30d', op: 'lt', value: 3 }] }
    const opts = { ...fx.opts, breakdown: ['tier', 'score'], sampleSize: 7 }
    const mem = await preview(tdb(), seg(rule), { ...opts, store })
    const eng = await preview(tdb(), seg(rule), opts)
    expect(mem.executor).toBe('memory')
    expect(eng.executor).toBe('clickhouse')
    expect({ ...mem, executor: '' }).toEqual({ ...eng, executor: '' })
    expect(mem.count).toBeGreaterThan(10)
    // Every bitmap is loaded once; the next preview reads memory only (one freshness query).
    const loads = store.stats().loads
    await preview(tdb(), seg(rule), { ...opts, store })
    expect(store.stats().loads).toBe(loads)
  })

  it('segments with event or attribute conditions still run in the engine', async () => {
    const store = createBitmapStore({ roaring, maxBytes: 16 * 1024 ** 2, freshMs: 0 })
    const ev = { all: [{ tag: 'flag', op: 'eq', value: true }, { event: { names: ['purchase'] }, measure: 'count', op: 'gte', value: 1, window: { lastDays: 30 } }] }
    const p = await preview(tdb(), seg(ev), { ...fx.opts, store })
    expect(p.executor).toBe('clickhouse')
    expect(p.count).toBe(keys((k) => k % 4 === 1 && k % 3 === 0).length)
    expect(store.stats().loads).toBe(0)
  })

  it('follows a new tag build and a deleted customer at once', async () => {
    const store = createBitmapStore({ roaring, maxBytes: 16 * 1024 ** 2, freshMs: 0 })
    const rule = { tag: 'small', op: 'eq', value: 2 }
    const before = await preview(tdb(), seg(rule), { ...fx.opts, store })
    expect(before.count).toBe(keys((k) => k % 5 === 2).length)
    // Redefine small as k % 4 and run the tags again: a new build.
    const repo = createTagRepository({ db: fx.engine.db })
    const { version: _v, createdBy: _b, createdAt: _a, ...old } = fx.defs.get('small') as unknown as Record<string, unknown>
    const changed = { ...old, rule: { kind: 'sql' as const, sql: 'SELECT customer_key, toFloat64(customer_key % 4) AS value FROM $customers' } }
    await repo.save(fx.tenant, changed, 'test')
    const stored = await repo.list(fx.tenant)
    await runTags({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, defs: stored, mode: 'full', asOf: AS_OF, runId: newRunId() })
    const after = await preview(tdb(), seg(rule), { ...fx.opts, store })
    expect(after.count).toBe(keys((k) => k % 4 === 2).length)
    // Customer 2 is erased: gone from the universe and from every answer, before any tag run.
    await tdb().insert('customers', [{ customer_key: 2, customer_no: 'C2', gender: 'unknown', birth_date: null, opened_at: '2020-01-01 00:00:00.000', updated_at: '2030-01-01 00:00:00.000', deleted: 1 }])
    const erased = await preview(tdb(), seg(rule), { ...fx.opts, store })
    expect(erased.total).toBe(UNIVERSE.length - 1)
    expect(erased.sample).not.toContain(2)
    expect(erased.count).toBe(keys((k) => k % 4 === 2 && k !== 2).length)
    // Put things back for the other tests of this file.
    await repo.save(fx.tenant, old, 'test')
    await tdb().insert('customers', [{ customer_key: 2, customer_no: 'C2', gender: 'unknown', birth_date: null, opened_at: '2020-01-01 00:00:00.000', updated_at: '2031-01-01 00:00:00.000' }])
    await runTags({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, defs: await repo.list(fx.tenant), mode: 'full', asOf: AS_OF, runId: newRunId() })
  })

  it('reuses its freshness answer for freshMs, and asks again when told to', async () => {
    const store = createBitmapStore({ roaring, maxBytes: 16 * 1024 ** 2, freshMs: 60_000 })
    const first = await store.snapshot(tdb(), ['flag'])
    await tdb().insert('customers', [{ customer_key: 500, customer_no: 'C500', gender: 'unknown', birth_date: null, opened_at: '2020-01-01 00:00:00.000', updated_at: '2020-01-01 00:00:00.000' }])
    const cached = await store.snapshot(tdb(), ['flag'])
    expect(cached.universe.size).toBe(first.universe.size)
    const asked = await store.snapshot(tdb(), ['flag'], { maxAgeMs: 0 })
    expect(asked.universe.size).toBe(first.universe.size + 1)
    await tdb().insert('customers', [{ customer_key: 500, customer_no: 'C500', gender: 'unknown', birth_date: null, opened_at: '2020-01-01 00:00:00.000', updated_at: '2030-01-01 00:00:00.000', deleted: 1 }])
  })

  it('stays within its byte budget, evicting the least recently used', async () => {
    // A background merge of customers (the tests above inserted rows) changes the universe's
    // signature and loads it again mid-count: merge them now so the count is the store's own.
    await fx.engine.db.system.command('OPTIMIZE TABLE customers FINAL')
    const store = createBitmapStore({ roaring, maxBytes: 4096, freshMs: 0 })
    for (const tag of ['score', 'small', 'tier', 'kinds', 'birth', 'views_30d']) await store.snapshot(tdb(), [tag])
    const s = store.stats()
    expect(s.bytes).toBeLessThanOrEqual(4096)
    expect(s.loads).toBe(7)
    // Evicted entries are loaded again on demand, and the answer does not change.
    const p = await preview(tdb(), seg({ tag: 'score', op: 'gte', value: 50 }), { ...fx.opts, store })
    expect(p.count).toBe(keys((k) => k >= 50 && k % 10 !== 0).length)
  })

  it('shares one load between concurrent previews', async () => {
    const store = createBitmapStore({ roaring, maxBytes: 16 * 1024 ** 2, freshMs: 0 })
    const rule = { any: [{ tag: 'tier', op: 'eq', value: 'silver' }, { tag: 'kinds', op: 'in', value: ['three'] }] }
    const ps = await Promise.all(Array.from({ length: 5 }, () => preview(tdb(), seg(rule), { ...fx.opts, store })))
    expect(new Set(ps.map((p) => p.count)).size).toBe(1)
    expect(ps[0]!.count).toBe(keys((k) => (k % 3 === 1 && k % 7 !== 0) || k % 3 === 0).length)
    expect(store.stats().loads).toBe(3)
  })
})
