import { AppError } from '../core/errors.js'

/**
 * A SQL tag may compute from C2 columns (an age band from birth_date, a balance tier) but its
 * value may not pass a C2 value through: `toString(birth_date) AS value` or `sum(balance) AS
 * value` would make the tag catalogue a way to read personal fields with a read key.
 *
 * The rule, on the SQL the guard (tag.sqlguard.ts) already accepted: a name is raw C2 when it is
 * one of the C2 columns the sources expose, or an alias (`… AS name`, in any subquery or CTE) of
 * an expression that passes one through. An expression passes its argument through when it is the
 * name itself, or a call of a function that keeps the value (conversions, rounding, min/max/sum/
 * any and their -If forms, argMax, coalesce, concat, if/multiIf branches …) around one. Anything
 * with an operator or another function (dateDiff, comparisons, intDiv, multiIf conditions) is a
 * derivation and allowed. The tag is refused when its `value` is raw C2.
 *
 * What this does not catch: a value rebuilt on purpose by arithmetic (`toYear(d) * 10000 + …`).
 * That takes intent; saving a tag is an audited admin action that names its holder.
 */

/** C2 columns of the SQL tag sources (sql/002, sql/003 comments; events' amount is a transaction amount). */
export const C2_SOURCE_COLUMNS: ReadonlySet<string> = new Set(['birth_date', 'balance', 'principal', 'outstanding', 'amount_due', 'amount_paid', 'amount'])

/** Functions whose result is their first argument's value, converted, rounded or aggregated. */
const KEEPS_FIRST = new Set([
  'tostring', 'tofixedstring', 'tofloat32', 'tofloat64', 'toint8', 'toint16', 'toint32', 'toint64', 'toint128', 'toint256',
  'touint8', 'touint16', 'touint32', 'touint64', 'todecimal32', 'todecimal64', 'todecimal128', 'todecimal256', 'todate', 'todate32',
  'todatetime', 'todatetime64', 'tonullable', 'assumenotnull', 'cast', 'accuratecast', 'accuratecastornull', 'round', 'roundbankers',
  'floor', 'ceil', 'trunc', 'formatdatetime', 'formatdecimal', 'tojsonstring', 'sum', 'avg', 'min', 'max', 'any', 'anylast', 'anyheavy',
  'argmax', 'argmin', 'median', 'quantile', 'quantileexact', 'grouparray', 'groupuniqarray', 'arrayjoin', 'identity', 'abs',
  'tostringcuttozero', 'totypename',
])
/** Functions whose result may be any of their arguments. */
const KEEPS_ANY = new Set(['coalesce', 'ifnull', 'concat', 'concatwithseparator', 'greatest', 'least', 'tuple', 'array', 'arrayconcat'])

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

/** Whether tokens [a, b) pass a raw C2 value through (see the rule above). */
function passes(ts: Tok[], a: number, b: number, raw: ReadonlySet<string>): boolean {
  // `x AS T` inside CAST, or a trailing alias: the expression is before AS.
  for (let i = a, depth = 0; i < b; i++) {
    const t = ts[i]!.t
    if (t === '(') depth++
    else if (t === ')') depth--
    else if (depth === 0 && lower(t) === 'as') b = i
  }
  if (b - a === 1) return raw.has(lower(ts[a]!.t))
  // A qualified name: t.birth_date
  if (b - a === 3 && ts[a + 1]!.t === '.' && isName(ts[a + 2]!.t)) return raw.has(lower(ts[a + 2]!.t))
  if (ts[a]!.t === '(' && ts[b - 1]!.t === ')' && closes(ts, a) === b - 1) return passes(ts, a + 1, b - 1, raw)
  if (isName(ts[a]!.t) && ts[a + 1]?.t === '(' && closes(ts, a + 1) === b - 1) {
    const f = lower(ts[a]!.t).replace(/(ornull|ordefault|distinct)$/, '')
    const args = splitArgs(ts, a + 2, b - 1)
    const arg = (k: number) => (args[k] ? passes(ts, args[k][0], args[k][1], raw) : false)
    if (f === 'if') return arg(1) || arg(2)
    if (f === 'multiif') return args.some((_, k) => (k % 2 === 1 || k === args.length - 1) && arg(k))
    if (KEEPS_ANY.has(f)) return args.some((_, k) => arg(k))
    const base = f.endsWith('if') && KEEPS_FIRST.has(f.slice(0, -2)) ? f.slice(0, -2) : f
    if (KEEPS_FIRST.has(base)) return arg(0)
  }
  return false
}

function closes(ts: Tok[], open: number): number {
  for (let i = open, depth = 0; i < ts.length; i++) {
    if (ts[i]!.t === '(') depth++
    else if (ts[i]!.t === ')' && --depth === 0) return i
  }
  return -1
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

/** Refuses a SQL tag whose value passes a C2 column through; `field` names the SQL in the answer. */
export function assertNoRawC2Value(sql: string, field = 'rule.sql'): void {
  const ts = tokens(sql)
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
