import { z } from 'zod'
import { AppError } from '../core/errors.js'
import type { Db, TenantDb } from '../core/db.js'
import { chDateTime, localDate, zonedMidnight } from '../core/time.js'
import { resolvedEventsSql } from '../core/identity.sql.js'
import { exposureItemsSql } from '../core/exposures.sql.js'
import type { Tenant } from '../tenants/tenants.service.js'
import type { CatalogRepository } from './catalog.repository.js'
import type { Catalog } from './catalog.schema.js'
import { chooseModel, choiceCases, evaluateCandidates, gramFromRows, itemGram, type ModelChoice } from './model.choice.js'
import { DEFAULT_NEIGHBOURS, DEFAULT_PER_CUSTOMER, fitItemModel, parseModelName, type ItemModel } from './model.fit.js'

/**
 * The recommend pipeline's work for one tenant, all of it inside ClickHouse: which catalogue
 * items customers engaged with (product events map to `product:<id>`, clicks on the layout to
 * the item clicked), with a time-decayed affinity per customer and item; per item, the customers
 * who engaged overall, per saved segment and per region (popularity), its nearest items by
 * co-occurrence (the item bitmaps ANDed pairwise), and clicks and exposures; per customer, what
 * they were shown in the last 7 days and clicked (caps and fatigue). From the co-occurrence the
 * build fits the model the bank is served (model.fit.ts: EASE or SAR's Jaccard), chosen by an
 * evaluation on the bank's own engagements split in time (model.choice.ts), and keeps each
 * item's strongest neighbours under it. A build is written whole and then marked complete;
 * serving processes load only complete builds.
 */

/** Weight of an engagement by event (others that carry a product weigh 1). */
export const ENGAGEMENT_WEIGHTS: Readonly<Record<string, number>> = {
  product_viewed: 1,
  layout_item_clicked: 2,
  service_used: 3,
  bill_paid: 3,
  loan_repaid: 2,
  product_purchased: 4,
  wealth_subscribed: 4,
}
export const CLICK_EVENT = 'layout_item_clicked'

export interface ModelOptions {
  /** Days of events read (default 90). */
  windowDays?: number
  /** Affinity half-life in days (default 30). */
  halfLifeDays?: number
  /** Items kept per customer (default 200) and neighbours per item (default 200). */
  perCustomer?: number
  neighbours?: number
  /** The last days of the window held out to choose the model (default 7). */
  testDays?: number
  /** Test customers sampled for the choice (default 20,000). */
  testCustomers?: number
  /** Serve this model (`ease_0.3`, `sar`) without choosing. */
  model?: string
  /**
   * The run's lease (pipelines/pipeline.lease.ts): aborted once lost, and the build stops before
   * its next step. Another process may then run it, and an erasure waiting for the runs in
   * progress no longer waits for this one, so it must not write after.
   */
  signal?: AbortSignal
}

export interface BuiltModel {
  build: string
  catalogVersion: number
  customers: number
  items: number
  /** The model served and how it was chosen. */
  model: string
  choice: ModelChoice | null
  ms: Record<string, number>
}

/**
 * Engagement rows (customer_key, timestamp, event, item, weight) from `{from}` to `{<until>}`:
 * product events map to `product:<id>`, layout clicks to the item clicked.
 */
export function engagementEvents(until: 'asOf' | 'cut'): string {
  const where = `timestamp >= {from:DateTime64(3)} AND timestamp < {${until}:DateTime64(3)} AND (product_id != '' OR event = {click:String})`
  return `(
      SELECT customer_key, timestamp, event,
             if(event = {click:String}, JSONExtractString(properties, 'item_id'), concat('product:', product_id)) AS item,
             transform(event, {wEvents:Array(String)}, {wValues:Array(Float64)}, 1.0) AS w
      FROM ${resolvedEventsSql(['timestamp', 'event', 'properties', 'product_id'], where)})`
}

/** Product items of the tenant's products table that the catalogue's modules select. */
export async function productItems(db: TenantDb, catalog: Catalog, asOf: Date, timeZone: string) {
  const kinds = [...new Set(catalog.modules.flatMap((m) => m.products?.kinds ?? []))]
  if (!kinds.length) return []
  const today = localDate(asOf, timeZone)
  return db.query(
    `SELECT product_id, toString(kind) AS kind, name_zh, name_en, category, risk_level, valid_from, valid_to FROM products FINAL
     WHERE tenant_id = {tenant:UInt16} AND status = 'active' AND toString(kind) IN {kinds:Array(String)}
       AND valid_from <= {today:Date32} AND valid_to >= {today:Date32}
     ORDER BY product_id`,
    { kinds, today },
    z.object({
      product_id: z.string(),
      kind: z.string(),
      name_zh: z.string(),
      name_en: z.string(),
      category: z.string(),
      risk_level: z.coerce.number(),
      valid_from: z.string(),
      valid_to: z.string(),
    }),
  )
}
export type ProductItem = Awaited<ReturnType<typeof productItems>>[number]

