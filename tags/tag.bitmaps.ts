import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import type { ValueType } from './tag.schema.js'

/**
 * The bitmaps segments read: one per (tag, value) of the tag's current build, rebuilt from the
 * current values or brought up to date from a run's changes, and the value-ordered snapshot of
 * bucketed numbers and dates.
 */

/** Exact values get a bitmap each up to this many; beyond, numbers and dates are bucketed. */
const MAX_EXACT_VALUES = 64
const BUCKETS = 32
/** A widened outer bucket holding more than this many times its share of customers is rebuilt. */
const WIDENED_SHARE = 2
/** A bucket's label from its edges, as rebuildBitmaps writes it (`bi`, `bx`: the tag's and the bucket's index). */
const LABEL = `concat('[', toString({blos:Array(Array(Float64))}[bi][bx]), ',', toString({bhis:Array(Array(Float64))}[bi][bx]), ')')`

/**
 * Rebuilds the bitmaps of `tags` as build `runId`, a few queries for all of them: one bitmap per
 * value (list elements count separately), per bucket [lo, hi) for numbers and dates with many
 * values, and `*` for every customer with a value. Returns the customers with a value per tag.
 */
export async function rebuildBitmaps(db: TenantDb, tags: readonly { name: string; type: ValueType }[], runId: string): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  if (!tags.length) return out
  const names = tags.map((t) => t.name)
  const from = `FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND is_deleted = 0`
  const labels = tags.filter((t) => t.type !== 'number' && t.type !== 'date').map((t) => t.name)
  const numeric = tags.filter((t) => t.type === 'number' || t.type === 'date').map((t) => t.name)
  if (labels.length) {
    await insertBitmaps(
      db,
      `SELECT tag, v, 0 AS lo, 0 AS hi, count() AS c, groupBitmapState(customer_key) AS k
       FROM (SELECT tag, customer_key, arrayJoin(if(empty(list), [value], list)) AS v ${from}) GROUP BY tag, v`,
      { tags: labels },
      runId,
    )
  }
  if (numeric.length) {
    const stats = await db.query(
      `SELECT toString(tag) AS tag, uniqExact(num) AS distinct,
              quantilesExact(${Array.from({ length: BUCKETS + 1 }, (_, i) => (i / BUCKETS).toFixed(5)).join(', ')})(num) AS q
       ${from} GROUP BY tag`,
      { tags: numeric },
      z.object({ tag: z.string(), distinct: z.coerce.number(), q: z.array(z.coerce.number()) }),
    )
    const exact = stats.filter((s) => s.distinct <= MAX_EXACT_VALUES).map((s) => s.tag)
    if (exact.length) {
      await insertBitmaps(
        db,
        `SELECT tag, any(value) AS v, num AS lo, num AS hi, count() AS c, groupBitmapState(customer_key) AS k ${from} GROUP BY tag, num`,
        { tags: exact },
        runId,
      )
    }
    // Bucket edges from quantiles: [edge_i, edge_i+1), and the last one holds the maximum alone.
    // Every bucketed tag in one pass over the values: a pass per tag read them once per tag.
    const bucketed = stats.filter((x) => x.distinct > MAX_EXACT_VALUES).map((s) => {
      const edges = [...new Set(s.q)].sort((a, b) => a - b)
      return { tag: s.tag, edges, his: [...edges.slice(1), edges[edges.length - 1]!] }
    })
    if (bucketed.length) {
      await insertBitmaps(
        db,
        `SELECT tag, concat('[', toString(lo), ',', toString(hi), ')') AS v, lo, hi, count() AS c, groupBitmapState(customer_key) AS k
         FROM (SELECT tag, customer_key, {edges:Array(Array(Float64))}[bi][b] AS lo, {his:Array(Array(Float64))}[bi][b] AS hi
               FROM (SELECT tag, customer_key, indexOf({tags:Array(String)}, toString(tag)) AS bi,
                            greatest(1, arrayCount(e -> e <= num, {edges:Array(Array(Float64))}[bi])) AS b ${from}))
         GROUP BY tag, lo, hi`,
        { tags: bucketed.map((b) => b.tag), edges: bucketed.map((b) => b.edges), his: bucketed.map((b) => b.his) },
        runId,
      )
    }
  }
  // Every customer with a value is in one of the tag's value bitmaps: `*` is their union, read
  // from the bitmaps just written rather than from the values once more.
  await db.command(
    `INSERT INTO tag_bitmaps (tenant_id, tag, build, value, lo, hi, cardinality, keys)
     SELECT {tenant:UInt16}, tag, {run:UInt64}, '*', 0, 0, bitmapCardinality(k), k FROM (
       SELECT tag, groupBitmapMergeState(keys) AS k FROM tag_bitmaps
       WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND build = {run:UInt64} GROUP BY tag)`,
    { tags: names, run: runId },
  )
  const rows = await db.query(
    `SELECT toString(tag) AS tag, cardinality AS n FROM tag_bitmaps
     WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND build = {run:UInt64} AND value = '*'`,
    { tags: names, run: runId },
    z.object({ tag: z.string(), n: z.coerce.number() }),
  )
  for (const n of names) out.set(n, 0)
  for (const r of rows) out.set(r.tag, r.n)
  return out
}

