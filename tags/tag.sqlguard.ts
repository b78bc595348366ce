import { TENANT_TABLES } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { AGGREGATE_COMBINATORS, SQL_TAG_FUNCTION_GROUPS } from './tag.sqlfunctions.js'

/**
 * The guard in front of user-written SQL tags. The SQL is user text and the engine has no row
 * policies, so this is the tenant boundary: a tag may read only what the application's
 * `$source` subqueries expose (each bound to `{tenant:UInt16}`), and nothing of the server.
 *
 * It works on tokens, not regexes over raw text: a lexer that reads strings, quoted identifiers
 * and comments the way ClickHouse does, and that refuses every construct where two readings
 * could differ (`#` comments, `$tag$` heredocs, Unicode quotes, nested comments) rather than
 * guess. Then an allow-list of what may stand where a table can: FROM, JOIN, a comma of a FROM
 * list and IN (which ClickHouse also reads as a table: `k IN t`, `in(k, t)`) take a `$source`,
 * a subquery or the user's own CTE, and nothing else.
 *
 * Functions are allowed by name from tag.sqlfunctions.ts (aggregates, arithmetic, dates, strings,
 * JSON, conditionals, arrays, bitmaps ...); anything else called is refused, so a function a
 * new engine version adds, or one that tells about the server (`hostName()`, `version()`,
 * `getSetting()`), cannot be called. The deny-list below stays as a second, explicit line.
 *
 * User CTEs are renamed to `cte$name` in their definition and in table positions. Whether a CTE
 * is visible in a nested subquery or a later UNION branch depends on the engine's settings and
 * version; when it is not, ClickHouse silently falls back to a real table of that name. With the
 * rename the fallback finds no table (none has a `$`), so a scoping surprise is an error, never
 * a read, and a user CTE cannot shadow the tables the sources themselves read.
 */

export interface SqlTagSources {
  /** Source name without `$` -> SQL text of a parenthesised, tenant-scoped subquery. */
  [name: string]: string
}

export interface GuardedSql {
  sql: string
  /** The sources the SQL uses, in order of first use. */
  sources: string[]
}

export const SQL_TAG_MAX_LENGTH = 20_000

type Kind = 'space' | 'comment' | 'string' | 'quoted' | 'word' | 'number' | 'source' | 'punct'
interface Token {
  kind: Kind
  text: string
  /** Words and punctuation as written, quoted identifiers unescaped, sources without `$`. */
  name: string
  pos: number
}

type Fail = (code: string, message: string, pos?: number) => never

