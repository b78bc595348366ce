import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { TENANT_TABLES } from './db.js'
import { createTenantScopeChecker, type TenantScopeChecker } from './tenant-scope.js'

const T = '{tenant:UInt16}'

/** Texts the tenant layer must refuse, each with why it would leak. */
const BAD: [string, string][] = [
  // The three from the issue: a tenant placeholder that filters nothing, a quoted name, merge().
  ['placeholder compared to a constant', `SELECT * FROM events WHERE ${T} > 0`],
  ['quoted table name, placeholder elsewhere', `SELECT * FROM "events" WHERE customer_key = ${T}`],
  ['merge() over the tenant tables', `SELECT * FROM merge(currentDatabase(), '^events$') WHERE tenant_id = ${T}`],
  ['backquoted name', `SELECT ${T} AS t, * FROM \`events\``],
  ['database-qualified name', `SELECT * FROM qianmian.events WHERE customer_key = ${T}`],
  ['filter under OR', `SELECT * FROM events WHERE tenant_id = ${T} OR 1`],
  ['filter negated', `SELECT * FROM events WHERE tenant_id != ${T}`],
  ['placeholder of another type', `SELECT * FROM events WHERE tenant_id = {tenant:UInt32}`],
  ['filter plus arithmetic', `SELECT * FROM events WHERE tenant_id = ${T} + 0`],
  ['one side of a join unfiltered', `SELECT * FROM events e JOIN customers c USING (customer_key) WHERE e.tenant_id = ${T}`],
  ['bare tenant_id with two tables', `SELECT * FROM events e JOIN customers c USING (customer_key) WHERE tenant_id = ${T}`],
  ['right table filtered only in ON', `SELECT * FROM events e RIGHT JOIN customers c ON c.tenant_id = ${T} AND c.customer_key = e.customer_key WHERE e.tenant_id = ${T}`],
  ['filter outside the subquery', `SELECT * FROM (SELECT * FROM events) WHERE tenant_id = ${T}`],
  ['filter in HAVING after GROUP BY', `SELECT tenant_id, count() FROM events GROUP BY tenant_id HAVING tenant_id = ${T}`],
  ['CTE unfiltered', `WITH x AS (SELECT * FROM events) SELECT * FROM x WHERE tenant_id = ${T}`],
  ['CTE named like a tenant table', `WITH customers AS (SELECT * FROM customers WHERE tenant_id = ${T}) SELECT * FROM customers`],
  ['UNION branch unfiltered', `SELECT customer_key FROM events WHERE tenant_id = ${T} UNION ALL SELECT customer_key FROM customers`],
  ['EXCEPT branch unfiltered', `SELECT customer_key FROM events WHERE tenant_id = ${T} EXCEPT SELECT customer_key FROM customers`],
  ['IN subquery unfiltered', `SELECT * FROM events WHERE tenant_id = ${T} AND customer_key IN (SELECT customer_key FROM customers)`],
  ['scalar subquery unfiltered', `SELECT (SELECT count() FROM customers) AS n FROM events WHERE tenant_id = ${T}`],
  ['IN a tenant table by name', `SELECT * FROM events WHERE tenant_id = ${T} AND customer_key IN customers`],
  ['INSERT … SELECT from an unfiltered source', `INSERT INTO tag_values (tenant_id, tag) SELECT ${T}, tag FROM tag_definitions`],
  ['INSERT writing another tenant', `INSERT INTO tag_values (tenant_id, tag) SELECT 7, 'x'`],
  ['INSERT … SELECT without tenant_id', `INSERT INTO tag_values (tag) SELECT tag FROM tag_definitions WHERE tenant_id = ${T}`],
  ['INSERT … SELECT * FROM a UNION with one branch writing another tenant', `INSERT INTO events (tenant_id, customer_key) SELECT * FROM (SELECT ${T}, 1 UNION ALL SELECT 7, 2)`],
  ['INSERT whose GROUP BY (read as a select list) holds the placeholder', `INSERT INTO events (tenant_id, customer_key) SELECT 7, 1 GROUP BY ${T}, 1`],
  ['INSERT copying a tenant_id that an alias made up', `INSERT INTO events (tenant_id, customer_key) SELECT tenant_id, 1 FROM (SELECT 7 AS tenant_id)`],
  // The recommend build's old-partition check read this way: it reads other tenants' rows, so it runs on the system handle.
  ['outer read unfiltered around a filtered IN', `SELECT build FROM rec_items WHERE build IN (SELECT build FROM rec_items WHERE tenant_id = ${T}) GROUP BY build HAVING min(tenant_id) = ${T}`],
  ['INSERT copying the tenant_id of a shared table', `INSERT INTO events (tenant_id, customer_key) SELECT tenant_id, 1 FROM tenants WHERE ${T} > 0`],
  ["INSERT copying the tenant_id of an import's working table", `INSERT INTO customers (tenant_id, customer_no) SELECT tenant_id, customer_no FROM import_stage_0123456789abcdef0123456789abcdef`],
  ['ALTER DELETE unfiltered', 'ALTER TABLE events DELETE WHERE customer_key = 1'],
  ['ALTER UPDATE under OR', `ALTER TABLE events UPDATE event = 'x' WHERE tenant_id = ${T} OR 1`],
  ['ALTER DROP PARTITION of a tenant table', 'ALTER TABLE events DROP PARTITION 202611'],
  ['DELETE unfiltered', 'DELETE FROM events WHERE customer_key = 1'],
  ['TRUNCATE a tenant table', 'TRUNCATE TABLE events'],
  ['DROP a tenant table', 'DROP TABLE events'],
  ['OPTIMIZE a tenant table', 'OPTIMIZE TABLE events FINAL'],
  ['remote()', `SELECT * FROM remote('127.0.0.1', currentDatabase(), 'events') WHERE tenant_id = ${T}`],
  ['cluster()', `SELECT * FROM cluster('default', currentDatabase(), 'events') WHERE tenant_id = ${T}`],
  ['view()', `SELECT * FROM view(SELECT * FROM events WHERE tenant_id = ${T})`],
  ['file()', `SELECT * FROM file('x.tsv') WHERE tenant_id = ${T}`],
  ['joinGet', `SELECT joinGet('customers', 'name', 1) FROM events WHERE tenant_id = ${T}`],
  ['dictGet', `SELECT dictGet('d', 'name', toUInt64(1)) FROM events WHERE tenant_id = ${T}`],
  ['an alias shadows tenant_id', `SELECT ${T} AS tenant_id, * FROM events WHERE tenant_id = ${T}`],
  ['a WITH alias shadows tenant_id', `WITH ${T} AS tenant_id SELECT * FROM events WHERE tenant_id = ${T}`],
  ['a server table', `SELECT query FROM system.query_log WHERE ${T} = ${T}`],
  ['an unknown table', `SELECT * FROM events_by_day WHERE tenant_id = ${T}`],
  ['a table named like a working table, but not one', `SELECT * FROM import_stage_x WHERE ${T} = 1`],
  ['QUALIFY', `SELECT count() OVER () FROM events QUALIFY tenant_id = ${T}`],
  ['the marker written out', `SELECT * FROM events WHERE tenant_id = __qianmian_tenant_scope()`],
  ['a newline in a quoted name', 'SELECT 1 AS `a\n    Function equals` FROM events'],
  ['an Identifier parameter', `SELECT * FROM {t:Identifier} WHERE tenant_id = ${T}`],
  ['a SYSTEM statement', 'SYSTEM DROP MARK CACHE'],
  ['a SET statement', 'SET max_threads = 1'],
]

