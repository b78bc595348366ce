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
    for (const s of stats.filter((x) => x.distinct > MAX_EXACT_VALUES)) {
      // Bucket edges from quantiles: [edge_i, edge_i+1), and the last one holds the maximum alone.
      const edges = [...new Set(s.q)].sort((a, b) => a - b)
      const his = [...edges.slice(1), edges[edges.length - 1]!]
      await insertBitmaps(
        db,
        `SELECT tag, concat('[', toString(lo), ',', toString(hi), ')') AS v, lo, hi, count() AS c, groupBitmapState(customer_key) AS k
         FROM (SELECT tag, customer_key, {edges:Array(Float64)}[b] AS lo, {his:Array(Float64)}[b] AS hi
               FROM (SELECT tag, customer_key, greatest(1, arrayCount(e -> e <= num, {edges:Array(Float64)})) AS b ${from}))
         GROUP BY tag, lo, hi`,
        { tags: [s.tag], edges, his },
        runId,
      )
    }
  }
  await insertBitmaps(db, `SELECT tag, '*' AS v, 0 AS lo, 0 AS hi, count() AS c, groupBitmapState(customer_key) AS k ${from} GROUP BY tag`, { tags: names }, runId)
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
 * edges while every new value falls inside them; otherwise they are left to rebuildBitmaps, and so
 * is an exact-valued number that now has too many distinct values. A bucket left empty is kept:
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
  // Bucketed tags keep their edges while every changed value falls inside the bucket it maps to
  // (the last whose lo is at most the value). Checking the bucket, not just the outer edges:
  // builds written before empty buckets were kept may lack one, and a value in its place would
  // map to the bucket below, which does not hold it (readers would never look for it there).
  const buckets = await db.query(
    `SELECT tag, groupArray(lo) AS los, groupArray(hi) AS his, groupArray(value) AS labels FROM (
       SELECT toString(tag) AS tag, lo, hi, value FROM tag_bitmaps
       WHERE tenant_id = {tenant:UInt16} AND tag IN {bucketed:Array(String)} AND value != '*'
         AND build = transform(toString(tag), {tags:Array(String)}, {builds:Array(UInt64)}, toUInt64(0))
       ORDER BY tag, lo)
     GROUP BY tag`,
    { bucketed: [...bucketed], tags: names, builds },
    z.object({ tag: z.string(), los: z.array(z.coerce.number()), his: z.array(z.coerce.number()), labels: z.array(z.string()) }),
  )
  const outside = new Set(
    (
      await db.query(
        `SELECT DISTINCT tag FROM (
           SELECT toString(tag) AS tag, num, indexOf({btags:Array(String)}, toString(tag)) AS bi,
                  greatest(1, arrayCount(e -> e <= num, {blos:Array(Array(Float64))}[bi])) AS bx,
                  {blos:Array(Array(Float64))}[bi][bx] AS lo, {bhis:Array(Array(Float64))}[bi][bx] AS hi
           FROM tag_changes
           WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND removed = 0 AND tag IN {btags:Array(String)})
         WHERE NOT (lo < hi AND num >= lo AND num < hi) AND NOT (lo = hi AND num = lo)`,
        { run: runId, btags: buckets.map((b) => b.tag), blos: buckets.map((b) => b.los), bhis: buckets.map((b) => b.his) },
        z.object({ tag: z.string() }),
      )
    ).map((r) => r.tag),
  )
  const inBuckets = buckets.filter((b) => !outside.has(b.tag))
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
    blos: inBuckets.map((b) => b.los),
    bhis: inBuckets.map((b) => b.his),
    blabels: inBuckets.map((b) => b.labels),
  }
  const changes = `FROM tag_changes WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND tag IN {tags:Array(String)}`
  await db.command(
    `INSERT INTO tag_bitmaps (tenant_id, tag, build, value, lo, hi, cardinality, keys)
     SELECT {tenant:UInt16}, tag, {run:UInt64}, value, lo, hi, bitmapCardinality(k), k FROM (
       SELECT tag, value, if(o.present = 1, o.lo, a.lo) AS lo, if(o.present = 1, o.hi, a.hi) AS hi,
              bitmapOr(bitmapAndnot(o.keys, ch.k), a.k) AS k
       FROM (SELECT toString(tag) AS tag, value, lo, hi, keys, toUInt8(1) AS present FROM tag_bitmaps
             WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)}
               AND build = transform(toString(tag), {tags:Array(String)}, {builds:Array(UInt64)}, toUInt64(0))) AS o
       FULL OUTER JOIN (
         SELECT tag, value, any(lo) AS lo, any(hi) AS hi, groupBitmapState(customer_key) AS k FROM (
           SELECT toString(tag) AS tag, customer_key,
                  indexOf({btags:Array(String)}, toString(tag)) AS bi,
                  greatest(1, arrayCount(e -> e <= num, {blos:Array(Array(Float64))}[bi])) AS bx,
                  multiIf(v = '*', v, bi > 0, {blabels:Array(Array(String))}[bi][bx], v) AS value,
                  multiIf(v = '*', 0, bi > 0, {blos:Array(Array(Float64))}[bi][bx], has({numeric:Array(String)}, toString(tag)), num, 0) AS lo,
                  multiIf(v = '*', 0, bi > 0, {bhis:Array(Array(Float64))}[bi][bx], has({numeric:Array(String)}, toString(tag)), num, 0) AS hi
           FROM (SELECT tag, customer_key, num, arrayJoin(arrayConcat(if(empty(list), [value], list), ['*'])) AS v ${changes} AND removed = 0))
         GROUP BY tag, value) AS a USING (tag, value)
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
  if (tooMany.length) {
    await db.command(`DELETE FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND tag IN {t:Array(String)} AND build = {run:UInt64}`, { t: tooMany, run: runId })
  }
  for (const r of rows) if (!tooMany.includes(r.tag)) covered.set(r.tag, r.n)
  for (const t of params.tags) if (!covered.has(t) && !tooMany.includes(t)) covered.set(t, 0)
  return { covered, rebuild: [...rebuild, ...tooMany] }
}
