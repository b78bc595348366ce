import { LRUCache } from 'lru-cache'
import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { MERGE_ARRAYS_SQL } from '../core/identity.sql.js'
import type { Logger } from '../core/log.js'
import { decodeClickHouseBitmap, type Bitmap, type Roaring } from './roaring.js'

/**
 * Tag bitmaps and each tenant's universe, held in memory so that a tag-only preview is bitmap
 * algebra in the process instead of a ClickHouse query that deserializes every bitmap again.
 *
 * Freshness: every `snapshot()` asks ClickHouse, in one small query, for the current build of
 * each tag it needs (tag_state) and for a signature of the active parts of the customers and
 * customer_merges tables (any insert, merge or deletion changes it). A build or signature not in
 * memory is loaded; entries of superseded builds are dropped. So a preview never answers from an
 * old build, and a deleted customer, or one merged into another, leaves the universe as soon as
 * the deletion or merge is written (and an undone merge brings it back). The answer of that
 * query is reused for `freshMs` (default 1 s): a marketer's live count, re-asked at every edit,
 * then costs no round trip at all, and is never more than that much behind a tag run.
 *
 * Memory: an LRU bounded by `maxBytes` (CRoaring's own size of each bitmap; edge-bucket arrays
 * by their byte length). Concurrent loads of the same entry share one query.
 */

export interface NumericRow {
  value: string
  lo: number
  hi: number
  keys: Bitmap
}

export interface TagBitmaps {
  tag: string
  build: string
  /** Customers with any value. */
  star: Bitmap
  /** Label → customers (booleans, enums, list elements, exact numbers and bucket labels). */
  values: Map<string, Bitmap>
  /** Numbers and dates: one row per exact value (lo = hi) or bucket [lo, hi). */
  numeric: NumericRow[]
}

/** Customers of one bucket of a numeric tag's build, ordered by value. */
export interface EdgeBucket {
  keys: Uint32Array
  nums: Float64Array
}

export interface Snapshot {
  /** The live customers not merged into others: who a segment may hold. */
  universe: Bitmap
  /**
   * Every live customer, merged away or not: where a condition is evaluated, since tag bitmaps
   * hold the keys tags were computed for. A result is then put by survivors (segment.memory.ts).
   */
  live: Bitmap
  /** The customers merged into others (`keys`), and the survivor of each. */
  merged: { keys: Bitmap; into: ReadonlyMap<number, number> }
  /** Missing when the tag was never computed (every leaf over it is then empty). */
  tags: Map<string, TagBitmaps>
  edge(tag: TagBitmaps, lo: number, hi: number): Promise<EdgeBucket>
  /**
   * A derived bitmap of a tag's build, computed once and held like the rest (a numeric range's
   * customers: edge buckets checked one by one cost more than the algebra). Never modify it.
   */
  derived(tag: TagBitmaps, what: string, fn: () => Promise<Bitmap>): Promise<Bitmap>
  roaring: Roaring
}

export interface BitmapStore {
  readonly roaring: Roaring
  /** `maxAgeMs` bounds how old the freshness answer may be (default the store's `freshMs`). */
  snapshot(db: TenantDb, tags: readonly string[], opts?: { maxAgeMs?: number }): Promise<Snapshot>
  /** Entries and bytes held (for metrics and tests). */
  stats(): { entries: number; bytes: number; loads: number }
  /**
   * An erasure rewrote this tenant's bitmaps in place (same builds): drop everything held for
   * the tenant, so the next snapshot reads the states without the erased customers.
   */
  forgetCustomers(tenantId: number): void
}

type Universe = Pick<Snapshot, 'universe' | 'live' | 'merged'>
type Entry = TagBitmaps | Bitmap | EdgeBucket | Universe

const freshnessRow = z.object({
  builds: z.array(z.tuple([z.string(), z.string()])),
  universe: z.string(),
})
const bitmapRow = z.object({ value: z.string(), lo: z.number(), hi: z.number(), keys: z.string() })
const universeRow = z.object({ live: z.string(), froms: z.array(z.coerce.number()), intos: z.array(z.coerce.number()) })
const edgeRow = z.object({ k: z.array(z.number()), n: z.array(z.number()) })

function entrySize(e: Entry): number {
  if ('nums' in e) return e.keys.byteLength + e.nums.byteLength + 64
  if ('live' in e) return e.live.getSerializationSizeInBytes('croaring') + e.universe.getSerializationSizeInBytes('croaring') + e.merged.keys.getSerializationSizeInBytes('croaring') + 16 * e.merged.into.size + 64
  if ('star' in e) {
    let n = e.star.getSerializationSizeInBytes('croaring')
    for (const b of e.values.values()) n += b.getSerializationSizeInBytes('croaring')
    return n + 64 * (e.values.size + 1)
  }
  return e.getSerializationSizeInBytes('croaring') + 64
}

