import { AppError } from '../core/errors.js'

/**
 * A SQL tag may compute from C2 columns (an age band from birth_date, a balance tier) but its
 * value may not pass a C2 value through: `toString(birth_date) AS value` or `sum(balance) AS
 * value` would make the tag catalogue a way to read personal fields with a read key.
 *
 * The rule, on the SQL the guard (tag.sqlguard.ts) already accepted: a name is raw C2 when it is
 * one of the C2 columns the sources expose, or an alias (`… AS name` or `… name`, in any subquery
 * or CTE) of an expression that passes one through. An expression passes a raw name through
 * unless the name reaches the result only through a derivation: a test (comparisons, IN, IS,
 * AND …), the condition of an if/multiIf, or a function that derives (dateDiff, age, count,
 * length …). Everything else keeps the value, including functions not listed here: a conversion,
 * an aggregate, a string or array function (`substring`, `lower`, `[x][1]`), arithmetic. Bands
 * are written as tests: `multiIf(balance >= 500000, 'high', …)`. The tag is refused when its
 * `value` is raw C2.
 *
 * What this does not catch: a value rebuilt on purpose from tests or derivations (a bit per
 * comparison). That takes intent; saving a tag is an audited admin action that names its holder.
 */

/** C2 columns of the SQL tag sources (sql/002, sql/003 comments; events' amount is a transaction amount). */
export const C2_SOURCE_COLUMNS: ReadonlySet<string> = new Set(['birth_date', 'balance', 'principal', 'outstanding', 'amount_due', 'amount_paid', 'amount'])

interface Tok {
  t: string
  pos: number
}

/** Names, punctuation and operators; strings, numbers and comments become one opaque token. */
function tokens(sql: string): Tok[] {
  const out: Tok[] = []
  const re = /\s+|--[^\n]*|\/\*[\s\S]*?\*\/|'(?:[^'\\]|\\.|'')*'|`(?:[^`\\]|\\.)*`|"(?:[^"\\]|\\.)*"|\d[\w.]*|[A-Za-z_][\w$]*|\$\w+|\S/g
  for (const m of sql.matchAll(re)) {
    const s = m[0]
    if (/^\s|^--|^\/\*/.test(s)) continue
    const name = s[0] === '`' || s[0] === '"' ? s.slice(1, -1) : s
    out.push({ t: s[0] === "'" || /^\d/.test(s) ? '\u0000lit' : name, pos: m.index })
  }
  return out
}

const isName = (s: string | undefined) => s !== undefined && /^[A-Za-z_][\w$]*$/.test(s)
const lower = (s: string) => s.toLowerCase()

/** Splits tokens [from, to) on commas at depth 0. */
function splitArgs(ts: Tok[], from: number, to: number): [number, number][] {
  const out: [number, number][] = []
  let depth = 0
  let start = from
  for (let i = from; i < to; i++) {
    const t = ts[i]!.t
    if (t === '(' || t === '[') depth++
    else if (t === ')' || t === ']') depth--
    else if (t === ',' && depth === 0) {
      out.push([start, i])
      start = i + 1
    }
  }
  if (to > start) out.push([start, to])
  return out
}

/**
 * Functions whose result tells something about their arguments without being their value: a
 * difference of dates, a count, a length, a test. A raw name inside one of these is derived.
 */
const DERIVES = new Set([
  'datediff', 'date_diff', 'age', 'count', 'countif', 'uniq', 'uniqexact', 'uniqif', 'uniqexactif', 'length', 'empty', 'notempty',
  'isnull', 'isnotnull', 'has', 'sign', 'equals', 'notequals', 'less', 'greater', 'lessorequals', 'greaterorequals', 'in', 'notin',
  'like', 'notlike', 'ilike', 'and', 'or', 'not',
])
/** Tokens that make a boolean of the operands beside them (`>` and `=` of `>=` are two tokens). */
const TESTS = new Set(['<', '>', '=', '!', 'like', 'ilike', 'in', 'between', 'is', 'and', 'or', 'not'])

/** Whether tokens [a, b) hold a test (a comparison, IN, IS, AND …) outside any bracket. */
function testsAtTop(ts: Tok[], a: number, b: number): boolean {
  for (let i = a, depth = 0; i < b; i++) {
    const t = lower(ts[i]!.t)
    if (t === '(' || t === '[') depth++
    else if (t === ')' || t === ']') depth--
    else if (depth === 0 && TESTS.has(t)) return true
  }
  return false
}

/** The bracket that encloses index i within [a, b), or -1. */
function opener(ts: Tok[], a: number, i: number): number {
  for (let j = i - 1, depth = 0; j >= a; j--) {
    const t = ts[j]!.t
    if (t === ')' || t === ']') depth++
    else if (t === '(' || t === '[') {
      if (depth === 0) return j
      depth--
    }
  }
  return -1
}

/** The end (exclusive) of the bracket group opened at `open`. */
function groupEnd(ts: Tok[], open: number, b: number): number {
  for (let i = open, depth = 0; i < b; i++) {
    const t = ts[i]!.t
    if (t === '(' || t === '[') depth++
    else if ((t === ')' || t === ']') && --depth === 0) return i
  }
  return b
}

