import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { STANDING_MERGES_SQL, survivorSql } from '../core/identity.sql.js'
import type { Logger } from '../core/log.js'
import { daySchema, daysBetween } from '../core/time.js'
import type { BitmapStore } from '../segments/bitmap.store.js'
import { decodeClickHouseBitmap, type Bitmap, type Roaring } from '../segments/roaring.js'
import type { SegmentNode } from '../segments/segment.schema.js'
import { segmentSchema } from '../segments/segment.schema.js'
import { arrowQuery, loadCustomers } from './snapshot.customers.js'
import type { Purpose, TagDefinition } from '../tags/tag.schema.js'
import type { Tenant } from '../tenants/tenants.service.js'
import type { Catalog, CatalogItem, CatalogModule, ItemType } from './catalog.schema.js'
import { purposeOf } from './catalog.schema.js'
import type { ReasonCode } from './layout.reasons.js'
import { productItems } from './model.build.js'
import { loadServedModel, type ServingModel } from './model.choice.js'
import type { Neighbours } from './model.score.js'
import { snapshotConditions } from './snapshot.conditions.js'

/**
 * What one tenant's layouts are served from, in memory: the catalogue resolved into items and
 * modules; who may see each (eligibility bitmaps evaluated from the tag bitmaps at load);
 * popularity and co-occurrence neighbours per item; per engaged customer, affinities and recent
 * exposures (compressed sparse rows over typed arrays: a few bytes per customer, no object per
 * customer); and the customer-number index (sorted MD5 prefixes beside customer keys). A
 * snapshot is immutable once built; the service swaps a new one in atomically.
 */

export interface SnapshotItem {
  index: number
  id: string
  module: string
  type: ItemType
  title: { zh: string; en: string }
  elderTitle?: { zh: string; en: string } | undefined
  deeplink: string
  category: string
  /** 0..1 */
  boost: number
  elder: 'first' | 'show' | 'hide'
  /** Days since 1970 (inclusive), or undefined. */
  validFrom?: number | undefined
  validTo?: number | undefined
  cap?: CatalogItem['cap']
  reminderTag?: string | undefined
  /**
   * A reminder the customer needs for service (a loan due, a bill): its condition reads no tag
   * that may serve marketing. It stays on a layout whose customer turned personalization off.
   */
  service?: boolean | undefined
  /** Customers the item's own condition admits (undefined: everyone). */
  eligible?: Bitmap | undefined
  /** Tags the condition reads (the reason's `tags`; a reminder reading a marketing tag is no service). */
  conditionTags: string[]
  /** Tags the condition says hold for the customer (layout.reasons.ts affirmedTags): its wording's. */
  affirmedTags: string[]
  /** Per customer, the wording of a condition with branches (see `Wording`). */
  wordings?: Wording[] | undefined
  /** The tags of `conditionTags` of high sensitivity (risk flags): a reason names them only to keys with personal:read. */
  sensitiveTags: string[]
  /** The catalogue's words for the customer about the condition, if it has its own. */
  why?: { zh: string; en: string } | undefined
  /** Customers a product rule keeps away from it, with the rule's reason. */
  excluded?: { keys: Bitmap; reason: string }[] | undefined
  /** Product risk level (0 for non-products). */
  risk: number
  productKind?: string | undefined
}

export interface SnapshotModule {
  id: string
  title: { zh: string; en: string }
  priority: number
  maxItems: number
  elder: 'first' | 'show' | 'hide'
  eligible?: Bitmap | undefined
  conditionTags: string[]
  affirmedTags: string[]
  wordings?: Wording[] | undefined
  sensitiveTags: string[]
  why?: { zh: string; en: string } | undefined
  items: number[]
}

/**
 * The wording of a condition with branches that say different things (layout.reasons.ts
 * conditionWordings), in the order they win: a customer is told the code of the first whose
 * `keys` hold them. Absent: `affirmedTags` words the condition for everyone it admits.
 */
export interface Wording {
  code: ReasonCode
  keys: Bitmap
}