// Table functions and functions that reach outside the tenant's sources: files, the network,
// other databases, dictionaries, Join tables, other tables by name, server state. Lower case.
const DENIED_FUNCTION = new RegExp(
  '^(?:file|filecluster|url|urlcluster|s3.*|gcs|oss|cosn|azure.*|hdfs.*|remote.*|cluster.*|mysql|postgresql|mongodb|redis|' +
    'sqlite|jdbc|odbc|input|executable.*|dict.*|joinget.*|numbers.*|zeros.*|generaterandom.*|merge.*|view.*|loop|format|' +
    'fuzz.*|iceberg.*|deltalake.*|hudi.*|paimon.*|timeseries.*|prometheus.*|arrowflight|ytsaurus|catboost.*|sleep.*|' +
    'hascolumnintable|getmacro|getserversetting)$',
)
// `in(k, t)`, `notIn(k, t)`, `globalIn(k, t)`... read `t` as a table. The bare `IN` operator is
// checked by position instead; every other spelling of these functions is refused.
const SET_FUNCTION = /^(?:global)?(?:not)?(?:null)?in(?:ignoreset)?$/
const STATEMENT_WORDS = new Set(
  'insert alter drop create truncate rename attach detach grant revoke kill optimize system delete exchange undrop backup restore'.split(' '),
)
// Clauses after which a comma no longer separates tables (GROUP BY a, b; LIMIT 1, 2...).
const FROM_ENDS = new Set('where prewhere group having order limit offset qualify window union except intersect select fetch'.split(' '))
// Words that may follow a table expression; any other word there is the user's alias.
const AFTER_TABLE = new Set(
  ('where prewhere group having order limit offset qualify window union except intersect join inner left right full ' +
    'cross outer any all asof semi anti paste array global on using final sample settings format into local').split(' '),
)
const LITERAL_WORDS = new Set(['null', 'true', 'false', 'inf', 'nan'])
// Words that may stand before a parenthesis without calling a function (`EXISTS (SELECT ...)`,
// `OVER (PARTITION BY ...)`, `GROUP BY ROLLUP (...)`), and the data types of `CAST(x AS T(...))`.
const PAREN_KEYWORDS = new Set(
  ('in exists as from join using on and or not where prewhere select by over when then else case distinct all any having with ' +
    'union except intersect interval qualify limit offset between like ilike is window rollup cube sets values').split(' '),
)
const TYPE_CONSTRUCTORS = new Set(
  'nullable array tuple map lowcardinality decimal decimal32 decimal64 decimal128 decimal256 datetime datetime64 fixedstring enum enum8 enum16 nested'.split(' '),
)
// Function names compare without case: the engine's names that differ only by case are aliases
// of one function (tag.sqlfunctions.test.ts checks it against system.functions).
const ALLOWED_FUNCTIONS = new Set(Object.values(SQL_TAG_FUNCTION_GROUPS).flat().map((n) => n.toLowerCase()))
const AGGREGATES = new Set(SQL_TAG_FUNCTION_GROUPS.aggregate.map((n) => n.toLowerCase()))
const COMBINATORS = AGGREGATE_COMBINATORS.map((c) => c.toLowerCase()).sort((a, b) => b.length - a.length)

/** Whether a SQL tag may call `name`: an allow-listed function, or an aggregate with combinators. */
export function isAllowedFunction(name: string): boolean {
  let n = name.toLowerCase()
  if (ALLOWED_FUNCTIONS.has(n)) return true
  for (let i = 0; i < 6; i++) {
    const c = COMBINATORS.find((x) => n.endsWith(x) && n.length > x.length)
    if (!c) return false
    n = n.slice(0, -c.length)
    if (AGGREGATES.has(n)) return true
  }
  return false
}
// A user CTE may not take the name of a table or a source, even renamed: the name reads as
// the tenant's data to whoever reviews the tag, and it must not depend on the renaming.
const RESERVED_CTE_NAMES = new Set<string>([...TENANT_TABLES])
const WORD = /[A-Za-z_][A-Za-z0-9_]*/y
const DIGITS = /[0-9]+/y
const SPACE = /[ \t\n\r]+/y
const SOURCE = /\$([A-Za-z_][A-Za-z0-9_]*)/y

