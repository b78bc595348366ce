import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chDateTime } from '../core/time.js'
import { openTestApp, type TestApp } from '../test/app.js'
import { seededRandom as random } from '../test/fixtures.js'
import { buildModel } from './model.build.js'
import { CANDIDATES, loadServedModel, MIN_TEST_CUSTOMERS } from './model.choice.js'
import { modelName } from './model.fit.js'

/**
 * The model build on the real engine: per bank, the served model is chosen by the evaluation on
 * that bank's own engagements split in time, recorded with its figures, and its neighbours are
 * the ones written. Engagements are layout clicks written by hand in taste groups (seeded), so
 * a model that finds the groups must beat popularity by far.
 */

const AS_OF = new Date('2026-11-20T04:00:00Z')
const DAY = 86_400_000
let t: TestApp
let items: string[]

/**
 * `customers` customers in four taste groups of five items each: three items of their group
 * between 30 and 8 days before the build, one popular item for all, and a fourth item of their
 * group in the last 6 days (the test side of the split).
 */
async function seed(tenantId: number, customers: number, seedNo: number) {
  const rand = random(seedNo)
  const rows: unknown[][] = []
  let seq = 0
  const click = (key: number, daysAgo: number, item: string) =>
    rows.push([key, chDateTime(new Date(AS_OF.getTime() - daysAgo * DAY)), 'track', 'layout_item_clicked', `m-${tenantId}-${++seq}`, JSON.stringify({ item_id: item })])
  for (let c = 1; c <= customers; c++) {
    const group = items.slice(1 + (c % 4) * 5, 6 + (c % 4) * 5)
    const order = [...group].sort(() => rand() - 0.5)
    for (let j = 0; j < 3; j++) click(c, 8 + rand() * 22, order[j]!)
    click(c, 8 + rand() * 22, items[0]!)
    click(c, 0.5 + rand() * 5, order[3]!)
  }
  await t.engine.db.forTenant(tenantId).insertTsv('events', ['customer_key', 'timestamp', 'type', 'event', 'message_id', 'properties'], rows)
}

const stats = z.object({ stats: z.string() })

beforeAll(async () => {
  t = await openTestApp()
  const probe = await t.tenants.create({ slug: 'probe-bank', name: 'probe' })
  items = (await t.recommend.catalogs.effective(probe)).catalog.items.map((i) => i.id).slice(0, 21)
  expect(items.length).toBe(21)
}, 120_000)
afterAll(async () => t?.close())