async function insertBitmaps(db: TenantDb, select: string, params: Record<string, unknown>, runId: string): Promise<void> {
  await db.command(
    `INSERT INTO tag_bitmaps (tenant_id, tag, build, value, lo, hi, cardinality, keys)
     SELECT {tenant:UInt16}, tag, {run:UInt64}, v, lo, hi, c, k FROM (${select})`,
    { ...params, run: runId },
  )
}

/**
 * Writes the value-ordered snapshot of the tags of build `runId` that have buckets (lo < hi), for
 * exact range checks at bucket edges. Returns the tags written.
 */
export async function writeNumericSnapshots(db: TenantDb, tags: readonly string[], runId: string): Promise<string[]> {
  if (!tags.length) return []
  const bucketed = (
    await db.query(
      `SELECT DISTINCT toString(tag) AS tag FROM tag_bitmaps
       WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND build = {run:UInt64} AND lo < hi`,
      { tags, run: runId },
      z.object({ tag: z.string() }),
    )
  ).map((r) => r.tag)
  if (!bucketed.length) return []
  await db.command(
    `INSERT INTO tag_numeric (tenant_id, tag, build, num, customer_key)
     SELECT {tenant:UInt16}, tag, {run:UInt64}, num, customer_key FROM tag_values FINAL
     WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND is_deleted = 0`,
    { tags: bucketed, run: runId },
  )
  return bucketed
}

/**
 * Drops bitmap builds no tag_state row points at, once they outnumber the current ones twice
 * over: a delete is a mutation of the table, cheaper in batches than after every run.
 */
export async function dropOldBitmaps(db: TenantDb): Promise<void> {
  const [r] = await db.query(
    `SELECT (SELECT uniqExact(tag, build) FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16}) AS builds,
            (SELECT uniqExact(tag) FROM tag_state WHERE tenant_id = {tenant:UInt16}) AS tags`,
    {},
    z.object({ builds: z.coerce.number(), tags: z.coerce.number() }),
  )
  if (!r || r.builds - r.tags < 2 * Math.max(r.tags, 1)) return
  await db.command(
    `DELETE FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16}
       AND (toString(tag), build) NOT IN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16})`,
  )
  await db.command(
    `DELETE FROM tag_numeric WHERE tenant_id = {tenant:UInt16}
       AND (toString(tag), build) NOT IN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16})`,
  )
}

/**
 * Brings bitmaps of tags whose previous build is known up to date from this run's changes alone:
 * for each value, old AND NOT (customers whose value changed) OR (customers who now have it).
 * Work grows with the changes, not with the customers. Numbers and dates in buckets keep their
 * inner edges while every new value falls inside the bucket it maps to; a value past the outer
 * edges widens the first or the last bucket (see widenBuckets), and a tag whose widened bucket
 * then holds more than twice its share is left to rebuildBitmaps, as is one with a value in a gap
 * and an exact-valued number that now has too many distinct values. A bucket left empty is kept:
 * dropping it left a gap in the edges (the maximum's own bucket gone, [a, max) became the last),
 * and a later value in the gap was counted in the bucket below, where readers never look for it.
 * Returns the tags updated and their customers with a value.
 */
