import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isAppError } from '../core/errors.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { readDefinitionFiles, BANKING_PACK } from './tag.pack.js'
import { SQL_TAG_FUNCTION_GROUPS } from './tag.sqlfunctions.js'
import { guardSqlTag, isAllowedFunction } from './tag.sqlguard.js'
import { SQL_TAG_SOURCES } from './tag.sources.js'

/**
 * The SQL-tag function allow-list against the engine's own list (system.functions): every name
 * on it exists, none tells about the server, and nothing outside the allowed groups is callable,
 * so a new engine version cannot widen it. The old deny-list let `hostName()`, `version()`,
 * `getSetting()`, `currentUser()` and `filesystemAvailable()` through, and `__getScalar()`,
 * which then failed every run.
 */

const ALLOWED_GROUPS = new Set([
  'Aggregate Functions', 'Arithmetic', 'Arrays', 'Bit', 'Bitmap', 'Comparison', 'Conditional', 'Dates and Times', 'Encoding', 'Hash', 'JSON',
  'Logical', 'Map', 'Mathematical', 'Null', 'Rounding', 'String', 'String Replacement', 'String Search', 'String Splitting', 'Tuple', 'Type Conversion',
])
const SERVER_INFORMATION = [
  'hostName', 'hostname', 'FQDN', 'fullHostName', 'version', 'revision', 'buildId', 'uptime', 'getSetting', 'getSettingOrDefault', 'getServerSetting',
  'getMergeTreeSetting', 'currentUser', 'user', 'authenticatedUser', 'currentDatabase', 'currentProfiles', 'currentRoles', 'filesystemAvailable',
  'filesystemCapacity', 'filesystemUnreserved', 'getMacro', 'serverUUID', 'getServerPort', 'tcpPort', 'getOSKernelVersion', 'timezone', 'serverTimezone',
  'queryID', 'initialQueryID', 'file', 'url', 's3', 'remote', 'input', 'dictGet', 'joinGet', '__getScalar', 'throwIf', 'sleep', 'rand', 'aiGenerate',
  'encrypt', 'decrypt', 'addressToSymbol', 'demangle',
]

type Fn = { name: string; alias_to: string; categories: string }
let engine: TestEngine
let fns: Fn[]
let tableFunctions: string[]
const byName = () => new Map(fns.map((f) => [f.name, f]))
/** The function a name stands for: itself, or what its alias points to. */
const canonical = (f: Fn, all: Map<string, Fn>) => (f.alias_to ? all.get(f.alias_to) ?? f : f)
const groups = (f: Fn) => f.categories.split(',').map((c) => c.trim()).filter(Boolean)

beforeAll(async () => {
  engine = await openTestEngine({ migrate: false })
  fns = await engine.db.system.query<Fn>('SELECT name, alias_to, categories FROM system.functions', {})
  tableFunctions = (await engine.db.system.query<{ name: string }>('SELECT name FROM system.table_functions', {})).map((r) => r.name)
}, 60_000)

afterAll(async () => {
  await engine?.close()
})

describe('the function allow-list against system.functions', () => {
  it('names only functions the engine has', () => {
    const all = byName()
    const missing = Object.values(SQL_TAG_FUNCTION_GROUPS).flat().filter((n) => !all.has(n))
    expect(missing).toEqual([])
  })

  it('accepts no function of the engine outside the allowed groups (aliases resolved), under any spelling of its case', () => {
    const all = byName()
    const widened = fns
      .filter((f) => isAllowedFunction(f.name) || isAllowedFunction(f.name.toUpperCase()) || isAllowedFunction(f.name.toLowerCase()))
      .filter((f) => {
        const c = canonical(f, all)
        const gs = groups(c)
        return gs.length === 0 || gs.some((g) => !ALLOWED_GROUPS.has(g))
      })
      .map((f) => f.name)
    expect(widened).toEqual([])
  })

  it('allows no server-information, file, network, dictionary or internal function, nor any table function', () => {
    expect(SERVER_INFORMATION.filter(isAllowedFunction)).toEqual([])
    expect(tableFunctions.length).toBeGreaterThan(20)
    expect(tableFunctions.filter(isAllowedFunction)).toEqual([])
    // Every engine function in the Other, Introspection or Internal groups: none allowed.
    const reserved = fns.filter((f) => groups(f).some((g) => ['Other', 'Introspection', 'Internal', 'Dictionary', 'AI', 'Encryption'].includes(g)))
    expect(reserved.length).toBeGreaterThan(100)
    expect(reserved.map((f) => f.name).filter(isAllowedFunction)).toEqual([])
  })

  it('allows aggregates with their combinators, and not a combinator on a function that is not an aggregate', () => {
    for (const n of ['sumIf', 'countIf', 'uniqExactIfState', 'groupArrayDistinct', 'argMaxIf', 'SUM', 'count', 'avgOrNull', 'sumForEach']) expect(isAllowedFunction(n), n).toBe(true)
    for (const n of ['hostNameIf', 'versionState', 'getSettingOrNull', 'fileIf', 'IfState', 'lowerIf']) expect(isAllowedFunction(n), n).toBe(false)
  })
})

describe('the guard refuses what the allow-list leaves out', () => {
  const refusal = (sql: string) => {
    try {
      guardSqlTag(sql, SQL_TAG_SOURCES)
      return undefined
    } catch (e) {
      if (!isAppError(e)) throw e
      return e.issues?.[0]?.code
    }
  }
  it.each(['hostName()', 'HOSTNAME()', 'version()', "getSetting('max_threads')", 'currentUser()', 'filesystemAvailable()', 'uptime()', "__getScalar('x')", 'serverUUID()', 'getOSKernelVersion()', 'tcpPort()', '`hostName`()'])(
    'refuses %s',
    (call) => {
      expect(refusal(`SELECT customer_key, ${call} AS value FROM $customers`)).toBe('SQL_FUNCTION_NOT_ALLOWED')
    },
  )

  it.each(['events', 'customers', 'Events', 'tag_values', 'accounts'])('refuses a CTE named %s', (name) => {
    expect(refusal(`WITH ${name} AS (SELECT customer_key FROM $events) SELECT customer_key, 1 AS value FROM ${name}`)).toBe('SQL_CTE_NAME_NOT_ALLOWED')
  })

  it('accepts every SQL tag of the banking pack and common tag SQL', () => {
    const sqls = readDefinitionFiles(BANKING_PACK).flatMap((d) => (d.rule.kind === 'sql' ? [d.rule.sql] : []))
    expect(sqls.length).toBeGreaterThan(0)
    for (const sql of sqls) expect(refusal(sql)).toBeUndefined()
    const common =
      "WITH recent AS (SELECT customer_key, countIf(event = 'x') AS n FROM $events WHERE timestamp > (SELECT as_of FROM $run) - INTERVAL 30 DAY GROUP BY customer_key) " +
      'SELECT r.customer_key, multiIf(n > 10, 3, n > 0, 2, 1) AS value FROM recent AS r JOIN $customers AS c USING (customer_key) ' +
      "WHERE NOT (c.region_code IN ('a', 'b')) AND toYear(c.birth_date) BETWEEN (1950) AND (2000) AND CAST(n AS Nullable(Int64)) IS NOT NULL " +
      'AND EXISTS (SELECT 1) ORDER BY coalesce(n, 0) DESC, row_number() OVER (PARTITION BY r.customer_key ORDER BY n)'
    expect(refusal(common)).toBeUndefined()
  })
})
