import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { Db, SystemDb, TenantDb } from '../core/db.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import type { Exposure } from './exposure.log.js'
import { exposureItemsSql, exposuresSql } from '../core/exposures.sql.js'
import { createExposureWriter } from './exposure.writer.js'
import { item, snapshot } from './layout.fixture.js'
import type { RankedModule } from './layout.rank.js'

/**
 * Exposures written by position and read back by id (sql/028): the lists before the rows, a
 * bank whose list is refused waiting without holding the others, and readers that name what
 * each layout showed whatever the ids hold, for rows of both forms.
 */

let engine: TestEngine
beforeAll(async () => {
  engine = await openTestEngine()
})
afterAll(async () => {
  await engine?.close()
})

const AWKWARD = ["it's", 'tab\there', 'back\\slash', '中文', 'line\nbreak', "q'\\'", 'product:p,1']

function fixture(tenantId: number) {
  const items = AWKWARD.map((id, i) => item(i, id, `m${i % 2}`))
  const s = snapshot(items, [{ id: "mod'1" }, { id: '模块\\' }], { tenantId, build: '77' })
  // Items placed in both modules, as a product two modules select would be.
  const ranked = (pick: number[]): RankedModule[] =>
    s.modules.map((m, j) => ({ module: m, reason: undefined as never, items: pick.filter((i) => i % 2 === j || i === 6).map((i) => ({ item: items[i]!, score: 1, reason: undefined as never })) }))
  const shown = (r: RankedModule[]) => ({ modules: r.flatMap((m) => m.items.map(() => m.module.id)), items: r.flatMap((m) => m.items.map((p) => p.item.id)) })
  return { s, ranked, shown }
}

const exposure = (key: number): Exposure => ({ key, nowMs: Date.UTC(2026, 10, 10, 2) + key, screen: 'home', experiment: undefined, holdout: false, elder: false })

const readBack = (db: TenantDb, keys: number[]) =>
  db.query(
    `SELECT customer_key AS key, modules, items, toString(model_build) AS build FROM ${exposuresSql('customer_key IN {keys:Array(UInt32)}')} ORDER BY key`,
    { keys },
    z.object({ key: z.number(), modules: z.array(z.string()), items: z.array(z.string()), build: z.string() }),
  )

async function inserts(m: Metrics): Promise<Record<string, number>> {
  const metric = m.registry.getSingleMetric('qianmian_layout_exposure_inserts_total')
  const values = metric ? (await metric.get()).values : []
  return Object.fromEntries(values.map((v) => [String(v.labels.kind), v.value]))
}

/** The engine as a writer sees it, with inserts of `table` refused while `refuse` says so. */
function refusing(table: string, refuse: { all: boolean; tenants: Set<number> }): Db {
  const system = Object.create(engine.db.system) as SystemDb
  system.insertTsvBody = (t, cols, body) => (refuse.all && t === table ? Promise.reject(new Error('refused')) : engine.db.system.insertTsvBody(t, cols, body))
  return {
    ...engine.db,
    system,
    forTenant(tenantId: number): TenantDb {
      const db = engine.db.forTenant(tenantId)
      const wrapped = Object.create(db) as TenantDb
      wrapped.insertTsvEncoded = (t, cols, body) => (refuse.tenants.has(tenantId) && t === table ? Promise.reject(new Error('refused')) : db.insertTsvEncoded(t, cols, body))
      return wrapped
    },
  }
}