describe('the model build', () => {
  it('chooses the served model per bank by the time-split evaluation on its events, records why, and writes that model’s neighbours', async () => {
    const bank = await t.tenants.create({ slug: 'taste-bank', name: 'taste' })
    await seed(bank.id, 400, 1)
    const built = await buildModel({ db: t.engine.db, catalogs: t.recommend.catalogs }, { tenant: bank, asOf: AS_OF, build: '7001' })
    const choice = built.choice!
    expect(choice).toMatchObject({ chosenBy: 'evaluation', k: 10, testCustomers: 400 })
    expect(Object.keys(choice.ndcg).sort()).toEqual([...CANDIDATES.map(modelName), 'popularity'].sort())
    // The served model is the candidate with the best nDCG on this bank's own test week.
    const best = Math.max(...CANDIDATES.map((c) => choice.ndcg[modelName(c)]!))
    expect(choice.ndcg[built.model]).toBe(best)
    expect(best).toBeGreaterThan(choice.ndcg.popularity! + 0.2)

    const db = t.engine.db.forTenant(bank.id)
    const [row] = await db.query(`SELECT stats FROM rec_models FINAL WHERE tenant_id = {tenant:UInt16} AND build = 7001`, {}, stats)
    expect(JSON.parse(row!.stats)).toMatchObject({ model: { name: built.model, fitted: 21, engaged: 21 }, choice: { model: built.model, chosenBy: 'evaluation' } })
    // Beside the item everyone uses, an item's strongest positive neighbours are the other items
    // of its taste group (EASE's negative weights are kept too, for the other groups' items).
    const groupOf = (id: string) => Math.floor((items.indexOf(id) - 1) / 5)
    const nb = await db.query(`SELECT item, neighbours, similarity FROM rec_items WHERE tenant_id = {tenant:UInt16} AND build = 7001 AND item != {popular:String}`, { popular: items[0] }, z.object({ item: z.string(), neighbours: z.array(z.string()), similarity: z.array(z.number()) }))
    expect(nb.length).toBe(20)
    for (const r of nb) expect(r.neighbours.filter((id, j) => r.similarity[j]! > 0 && id !== items[0]).slice(0, 4).map(groupOf), r.item).toEqual(Array(4).fill(groupOf(r.item)))
  }, 120_000)

  it('another bank with too few customers on both sides of the split gets the default model, and says so', async () => {
    const bank = await t.tenants.create({ slug: 'small-bank', name: 'small' })
    await seed(bank.id, MIN_TEST_CUSTOMERS - 5, 2)
    const built = await buildModel({ db: t.engine.db, catalogs: t.recommend.catalogs }, { tenant: bank, asOf: AS_OF, build: '7002' })
    expect(built.choice).toMatchObject({ model: 'ease_0.3', chosenBy: 'too_few_test_customers', testCustomers: MIN_TEST_CUSTOMERS - 5 })
    expect(built.model).toBe('ease_0.3')
  }, 120_000)

  it('serves a named model without choosing; SAR’s weights are Jaccard similarities, EASE’s may be negative', async () => {
    const bank = await t.tenants.create({ slug: 'forced-bank', name: 'forced' })
    await seed(bank.id, 200, 3)
    const deps = { db: t.engine.db, catalogs: t.recommend.catalogs }
    const sar = await buildModel(deps, { tenant: bank, asOf: AS_OF, build: '7003', model: 'sar' })
    const ease = await buildModel(deps, { tenant: bank, asOf: AS_OF, build: '7004', model: 'ease_0.3' })
    expect([sar.model, sar.choice, ease.model, ease.choice]).toEqual(['sar', null, 'ease_0.3', null])
    const weights = async (build: string) =>
      (await t.engine.db.forTenant(bank.id).query(`SELECT similarity FROM rec_items WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64}`, { build }, z.object({ similarity: z.array(z.number()) }))).flatMap((r) => r.similarity)
    const s = await weights('7003')
    expect(s.every((w) => w > 0 && w <= 1)).toBe(true)
    expect((await weights('7004')).some((w) => w < 0)).toBe(true)
    await expect(buildModel(deps, { tenant: bank, asOf: AS_OF, build: '7005', model: 'ease_x' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    // What a snapshot loads: the build's model and its input; a build from before the choice
    // existed (no model in its record) holds SAR's Jaccard neighbours.
    const db = t.engine.db.forTenant(bank.id)
    expect(await loadServedModel(db, '7003')).toEqual({ name: 'sar', kind: 'sar', input: 'affinity' })
    expect(await loadServedModel(db, '7004')).toEqual({ name: 'ease_0.3', kind: 'ease', input: 'binary' })
    await db.insert('rec_models', [{ build: '7000', catalog_version: 0, built_at: chDateTime(AS_OF), as_of: chDateTime(AS_OF), customers: 0, items: 0, complete: 1, stats: JSON.stringify({ ms: {} }) }])
    expect(await loadServedModel(db, '7000')).toEqual({ name: 'sar', kind: 'sar', input: 'affinity' })
  }, 120_000)
})

describe('a model build whose lease was lost', () => {
  it('stops before its next step with the reason, and completes no build', async () => {
    const bank = await t.tenants.create({ slug: 'lost-lease-bank', name: 'lost lease' })
    await seed(bank.id, 60, 3)
    const lease = new AbortController()
    lease.abort(new Error('the recommend lease was lost'))
    await expect(buildModel({ db: t.engine.db, catalogs: t.recommend.catalogs }, { tenant: bank, asOf: AS_OF, build: '7101', signal: lease.signal })).rejects.toThrow('the recommend lease was lost')
    const db = t.engine.db.forTenant(bank.id)
    const count = async (table: string) =>
      (await db.query(`SELECT count() AS n FROM ${table} WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ n: z.coerce.number() })))[0]!.n
    expect({ models: await count('rec_models'), customers: await count('rec_customers'), items: await count('rec_items') }).toEqual({ models: 0, customers: 0, items: 0 })
  })
})