/** Shapes the codebase uses, which must pass. */
const GOOD: [string, string][] = [
  ['plain', `SELECT * FROM events WHERE tenant_id = ${T}`],
  ['placeholder on the left, more conjuncts', `SELECT * FROM events WHERE event = 'x' AND (${T} = tenant_id AND customer_key = 1)`],
  ['PREWHERE and FINAL', `SELECT * FROM customers FINAL PREWHERE tenant_id = ${T} WHERE customer_key > 0`],
  ['alias-qualified join', `SELECT * FROM events e JOIN customers c USING (customer_key) WHERE e.tenant_id = ${T} AND c.tenant_id = ${T}`],
  ['quoted and qualified names filtered', `SELECT * FROM "events" AS e, qianmian.customers WHERE e.tenant_id = ${T} AND customers.tenant_id = ${T}`],
  ['filtered subquery', `SELECT count() FROM (SELECT customer_key FROM events WHERE tenant_id = ${T}) GROUP BY customer_key`],
  ['filtered CTE', `WITH x AS (SELECT * FROM events WHERE tenant_id = ${T}) SELECT * FROM x`],
  ['UNION of filtered branches', `SELECT customer_key FROM events WHERE tenant_id = ${T} UNION ALL SELECT customer_key FROM customers WHERE tenant_id = ${T}`],
  ['IN filtered subquery', `SELECT * FROM events WHERE tenant_id = ${T} AND customer_key IN (SELECT customer_key FROM customers WHERE tenant_id = ${T})`],
  ['IN a bound array', `SELECT * FROM events WHERE tenant_id = ${T} AND customer_key IN {keys:Array(UInt32)}`],
  ['ARRAY JOIN', `SELECT k FROM tag_bitmaps ARRAY JOIN [1, 2] AS k WHERE tenant_id = ${T}`],
  ['shared tables', `SELECT (SELECT count() FROM system.parts WHERE table = 'customers') AS p, time_zone FROM tenants WHERE id = ${T}`],
  ['generators', 'SELECT number FROM numbers(10)'],
  ['no table', 'SELECT 1'],
  ['INSERT … SELECT with the scope tenant', `INSERT INTO tag_values (tenant_id, tag, customer_key) SELECT ${T}, tag, 1 FROM tag_definitions WHERE tenant_id = ${T}`],
  ['INSERT … SELECT copying the filtered tenant_id', `INSERT INTO tag_history (tenant_id, tag) SELECT tenant_id, tag FROM tag_values WHERE tenant_id = ${T}`],
  ['INSERT … SELECT * FROM a UNION that writes the scope tenant', `INSERT INTO events (tenant_id, customer_key) SELECT * FROM (SELECT ${T}, 1 UNION ALL SELECT ${T}, number FROM numbers(3))`],
  ['INSERT … WITH a scalar … SELECT the scope tenant', `INSERT INTO events (tenant_id, customer_key) WITH ${T} AS t SELECT ${T}, 1`],
  ['INSERT … WITH scalar subqueries … SELECT FROM a subquery (segment entries and exits)', `INSERT INTO segment_events (tenant_id, segment_id) WITH (SELECT groupBitmapState(customer_key) FROM segment_members WHERE tenant_id = ${T}) AS n SELECT ${T}, 's' FROM (SELECT arrayJoin(bitmapToArray(n)) AS k)`],
  ["an import's working table", `INSERT INTO customers (tenant_id, customer_no) SELECT ${T}, customer_no FROM import_stage_0123456789abcdef0123456789abcdef`],
  ['ALTER DELETE', `ALTER TABLE tag_values DELETE WHERE tenant_id = ${T} AND tag = {tag:String}`],
  ['ALTER UPDATE', `ALTER TABLE push_targets UPDATE status = 'x' WHERE tenant_id = ${T} AND campaign_id = {c:String}`],
  ['DELETE FROM', `DELETE FROM tag_values WHERE tenant_id = ${T} AND tag = {tag:String}`],
  ['a working table', 'CREATE TEMPORARY TABLE IF NOT EXISTS stage_x (k UInt32) ENGINE = Memory'],
  ['a braced string is only a string', `SELECT '{tenant:UInt16}' AS s, * FROM events WHERE tenant_id = ${T}`],
]