/**
 * The tenant's engagements as interactions (customer, item, weight, seconds), the same mapping
 * the model reads, for offline evaluation: rows streamed as tab-separated text.
 */
export async function tenantInteractions(db: TenantDb, opts: { from: Date; to: Date; items?: readonly string[] }) {
  const where = `timestamp >= {from:DateTime64(3)} AND timestamp < {to:DateTime64(3)} AND (product_id != '' OR event = {click:String})`
  const rows = await db.query(
    `SELECT toString(customer_key) AS u, item AS i, w, toUInt32(toUnixTimestamp(timestamp)) AS t FROM (
       SELECT customer_key, timestamp,
              if(event = {click:String}, JSONExtractString(properties, 'item_id'), concat('product:', product_id)) AS item,
              transform(event, {wEvents:Array(String)}, {wValues:Array(Float64)}, 1.0) AS w
       FROM ${resolvedEventsSql(['timestamp', 'event', 'properties', 'product_id'], where)})
     WHERE customer_key != 0 AND item != '' AND item != 'product:' ${opts.items ? 'AND item IN {items:Array(String)}' : ''}
     ORDER BY t`,
    { from: chDateTime(opts.from), to: chDateTime(opts.to), click: CLICK_EVENT, wEvents: Object.keys(ENGAGEMENT_WEIGHTS), wValues: Object.values(ENGAGEMENT_WEIGHTS), ...(opts.items ? { items: opts.items } : {}) },
    z.object({ u: z.string(), i: z.string(), w: z.number(), t: z.number() }),
  )
  return rows
}