export interface LayoutSnapshot {
  tenantId: number
  build: string | null
  builtAt: string | null
  catalog: Catalog
  catalogVersions: { group: number; own: number }
  items: SnapshotItem[]
  /** Item id → index (a product in two modules: its first). */
  itemIndex: Map<string, number>
  modules: SnapshotModule[]
  /** Customers with the elder tag. */
  elder: Bitmap | undefined
  /** Per item, engaged customers normalised to the most popular item (0..1). */
  popularity: Float32Array
  /** Per saved segment: its members and the popularity of each item among them (0..1). */
  segments: { id: string; members: Bitmap; popularity: Float32Array }[]
  /** Per region code: the popularity of each item among its customers (0..1), for anonymous visitors. */
  regions: Map<string, Float32Array>
  /** The build's model (model.fit.ts) and each item's neighbours under it. */
  model: ServingModel
  neighbours: Neighbours[]
  customers: CustomerRows
  index: CustomerIndex
  loadedMs: number
  /** Memory held: typed arrays and bitmaps. */
  bytes: number
}

export interface CustomerRows {
  keys: Uint32Array
  itemOff: Uint32Array
  items: Int32Array
  affinity: Float32Array
  shownOff: Uint32Array
  shown: Int32Array
  shownToday: Uint16Array
  shownWeek: Uint16Array
  clickedWeek: Uint16Array
}

export interface CustomerIndex {
  hashes: BigUint64Array
  keys: Uint32Array
}

/** Binary search of a sorted Uint32Array; -1 when absent. */
export function findKey(keys: Uint32Array, key: number): number {
  let lo = 0
  let hi = keys.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const v = keys[mid]!
    if (v === key) return mid
    if (v < key) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

/** The customer key of an MD5 prefix, or undefined. */
export function lookupCustomer(index: CustomerIndex, hash: bigint): number | undefined {
  let lo = 0
  let hi = index.hashes.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const v = index.hashes[mid]!
    if (v === hash) return index.keys[mid]
    if (v < hash) lo = mid + 1
    else hi = mid - 1
  }
  return undefined
}

async function loadIndex(db: TenantDb): Promise<CustomerIndex> {
  const t = await arrowQuery(
    db,
    // A number merged into another customer is served as its survivor (as the merges stand at the load).
    `SELECT reinterpretAsUInt64(substring(MD5(c.customer_no), 1, 8)) AS h, ${survivorSql('c.customer_key', 'mg')} AS k
     FROM (SELECT customer_no, customer_key FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0) AS c
     LEFT ANY JOIN ${STANDING_MERGES_SQL} AS mg ON mg.from_key = c.customer_key
     ORDER BY h`,
    {},
  )
  const n = t.numRows
  const hashes = new BigUint64Array(n)
  const keys = new Uint32Array(n)
  let i = 0
  for (const batch of t.batches) {
    hashes.set(batch.getChild('h')!.toArray() as BigUint64Array, i)
    keys.set(batch.getChild('k')!.toArray() as Uint32Array, i)
    i += batch.numRows
  }
  return { hashes, keys }
}

const itemRow = z.object({
  item: z.string(),
  engaged: z.coerce.number(),
  segment_ids: z.array(z.string()),
  segment_engaged: z.array(z.coerce.number()),
  region_codes: z.array(z.string()),
  region_engaged: z.array(z.coerce.number()),
  neighbours: z.array(z.string()),
  similarity: z.array(z.number()),
})

export interface SnapshotInput {
  tenant: Tenant
  catalog: Catalog
  catalogVersions: { group: number; own: number }
  build: string | null
  builtAt: string | null
  defs: ReadonlyMap<string, TagDefinition>
  asOf: Date
}