export async function updateBitmaps(
  db: TenantDb,
  tags: readonly { name: string; type: ValueType; build: string }[],
  runId: string,
): Promise<{ covered: Map<string, number>; rebuild: string[] }> {
  const covered = new Map<string, number>()
  if (!tags.length) return { covered, rebuild: [] }
  const names = tags.map((t) => t.name)
  const builds = tags.map((t) => BigInt(t.build))
  const numeric = tags.filter((t) => t.type === 'number' || t.type === 'date').map((t) => t.name)
  // A numeric tag qualifies only when its previous build has exact values (lo = hi).
  const bucketed = new Set(
    (
      await db.query(
        `SELECT DISTINCT toString(tag) AS tag FROM tag_bitmaps
         WHERE tenant_id = {tenant:UInt16} AND tag IN {numeric:Array(String)} AND value != '*' AND lo != hi
           AND build = transform(toString(tag), {tags:Array(String)}, {builds:Array(UInt64)}, toUInt64(0))`,
        { numeric, tags: names, builds },
        z.object({ tag: z.string() }),
      )
    ).map((r) => r.tag),
  )
  // Bucketed tags keep their edges when every changed value falls inside the bucket it maps to
  // (the last whose lo is at most the value). With the outer edges widened to the changed values,
  // that holds exactly when the buckets leave no gap: builds written before empty buckets were
  // kept may lack one, and a value in its place would map to the bucket below, which does not
  // hold it (readers would never look for it there). Those are rebuilt.
  const buckets = await db.query(
    `SELECT tag, groupArray(lo) AS los, groupArray(hi) AS his, groupArray(cardinality) AS cards FROM (
       SELECT toString(tag) AS tag, lo, hi, cardinality FROM tag_bitmaps
       WHERE tenant_id = {tenant:UInt16} AND tag IN {bucketed:Array(String)} AND value != '*'
         AND build = transform(toString(tag), {tags:Array(String)}, {builds:Array(UInt64)}, toUInt64(0))
       ORDER BY tag, lo)
     GROUP BY tag`,
    { bucketed: [...bucketed], tags: names, builds },
    z.object({ tag: z.string(), los: z.array(z.coerce.number()), his: z.array(z.coerce.number()), cards: z.array(z.coerce.number()) }),
  )
  const extremes = new Map(
    (
      await db.query(
        `SELECT toString(tag) AS tag, min(num) AS lo, max(num) AS hi FROM tag_changes
         WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND removed = 0 AND tag IN {btags:Array(String)} GROUP BY tag`,
        { run: runId, btags: buckets.map((b) => b.tag) },
        z.object({ tag: z.string(), lo: z.coerce.number(), hi: z.coerce.number() }),
      )
    ).map((r) => [r.tag, r]),
  )
  const widened = buckets.map((b) => ({ ...b, ...widenBuckets(b.los, b.his, extremes.get(b.tag)) }))
  const inBuckets = widened.filter((b) => contiguous(b.edges.los, b.edges.his))
  const kept = new Set(inBuckets.map((b) => b.tag))
  const eligible = tags.filter((t) => !bucketed.has(t.name) || kept.has(t.name))
  const rebuild = tags.filter((t) => bucketed.has(t.name) && !kept.has(t.name)).map((t) => t.name)
  if (!eligible.length) return { covered, rebuild }
  const params = {
    run: runId,
    tags: eligible.map((t) => t.name),
    builds: eligible.map((t) => BigInt(t.build)),
    numeric: eligible.filter((t) => (t.type === 'number' || t.type === 'date') && !bucketed.has(t.name)).map((t) => t.name),
    btags: inBuckets.map((b) => b.tag),
    bold: inBuckets.map((b) => b.los),
    blos: inBuckets.map((b) => b.edges.los),
    bhis: inBuckets.map((b) => b.edges.his),
  }
  const changes = `FROM tag_changes WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND tag IN {tags:Array(String)}`
  await db.command(
    `INSERT INTO tag_bitmaps (tenant_id, tag, build, value, lo, hi, cardinality, keys)
     SELECT {tenant:UInt16}, tag, {run:UInt64}, value, lo, hi, bitmapCardinality(k), k FROM (
       SELECT tag, value, if(o.present = 1, o.lo, a.lo) AS lo, if(o.present = 1, o.hi, a.hi) AS hi,
              bitmapOr(bitmapAndnot(o.keys, ch.k), a.k) AS k
       FROM (SELECT tag, if(bx > 0, ${LABEL}, value) AS value, if(bx > 0, {blos:Array(Array(Float64))}[bi][bx], lo0) AS lo,
                    if(bx > 0, {bhis:Array(Array(Float64))}[bi][bx], hi0) AS hi, keys, present FROM (
               SELECT toString(tag) AS tag, value, lo AS lo0, hi AS hi0, keys, toUInt8(1) AS present,
                      indexOf({btags:Array(String)}, toString(tag)) AS bi, if(bi > 0 AND value != '*', indexOf({bold:Array(Array(Float64))}[bi], lo), 0) AS bx
               FROM tag_bitmaps
               WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)}
                 AND build = transform(toString(tag), {tags:Array(String)}, {builds:Array(UInt64)}, toUInt64(0)))) AS o
       FULL OUTER JOIN (
         SELECT tag, v AS value, if(v != '*' AND has({numeric:Array(String)}, tag), any(num), 0) AS lo, lo AS hi, groupBitmapState(customer_key) AS k
         FROM (SELECT toString(tag) AS tag, customer_key, num, arrayJoin(arrayConcat(if(empty(list), [value], list), ['*'])) AS v
               ${changes} AND removed = 0 AND tag NOT IN {btags:Array(String)})
         GROUP BY tag, v
         UNION ALL
         -- Bucketed numbers: each change's bucket found once (bx), its label and edges once per bucket.
         SELECT tag, if(bx = 0, '*', ${LABEL}) AS value, if(bx = 0, 0, {blos:Array(Array(Float64))}[bi][bx]) AS lo,
                if(bx = 0, 0, {bhis:Array(Array(Float64))}[bi][bx]) AS hi, k
         FROM (SELECT tag, bi, bx, groupBitmapState(customer_key) AS k FROM (
                 SELECT toString(tag) AS tag, customer_key, indexOf({btags:Array(String)}, toString(tag)) AS bi,
                        arrayJoin([greatest(1, arrayCount(e -> e <= num, {blos:Array(Array(Float64))}[bi])), 0]) AS bx
                 ${changes} AND removed = 0 AND tag IN {btags:Array(String)})
               GROUP BY tag, bi, bx)) AS a USING (tag, value)
       LEFT JOIN (SELECT toString(tag) AS tag, groupBitmapState(customer_key) AS k ${changes} GROUP BY tag) AS ch USING (tag)
     ) WHERE bitmapCardinality(k) > 0 OR value = '*' OR has({btags:Array(String)}, tag)`,
    params,
  )
  const rows = await db.query(
    `SELECT toString(tag) AS tag, countIf(value != '*') AS values, maxIf(cardinality, value = '*') AS n FROM tag_bitmaps
     WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND build = {run:UInt64} GROUP BY tag`,
    { tags: params.tags, run: runId },
    z.object({ tag: z.string(), values: z.coerce.number(), n: z.coerce.number() }),
  )
  const tooMany = rows.filter((r) => params.numeric.includes(r.tag) && r.values > MAX_EXACT_VALUES).map((r) => r.tag)
  tooMany.push(...(await overfull(db, inBuckets, runId)))
  if (tooMany.length) {
    await db.command(`DELETE FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND tag IN {t:Array(String)} AND build = {run:UInt64}`, { t: tooMany, run: runId })
  }
  for (const r of rows) if (!tooMany.includes(r.tag)) covered.set(r.tag, r.n)
  for (const t of params.tags) if (!covered.has(t) && !tooMany.includes(t)) covered.set(t, 0)
  return { covered, rebuild: [...rebuild, ...tooMany] }
}

