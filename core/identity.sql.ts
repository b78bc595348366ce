/**
 * How readers (tag pipelines, segment compilers, exports) see events with identities resolved:
 * an anonymous event (customer_key 0) takes the key its anonymous id is linked to now, and a key
 * merged into another takes that one. Resolution happens at read time, so links and merges
 * apply to earlier events at once and undoing one rewrites nothing.
 *
 * An anonymous event not linked to anyone keeps key 0; readers about customers leave it out.
 *
 * The SQL binds `{tenant:UInt16}` once per table reference, as the tenant query layer requires.
 * `columns` are names from code, never from users.
 */
export function resolvedEventsSql(columns: readonly string[], where = '1', opts: { merges?: boolean } = {}): string {
  const cols = columns.filter((c) => c !== 'customer_key')
  const list = cols.join(', ')
  const merges = opts.merges !== false
  // Only the anonymous ids seen in the range are looked up, not every link the tenant has.
  const linked = `(
      SELECT id_value AS anon, argMax(customer_key, updated_at) AS linked FROM identities
      WHERE tenant_id = {tenant:UInt16} AND id_kind = 'anonymous_id'
        AND id_value IN (SELECT anonymous_id FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = 0 AND (${where}))
      GROUP BY id_value
    )`
  const union = `(
    SELECT customer_key AS base_key, ${list} FROM events
    WHERE tenant_id = {tenant:UInt16} AND customer_key != 0 AND (${where})
    UNION ALL
    SELECT lk.linked AS base_key, ${cols.map((c) => `ev.${c}`).join(', ')}
    FROM (SELECT ${list}, anonymous_id AS anon FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = 0 AND (${where})) AS ev
    LEFT ANY JOIN ${linked} AS lk USING (anon)
  )`
  if (!merges) return `(SELECT base_key AS customer_key, ${list} FROM ${union} AS r)`
  return `(
  SELECT ${survivorSql('r.base_key', 'mg')} AS customer_key, ${cols.map((c) => `r.${c} AS ${c}`).join(', ')}
  FROM ${union} AS r
  LEFT ANY JOIN ${STANDING_MERGES_SQL} AS mg ON mg.from_key = r.base_key
)`
}

/**
 * The tenant's standing merges, one row per key merged away: `from_key` and `into_key`, the
 * customer it now belongs to. A merge stands while its latest row is active; routes are kept
 * flat (ingest/identity.merges.ts), so `into_key` is never merged away itself and one step
 * resolves any key. A tenant has few merges: joined to large tables with LEFT ANY JOIN, this is
 * the small side. Binds `{tenant:UInt16}` once.
 */
export const STANDING_MERGES_SQL = `(SELECT from_key, argMax(into_key, updated_at) AS into_key FROM customer_merges
    WHERE tenant_id = {tenant:UInt16} GROUP BY from_key HAVING argMax(active, updated_at) = 1)`

/**
 * The surviving customer of `key` (an SQL column), given `alias`, STANDING_MERGES_SQL joined with
 * LEFT ANY JOIN on `alias.from_key = key`: a key missed by the join reads into_key 0, and keeps
 * its own key.
 */
export const survivorSql = (key: string, alias: string): string => `if(${alias}.into_key != 0, ${alias}.into_key, ${key})`

/**
 * The standing merges as one row of two parallel arrays, `froms` and `intos`, to resolve bitmaps
 * with `survivorsBitmapSql` (CROSS JOIN it: always exactly one row, empty arrays when none).
 */
export const MERGE_ARRAYS_SQL = `(SELECT groupArray(from_key) AS froms, groupArray(into_key) AS intos FROM ${STANDING_MERGES_SQL})`

/**
 * Bitmap `x` (AggregateFunction(groupBitmap, UInt32); named, as it is read twice) with every key
 * merged away replaced by its survivor: (x AND NOT froms) OR survivors(x AND froms), so a person
 * is one key. `m` is the alias of a MERGE_ARRAYS_SQL row. The survivor may be a deleted customer:
 * callers that need live customers intersect with them afterwards.
 */
export function survivorsBitmapSql(x: string, m: string): string {
  const froms = `bitmapBuild(${m}.froms)`
  return `bitmapOr(bitmapAndnot(${x}, ${froms}), bitmapBuild(arrayMap(k -> ${m}.intos[indexOf(${m}.froms, k)], bitmapToArray(bitmapAnd(${x}, ${froms})))))`
}

/**
 * Rows of a tenant table of customer data (`consents`, `loan_schedules`, `push_targets` ...) with
 * `customer_key` read as the surviving customer's, so that grouping by it puts a merged person's
 * rows together. `columns` are names from code; `where` reads the table as `x`. Binds
 * `{tenant:UInt16}` twice.
 */
export function survivorRowsSql(table: string, columns: readonly string[], where: string, opts: { final?: boolean } = {}): string {
  return `(SELECT ${survivorSql('x.customer_key', 'mg')} AS customer_key, ${columns.map((c) => `x.${c} AS ${c}`).join(', ')}
    FROM ${table} AS x${opts.final ? ' FINAL' : ''} LEFT ANY JOIN ${STANDING_MERGES_SQL} AS mg ON mg.from_key = x.customer_key
    WHERE x.tenant_id = {tenant:UInt16} AND (${where}))`
}

/**
 * Every key of the persons of `changed` (a subquery of one column `k`): each key's survivor and
 * the keys merged into it, as the merges stand now. For readers that hold decisions per person
 * and re-read the persons whose keys changed. Binds `{tenant:UInt16}` as often as `changed` does, and three times.
 */
export function personKeysSql(changed: string): string {
  const survivors = `(SELECT ${survivorSql('ch.k', 'sm')} AS k FROM ${changed} AS ch LEFT ANY JOIN ${STANDING_MERGES_SQL} AS sm ON sm.from_key = ch.k)`
  return `(SELECT arrayJoin(arrayPushFront(gm.froms, sv.k)) FROM ${survivors} AS sv
    LEFT ANY JOIN (SELECT into_key, groupArray(from_key) AS froms FROM ${STANDING_MERGES_SQL} GROUP BY into_key) AS gm ON gm.into_key = sv.k)`
}