export async function buildModel(
  deps: { db: Db; catalogs: CatalogRepository },
  input: { tenant: Tenant; asOf: Date; build: string } & ModelOptions,
): Promise<BuiltModel> {
  const db = deps.db.forTenant(input.tenant.id)
  const ms: Record<string, number> = {}
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    input.signal?.throwIfAborted()
    const t0 = performance.now()
    try {
      return await fn()
    } finally {
      ms[name] = Math.round(performance.now() - t0)
    }
  }
  const { catalog, ownVersion, groupVersion } = await deps.catalogs.effective(input.tenant)
  const products = await productItems(db, catalog, input.asOf, input.tenant.timeZone)
  const items = [...new Set([...catalog.items.map((i) => i.id), ...products.map((p) => `product:${p.product_id}`)])]
  const windowDays = input.windowDays ?? 90
  const asOf = chDateTime(input.asOf)
  const weekStart = chDateTime(new Date(input.asOf.getTime() - 7 * 86_400_000))
  const todayStart = chDateTime(zonedMidnight(localDate(input.asOf, input.tenant.timeZone), input.tenant.timeZone))
  const params = {
    build: input.build,
    items,
    asOf,
    from: chDateTime(new Date(input.asOf.getTime() - windowDays * 86_400_000)),
    halfLife: (input.halfLifeDays ?? 30) * 86_400,
    wEvents: Object.keys(ENGAGEMENT_WEIGHTS),
    wValues: Object.values(ENGAGEMENT_WEIGHTS),
    click: CLICK_EVENT,
    weekStart,
    todayStart,
    perCustomer: input.perCustomer ?? DEFAULT_PER_CUSTOMER,
  }
  // Affinity per (customer, item): weights decayed by age; clicks counted apart.
  const engagement = `(
    SELECT customer_key, item,
           sum(w * exp2(-dateDiff('second', timestamp, {asOf:DateTime64(3)}) / {halfLife:Float64})) AS a,
           countIf(event = {click:String}) AS clicks,
           countIf(event = {click:String} AND timestamp >= {weekStart:DateTime64(3)}) AS clicks_week
    FROM ${engagementEvents('asOf')}
    WHERE customer_key != 0 AND item IN {items:Array(String)}
    GROUP BY customer_key, item)`

  await step('customers', () =>
    db.command(
      `INSERT INTO rec_customers (tenant_id, build, customer_key, items, affinity, shown_items, shown_today, shown_week, clicked_week)
       SELECT {tenant:UInt16}, {build:UInt64}, ck, e.items, e.affinity, x.shown_items, x.shown_today, x.shown_week,
              arrayMap(i -> toUInt16(e.clicks_week[indexOf(e.all_items, i)]), x.shown_items)
       FROM (
         SELECT customer_key AS ck,
                arrayMap(t -> t.2, arraySlice(arrayReverseSort(t -> t.1, groupArray((a, item))), 1, {perCustomer:UInt16})) AS items,
                arrayMap(t -> toFloat32(t.1), arraySlice(arrayReverseSort(t -> t.1, groupArray((a, item))), 1, {perCustomer:UInt16})) AS affinity,
                groupArray(item) AS all_items, groupArray(clicks_week) AS clicks_week
         FROM ${engagement} GROUP BY customer_key) AS e
       FULL OUTER JOIN (
         SELECT customer_key AS ck, groupArray(item) AS shown_items, groupArray(toUInt16(today)) AS shown_today, groupArray(toUInt16(week)) AS shown_week
         FROM (
           SELECT customer_key, item, countIf(served_at >= {todayStart:DateTime64(3)}) AS today, count() AS week
           FROM ${exposureItemsSql('served_at >= {weekStart:DateTime64(3)} AND served_at < {asOf:DateTime64(3)}')}
           GROUP BY customer_key, item)
         GROUP BY customer_key) AS x USING (ck)
       SETTINGS join_use_nulls = 0`,
      params,
    ),
  )

  // Per engaged item its statistics and its row of the co-occurrence (the diagonal included:
  // the customers who engaged with it), from which the model is fitted below.
  const itemRows = await step('items', () =>
    db.query(
      `WITH ib AS (
         SELECT item, groupBitmapState(toUInt32(customer_key)) AS bm, sum(clicks) AS clicks FROM ${engagement} GROUP BY item
       )
       SELECT a.item AS item, bitmapCardinality(a.bm) AS engaged, a.clicks AS clicks, ifNull(ex.n, 0) AS exposures,
              seg.ids AS segment_ids, arrayMap(k -> bitmapAndCardinality(a.bm, k), seg.keys) AS segment_engaged,
              reg.codes AS region_codes, arrayMap(k -> bitmapAndCardinality(a.bm, k), reg.keys) AS region_engaged,
              nb.others AS others, nb.co AS co, (SELECT groupBitmapOr(bm) FROM ib) AS users
       FROM ib AS a
       LEFT JOIN (
         SELECT item, count() AS n FROM ${exposureItemsSql('served_at >= {weekStart:DateTime64(3)} AND served_at < {asOf:DateTime64(3)}')}
         GROUP BY item
       ) AS ex ON ex.item = a.item
       LEFT JOIN (
         SELECT x.item AS item, groupArray(y.item) AS others, groupArray(pair) AS co
         FROM (SELECT item, bm FROM ib) AS x CROSS JOIN (SELECT item, bm FROM ib) AS y
         ARRAY JOIN [bitmapAndCardinality(x.bm, y.bm)] AS pair
         WHERE pair > 0
         GROUP BY x.item
       ) AS nb ON nb.item = a.item
       CROSS JOIN (
         SELECT groupArray(m.segment_id) AS ids, groupArray(m.keys) AS keys FROM segment_members AS m
         INNER JOIN (
           SELECT segment_id, max(build) AS build FROM segment_runs WHERE tenant_id = {tenant:UInt16} GROUP BY segment_id
         ) AS cur ON cur.segment_id = m.segment_id AND cur.build = m.build
         WHERE m.tenant_id = {tenant:UInt16}
           AND m.segment_id IN (
             SELECT segment_id FROM segment_definitions FINAL WHERE tenant_id = {tenant:UInt16}
             GROUP BY segment_id HAVING argMax(retired, version) = 0)
       ) AS seg
       CROSS JOIN (
         SELECT groupArray(region_code) AS codes, groupArray(keys) AS keys FROM (
           SELECT region_code, groupBitmapState(customer_key) AS keys FROM customers FINAL
           WHERE tenant_id = {tenant:UInt16} AND deleted = 0 AND region_code != '' GROUP BY region_code)
       ) AS reg
       SETTINGS join_use_nulls = 0`,
      params,
      itemStatsRow,
    ),
  )

  const fitOptions = { neighbours: input.neighbours ?? DEFAULT_NEIGHBOURS }
  const forced = input.model === undefined ? undefined : parseModelName(input.model)
  if (input.model !== undefined && !forced) throw new AppError('VALIDATION_FAILED', `model: unknown model "${input.model}"; ease_<lambda per customer> or sar`, { issues: [{ field: 'model', message: 'ease_<number> or sar' }] })
  const choice = forced ? null : await step('choice', () => chooseForTenant(db, params, items, input, fitOptions))
  const model: ItemModel = await step('fit', async () => fitItemModel(gramFromRows(items, itemRows), forced ?? parseModelName(choice!.model)!, fitOptions))
  await step('write_items', () =>
    db.insert(
      'rec_items',
      itemRows.map((r) => {
        const nb = model.neighbours[items.indexOf(r.item)]!
        const { others: _others, co: _co, users: _users, ...stats } = r
        return { ...stats, build: input.build, neighbours: [...nb.items].map((j) => items[j]!), similarity: [...nb.sims] }
      }),
    ),
  )

  const [sizes] = await db.query(
    `SELECT (SELECT count() FROM rec_customers WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64}) AS customers`,
    { build: input.build },
    z.object({ customers: z.coerce.number() }),
  )
  const catalogVersion = ownVersion || groupVersion
  // Complete only while the lease holds: an incomplete build is never served, and the next drops it.
  input.signal?.throwIfAborted()
  await db.insert('rec_models', [
    {
      build: input.build,
      catalog_version: catalogVersion,
      built_at: chDateTime(new Date()),
      as_of: asOf,
      customers: sizes?.customers ?? 0,
      items: items.length,
      complete: 1,
      stats: JSON.stringify({ ms, engagedItems: itemRows.length, products: products.length, model: { name: model.name, input: model.input, lambda: model.lambda, fitted: model.fitted, engaged: model.engaged }, choice }),
    },
  ])
  await dropOldBuilds(deps.db, input.tenant.id, input.build)
  return { build: input.build, catalogVersion, customers: sizes?.customers ?? 0, items: items.length, model: model.name, choice, ms }
}

