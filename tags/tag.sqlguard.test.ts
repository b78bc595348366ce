import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isAppError } from '../core/errors.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { guardSqlTag, SQL_TAG_MAX_LENGTH, type SqlTagSources } from './tag.sqlguard.js'

// `t` and `c` hold two tenants' rows; the sources are the only tenant-scoped way in.
const SOURCES: SqlTagSources = {
  events: '(SELECT customer_key, event FROM t WHERE tenant_id = {tenant:UInt16})',
  customers: '(SELECT customer_key, region FROM c WHERE tenant_id = {tenant:UInt16})',
}
const FIELD = 'tags.0.rule.sql'
const HEAD = 'SELECT customer_key, count() AS value'

function rejection(sql: string, sources: SqlTagSources = SOURCES): { code: string; field: unknown; issue: unknown } | undefined {
  try {
    guardSqlTag(sql, sources, FIELD)
    return undefined
  } catch (e) {
    if (!isAppError(e)) throw e
    return { code: e.code, field: e.issues?.[0]?.field, issue: e.issues?.[0]?.code }
  }
}

describe('guardSqlTag, without the engine', () => {
  const rejected: [string, string, string][] = [
    ['empty', '  -- nothing\n', 'SQL_EMPTY'],
    ['too long', `${HEAD} FROM $events GROUP BY customer_key ${'-'.repeat(SQL_TAG_MAX_LENGTH)}`, 'SQL_TOO_LONG'],
    ['stacked statements', `${HEAD} FROM $events GROUP BY customer_key; DROP TABLE t`, 'SQL_MULTIPLE_STATEMENTS'],
    ['a ; after a comment', `${HEAD} FROM $events GROUP BY customer_key /* done */; SELECT 1`, 'SQL_MULTIPLE_STATEMENTS'],
    ['not a SELECT', 'SHOW TABLES', 'SQL_NOT_SELECT'],
    ['INSERT INTO', 'INSERT INTO t SELECT * FROM $events', 'SQL_NOT_SELECT'],
    ['INSERT after a CTE', 'WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x', 'SQL_KEYWORD_NOT_ALLOWED'],
    ['a parenthesised statement', `(${HEAD} FROM $events GROUP BY customer_key)`, 'SQL_NOT_SELECT'],
    ['an unknown source', `${HEAD} FROM $nope GROUP BY customer_key`, 'SQL_UNKNOWN_SOURCE'],
    ['a prototype name as source', `${HEAD} FROM $constructor GROUP BY customer_key`, 'SQL_UNKNOWN_SOURCE'],
    ['FROM system.tables', 'SELECT 1 AS customer_key, name AS value FROM system.tables', 'SQL_TABLE_NOT_ALLOWED'],
    ['system. in a subquery', `${HEAD} FROM $events WHERE 1 IN (SELECT 1 FROM \`system\`.one) GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['system. as a column', 'SELECT system.one.dummy AS customer_key, 1 AS value FROM $events', 'SQL_TABLE_NOT_ALLOWED'],
    ['information_schema', 'SELECT 1 AS customer_key, 1 AS value FROM information_schema.tables', 'SQL_TABLE_NOT_ALLOWED'],
    ['a db-qualified table', `${HEAD} FROM qianmian.events GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a bare table', `${HEAD} FROM events GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a backquoted table', `${HEAD} FROM \`events\` GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a double-quoted table', `${HEAD} FROM "t" GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a quoted $name', `${HEAD} FROM \`$events\` GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a table in a JOIN', `${HEAD} FROM $events AS e LEFT JOIN t USING (customer_key) GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a PASTE JOIN', `${HEAD} FROM $events PASTE JOIN t GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a comma join', `${HEAD} FROM $events AS e, t GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a comma join after ON', `${HEAD} FROM $events AS e JOIN $customers AS k ON 1, t GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a table in a CTE', `WITH x AS (SELECT * FROM t) ${HEAD} FROM x GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['a parenthesised table', `${HEAD} FROM (t) GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    // ClickHouse reads `k IN t`, `k IN (t)` and `in(k, t)` as membership in table t.
    ['IN a table', `${HEAD} FROM $events WHERE customer_key IN t GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['IN (table)', `${HEAD} FROM $events WHERE customer_key GLOBAL NOT IN ((t)) GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['IN `table`', `${HEAD} FROM $events WHERE customer_key IN \`t\` GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['in() as a function', `${HEAD} FROM $events WHERE in(customer_key, t) GROUP BY customer_key`, 'SQL_TABLE_NOT_ALLOWED'],
    ['notIn() as a function', `${HEAD} FROM $events WHERE notIn(customer_key, t) GROUP BY customer_key`, 'SQL_FUNCTION_NOT_ALLOWED'],
    ['JOIN file()', `${HEAD} FROM $events JOIN file('x') USING (customer_key) GROUP BY customer_key`, 'SQL_FUNCTION_NOT_ALLOWED'],
    ['FROM numbers()', 'SELECT number AS customer_key, 1 AS value FROM numbers(10)', 'SQL_FUNCTION_NOT_ALLOWED'],
    ['a backquoted file()', "SELECT 1 AS customer_key, `file`('/etc/hostname') AS value", 'SQL_FUNCTION_NOT_ALLOWED'],
    ['an escaped file()', "SELECT 1 AS customer_key, `\\x66ile`('/etc/hostname') AS value", 'SQL_CHARACTER_NOT_ALLOWED'],
    ['dictGet', "SELECT customer_key, dictGet('d', 'v', toUInt64(customer_key)) AS value FROM $events", 'SQL_FUNCTION_NOT_ALLOWED'],
    ['DICTGETSTRING', "SELECT customer_key, DICTGETSTRING('d', 'v', 1) AS value FROM $events", 'SQL_FUNCTION_NOT_ALLOWED'],
    ['joinGet', "SELECT customer_key, joinGet('j', 'v', customer_key) AS value FROM $events", 'SQL_FUNCTION_NOT_ALLOWED'],
    ['remote()', "SELECT 1 AS customer_key, 1 AS value FROM remote('127.0.0.1', qianmian.t)", 'SQL_FUNCTION_NOT_ALLOWED'],
    ['view()', 'SELECT 1 AS customer_key, 1 AS value FROM $events WHERE 1 IN view(SELECT 1)', 'SQL_FUNCTION_NOT_ALLOWED'],
    ['format()', "SELECT customer_key, format('{}', event) AS value FROM $events", 'SQL_FUNCTION_NOT_ALLOWED'],
    ['SETTINGS', `${HEAD} FROM $events GROUP BY customer_key SETTINGS readonly=0`, 'SQL_SETTINGS_NOT_ALLOWED'],
    ['FORMAT', `${HEAD} FROM $events GROUP BY customer_key FORMAT JSON`, 'SQL_FORMAT_NOT_ALLOWED'],
    ['a query parameter', `${HEAD} FROM $events WHERE customer_key = {tenant:UInt16} GROUP BY customer_key`, 'SQL_PARAMETER_NOT_ALLOWED'],
    ['INTO OUTFILE', `${HEAD} FROM $events GROUP BY customer_key INTO OUTFILE '/tmp/x'`, 'SQL_OUTFILE_NOT_ALLOWED'],
    ['a statement keyword', `${HEAD} FROM $events GROUP BY customer_key ALTER`, 'SQL_KEYWORD_NOT_ALLOWED'],
    ['naming tenant_id', `WITH 1 AS tenant_id ${HEAD} FROM $events GROUP BY customer_key`, 'SQL_IDENTIFIER_NOT_ALLOWED'],
    ['an unbalanced ) escaping the wrapper', `${HEAD} FROM $events GROUP BY customer_key) AS x, (SELECT 1`, 'SQL_SYNTAX'],
    ['an unclosed (', `${HEAD} FROM $events WHERE (1 GROUP BY customer_key`, 'SQL_SYNTAX'],
    ['an unclosed string', `${HEAD} FROM $events WHERE event = 'x GROUP BY customer_key`, 'SQL_SYNTAX'],
    // Constructs that ClickHouse reads differently from a naive lexer, each of which would hide
    // `FROM t` from the guard if it were read the naive way.
    ['a nested comment', `${HEAD} FROM $events /* /* */ ' */ FROM t --'\nGROUP BY customer_key`, 'SQL_SYNTAX'],
    ['a # comment', `${HEAD} FROM $events # '\n, t -- '\nGROUP BY customer_key`, 'SQL_CHARACTER_NOT_ALLOWED'],
    ['a heredoc', `${HEAD}, $x$ FROM t $x$ FROM $events GROUP BY customer_key`, 'SQL_SYNTAX'],
    ['a Unicode quote', `${HEAD}, \u2018 -- \u2019 FROM t GROUP BY customer_key`, 'SQL_CHARACTER_NOT_ALLOWED'],
    ['a $ inside a word', `${HEAD} FROM a$events GROUP BY customer_key`, 'SQL_SYNTAX'],
  ]
  it.each(rejected)('rejects %s', (_name, sql, code) => {
    expect(rejection(sql)).toEqual({ code: 'VALIDATION_FAILED', field: FIELD, issue: code })
  })

  it('defaults the issue field to rule.sql and says where the problem is', () => {
    try {
      guardSqlTag('SELECT 1 FROM t', SOURCES)
      expect.unreachable()
    } catch (e) {
      expect(isAppError(e) && e.issues).toEqual([expect.objectContaining({ field: 'rule.sql', code: 'SQL_TABLE_NOT_ALLOWED', position: 14 })])
    }
  })

  it('leaves literals and comments alone and wraps the SQL as a two-column read', () => {
    const g = guardSqlTag("SELECT customer_key, 'FROM system.tables; $events' AS value -- ; DROP\nFROM $events", SOURCES)
    expect(g.sources).toEqual(['events'])
    expect(g.sql).toBe(
      'SELECT toUInt32(customer_key) AS customer_key, value FROM (\n' +
        `SELECT customer_key, 'FROM system.tables; $events' AS value -- ; DROP\nFROM ${SOURCES.events} AS events\n)`,
    )
  })

  it('keeps the user alias of a source and renames user CTEs out of the table namespace', () => {
    const g = guardSqlTag('WITH t AS (SELECT customer_key FROM $events) SELECT e.customer_key, 1 AS value FROM $customers e JOIN t USING (customer_key)', SOURCES)
    expect(g.sources).toEqual(['events', 'customers'])
    expect(g.sql).toContain(`WITH \`cte$t\` AS (SELECT customer_key FROM ${SOURCES.events} AS events)`)
    expect(g.sql).toContain(`FROM ${SOURCES.customers} e JOIN \`cte$t\` AS t USING`)
  })
})

describe('guardSqlTag on the engine', () => {
  let engine: TestEngine
  const run = async (sql: string, tenant = 1) =>
    (await engine.db.system.query<{ customer_key: number; value: unknown }>(sql, { tenant })).map((r) => [r.customer_key, r.value])
  const guarded = (sql: string) => guardSqlTag(sql, SOURCES).sql

  beforeAll(async () => {
    engine = await openTestEngine({ migrate: false })
    const sys = engine.db.system
    await sys.command('CREATE TABLE t (tenant_id UInt16, customer_key UInt32, event String) ENGINE = MergeTree ORDER BY (tenant_id, customer_key)')
    await sys.command('CREATE TABLE c (tenant_id UInt16, customer_key UInt32, region String) ENGINE = MergeTree ORDER BY (tenant_id, customer_key)')
    await sys.command(
      "INSERT INTO t VALUES (1, 1, 'bill_paid'), (1, 1, 'bill_paid'), (1, 2, 'login'), (2, 1001, 'bill_paid'), (2, 1002, 'secret')",
    )
    await sys.command("INSERT INTO c VALUES (1, 1, 'north'), (1, 2, 'south'), (2, 1001, 'secret')")
  })
  afterAll(async () => engine?.close())

  it('reads only the bound tenant through a source', async () => {
    const sql = guarded(`${HEAD} FROM $events WHERE event = 'bill_paid' GROUP BY customer_key ORDER BY customer_key`)
    expect(await run(sql, 1)).toEqual([[1, 2]])
    expect(await run(sql, 2)).toEqual([[1001, 1]])
  })

  it('accepts literals that look like attacks, comments hiding ;, CTEs, joins and ARRAY JOIN', async () => {
    expect(await run(guarded("SELECT customer_key, 'FROM system.tables' AS value FROM $events WHERE event = 'login' -- ; FROM t"))).toEqual([
      [2, 'FROM system.tables'],
    ])
    const cte = `WITH paid AS (SELECT customer_key FROM $events WHERE event = 'bill_paid'), again AS (SELECT * FROM paid)
      SELECT customer_key, count() AS value FROM (SELECT * FROM again) /* ; */ WHERE customer_key IN paid GROUP BY customer_key`
    expect(await run(guarded(cte))).toEqual([[1, 2]])
    const join = `SELECT e.customer_key AS customer_key, any(k.region) AS value FROM $events AS e
      JOIN $customers k ON k.customer_key = e.customer_key WHERE e.customer_key IN (SELECT customer_key FROM $customers) GROUP BY customer_key ORDER BY customer_key`
    expect(await run(guarded(join))).toEqual([
      [1, 'north'],
      [2, 'south'],
    ])
    const arrays = `SELECT customer_key, sum(a * b) AS value FROM $events ARRAY JOIN [1, 2] AS a, [10, 20] AS b WHERE event = 'login' GROUP BY customer_key`
    expect(await run(guarded(arrays))).toEqual([[2, 50]])
  })

  it('turns a CTE scoping surprise into an error instead of a read of the real table', async () => {
    // With the global WITH off, ClickHouse resolves a CTE name inside a subquery to the real table
    // of that name. Unrenamed, the CTE below would read every tenant's rows of t.
    const raw = 'WITH t AS (SELECT 1 AS customer_key) SELECT customer_key, 1 AS value FROM (SELECT * FROM t)'
    const off = ' SETTINGS enable_global_with_statement = 0'
    expect((await run(raw + off)).length).toBe(5)
    const sql = guarded(`WITH t AS (SELECT customer_key FROM $events) SELECT customer_key, 1 AS value FROM (SELECT * FROM t)`)
    expect(await run(sql)).toHaveLength(3)
    await expect(run(sql + off)).rejects.toThrow(/cte\$t/)
    // A CTE reading itself reads the real table in ClickHouse; renamed, it reads nothing.
    await expect(run(guarded('WITH t AS (SELECT * FROM t) SELECT customer_key, 1 AS value FROM t'))).rejects.toThrow()
  })

  it('refuses tenant_id because the old analyzer lets a WITH alias replace it inside a source', async () => {
    const raw = `WITH 1 AS tenant_id SELECT customer_key, 1 AS value FROM ${SOURCES.events} AS events SETTINGS allow_experimental_analyzer = 0`
    expect((await run(raw)).length).toBe(5)
    expect(rejection('WITH 1 AS tenant_id SELECT customer_key, 1 AS value FROM $events')?.issue).toBe('SQL_IDENTIFIER_NOT_ALLOWED')
  })

  it('never lets random fragments reach a table except through a source (fuzz, checked by the engine)', async () => {
    // Sources without tables: whatever table the engine then resolves came from the user's text.
    const inert: SqlTagSources = {
      events: "(SELECT toUInt32(1) AS customer_key, 'bill_paid' AS event)",
      customers: "(SELECT toUInt32(1) AS customer_key, 'north' AS region)",
    }
    const heads = [HEAD, 'SELECT customer_key, event AS value', 'WITH t AS (SELECT customer_key, event FROM $events) SELECT customer_key, event AS value']
    const fragments = [
      ' FROM $events', ' FROM t', ' FROM (SELECT * FROM $events)', ' FROM $events AS e', ' FROM `t`', ' FROM (SELECT * FROM t)',
      ' FROM "t"', ' FROM qianmian.t',
      ' JOIN t USING (customer_key)', ' JOIN $customers USING (customer_key)', ', t', ', $customers', ' AS t', ' t', ' e',
      ' WHERE customer_key IN t', ' WHERE customer_key IN (t)', ' WHERE in(customer_key, t)', ' WHERE 1', " WHERE event = 'FROM t'",
      ' AND 1', " AND event != 'x'", ' GROUP BY customer_key, event', ' ARRAY JOIN [1, 2] AS a', ' UNION ALL ', ' LIMIT 1', ' SELECT customer_key, event AS value',
      " '", "''", '`', '"', ' --', '\n', ' /*', ' */', ' $', '\\', '#', ' $x$', ' (', ')', ',', ' \u2018', ' numbers(1)', ' tenant_id',
    ]
    let seed = 20250607
    const rand = (n: number) => {
      // mulberry32: a fixed seed keeps failures reproducible.
      seed = (seed + 0x6d2b79f5) | 0
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
      return ((x ^ (x >>> 14)) >>> 0) % n
    }
    let accepted = 0
    let analysed = 0
    for (let i = 0; i < 2000; i++) {
      let sql = heads[rand(heads.length)]! + fragments[rand(6)]!
      for (let n = rand(5); n > 0; n--) sql += fragments[rand(fragments.length)]!
      let out: string
      try {
        out = guardSqlTag(sql, inert).sql
      } catch (e) {
        if (!isAppError(e)) throw e
        continue
      }
      accepted++
      let tree: string
      try {
        tree = (await engine.db.system.query<{ explain: string }>(`EXPLAIN QUERY TREE ${out}`)).map((r) => r.explain).join('\n')
      } catch {
        continue // the engine refuses it: nothing is read
      }
      analysed++
      const tables = [...tree.matchAll(/table_name: (\S+)/g)].map((m) => m[1]).filter((name) => name !== 'system.one')
      expect({ sql, tables, functions: tree.includes('TABLE_FUNCTION') }).toEqual({ sql, tables: [], functions: false })
    }
    expect(accepted).toBeGreaterThan(300)
    expect(analysed).toBeGreaterThan(150)
  })
})