/** Loads a tenant's snapshot: model tables of `build` (none yet: catalogue and tags only). */
export async function loadSnapshot(deps: { db: Db; bitmaps: BitmapStore; log?: Logger | undefined }, input: SnapshotInput): Promise<LayoutSnapshot> {
  const t0 = performance.now()
  const db = deps.db.forTenant(input.tenant.id)
  const { catalog } = input
  const products = await productItems(db, catalog, input.asOf, input.tenant.timeZone)
  // A date that is not on the calendar (saved before dates were checked) makes the item valid on
  // no day: compared as NaN it would be valid on every day.
  const day = (d: string | undefined, never: number) => (d === undefined ? undefined : daySchema.safeParse(d).success ? daysBetween('1970-01-01', d) : never)
  const items: SnapshotItem[] = catalog.items.map((it, index) => ({
    index,
    id: it.id,
    module: it.module,
    type: it.type,
    title: it.title,
    elderTitle: it.elderTitle,
    deeplink: it.deeplink,
    category: it.category,
    boost: it.boost / 100,
    elder: it.elder,
    validFrom: day(it.validFrom, Infinity),
    validTo: day(it.validTo, -Infinity),
    cap: it.cap,
    reminderTag: it.reminderTag,
    conditionTags: [],
    affirmedTags: [],
    sensitiveTags: [],
    why: it.why,
    risk: 0,
  }))
  // Each product joins every module whose selector takes it.
  for (const m of catalog.modules) {
    if (!m.products) continue
    for (const p of products) {
      if (!m.products.kinds.includes(p.kind as never)) continue
      if (m.products.categories && !m.products.categories.includes(p.category)) continue
      if (m.products.maxRisk !== undefined && p.risk_level > m.products.maxRisk) continue
      items.push({
        index: items.length,
        id: `product:${p.product_id}`,
        module: m.id,
        type: 'product',
        title: { zh: p.name_zh, en: p.name_en },
        deeplink: `app://product/${encodeURIComponent(p.product_id)}`,
        category: `${p.kind}:${p.category}`,
        boost: 0,
        elder: p.risk_level >= 3 ? 'hide' : 'show',
        validFrom: day(p.valid_from, Infinity),
        validTo: day(p.valid_to, -Infinity),
        reminderTag: undefined,
        conditionTags: [],
        affirmedTags: [],
        sensitiveTags: [],
        risk: p.risk_level,
        productKind: p.kind,
      })
    }
  }
  // Eligibility: every condition of the catalogue, evaluated on the tag bitmaps now.
  const parse = (raw: unknown, purpose: Purpose): SegmentNode => segmentSchema.parse({ purpose, rule: raw }).rule
  const nobody = () => deps.bitmaps.roaring.create()
  const { evalRule, conditionOf, unserved } = snapshotConditions({ db, bitmaps: deps.bitmaps }, input)
  // The first items are the catalogue's own, in its order; products (no condition) follow.
  for (const [i, src] of catalog.items.entries()) {
    const it = items[i]!
    if (src.when === undefined) continue
    const rule = parse(src.when, purposeOf(src.type))
    Object.assign(it, await conditionOf(rule, purposeOf(src.type), `items.${src.id}`, src.type))
    // Service: a reminder or a safety tip whose condition reads no tag kept for marketing. They
    // are shown on the layouts that are not personal too (the holdout, the switch off): they are
    // service and security, not marketing (core/holdout.ts).
    it.service = (src.type === 'reminder' || src.type === 'tip') && it.conditionTags.every((t) => !(input.defs.get(t)?.purpose ?? ['marketing']).includes('marketing'))
  }
  for (const [j, r] of catalog.productRules.entries()) {
    const keys = await evalRule(parse(r.exclude, 'risk'), 'risk', `productRules.${j}`)
    for (const it of items) {
      if (!it.productKind || !r.kinds.includes(it.productKind as never)) continue
      // A rule that cannot be checked protects by keeping its products from everyone.
      if (keys) (it.excluded ??= []).push({ keys, reason: r.reason })
      else it.eligible = nobody()
    }
  }
  const modules: SnapshotModule[] = []
  for (const m of catalog.modules as CatalogModule[]) {
    const rule = m.when === undefined ? undefined : parse(m.when, purposeOf('module'))
    modules.push({
      id: m.id,
      title: m.title,
      priority: m.priority,
      maxItems: m.maxItems,
      elder: m.elder,
      ...(rule ? await conditionOf(rule, purposeOf('module'), `modules.${m.id}`, 'module') : { conditionTags: [], affirmedTags: [], sensitiveTags: [] }),
      why: m.why,
      items: items.filter((i) => i.module === m.id).map((i) => i.index),
    })
  }
  if (unserved.length) deps.log?.warn({ tenant: input.tenant.id, unserved }, 'catalogue conditions that do not compile for this bank: their entries are served to no one')
  const elderSnap = input.defs.has('elder') ? await deps.bitmaps.snapshot(db, ['elder'], { maxAgeMs: 0 }) : undefined
  const elder = elderSnap?.tags.get('elder')?.star
  // Item statistics of the build.
  const itemIndex = new Map<string, number>()
  for (const it of items) if (!itemIndex.has(it.id)) itemIndex.set(it.id, it.index)
  const stats = input.build ? await db.query(`SELECT item, engaged, segment_ids, segment_engaged, region_codes, region_engaged, neighbours, similarity FROM rec_items WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64}`, { build: input.build }, itemRow) : []
  const popularity = new Float32Array(items.length)
  const neighbours = items.map(() => ({ items: new Int32Array(0), sims: new Float32Array(0) }))
  const segIds = stats[0]?.segment_ids ?? []
  const segPop = segIds.map(() => new Float32Array(items.length))
  const maxEngaged = Math.max(1, ...stats.map((s) => s.engaged))
  const segMax = segIds.map((_, j) => Math.max(1, ...stats.map((s) => s.segment_engaged[j] ?? 0)))
  const regionCodes = stats[0]?.region_codes ?? []
  const regionPop = regionCodes.map(() => new Float32Array(items.length))
  const regionMax = regionCodes.map((_, j) => Math.max(1, ...stats.map((s) => s.region_engaged[j] ?? 0)))
  const byId = new Map<string, SnapshotItem[]>()
  for (const it of items) (byId.get(it.id) ?? byId.set(it.id, []).get(it.id)!).push(it)
  for (const s of stats) {
    // A product in two modules shares its statistics.
    for (const it of byId.get(s.item) ?? []) {
      popularity[it.index] = s.engaged / maxEngaged
      segIds.forEach((_, j) => (segPop[j]![it.index] = (s.segment_engaged[j] ?? 0) / segMax[j]!))
      regionCodes.forEach((_, j) => (regionPop[j]![it.index] = (s.region_engaged[j] ?? 0) / regionMax[j]!))
      const ns = s.neighbours.map((n) => itemIndex.get(n) ?? -1)
      neighbours[it.index] = { items: Int32Array.from(ns.filter((n) => n >= 0)), sims: Float32Array.from(s.similarity.filter((_, k) => ns[k]! >= 0)) }
    }
  }
  const segMembers = input.build ? await loadSegmentMembers(db, deps.bitmaps.roaring, segIds) : new Map<string, Bitmap>()
  const segments = segIds.flatMap((id, j) => {
    const members = segMembers.get(id)
    return members ? [{ id, members, popularity: segPop[j]! }] : []
  })
  const [customers, index, model] = await Promise.all([loadCustomers(db, input.build, itemIndex), loadIndex(db), loadServedModel(db, input.build)])
  const bm = (b: Bitmap | undefined) => b?.getSerializationSizeInBytes('croaring') ?? 0
  const wordingBytes = (e: { wordings?: Wording[] | undefined }) => (e.wordings ?? []).reduce((s, w) => s + bm(w.keys), 0)
  const bytes =
    [...Object.values(customers), index.hashes, index.keys, popularity].reduce((s, a) => s + (a as ArrayBufferView).byteLength, 0) +
    neighbours.reduce((s, n) => s + n.items.byteLength + n.sims.byteLength, 0) +
    segments.reduce((s, g) => s + bm(g.members) + g.popularity.byteLength, 0) +
    regionPop.reduce((s, a) => s + a.byteLength, 0) +
    items.reduce((s, it) => s + bm(it.eligible) + (it.excluded ?? []).reduce((x, e) => x + bm(e.keys), 0) + wordingBytes(it), 0) +
    modules.reduce((s, m) => s + bm(m.eligible) + wordingBytes(m), 0) +
    bm(elder)
  return {
    bytes,
    tenantId: input.tenant.id,
    build: input.build,
    builtAt: input.builtAt,
    catalog,
    catalogVersions: input.catalogVersions,
    items,
    itemIndex,
    modules,
    elder,
    popularity,
    segments,
    regions: new Map(regionCodes.map((c, j) => [c, regionPop[j]!])),
    model,
    neighbours,
    customers,
    index,
    loadedMs: performance.now() - t0,
  }
}

async function loadSegmentMembers(db: TenantDb, roaring: Roaring, ids: string[]): Promise<Map<string, Bitmap>> {
  const out = new Map<string, Bitmap>()
  if (!ids.length) return out
  const rows = await db.query(
    `SELECT m.segment_id AS id, base64Encode(toString(m.keys)) AS keys FROM segment_members AS m
     INNER JOIN (SELECT segment_id, max(build) AS build FROM segment_runs WHERE tenant_id = {tenant:UInt16} AND segment_id IN {ids:Array(String)} GROUP BY segment_id) AS cur
       ON cur.segment_id = m.segment_id AND cur.build = m.build
     WHERE m.tenant_id = {tenant:UInt16}`,
    { ids },
    z.object({ id: z.string(), keys: z.string() }),
  )
  for (const r of rows) out.set(r.id, decodeClickHouseBitmap(roaring, Buffer.from(r.keys, 'base64')))
  return out
}