const itemStatsRow = z.object({
  item: z.string(),
  engaged: z.coerce.number(),
  clicks: z.coerce.number(),
  exposures: z.coerce.number(),
  segment_ids: z.array(z.string()),
  segment_engaged: z.array(z.coerce.number()),
  region_codes: z.array(z.string()),
  region_engaged: z.array(z.coerce.number()),
  others: z.array(z.string()),
  co: z.array(z.coerce.number()),
  users: z.coerce.number(),
})

/**
 * The time-split evaluation of model.choice.ts on this build's window: trained on the days
 * before the last `testDays`, tested on those.
 */
async function chooseForTenant(db: TenantDb, params: Record<string, unknown>, items: string[], input: ModelOptions & { asOf: Date }, fit: { neighbours: number }): Promise<ModelChoice> {
  const testDays = input.testDays ?? 7
  const windowDays = input.windowDays ?? 90
  if (!(testDays > 0 && testDays < windowDays)) throw new AppError('VALIDATION_FAILED', `testDays: between 0 and the window's ${windowDays} days (exclusive)`, { issues: [{ field: 'testDays', message: 'out of range' }] })
  const p = { ...params, cut: chDateTime(new Date(input.asOf.getTime() - testDays * 86_400_000)) }
  const gram = await itemGram(db, engagementEvents('cut'), p, items)
  const cases = await choiceCases(db, engagementEvents('asOf'), p, items, input.testCustomers ?? 20_000)
  return chooseModel(evaluateCandidates(gram, cases, fit), cases.length)
}

/**
 * Keeps the two newest complete builds (the one served and the one before) and drops the others'
 * partitions whole (a build is a partition; lightweight deletes would cost more than the build).
 */
async function dropOldBuilds(db: Db, tenantId: number, current: string): Promise<void> {
  const tdb = db.forTenant(tenantId)
  const keep = await tdb.query(
    `SELECT toString(build) AS build FROM rec_models FINAL WHERE tenant_id = {tenant:UInt16} AND complete = 1 ORDER BY build DESC LIMIT 2`,
    {},
    z.object({ build: z.string() }),
  )
  const builds = [...new Set([current, ...keep.map((k) => k.build)])].map((b) => BigInt(b))
  for (const table of ['rec_customers', 'rec_items'] as const) {
    // Only partitions holding this tenant's rows alone (build ids are unique, this checks it).
    // Checking that reads the other tenants' rows of those builds: the system handle, as the drop.
    const old = await db.system.query(
      `SELECT toString(build) AS build FROM ${table} WHERE build IN (SELECT build FROM ${table} WHERE tenant_id = {tenant:UInt16} AND build NOT IN {builds:Array(UInt64)})
       GROUP BY build HAVING min(tenant_id) = max(tenant_id) AND min(tenant_id) = {tenant:UInt16}`,
      { builds, tenant: tenantId },
      z.object({ build: z.string().regex(/^\d+$/) }),
    )
    // DROP PARTITION takes a literal: the build is digits, checked by the schema above.
    for (const o of old) await db.system.command(`ALTER TABLE ${table} DROP PARTITION ${o.build}`)
  }
}