describe('the structural tenant check, on the engine parse', () => {
  let engine: TestEngine
  let explains = 0
  let checker: TenantScopeChecker
  beforeAll(async () => {
    engine = await openTestEngine({ migrate: false })
    checker = createTenantScopeChecker({
      tenantTables: TENANT_TABLES,
      async explain(text, params) {
        explains++
        const rs = await engine.handle.client.exec({ query: `EXPLAIN AST ${text}`, query_params: params, clickhouse_settings: { default_format: 'TabSeparatedRaw' } })
        let out = ''
        for await (const c of rs.stream) out += String(c)
        return out.split('\n')
      },
    })
  })
  afterAll(async () => engine?.close())

  const params = { tenant: 3, keys: [1, 2], tag: 't', c: 'c', t: 'events' }

  it.each(BAD)('refuses: %s', async (_why, sql) => {
    await expect(checker.check(sql, params)).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
  })

  it.each(GOOD)('passes: %s', async (_why, sql) => {
    await expect(checker.check(sql, params)).resolves.toBeUndefined()
  })

  it('asks the engine once per text: the verdict, refusals included, is cached', async () => {
    const before = explains
    for (let i = 0; i < 50; i++) {
      await checker.check(GOOD[0]![1], params)
      await expect(checker.check(BAD[0]![1], params)).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
    }
    expect(explains).toBe(before)
  })

  it('shares one parse between concurrent first checks of a text', async () => {
    const before = explains
    const sql = `SELECT count() FROM loans WHERE tenant_id = ${T} AND loan_no = {n:String}`
    await Promise.all(Array.from({ length: 20 }, () => checker.check(sql, { ...params, n: 'x' })))
    expect(explains).toBe(before + 1)
  })

  it('does not cache an engine error as a verdict', async () => {
    const bad = `SELECT FROM WHERE tenant_id = ${T} (`
    await expect(checker.check(bad, params)).rejects.not.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
    const before = explains
    await expect(checker.check(bad, params)).rejects.toThrow()
    expect(explains).toBe(before + 1)
  })
})
