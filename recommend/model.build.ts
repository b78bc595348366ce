import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { chDateTime, localDate, zonedMidnight } from '../core/time.js'
import { resolvedEventsSql } from '../ingest/identity.sql.js'
import type { Tenant } from '../tenants/tenants.service.js'
import type { CatalogRepository } from './catalog.repository.js'
import type { Catalog } from './catalog.schema.js'

/**
 * The recommend pipeline's work for one tenant, all of it inside ClickHouse: which catalogue
 * items customers engaged with (product events map to `product:<id>`, clicks on the layout to
 * the item clicked), with a time-decayed affinity per customer and item; per item, the customers
 * who engaged overall, per saved segment and per region (popularity), its nearest items by
 * co-occurrence (Jaccard over the item bitmaps), and clicks and exposures; per customer, what
 * they were shown in the last 7 days and clicked (caps and fatigue). A build is written whole
 * and then marked complete; serving processes load only complete builds.
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
  /** Items kept per customer (default 20) and neighbours per item (default 20). */
  perCustomer?: number
  neighbours?: number
}

export interface BuiltModel {
  build: string
  catalogVersion: number
  customers: number
  items: number
  ms: Record<string, number>
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
    const t0 = performance.now()
    try {
      return await fn()
    } finally {
      ms[name] = Math.round(performance.now() - t0)
    }
  }
  const { catalog, ownVersion, groupVersion } = await deps.catalogs.effective(input.tenant)
  const products = await productItems(db, catalog, input.asOf, input.tenant.timeZone)
  const items = [...catalog.items.map((i) => i.id), ...products.map((p) => `product:${p.product_id}`)]
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
    perCustomer: input.perCustomer ?? 20,
    neighbours: input.neighbours ?? 20,
  }
  const where = `timestamp >= {from:DateTime64(3)} AND timestamp < {asOf:DateTime64(3)} AND (product_id != '' OR event = {click:String})`
  // Affinity per (customer, item): weights decayed by age; clicks counted apart.
  const engagement = `(
    SELECT customer_key, item,
           sum(w * exp2(-dateDiff('second', timestamp, {asOf:DateTime64(3)}) / {halfLife:Float64})) AS a,
           countIf(event = {click:String}) AS clicks,
           countIf(event = {click:String} AND timestamp >= {weekStart:DateTime64(3)}) AS clicks_week
    FROM (
      SELECT customer_key, timestamp, event,
             if(event = {click:String}, JSONExtractString(properties, 'item_id'), concat('product:', product_id)) AS item,
             transform(event, {wEvents:Array(String)}, {wValues:Array(Float64)}, 1.0) AS w
      FROM ${resolvedEventsSql(['timestamp', 'event', 'properties', 'product_id'], where)})
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
           FROM layout_exposures ARRAY JOIN items AS item
           WHERE tenant_id = {tenant:UInt16} AND served_at >= {weekStart:DateTime64(3)} AND served_at < {asOf:DateTime64(3)}
           GROUP BY customer_key, item)
         GROUP BY customer_key) AS x USING (ck)
       SETTINGS join_use_nulls = 0`,
      params,
    ),
  )

  await step('items', () =>
    db.command(
      `INSERT INTO rec_items (tenant_id, build, item, engaged, clicks, exposures, segment_ids, segment_engaged, region_codes, region_engaged, neighbours, similarity)
       WITH ib AS (
         SELECT item, groupBitmapState(toUInt32(customer_key)) AS bm, sum(clicks) AS clicks FROM ${engagement} GROUP BY item
       )
       SELECT {tenant:UInt16}, {build:UInt64}, a.item, bitmapCardinality(a.bm), a.clicks, ifNull(ex.n, 0),
              seg.ids, arrayMap(k -> bitmapAndCardinality(a.bm, k), seg.keys),
              reg.codes, arrayMap(k -> bitmapAndCardinality(a.bm, k), reg.keys),
              arrayMap(t -> t.2, nb.top), arrayMap(t -> toFloat32(t.1), nb.top)
       FROM ib AS a
       LEFT JOIN (
         SELECT item, count() AS n FROM layout_exposures ARRAY JOIN items AS item
         WHERE tenant_id = {tenant:UInt16} AND served_at >= {weekStart:DateTime64(3)} AND served_at < {asOf:DateTime64(3)} GROUP BY item
       ) AS ex ON ex.item = a.item
       LEFT JOIN (
         SELECT x.item AS item,
                arraySlice(arrayReverseSort(t -> t.1, groupArrayIf((co / (bitmapCardinality(x.bm) + bitmapCardinality(y.bm) - co), y.item), co > 0)), 1, {neighbours:UInt16}) AS top
         FROM (SELECT item, bm FROM ib) AS x CROSS JOIN (SELECT item, bm FROM ib) AS y
         ARRAY JOIN [bitmapAndCardinality(x.bm, y.bm)] AS co
         WHERE x.item != y.item
         GROUP BY x.item
       ) AS nb ON nb.item = a.item
       CROSS JOIN (
         SELECT groupArray(m.segment_id) AS ids, groupArray(m.keys) AS keys FROM segment_members AS m
         INNER JOIN (
           SELECT segment_id, max(build) AS build FROM segment_members WHERE tenant_id = {tenant:UInt16} GROUP BY segment_id
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
    ),
  )

  const [sizes] = await db.query(
    `SELECT (SELECT count() FROM rec_customers WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64}) AS customers,
            (SELECT count() FROM rec_items WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64}) AS items`,
    { build: input.build },
    z.object({ customers: z.coerce.number(), items: z.coerce.number() }),
  )
  const catalogVersion = ownVersion || groupVersion
  await db.insert('rec_models', [
    {
      build: input.build,
      catalog_version: catalogVersion,
      built_at: chDateTime(new Date()),
      as_of: asOf,
      customers: sizes?.customers ?? 0,
      items: items.length,
      complete: 1,
      stats: JSON.stringify({ ms, engagedItems: sizes?.items ?? 0, products: products.length }),
    },
  ])
  await dropOldBuilds(deps.db, input.tenant.id, input.build)
  return { build: input.build, catalogVersion, customers: sizes?.customers ?? 0, items: items.length, ms }
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