function lex(sql: string, fail: Fail): Token[] {
  const out: Token[] = []
  let i = 0
  const take = (kind: Kind, end: number, name?: string) => {
    out.push({ kind, text: sql.slice(i, end), name: name ?? sql.slice(i, end), pos: i })
    i = end
  }
  const sticky = (re: RegExp) => ((re.lastIndex = i), re.exec(sql))
  while (i < sql.length) {
    const c = sql[i]!
    let m: RegExpExecArray | null
    if ((m = sticky(SPACE))) take('space', i + m[0].length)
    else if (sql.startsWith('--', i)) take('comment', sql.includes('\n', i) ? sql.indexOf('\n', i) : sql.length)
    else if (sql.startsWith('/*', i)) {
      const end = sql.indexOf('*/', i + 2)
      if (end < 0) fail('SQL_SYNTAX', 'A /* comment is not closed.', i)
      // ClickHouse nests block comments, older lexers do not: refusing nesting keeps one reading.
      if (sql.slice(i + 2, end).includes('/*')) fail('SQL_SYNTAX', 'Nested /* comments are not allowed.', i)
      take('comment', end + 2)
    } else if (c === "'" || c === '`' || c === '"') {
      // One rule for the three quotes, as in ClickHouse: a backslash escapes the next character
      // and a doubled quote stands for itself. In identifiers ClickHouse decodes escapes
      // (`\x66ile` is `file`), so they are refused there rather than decoded a second way.
      let j = i + 1
      let name = ''
      for (;;) {
        if (j >= sql.length) fail('SQL_SYNTAX', `A ${c}-quoted ${c === "'" ? 'string' : 'identifier'} is not closed.`, i)
        const d = sql[j]!
        if (d === '\\' && c !== "'") fail('SQL_CHARACTER_NOT_ALLOWED', 'A quoted identifier may not contain a backslash.', j)
        const step = d === '\\' || (d === c && sql[j + 1] === c) ? 2 : 1
        if (d === c && step === 1) break
        name += step === 2 ? sql[j + 1] ?? '' : d
        j += step
      }
      take(c === "'" ? 'string' : 'quoted', j + 1, name)
    } else if ((m = sticky(WORD))) take('word', i + m[0].length)
    else if ((m = sticky(DIGITS))) take('number', i + m[0].length)
    else if (c === '$') {
      m = sticky(SOURCE)
      // `$tag$...$tag$` is a string in ClickHouse and `a$b` one identifier: refuse both forms.
      if (!m || sql[i + m[0].length] === '$' || /\w/.test(sql[i - 1] ?? ''))
        fail('SQL_SYNTAX', 'A $ must start a source name such as $events.', i)
      take('source', i + m[0].length, m[1])
    } else if (c === ';') fail('SQL_MULTIPLE_STATEMENTS', 'Only one statement is allowed: remove the ";".', i)
    else if (c === '{' || c === '}') fail('SQL_PARAMETER_NOT_ALLOWED', 'Query parameters ({name:Type}) are not allowed.', i)
    else if ('()[],.+-*/%=<>!:?|'.includes(c)) take('punct', i + 1)
    else fail('SQL_CHARACTER_NOT_ALLOWED', `The character ${JSON.stringify(c)} is only allowed inside string literals.`, i)
  }
  return out
}