export function createBitmapStore(deps: { roaring: Roaring; maxBytes: number; log?: Logger; freshMs?: number }): BitmapStore {
  const freshMs = deps.freshMs ?? 1000
  const recent = new LRUCache<string, { at: number; fresh: z.infer<typeof freshnessRow> }>({ max: 10_000 })
  const { roaring } = deps
  const cache = new LRUCache<string, Entry>({ maxSize: deps.maxBytes, sizeCalculation: (e) => Math.max(1, entrySize(e)) })
  const inflight = new Map<string, Promise<Entry>>()
  /** tenant:tag → the key of the build held, so a superseded build is dropped at once. */
  const held = new Map<string, string>()
  let loads = 0

  async function load<T extends Entry>(key: string, fn: () => Promise<T>): Promise<T> {
    const hit = cache.get(key)
    if (hit) return hit as T
    let p = inflight.get(key)
    if (!p) {
      p = fn().finally(() => inflight.delete(key))
      inflight.set(key, p)
      loads++
    }
    const v = (await p) as T
    cache.set(key, v)
    return v
  }

  function replace(slot: string, key: string): void {
    const old = held.get(slot)
    if (old && old !== key) cache.delete(old)
    held.set(slot, key)
  }

  /** tag_state is replaced by computed_at: argMax over its unmerged rows is what FINAL would keep, without the merge. */
  async function freshness(db: TenantDb, names: string[]): Promise<z.infer<typeof freshnessRow>> {
    const [row] = await db.query(
      `SELECT
         (SELECT groupArray((tag, toString(b))) FROM (
            SELECT tag, argMax(build, computed_at) AS b FROM tag_state
            WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} GROUP BY tag)) AS builds,
         (SELECT concat(toString(count()), ':', toString(sum(cityHash64(table, name))))
            FROM system.parts WHERE database = currentDatabase() AND table IN ('customers', 'customer_merges') AND active) AS universe`,
      { tags: names },
      freshnessRow,
    )
    if (!row) throw new Error('the freshness query returned no row')
    return row
  }

  const decode = (b64: string) => decodeClickHouseBitmap(roaring, Buffer.from(b64, 'base64'))

  /** The live customers, the standing merges, and the segment compiler's universe: the live customers not merged away. */
  async function loadUniverse(db: TenantDb): Promise<Universe> {
    const [row] = await db.query(
      `SELECT base64Encode(toString(c.live)) AS live, mg.froms AS froms, mg.intos AS intos
       FROM (SELECT groupBitmapState(customer_key) AS live FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0) AS c
       CROSS JOIN ${MERGE_ARRAYS_SQL} AS mg`,
      {},
      universeRow,
    )
    const live = decode(row?.live ?? '')
    const froms = row?.froms ?? []
    const keys = roaring.create(Uint32Array.from(froms).sort())
    const into = new Map(froms.map((k, i) => [k, row!.intos[i]!]))
    return { live, universe: live.clone().andNotInPlace(keys), merged: { keys, into } }
  }

  async function loadTag(db: TenantDb, tag: string, build: string): Promise<TagBitmaps> {
    const rows = await db.query(
      `SELECT value, lo, hi, base64Encode(toString(groupBitmapMergeState(keys))) AS keys
       FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND build = {build:UInt64}
       GROUP BY value, lo, hi ORDER BY value, lo`,
      { tag, build },
      bitmapRow,
    )
    const out: TagBitmaps = { tag, build, star: roaring.create(), values: new Map(), numeric: [] }
    for (const r of rows) {
      const keys = decode(r.keys)
      if (r.value === '*') {
        out.star = keys
        continue
      }
      const same = out.values.get(r.value)
      if (same) same.orInPlace(keys)
      else out.values.set(r.value, keys)
      out.numeric.push({ value: r.value, lo: r.lo, hi: r.hi, keys })
    }
    return out
  }

  async function loadEdge(db: TenantDb, t: TagBitmaps, lo: number, hi: number): Promise<EdgeBucket> {
    const [row] = await db.query(
      `SELECT groupArray(customer_key) AS k, groupArray(num) AS n FROM (
         SELECT customer_key, num FROM tag_numeric
         WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND build = {build:UInt64} AND num >= {lo:Float64} AND num < {hi:Float64}
         ORDER BY num)`,
      { tag: t.tag, build: t.build, lo, hi },
      edgeRow,
    )
    return { keys: Uint32Array.from(row?.k ?? []), nums: Float64Array.from(row?.n ?? []) }
  }

  return {
    roaring,
    async snapshot(db, tags, opts = {}) {
      const names = [...new Set(tags)].sort()
      const recentKey = `${db.tenantId}:${names.join(',')}`
      const hit = recent.get(recentKey)
      const fresh = hit && performance.now() - hit.at < (opts.maxAgeMs ?? freshMs) ? hit.fresh : await freshness(db, names)
      if (!hit || hit.fresh !== fresh) recent.set(recentKey, { at: performance.now(), fresh })
      const tenant = db.tenantId
      const uKey = `${tenant}:universe:${fresh.universe}`
      const universeP = load(uKey, () => loadUniverse(db))
      const tagPs = fresh.builds
        .filter(([, build]) => build !== '0')
        .map(async ([tag, build]) => {
          const key = `${tenant}:tag:${tag}:${build}`
          const t = await load(key, () => loadTag(db, tag, build))
          replace(`${tenant}:tag:${tag}`, key)
          return t
        })
      const [universe, ...loaded] = await Promise.all([universeP, ...tagPs])
      replace(`${tenant}:universe`, uKey)
      return {
        ...(universe as Universe),
        tags: new Map((loaded as TagBitmaps[]).map((t) => [t.tag, t])),
        roaring,
        edge: (t, lo, hi) => load(`${tenant}:edge:${t.tag}:${t.build}:${lo}:${hi}`, () => loadEdge(db, t, lo, hi)),
        derived: (t, what, fn) => load(`${tenant}:derived:${t.tag}:${t.build}:${what}`, fn),
      }
    },
    stats() {
      return { entries: cache.size, bytes: cache.calculatedSize, loads }
    },
    forgetCustomers(tenantId) {
      const prefix = `${tenantId}:`
      for (const k of [...cache.keys()]) if (k.startsWith(prefix)) cache.delete(k)
      for (const k of [...held.keys()]) if (k.startsWith(prefix)) held.delete(k)
      for (const k of [...recent.keys()]) if (k.startsWith(prefix)) recent.delete(k)
    },
  }
}
