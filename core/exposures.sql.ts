/**
 * Layout exposures as their readers need them, the modules and items shown named by id: rows
 * written by position (sql/028_layout_exposure_lists.sql) resolved through their list, rows
 * written before it as they are. Every reader of exposures goes through this: the experiments'
 * report, the model build, a customer's export.
 *
 * `where` is a condition over layout_exposures' own columns (the tenant's is added). The result
 * is a subquery with the table's columns, `modules` and `items` being the ids.
 */
export function exposuresSql(where: string): string {
  return `(SELECT e.customer_key AS customer_key, e.served_at AS served_at, e.screen AS screen, e.experiment AS experiment, e.variant AS variant,
      e.holdout AS holdout, e.elder AS elder, e.model_build AS model_build,
      if(e.list = 0, e.modules, arrayMap(s -> l.list_modules[intDiv(s, length(l.list_items)) + 1], e.slots)) AS modules,
      if(e.list = 0, e.items, arrayMap(s -> l.list_items[s % length(l.list_items) + 1], e.slots)) AS items
    FROM (SELECT * FROM layout_exposures WHERE tenant_id = {tenant:UInt16} AND (${where})) AS e
    ANY LEFT JOIN (SELECT list, modules AS list_modules, items AS list_items FROM layout_exposure_lists WHERE tenant_id = {tenant:UInt16}) AS l
      ON l.list = e.list)`
}
