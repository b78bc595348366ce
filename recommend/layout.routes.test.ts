import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { Db, SystemDb } from '../core/db.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { createBitmapStore } from '../segments/bitmap.store.js'
import { loadRoaring } from '../segments/roaring.js'
import { seedDemoBank } from '../test/demo.js'
import { openTestApp, type TestApp } from '../test/app.js'
import { REASON_CODES, said } from './layout.reasons.js'
import { exposuresSql } from '../core/exposures.sql.js'
import { createLayoutService, type Layout } from './layout.service.js'

/**
 * Layouts end to end on a small demo bank: tags computed by the pipeline, the recommend model
 * built after them, layouts served over HTTP. Properties are checked on every customer of a
 * sample against their tag values read straight from ClickHouse.
 */

const NOW = new Date()
let t: TestApp
let tenantId: number
let read: string
let admin: string
let customers: { no: string; key: number; tags: Record<string, string> }[]
let built: Record<string, unknown>

const tagRow = z.object({ no: z.string(), key: z.number(), tags: z.array(z.tuple([z.string(), z.string()])) })

beforeAll(async () => {
  t = await openTestApp()
  const bank = await seedDemoBank(t, { customers: 1500, days: 14, seed: 11, now: NOW })
  tenantId = bank.id
  const run = await t.tags.runner.run({ tenantId, pipeline: 'recommend', trigger: 'api' })
  expect(run.status, run.error).toBe('succeeded')
  built = run.details
  read = (await t.keys.issue(tenantId, { roles: ['layout', 'analyst'], holder: 'test gateway' })).key
  admin = (await t.keys.issue(tenantId, { roles: ['admin'], holder: 'test admin' })).key
  const rows = await t.engine.db.forTenant(tenantId).query(
    `SELECT c.customer_no AS no, c.customer_key AS key, groupArrayIf((tv.tag, if(tv.value != '', tv.value, toString(tv.num))), tv.tag != '') AS tags
     FROM customers AS c FINAL
     LEFT JOIN (SELECT customer_key, tag, value, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0) AS tv ON tv.customer_key = c.customer_key
     WHERE c.tenant_id = {tenant:UInt16} AND c.deleted = 0 GROUP BY no, key ORDER BY key LIMIT 400`,
    {},
    tagRow,
  )
  customers = rows.map((r) => ({ no: r.no, key: r.key, tags: Object.fromEntries(r.tags) }))
}, 300_000)
afterAll(async () => t?.close())

/** A layout service of its own over the test's engine (or `db`), with a fresh metrics registry. */
async function ownLayouts(over: { db?: Db; metrics?: Metrics; flushMs?: number; flushBytes?: number } = {}) {
  const roaring = (await loadRoaring())!
  return createLayoutService({
    db: over.db ?? t.engine.db,
    tenants: t.tenants,
    tags: t.tags.repo,
    catalogs: t.recommend.catalogs,
    bitmaps: createBitmapStore({ roaring, maxBytes: 64 * 1024 ** 2, freshMs: 0 }),
    log: t.engine.log,
    metrics: over.metrics ?? createMetrics({ collectDefault: false }),
    ...(over.flushMs !== undefined ? { flushMs: over.flushMs } : {}),
    ...(over.flushBytes !== undefined ? { flushBytes: over.flushBytes } : {}),
  })
}

async function layout(query: Record<string, string>, key = read): Promise<Layout> {
  const res = await t.app.inject({ method: 'GET', url: `/v1/layout?${new URLSearchParams(query)}`, headers: { authorization: `Bearer ${key}` } })
  expect(res.statusCode, res.body).toBe(200)
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8')
  expect(Number(res.headers['content-length'])).toBe(res.rawPayload.length)
  return res.json<Layout>()
}

