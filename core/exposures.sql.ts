/**
 * Layout exposures as their readers need them, the modules and items shown named by id: rows
 * written by position (sql/028_layout_exposure_lists.sql) resolved through their list, rows
 * written before it as they are. Every reader of exposures goes through these: the experiments'
 * report and the model build item by item, a customer's export row by row.
 *
 * `where` is a condition over layout_exposures' own columns (the tenant's is added).
 */

const COLUMNS = ['customer_key', 'served_at', 'screen', 'experiment', 'variant', 'holdout', 'elder', 'model_build'] as const

/**
 * One row per exposure, with the table's columns and `modules` and `items` as ids. Each row's
 * positions are mapped through its list's arrays, which the join copies into the row: fine for
 * one customer's rows (the export), seven times slower than exposureItemsSql over a bank's
 * (300,000 exposures: 1.1 s against 0.16 s).
 */
export function exposuresSql(where: string): string {
  return `(SELECT ${COLUMNS.map((c) => `e.${c} AS ${c}`).join(', ')},
      if(e.list = 0, e.modules, arrayMap(s -> l.list_modules[intDiv(s, length(l.list_items)) + 1], e.slots)) AS modules,
      if(e.list = 0, e.items, arrayMap(s -> l.list_items[s % length(l.list_items) + 1], e.slots)) AS items
    FROM (SELECT * FROM layout_exposures WHERE tenant_id = {tenant:UInt16} AND (${where})) AS e
    ANY LEFT JOIN (SELECT list, modules AS list_modules, items AS list_items FROM layout_exposure_lists WHERE tenant_id = {tenant:UInt16}) AS l
      ON l.list = e.list)`
}

/**
 * One row per item shown: the table's columns, `module` and `item`. Rows written by position are
 * joined, position by position, to their list's pairs of module and item (a few hundred rows a
 * list); rows written before lists are unfolded as they are.
 */
export function exposureItemsSql(where: string): string {
  return `(SELECT ${COLUMNS.join(', ')}, module, item
      FROM layout_exposures ARRAY JOIN modules AS module, items AS item
      WHERE tenant_id = {tenant:UInt16} AND list = 0 AND (${where})
    UNION ALL
    SELECT ${COLUMNS.map((c) => `e.${c} AS ${c}`).join(', ')}, l.module AS module, l.item AS item
    FROM (SELECT ${COLUMNS.join(', ')}, list, slot FROM layout_exposures ARRAY JOIN slots AS slot
          WHERE tenant_id = {tenant:UInt16} AND list != 0 AND (${where})) AS e
    INNER JOIN (
      SELECT list, toUInt32((m - 1) * length(items) + i - 1) AS slot, modules[m] AS module, items[i] AS item
      FROM (SELECT DISTINCT list, modules, items FROM layout_exposure_lists WHERE tenant_id = {tenant:UInt16})
      ARRAY JOIN arrayEnumerate(modules) AS m
      ARRAY JOIN arrayEnumerate(items) AS i) AS l
    ON l.list = e.list AND l.slot = e.slot)`
}