/** Checks a SQL tag and returns it wrapped as a two-column read over the tenant's sources. */
export function guardSqlTag(userSql: string, sources: SqlTagSources, field = 'rule.sql'): GuardedSql {
  const fail: Fail = (code, message, pos) => {
    throw new AppError('VALIDATION_FAILED', message, { issues: [{ field, message, code, ...(pos === undefined ? {} : { position: pos }) }] })
  }
  if (userSql.length > SQL_TAG_MAX_LENGTH) fail('SQL_TOO_LONG', `The SQL is longer than ${SQL_TAG_MAX_LENGTH} characters.`)
  const tokens = lex(userSql, fail)
  const S = tokens.filter((t) => t.kind !== 'space' && t.kind !== 'comment')
  if (S.length === 0) fail('SQL_EMPTY', 'The SQL is empty.')
  const isWord = (t: Token | undefined, ...w: string[]) => t?.kind === 'word' && w.includes(t.name.toLowerCase())
  const isPunct = (t: Token | undefined, p: string) => t?.kind === 'punct' && t.name === p
  const isIdent = (t: Token | undefined) => t?.kind === 'word' || t?.kind === 'quoted'
  if (!isWord(S[0], 'select', 'with')) fail('SQL_NOT_SELECT', 'The SQL must be a SELECT (or start with WITH).', S[0]!.pos)

  // The application's filter columns (`tenant_id = {tenant:UInt16}`) may not be named at all: the
  // old analyzer lets a `WITH 1 AS tenant_id` alias replace the column inside the sources.
  const guarded = new Set(['tenant_id'])
  for (const text of Object.values(sources))
    for (const m of text.matchAll(/(\w+)\s*(?:=|==|!=|<>|\bIN\b)\s*\(?\s*\{|\}\s*(?:=|==)\s*(\w+)/gi)) guarded.add((m[1] ?? m[2]!).toLowerCase())

  // CTE definitions: `name AS (SELECT|WITH ...`, found first so that references before the
  // definition are renamed too (they then fail in the engine instead of reading a table).
  const ctes = new Set<string>()
  const opensSubquery = (j: number) => {
    while (isPunct(S[j], '(')) j++
    return isWord(S[j], 'select', 'with')
  }
  S.forEach((t, k) => {
    if (t.kind === 'word' && isWord(S[k + 1], 'as') && isPunct(S[k + 2], '(') && opensSubquery(k + 2)) {
      if (RESERVED_CTE_NAMES.has(t.name.toLowerCase()) || Object.hasOwn(sources, t.name.toLowerCase()))
        fail('SQL_CTE_NAME_NOT_ALLOWED', `A CTE may not be named ${t.name}: that is the name of a table or a $source.`, t.pos)
      ctes.add(t.name)
    }
  })
  const cteName = (name: string) => `\`cte$${name}\``

  const replace = new Map<Token, string>()
  const used: string[] = []
  const sourceSql = (t: Token) => {
    if (!Object.hasOwn(sources, t.name)) fail('SQL_UNKNOWN_SOURCE', `Unknown source $${t.name}.`, t.pos)
    if (!used.includes(t.name)) used.push(t.name)
    return sources[t.name]!
  }
  const userAlias = (t: Token | undefined) =>
    t?.kind === 'quoted' || (t?.kind === 'word' && !AFTER_TABLE.has(t.name.toLowerCase())) || isWord(t, 'as')
  const isCteRef = (j: number) => S[j]?.kind === 'word' && ctes.has(S[j]!.name) && !isPunct(S[j + 1], '.') && !isPunct(S[j - 1], '.')
  const tableHint = 'only a $source, a subquery or a CTE defined in this SQL can be read'

  /** The token at j follows FROM, JOIN or a comma of a FROM list. */
  const checkTable = (j: number) => {
    const t = S[j]
    if (!t) return
    const alias = userAlias(S[j + 1]) ? '' : ` AS ${t.name}`
    if (t.kind === 'source') replace.set(t, sourceSql(t) + alias)
    else if (isPunct(t, '(')) {
      if (!opensSubquery(j)) fail('SQL_TABLE_NOT_ALLOWED', `A parenthesis after FROM or JOIN must open a subquery: ${tableHint}.`, t.pos)
    } else if (isIdent(t) && isPunct(S[j + 1], '('))
      fail('SQL_FUNCTION_NOT_ALLOWED', `Table function ${t.name}() is not allowed: ${tableHint}.`, t.pos)
    else if (isCteRef(j)) replace.set(t, cteName(t.name) + alias)
    else fail('SQL_TABLE_NOT_ALLOWED', `${t.text} cannot be read directly: ${tableHint}.`, t.pos)
  }

  /** The token at j follows IN (or is the argument list of `in(...)`). */
  const checkIn = (j: number) => {
    const t = S[j]
    if (!t || t.kind === 'source') return
    if (isIdent(t) && isPunct(S[j + 1], '(')) {
      if (isWord(t, 'tuple', 'array')) return
      fail('SQL_FUNCTION_NOT_ALLOWED', `IN ${t.name}() is not allowed: IN takes a subquery, a $source, tuple() or array().`, t.pos)
    }
    if (isCteRef(j)) return void replace.set(t, cteName(t.name))
    if (isIdent(t)) fail('SQL_TABLE_NOT_ALLOWED', `IN ${t.text} reads a table: ${tableHint}.`, t.pos)
    if (!isPunct(t, '(') || opensSubquery(j)) return
    // A value list: every bare name in it would be read as a table, so only values, function
    // calls and CTEs may appear.
    for (let p = j + 1, depth = 1; p < S.length && depth > 0; p++) {
      const u = S[p]!
      if (isPunct(u, '(') || isPunct(u, '[')) depth++
      else if (isPunct(u, ')') || isPunct(u, ']')) depth--
      else if (!isIdent(u) || isPunct(S[p + 1], '(') || isWord(u, ...LITERAL_WORDS)) continue
      else if (isCteRef(p)) replace.set(u, cteName(u.name))
      else fail('SQL_TABLE_NOT_ALLOWED', `IN (${u.text}) reads a table: IN takes a subquery, a $source or a list of values.`, u.pos)
    }
  }

  // One frame per open bracket; `state` says whether commas at that level separate tables.
  const stack: { open: string; state: 'none' | 'from' | 'array' }[] = [{ open: '', state: 'none' }]
  S.forEach((t, k) => {
    const frame = stack[stack.length - 1]!
    const next = S[k + 1]
    if (t.kind === 'punct') {
      if (t.name === '(' || t.name === '[') stack.push({ open: t.name, state: 'none' })
      else if (t.name === ')' || t.name === ']') {
        if (stack.length === 1 || frame.open !== (t.name === ')' ? '(' : '['))
          fail('SQL_SYNTAX', `Unbalanced ${t.name}.`, t.pos)
        stack.pop()
      } else if (t.name === ',' && frame.state === 'from') checkTable(k + 1)
      return
    }
    if (t.kind === 'source') {
      if (!replace.has(t)) replace.set(t, sourceSql(t))
      return
    }
    if (!isIdent(t)) return
    const lower = t.name.toLowerCase()
    if (guarded.has(lower)) fail('SQL_IDENTIFIER_NOT_ALLOWED', `${t.text} is managed by the application and cannot be named.`, t.pos)
    if (isPunct(next, '(') && (DENIED_FUNCTION.test(lower) || (SET_FUNCTION.test(lower) && !isWord(t, 'in'))))
      fail('SQL_FUNCTION_NOT_ALLOWED', `The function ${t.name}() is not allowed in a SQL tag.`, t.pos)
    if (isPunct(next, '(') && !(t.kind === 'word' && PAREN_KEYWORDS.has(lower)) && !TYPE_CONSTRUCTORS.has(lower) && !isAllowedFunction(t.name))
      fail('SQL_FUNCTION_NOT_ALLOWED', `The function ${t.name}() is not on the list of functions a SQL tag may call.`, t.pos)
    if ((lower === 'system' || lower === 'information_schema') && isPunct(next, '.'))
      fail('SQL_TABLE_NOT_ALLOWED', `${t.text}.* cannot be read from a SQL tag.`, t.pos)
    if (t.kind === 'quoted') return
    if (STATEMENT_WORDS.has(lower)) fail('SQL_KEYWORD_NOT_ALLOWED', `${t.text} is not allowed: a SQL tag is a plain SELECT.`, t.pos)
    if (lower === 'settings') fail('SQL_SETTINGS_NOT_ALLOWED', 'A SETTINGS clause is not allowed.', t.pos)
    if (lower === 'format') fail('SQL_FORMAT_NOT_ALLOWED', 'A FORMAT clause is not allowed.', t.pos)
    if (lower === 'into' || lower === 'outfile') fail('SQL_OUTFILE_NOT_ALLOWED', 'INTO OUTFILE is not allowed.', t.pos)
    if (lower === 'from') {
      frame.state = 'from'
      checkTable(k + 1)
    } else if (lower === 'join') {
      // ARRAY JOIN takes array expressions, and its commas separate arrays, not tables.
      frame.state = isWord(S[k - 1], 'array') ? 'array' : 'from'
      if (frame.state === 'from') checkTable(k + 1)
    } else if (lower === 'in') checkIn(k + 1)
    else if (FROM_ENDS.has(lower)) frame.state = 'none'
    else if (ctes.has(t.name) && isWord(next, 'as') && isPunct(S[k + 2], '(')) replace.set(t, cteName(t.name))
  })
  if (stack.length !== 1) fail('SQL_SYNTAX', `Unbalanced ${stack[stack.length - 1]!.open}.`)

  const body = tokens.map((t) => replace.get(t) ?? t.text).join('')
  // The newline keeps a trailing `--` comment from swallowing the closing parenthesis.
  return { sql: `SELECT toUInt32(customer_key) AS customer_key, value FROM (\n${body}\n)`, sources: used }
}