/** A metric's values by its one label (besides the app's). */
async function metricValues(m: Metrics, name: string): Promise<Record<string, number>> {
  const metric = m.registry.getSingleMetric(name)
  const values = metric ? (await metric.get()).values : []
  return Object.fromEntries(values.map((v) => [Object.entries(v.labels).find(([k]) => k !== 'app')?.[1] ?? '', v.value]))
}

const truthy = (c: { tags: Record<string, string> }, tag: string) => c.tags[tag] === 'true' || c.tags[tag] === '1'

describe('GET /v1/layout', () => {
  it('serves every sampled customer a layout whose every item and module has a reason, and no item twice', async () => {
    let personal = 0
    for (const c of customers.slice(0, 150)) {
      const l = await layout({ customerId: c.no })
      expect(l.known).toBe(true)
      expect(l.modules.length).toBeGreaterThan(0)
      const ids = l.modules.flatMap((m) => m.items.map((i) => i.id))
      expect(new Set(ids).size).toBe(ids.length)
      for (const m of l.modules) {
        expect(m.reason.detail.length).toBeGreaterThan(0)
        // service: the reminders of a customer in the holdout.
        for (const i of m.items) expect(['tag', 'segment', 'rule', 'model', 'popularity', 'exploration', 'service']).toContain(i.reason.kind)
        // lang defaults to zh: the customer's sentence is Chinese, the engineers' detail stays English.
        for (const r of [m.reason, ...m.items.map((i) => i.reason)]) {
          expect(r.text, r.code).toMatch(/[\u4e00-\u9fff]/)
          expect(r.detail).not.toMatch(/[\u4e00-\u9fff]/)
        }
      }
      if (l.modules.some((m) => m.items.some((i) => i.reason.kind === 'model'))) personal++
    }
    // Co-occurrence reaches customers with history; popularity and rules the rest.
    expect(personal).toBeGreaterThan(10)
  })

  it('serves the model the build chose for the bank by its own evaluation, and says which', async () => {
    // The demo bank's 14 days: a week of engagements before the cut and a week after.
    expect(built.choice).toMatchObject({ chosenBy: 'evaluation', k: 10, testCustomers: expect.any(Number) })
    const choice = built.choice as { model: string; ndcg: Record<string, number> }
    expect(built.model).toBe(choice.model)
    expect(choice.ndcg[choice.model]).toBe(Math.max(...Object.entries(choice.ndcg).filter(([k]) => k !== 'popularity').map(([, v]) => v)))
    const res = await t.app.inject({ url: '/v1/layout/model', headers: { authorization: `Bearer ${read}` } })
    expect(res.json()).toMatchObject({ build: built.build, model: built.model })
  })

  it('with lang=en says every reason to the customer in English, by its code', async () => {
    for (const c of customers.slice(150, 190)) {
      const l = await layout({ customerId: c.no, lang: 'en' })
      for (const r of l.modules.flatMap((m) => [m.reason, ...m.items.map((i) => i.reason)])) {
        expect(REASON_CODES).toContain(r.code)
        expect(r.text).not.toMatch(/[\u4e00-\u9fff]/)
        // The co-occurrence sentence names an item by its title; the others are their code's.
        if (r.code !== 'used_together') expect(r.text).toBe(said(r.code).en)
      }
    }
  })

  it('never offers a loan to a customer who is overdue or needs protection', async () => {
    const guarded = customers.filter((c) => truthy(c, 'loan_overdue') || truthy(c, 'vulnerable'))
    expect(guarded.length).toBeGreaterThan(0)
    for (const c of guarded) {
      const l = await layout({ customerId: c.no })
      const loans = l.modules.flatMap((m) => m.items).filter((i) => i.type === 'product' && i.category.startsWith('loan:'))
      expect(loans, c.no).toEqual([])
    }
  })

  it('shows reminders only while their tag holds, and puts them first', async () => {
    for (const c of customers.slice(0, 200)) {
      const l = await layout({ customerId: c.no, mode: 'standard' })
      const reminders = l.modules.find((m) => m.id === 'reminders')?.items ?? []
      for (const r of reminders) {
        expect(r.reason.kind).toBe('tag')
        for (const tag of (r.reason as { tags: string[] }).tags) expect(truthy(c, tag), `${c.no} ${r.id} ${tag}`).toBe(true)
      }
      const expectLoanDue = truthy(c, 'loan_due_7d')
      expect(reminders.some((r) => r.id === 'reminder.loan_due')).toBe(expectLoanDue)
      if (reminders.length) expect(l.modules[0]!.id).toBe('reminders')
    }
  })

  it('elder mode: elder customers get fewer modules, large elements, help and anti-fraud, no wealth', async () => {
    const elders = customers.filter((c) => truthy(c, 'elder')).slice(0, 30)
    expect(elders.length).toBeGreaterThan(3)
    for (const c of elders) {
      const l = await layout({ customerId: c.no })
      expect(l.elder).toBe(true)
      expect(l.largeElements).toBe(true)
      expect(l.modules.length).toBeLessThanOrEqual(5)
      const ids = l.modules.map((m) => m.id)
      expect(ids).not.toContain('wealth')
      expect(ids).not.toContain('promotions')
      expect(ids).toContain('help')
      expect(ids).toContain('antifraud')
      // Zones first: every elder-first module before every other.
      const firsts = ['reminders', 'antifraud', 'pension_zone', 'family_zone', 'help']
      const lastFirst = Math.max(...ids.map((id, i) => (firsts.includes(id) ? i : -1)))
      const firstOther = ids.findIndex((id) => !firsts.includes(id))
      if (firstOther >= 0) expect(firstOther).toBeGreaterThan(lastFirst)
      const std = await layout({ customerId: c.no, mode: 'standard' })
      expect(std.elder).toBe(false)
    }
  })

  it('unknown and anonymous visitors get the tenant default, no experiment, nothing personal', async () => {
    for (const q of [{}, { customerId: 'NO-SUCH-CUSTOMER' }] as Record<string, string>[]) {
      const l = await layout(q)
      expect(l.known).toBe(false)
      expect(l.experiment).toBeNull()
      expect(l.modules.map((m) => m.id)).toContain('quick_services')
      expect(l.modules.flatMap((m) => m.items).every((i) => i.reason.kind !== 'model' && i.reason.kind !== 'exploration')).toBe(true)
      // Conditional modules need a known customer.
      expect(l.modules.map((m) => m.id)).not.toContain('pension_zone')
    }
    // With a region: what is popular there, said so.
    const [region] = await t.engine.db.forTenant(tenantId).query(
      `SELECT region_code AS r FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0 GROUP BY r ORDER BY count() DESC LIMIT 1`,
      {},
      z.object({ r: z.string() }),
    )
    const regional = await layout({ region: region!.r })
    const reasons = regional.modules.flatMap((m) => m.items.map((i) => i.reason as { kind: string; scope?: string; region?: string }))
    expect(reasons.some((r) => r.kind === 'popularity' && r.scope === 'region' && r.region === region!.r)).toBe(true)
    const res = await t.app.inject({ method: 'GET', url: '/v1/layout?region=%27%3B', headers: { authorization: `Bearer ${read}` } })
    expect(res.statusCode).toBe(400)
  })

  it('assigns variants and the holdout deterministically, and logs each layout served as an exposure', async () => {
    const a = await Promise.all(customers.slice(0, 60).map((c) => layout({ customerId: c.no })))
    const b = await Promise.all(customers.slice(0, 60).map((c) => layout({ customerId: c.no })))
    expect(a.map((l) => [l.holdout, l.experiment?.variant])).toEqual(b.map((l) => [l.holdout, l.experiment?.variant]))
    expect(new Set(a.map((l) => l.experiment?.variant)).size).toBeGreaterThan(1)
    await t.recommend.layouts.flush()
    const [n] = await t.engine.db.forTenant(tenantId).query(
      `SELECT count() AS n, uniqExact(customer_key) AS u FROM layout_exposures WHERE tenant_id = {tenant:UInt16}`,
      {},
      z.object({ n: z.coerce.number(), u: z.coerce.number() }),
    )
    expect(n!.u).toBeGreaterThanOrEqual(60)

    // Each exposure row holds what its layout showed: the customer, arm, mode, build, and the
    // module of each item in order.
    await t.recommend.layouts.flush()
    const since = Date.now() - 1
    const served = customers.slice(60, 90)
    const shown: Layout[] = []
    for (const [i, c] of served.entries()) shown.push(await layout({ customerId: c.no, ...(i % 3 === 0 ? { mode: 'elder' } : {}) }))
    await t.recommend.layouts.flush()
    const rows = await t.engine.db.forTenant(tenantId).query(
      `SELECT customer_key AS key, screen, experiment, variant, holdout, elder, toString(model_build) AS build, modules, items
       FROM ${exposuresSql('served_at >= fromUnixTimestamp64Milli({since:Int64})')} ORDER BY served_at, customer_key`,
      { since },
      z.object({ key: z.number(), screen: z.string(), experiment: z.string(), variant: z.string(), holdout: z.number(), elder: z.number(), build: z.string(), modules: z.array(z.string()), items: z.array(z.string()) }),
    )
    expect(rows.map((r) => r.key)).toEqual(served.map((c) => c.key))
    rows.forEach((r, i) => {
      const l = shown[i]!
      expect(r).toEqual({
        key: served[i]!.key,
        screen: 'home',
        experiment: l.experiment?.id ?? '',
        variant: l.experiment?.variant ?? '',
        holdout: l.holdout ? 1 : 0,
        elder: l.elder ? 1 : 0,
        build: l.model.build ?? '0',
        modules: l.modules.flatMap((m) => m.items.map(() => m.id)),
        items: l.modules.flatMap((m) => m.items.map((it) => it.id)),
      })
    })
    expect(rows.some((r) => r.elder === 1) && rows.some((r) => r.elder === 0)).toBe(true)
  })

  it('writes the exposures of every bank served in one insert a flush, and each bank alone when that insert is refused', async () => {
    const other = await t.tenants.get('demo-lvshui')
    const run = await t.tags.runner.run({ tenantId: other.id, pipeline: 'recommend', trigger: 'api' })
    expect(run.status, run.error).toBe('succeeded')
    const otherKey = (await t.keys.issue(other.id, { roles: ['layout'], holder: 'test gateway' })).key
    const theirs = await t.engine.db.forTenant(other.id).query(
      `SELECT customer_no AS no FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0 ORDER BY customer_key LIMIT 4`,
      {},
      z.object({ no: z.string() }),
    )
    const perTenant = async (since: number) =>
      Object.fromEntries(
        (
          await t.engine.db.system.query(
            `SELECT tenant_id AS t, count() AS n FROM layout_exposures WHERE tenant_id IN ({a:UInt16}, {b:UInt16}) AND served_at >= fromUnixTimestamp64Milli({since:Int64}) GROUP BY t`,
            { a: tenantId, b: other.id, since },
            z.object({ t: z.number(), n: z.coerce.number() }),
          )
        ).map((r) => [r.t, r.n]),
      )

    await t.recommend.layouts.flush()
    const before = await metricValues(t.metrics, 'qianmian_layout_exposure_inserts_total')
    const since = Date.now() - 1
    for (const c of customers.slice(100, 103)) await layout({ customerId: c.no })
    for (const c of theirs) await layout({ customerId: c.no }, otherKey)
    await t.recommend.layouts.flush()
    const after = await metricValues(t.metrics, 'qianmian_layout_exposure_inserts_total')
    expect((after.shared ?? 0) - (before.shared ?? 0)).toBe(1)
    expect(after.tenant ?? 0).toBe(before.tenant ?? 0)
    expect(await perTenant(since)).toEqual({ [tenantId]: 3, [other.id]: 4 })

    // An engine that refuses the shared insert (as it would a row it cannot take): each bank's
    // rows are written alone, none lost, none twice.
    const refusing = Object.create(t.engine.db.system) as SystemDb
    refusing.insertTsvBody = () => Promise.reject(new Error('refused'))
    const db: Db = { ...t.engine.db, system: refusing }
    const metrics = createMetrics({ collectDefault: false })
    const layouts = await ownLayouts({ db, metrics })
    const since2 = Date.now() - 1
    for (const c of customers.slice(103, 105)) await layouts.layout({ tenantId, customerId: c.no, screen: 'home', lang: 'zh', mode: 'auto' })
    for (const c of theirs.slice(0, 3)) await layouts.layout({ tenantId: other.id, customerId: c.no, screen: 'home', lang: 'zh', mode: 'auto' })
    await layouts.close()
    expect(await metricValues(metrics, 'qianmian_layout_exposure_inserts_total')).toEqual({ tenant: 2 })
    expect(await perTenant(since2)).toEqual({ [tenantId]: 2, [other.id]: 3 })
  }, 120_000)

  it('writes exposures before the interval ends once the bytes waiting reach the bound, and what is left on close', async () => {
    // An interval that never ends within the test: only the bound starts a write.
    // A row is 100-200 bytes (ids by position, sql/028): one is under the bound, six are over it.
    const layouts = await ownLayouts({ flushMs: 3_600_000, flushBytes: 300 })
    layouts.start()
    const since = Date.now() - 1
    const written = async () => {
      const [r] = await t.engine.db.forTenant(tenantId).query(
        `SELECT count() AS n, uniqExact(customer_key) AS u FROM layout_exposures WHERE tenant_id = {tenant:UInt16} AND served_at >= fromUnixTimestamp64Milli({since:Int64})`,
        { since },
        z.object({ n: z.coerce.number(), u: z.coerce.number() }),
      )
      return r!
    }
    const serve = (c: { no: string }) => layouts.layout({ tenantId, customerId: c.no, screen: 'home', lang: 'zh', mode: 'standard' })
    // One layout's row is under the bound: nothing is written.
    const [first, ...rest] = customers.slice(110, 122)
    await serve(first!)
    await new Promise((res) => setTimeout(res, 300))
    expect((await written()).n).toBe(0)
    // More rows reach the bound: written without waiting for the interval.
    for (const c of rest.slice(0, 5)) await serve(c)
    let n = 0
    for (let i = 0; i < 50 && n === 0; i++) {
      await new Promise((res) => setTimeout(res, 100))
      n = (await written()).n
    }
    expect(n).toBeGreaterThan(0)
    for (const c of rest.slice(5)) await serve(c)
    await layouts.close()
    expect(await written()).toEqual({ n: 12, u: 12 })
  }, 120_000)

  it('a stop waits for the write in progress, and writes run one at a time', async () => {
    // An engine whose inserts take 400 ms, counting those running at once.
    const slow = Object.create(t.engine.db.system) as SystemDb
    let running = 0
    let most = 0
    let inserts = 0
    slow.insertTsvBody = async (...args: Parameters<SystemDb['insertTsvBody']>) => {
      running++
      most = Math.max(most, running)
      await new Promise((res) => setTimeout(res, 400))
      try {
        return await t.engine.db.system.insertTsvBody(...args)
      } finally {
        running--
        inserts++
      }
    }
    const layouts = await ownLayouts({ db: { ...t.engine.db, system: slow }, flushMs: 3_600_000, flushBytes: 1 })
    const since = Date.now() - 1
    // Each layout reaches the bound: the first starts a write, the others queue one more.
    for (const c of customers.slice(130, 136)) await layouts.layout({ tenantId, customerId: c.no, screen: 'home', lang: 'zh', mode: 'standard' })
    await layouts.close()
    expect(running).toBe(0)
    expect(most).toBe(1)
    // Two writes, the first with the snapshot's list before its rows.
    expect(inserts).toBe(3)
    const [r] = await t.engine.db.forTenant(tenantId).query(
      `SELECT count() AS n, uniqExact(customer_key) AS u FROM layout_exposures WHERE tenant_id = {tenant:UInt16} AND served_at >= fromUnixTimestamp64Milli({since:Int64})`,
      { since },
      z.object({ n: z.coerce.number(), u: z.coerce.number() }),
    )
    expect(r).toEqual({ n: 6, u: 6 })
  }, 120_000)

  it('refuses bad input with the field at fault', async () => {
    for (const [url, field] of [
      ['/v1/layout?screen=settings', 'screen'],
      ['/v1/layout?lang=fr', 'lang'],
      ['/v1/layout?mode=dark', 'mode'],
      ['/v1/layout?surprise=1', ''],
    ] as const) {
      const res = await t.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${read}` } })
      expect(res.statusCode, url).toBe(400)
      expect(res.json().error.code).toBe('VALIDATION_FAILED')
      if (field) expect(JSON.stringify(res.json().error.issues)).toContain(field)
    }
    expect((await t.app.inject({ method: 'GET', url: '/v1/layout' })).statusCode).toBe(401)
  })
})

describe('the catalogue', () => {
  const put = (body: unknown, key = admin, qs = '') =>
    t.app.inject({ method: 'PUT', url: `/v1/layout/catalog${qs}`, headers: { authorization: `Bearer ${key}` }, payload: body as object })

  it('a member bank adds and disables entries; the layout follows at once; versions are kept', async () => {
    const own = {
      disable: ['promotions', 'svc.topup'],
      items: [
        { id: 'svc.harvest', module: 'quick_services', type: 'service', title: { zh: '丰收贷款计算器', en: 'Harvest loan calculator' }, deeplink: 'app://tools/harvest', category: 'tools', boost: 100 },
        // Its own words for the customer about its condition.
        { id: 'svc.elder_line', module: 'quick_services', type: 'service', title: { zh: '长辈专线', en: 'Seniors line' }, deeplink: 'app://help/elder', category: 'elder_line', boost: 100, when: { tag: 'elder', op: 'eq', value: true }, why: { zh: '为您开通的长辈专线', en: 'A line opened for you' } },
      ],
    }
    const res = await put(own, admin, '?expectedVersion=0&changeNote=harvest%20season')
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().version).toBe(1)
    expect((await put(own)).statusCode).toBe(200)
    expect((await put(own, admin, '?expectedVersion=0')).statusCode).toBe(409)
    await t.recommend.layouts.reload(tenantId)
    const l = await layout({ customerId: customers[0]!.no, mode: 'standard' })
    const ids = l.modules.flatMap((m) => m.items.map((i) => i.id))
    expect(ids).toContain('svc.harvest')
    expect(ids).not.toContain('svc.topup')
    expect(l.modules.map((m) => m.id)).not.toContain('promotions')
    expect(l.model.catalogVersion.own).toBe(1)
    const elder = customers.find((c) => truthy(c, 'elder'))!
    const line = (await layout({ customerId: elder.no, mode: 'standard' })).modules.flatMap((m) => m.items).find((i) => i.id === 'svc.elder_line')
    expect(line?.reason).toMatchObject({ kind: 'tag', tags: ['elder'], code: 'elder_care', text: '为您开通的长辈专线' })
    const versions = await t.app.inject({ method: 'GET', url: '/v1/layout/catalog/versions', headers: { authorization: `Bearer ${read}` } })
    expect(versions.json().versions[0].changeNote).toBe('harvest season')
  })

  it('caps exposures per customer and day across requests, and keeps the count through a catalogue change', async () => {
    const capped = { id: 'svc.capped', module: 'quick_services', type: 'service', title: { zh: '限次', en: 'Capped' }, deeplink: 'app://capped', category: 'capped', boost: 100, cap: { perDay: 2 } }
    const current = await t.app.inject({ method: 'GET', url: '/v1/layout/catalog', headers: { authorization: `Bearer ${read}` } })
    const own = current.json().own.catalog
    expect((await put({ ...own, items: [...own.items, capped] })).statusCode).toBe(201)
    await t.recommend.layouts.reload(tenantId)
    const c = customers[5]!.no
    const has = async () => (await layout({ customerId: c, mode: 'standard' })).modules.some((m) => m.items.some((i) => i.id === 'svc.capped'))
    expect(await has()).toBe(true)
    // A catalogue change in between (same model build) must not reset what was served.
    expect((await put({ ...own, items: [...own.items, capped, { ...capped, id: 'svc.other', cap: undefined, boost: 0 }] })).statusCode).toBe(201)
    await t.recommend.layouts.reload(tenantId)
    expect(await has()).toBe(true)
    expect(await has()).toBe(false)
    // Another customer still gets it.
    expect((await layout({ customerId: customers[6]!.no, mode: 'standard' })).modules.some((m) => m.items.some((i) => i.id === 'svc.capped'))).toBe(true)
  })

  it('a reload after a change serves the change even while an older load is still running', async () => {
    const current = await t.app.inject({ method: 'GET', url: '/v1/layout/catalog', headers: { authorization: `Bearer ${read}` } })
    const own = current.json().own?.catalog ?? { items: [] }
    const late = { id: 'svc.late', module: 'quick_services', type: 'service', title: { zh: '后到', en: 'Late' }, deeplink: 'app://late', category: 'late', boost: 100 }
    // A load that read the catalogue before the change (a periodic refresh, another request).
    const stale = t.recommend.layouts.reload(tenantId)
    expect((await put({ ...own, items: [...own.items, late] })).statusCode).toBe(201)
    const fresh = await t.recommend.layouts.reload(tenantId)
    await stale
    expect(fresh.items.map((i) => i.id)).toContain('svc.late')
    const l = await layout({ customerId: customers[7]!.no, mode: 'standard' })
    expect(l.modules.flatMap((m) => m.items.map((i) => i.id))).toContain('svc.late')
    expect((await put(own)).statusCode).toBe(201)
    await t.recommend.layouts.reload(tenantId)
  })

  it('refuses a bad catalogue naming every field at fault, and read keys', async () => {
    const bad = {
      items: [
        { id: 'x', module: 'nowhere', type: 'service', title: { zh: 'x', en: 'x' }, deeplink: 'app://x', category: 'c' },
        { id: 'y', module: 'quick_services', type: 'promotion', title: { zh: 'y', en: 'y' }, deeplink: 'app://y', category: 'c', when: { tag: 'loan_overdue', op: 'eq', value: true } },
        { id: 'z', module: 'quick_services', type: 'service', title: { zh: 'z', en: 'z' }, deeplink: 'not a link', category: 'c' },
        { id: 'w', module: 'quick_services', type: 'service', title: { zh: 'w', en: 'w' }, deeplink: 'app://w', category: 'c', when: { event: { names: ['x'] }, measure: 'count', op: 'gt', value: 1, window: { lastDays: 3 } } },
      ],
    }
    const res = await put(bad)
    expect(res.statusCode).toBe(400)
    const fields = (res.json().error.issues as { field: string }[]).map((i) => i.field)
    expect(fields).toContain('items.2.deeplink')
    const res2 = await put({ items: [bad.items[0], bad.items[1], bad.items[3]] })
    const fields2 = (res2.json().error.issues as { field: string }[]).map((i) => i.field)
    expect(fields2).toEqual(expect.arrayContaining(['items.0.module', 'items.1.when.tag', 'items.2.when']))
    expect((await put({}, read)).statusCode).toBe(403)
  })
})