/**
 * Whether the raw name at index i of the expression [a, b) reaches the result only through a
 * derivation: going out bracket by bracket, the argument holding it is a test, or the function
 * around it derives (DERIVES) or takes it as a condition (`if`'s first argument, `multiIf`'s
 * conditions). Anything else (a conversion, a string or array function, an index, arithmetic, a
 * function not known here) keeps the value: default deny.
 */
function derived(ts: Tok[], a: number, b: number, i: number): boolean {
  let at = i
  for (;;) {
    const open = opener(ts, a, at)
    const from = open < 0 ? a : open + 1
    const to = open < 0 ? b : groupEnd(ts, open, b)
    const args = splitArgs(ts, from, to)
    const k = args.findIndex(([x, y]) => at >= x && at < y)
    const [x, y] = args[k] ?? [from, to]
    if (testsAtTop(ts, x, y)) return true
    if (open < 0) return false
    const fn = ts[open]!.t === '(' && isName(ts[open - 1]?.t) ? lower(ts[open - 1]!.t).replace(/(ornull|ordefault|distinct)$/, '') : ''
    if (DERIVES.has(fn)) return true
    if (fn === 'if' && k === 0) return true
    if (fn === 'multiif' && k % 2 === 0 && k !== args.length - 1) return true
    at = fn ? open - 1 : open
  }
}

/** Whether tokens [a, b) pass a raw C2 value through (see the rule above). */
function passes(ts: Tok[], a: number, b: number, raw: ReadonlySet<string>): boolean {
  // `x AS T` inside CAST, or a trailing alias: the expression is before AS.
  for (let i = a, depth = 0; i < b; i++) {
    const t = ts[i]!.t
    if (t === '(') depth++
    else if (t === ')') depth--
    else if (depth === 0 && lower(t) === 'as') b = i
  }
  for (let i = a; i < b; i++) {
    const t = ts[i]!.t
    if (!raw.has(lower(t)) || ts[i + 1]?.t === '(' || ts[i + 1]?.t === '.') continue
    if (!derived(ts, a, b, i)) return true
  }
  return false
}

/** The start of the expression ending just before `as` at index i: back to a comma, SELECT or an open bracket at its depth. */
function exprStart(ts: Tok[], i: number): number {
  let depth = 0
  for (let j = i - 1; j >= 0; j--) {
    const t = ts[j]!.t
    if (t === ')') depth++
    else if (t === '(') {
      if (depth === 0) return j + 1
      depth--
    } else if (depth === 0 && (t === ',' || ['select', 'distinct', 'with'].includes(lower(t)))) return j + 1
  }
  return 0
}

/** Words that end an expression or start a clause: never an alias written without AS. */
const KEYWORDS = new Set([
  'select', 'distinct', 'from', 'where', 'prewhere', 'group', 'order', 'by', 'limit', 'offset', 'having', 'union', 'except', 'intersect',
  'all', 'any', 'join', 'inner', 'left', 'right', 'full', 'cross', 'outer', 'semi', 'anti', 'asof', 'global', 'array', 'on', 'using', 'as',
  'with', 'and', 'or', 'not', 'is', 'in', 'like', 'ilike', 'between', 'case', 'when', 'then', 'else', 'end', 'null', 'asc', 'desc',
  'nulls', 'first', 'last', 'over', 'partition', 'rows', 'range', 'window', 'qualify', 'settings', 'format', 'final', 'sample',
  'interval', 'collate', 'fill', 'totals', 'ties', 'filter', 'escape',
])

/** `expr name` is `expr AS name` to the engine: the same with the AS made explicit. */
function withImplicitAliases(ts: Tok[]): Tok[] {
  const out: Tok[] = []
  ts.forEach((tok, i) => {
    const prev = ts[i - 1]?.t
    const next = lower(ts[i + 1]?.t ?? ')')
    const ends = prev === ')' || prev === ']' || prev === '\u0000lit' || (isName(prev) && !KEYWORDS.has(lower(prev!)) && ts[i - 2]?.t !== 'as')
    if (isName(tok.t) && !KEYWORDS.has(lower(tok.t)) && ends && (next === ',' || next === 'from' || next === ')')) out.push({ t: 'as', pos: tok.pos })
    out.push(tok)
  })
  return out
}

/** Refuses a SQL tag whose value passes a C2 column through; `field` names the SQL in the answer. */
export function assertNoRawC2Value(sql: string, field = 'rule.sql'): void {
  const ts = withImplicitAliases(tokens(sql))
  const raw = new Set(C2_SOURCE_COLUMNS)
  // Aliases of aliases: repeat until nothing new is tainted.
  for (let changed = true; changed; ) {
    changed = false
    ts.forEach((tok, i) => {
      const alias = ts[i + 1]?.t
      if (lower(tok.t) !== 'as' || !isName(alias) || raw.has(lower(alias!)) || ts[i + 2]?.t === '(') return
      if (passes(ts, exprStart(ts, i), i, raw)) {
        raw.add(lower(alias!))
        changed = true
      }
    })
  }
  if (raw.has('value')) {
    const at = ts.find((t, i) => lower(t.t) === 'value' && lower(ts[i - 1]?.t ?? '') === 'as')
    const message = 'The tag value passes a C2 column (birth date, balance, amounts) through unchanged: compute a band or a flag from it instead.'
    throw new AppError('VALIDATION_FAILED', message, { issues: [{ field, message, code: 'SQL_C2_VALUE', ...(at ? { position: at.pos } : {}) }] })
  }
}
