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
  SELECT if(mg.into_key != 0, mg.into_key, r.base_key) AS customer_key, ${cols.map((c) => `r.${c} AS ${c}`).join(', ')}
  FROM ${union} AS r
  LEFT ANY JOIN (
    SELECT from_key, argMax(into_key, updated_at) AS into_key FROM customer_merges
    WHERE tenant_id = {tenant:UInt16} GROUP BY from_key HAVING argMax(active, updated_at) = 1
  ) AS mg ON mg.from_key = r.base_key
)`
}