/**
 * The outer edges widened to hold the changed values past them: the first bucket's low edge down
 * to the lowest, the last bucket's high edge up past the highest (an exact last bucket [max, max]
 * becomes [max, above)). Rebuilding the tag's buckets instead, as every new extreme did before,
 * cost a quantile pass over its values and a rewrite of every bucket; counts and amounts over a
 * sliding window reach a new extreme most days.
 */
export function widenBuckets(
  los: readonly number[],
  his: readonly number[],
  extremes: { lo: number; hi: number } | undefined,
): { edges: { los: number[]; his: number[] }; widened: number[] } {
  const edges = { los: [...los], his: [...his] }
  const widened: number[] = []
  const last = los.length - 1
  if (!extremes || last < 0) return { edges, widened }
  if (extremes.lo < edges.los[0]!) {
    if (edges.his[0] === edges.los[0]) edges.his[0] = above(edges.los[0]!)
    edges.los[0] = extremes.lo
    widened.push(0)
  }
  const top = edges.los[last] === edges.his[last] ? extremes.hi > edges.his[last]! : extremes.hi >= edges.his[last]!
  if (top) {
    edges.his[last] = above(extremes.hi)
    if (!widened.includes(last)) widened.push(last)
  }
  return { edges, widened }
}

/** Buckets [lo, hi) that meet edge to edge, only the last one possibly exact [max, max]. */
export function contiguous(los: readonly number[], his: readonly number[]): boolean {
  return los.every((lo, i) => i === los.length - 1 || (lo < his[i]! && his[i] === los[i + 1]))
}