describe('exposures by position', () => {
  it('reads back what each layout showed, awkward ids and an item in two modules included, beside rows written by id', async () => {
    const { s, ranked, shown } = fixture(11)
    const metrics = createMetrics({ collectDefault: false })
    const writer = createExposureWriter({ db: engine.db, log: engine.log, metrics })
    const layouts = [ranked([0, 1, 2, 3, 4, 5, 6]), ranked([6]), ranked([]), ranked([5, 3, 1])]
    layouts.forEach((r, k) => writer.append(11, s, exposure(100 + k), r))
    await writer.flush()
    // A second process serving the same snapshot writes the same list again.
    const other = createExposureWriter({ db: engine.db, log: engine.log, metrics: createMetrics({ collectDefault: false }) })
    other.append(11, s, exposure(104), layouts[0]!)
    await other.flush()
    // A row as written before lists: its ids in the row.
    await engine.db.forTenant(11).insertTsv('layout_exposures', ['customer_key', 'served_at', 'screen', 'model_build', 'modules', 'items'], [[105, '2026-11-10 02:00:00.000', 'home', 5, ['old'], ['old.item']]])
    // Another bank with a list of the same id and other ids: not this bank's.
    const [list] = await engine.db.forTenant(11).query(`SELECT DISTINCT toString(list) AS id FROM layout_exposures WHERE tenant_id = {tenant:UInt16} AND list != 0`, {}, z.object({ id: z.string() }))
    await engine.db.forTenant(12).insertTsv('layout_exposure_lists', ['list', 'modules', 'items'], [[list!.id, ['x'], ['y']]])

    const rows = await readBack(engine.db.forTenant(11), [100, 101, 102, 103, 104, 105])
    expect(rows).toEqual([
      ...layouts.map((r, k) => ({ key: 100 + k, ...shown(r), build: '77' })),
      { key: 104, ...shown(layouts[0]!), build: '77' },
      { key: 105, modules: ['old'], items: ['old.item'], build: '5' },
    ])
    expect(shown(layouts[1]!).modules).toEqual(["mod'1", '模块\\'])
    // Item by item (the report's and the model build's form): the same pairs, for both forms.
    const pairs = await engine.db.forTenant(11).query(
      `SELECT customer_key AS key, module, item FROM ${exposureItemsSql('customer_key IN {keys:Array(UInt32)}')}`,
      { keys: [100, 101, 102, 103, 104, 105] },
      z.object({ key: z.number(), module: z.string(), item: z.string() }),
    )
    const sorted = (xs: (string | number)[][]) => xs.map((x) => JSON.stringify(x)).sort()
    expect(sorted(pairs.map((p) => [p.key, p.module, p.item]))).toEqual(sorted(rows.flatMap((r) => r.items.map((item, i) => [r.key, r.modules[i]!, item]))))
    expect(await inserts(metrics)).toEqual({ shared: 1 })
  })

  it('writes a list once per process, before the first rows naming it', async () => {
    const { s, ranked, shown } = fixture(21)
    const writer = createExposureWriter({ db: engine.db, log: engine.log, metrics: createMetrics({ collectDefault: false }) })
    const lists = async () => (await engine.db.forTenant(21).query(`SELECT count() AS n FROM layout_exposure_lists WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ n: z.coerce.number() })))[0]!.n
    writer.append(21, s, exposure(1), ranked([1]))
    await writer.flush()
    expect(await lists()).toBe(1)
    writer.append(21, s, exposure(2), ranked([2]))
    await writer.flush()
    expect(await lists()).toBe(1)
    // Another snapshot (a product added): another list.
    const grown = { ...s, items: [...s.items, item(7, 'product:new', 'm1')] }
    writer.append(21, grown, exposure(3), ranked([3]))
    await writer.flush()
    expect(await lists()).toBe(2)
    expect((await readBack(engine.db.forTenant(21), [1, 2, 3])).map((r) => r.items)).toEqual([[1], [2], [3]].map((pick) => shown(ranked(pick)).items))
  })

  it('a bank whose list is refused keeps its rows for the next flush; the other banks are written; none lost, none twice', async () => {
    const a = fixture(31)
    const b = fixture(32)
    const refuse = { all: true, tenants: new Set([32]) }
    const metrics = createMetrics({ collectDefault: false })
    const writer = createExposureWriter({ db: refusing('layout_exposure_lists', refuse), log: engine.log, metrics })
    writer.append(31, a.s, exposure(1), a.ranked([0, 1]))
    writer.append(32, b.s, exposure(1), b.ranked([2, 3]))
    await writer.flush()
    expect((await readBack(engine.db.forTenant(31), [1])).map((r) => r.items)).toEqual([a.shown(a.ranked([0, 1])).items])
    // No row of the refused bank without its list.
    expect(await readBack(engine.db.forTenant(32), [1])).toEqual([])
    expect(await inserts(metrics)).toEqual({ shared: 1, failed: 1 })

    refuse.all = false
    refuse.tenants.clear()
    writer.append(32, b.s, exposure(2), b.ranked([4]))
    await writer.close()
    const rows = await readBack(engine.db.forTenant(32), [1, 2])
    expect(rows.map((r) => [r.key, r.items])).toEqual([
      [1, b.shown(b.ranked([2, 3])).items],
      [2, b.shown(b.ranked([4])).items],
    ])
    expect(await inserts(metrics)).toEqual({ shared: 2, failed: 1 })
  })
})