/** The smallest edge above `x` that reads well: the next integer for integers, else the next double. */
function above(x: number): number {
  if (Number.isSafeInteger(x) && Number.isSafeInteger(x + 1)) return x + 1
  const f = new Float64Array([x])
  const bits = new BigInt64Array(f.buffer)
  if (x === 0) return Number.MIN_VALUE
  bits[0] = bits[0]! + (x > 0 ? 1n : -1n)
  return f[0]!
}

/** A widened tag, as updateBitmaps holds it: its buckets' cardinalities in the build before, its new edges, the buckets widened. */
interface Widened {
  tag: string
  cards: number[]
  edges: { los: number[] }
  widened: number[]
}

/**
 * Tags of build `runId` whose widened bucket grew past WIDENED_SHARE times an even share of the
 * tag's customers: widening again and again (a window's amounts drifting up) would otherwise pile
 * customers into one bucket, which segments then check value by value.
 */
async function overfull(db: TenantDb, tags: readonly Widened[], runId: string): Promise<string[]> {
  const grown = tags.filter((t) => t.widened.length)
  if (!grown.length) return []
  const rows = await db.query(
    `SELECT toString(tag) AS tag, value, lo, cardinality FROM tag_bitmaps
     WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND build = {run:UInt64}`,
    { tags: grown.map((t) => t.tag), run: runId },
    z.object({ tag: z.string(), value: z.string(), lo: z.coerce.number(), cardinality: z.coerce.number() }),
  )
  return overfullTags(grown, rows)
}

/** The decision of `overfull` over the build's bitmap rows (`*` counts the tag's customers, and is no bucket). */
export function overfullTags(
  grown: readonly Widened[],
  rows: readonly { tag: string; value: string; lo: number; cardinality: number }[],
): string[] {
  return grown
    .filter((t) => {
      const mine = rows.filter((r) => r.tag === t.tag)
      const share = (mine.find((r) => r.value === '*')?.cardinality ?? 0) / t.edges.los.length
      const card = (i: number) => mine.find((r) => r.value !== '*' && r.lo === t.edges.los[i])?.cardinality ?? 0
      return t.widened.some((i) => card(i) > WIDENED_SHARE * share && card(i) > t.cards[i]!)
    })
    .map((t) => t.tag)
}
