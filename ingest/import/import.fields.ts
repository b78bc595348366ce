import { z } from 'zod'
import { chDateTime, zonedToUtc } from '../../core/time.js'

/**
 * Column types of the bank's files. One parser per type, shared by every kind: a value arrives as
 * text (CSV, and Parquet/Arrow columns read as text by the engine) or as a JSON value (NDJSON),
 * and leaves in the form the ClickHouse column takes in JSONEachRow. A blank value (null, missing,
 * or only whitespace) is "absent": an error for a required column, the default otherwise.
 */

export class Invalid {
  constructor(readonly message: string) {}
}
const bad = (message: string) => new Invalid(message)

export interface FieldEnv {
  /** Zone of a date-time written without an offset: the tenant's for text, UTC for Parquet/Arrow. */
  zone: string
}

export interface Field<T> {
  readonly required: boolean
  readonly default?: T
  /** How the engine reads the column from Parquet/Arrow: as text, or as a Map turned into JSON text. */
  readonly landing: 'text' | 'map'
  readonly doc: string
  parse(value: unknown, env: FieldEnv): T | Invalid
}

function make<T>(doc: string, parse: Field<T>['parse'], landing: Field<T>['landing'] = 'text'): Field<T> {
  return { required: true, landing, doc, parse }
}

/** The column may be blank or missing; it is then stored as NULL. */
export function optional<T>(f: Field<T>): Field<T | null> {
  return { ...f, required: false }
}

/** The column may be blank or missing; it is then stored as `value`. */
export function orDefault<T>(f: Field<T>, value: T): Field<T> {
  return { ...f, required: false, default: value }
}

export const isBlank = (v: unknown) => v === null || v === undefined || (typeof v === 'string' && v.trim() === '')

/** The value as trimmed text; numbers and booleans (NDJSON, Parquet) become their text form. */
function asText(v: unknown): string | Invalid {
  if (typeof v === 'string') {
    const s = v.trim()
    // The engine turns bytes that are not UTF-8 into U+FFFD; a GBK export would otherwise be stored as garbage.
    if (s.includes('\uFFFD')) return bad('not valid UTF-8 (save the file as UTF-8, not GBK)')
    return s
  }
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return bad('not a finite number')
    if (Number.isInteger(v) && !Number.isSafeInteger(v)) return bad('a number too large to be exact: send it as a string')
    return String(v)
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  return bad(`expected a value, got ${Array.isArray(v) ? 'an array' : 'an object'}`)
}

// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL = /[\u0000-\u001f\u007f]/

/** A key or code: non-empty, no control characters, at most `max` characters. */
export function id(max = 64): Field<string> {
  return make(`identifier, at most ${max} characters`, (v) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    if (s.length > max) return bad(`longer than ${max} characters`)
    if (CONTROL.test(s)) return bad('contains control characters')
    return s
  })
}

/** Free text, stored as given (trimmed). */
export function text(max: number): Field<string> {
  return make(`text, at most ${max} characters`, (v) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    if (s.length > max) return bad(`longer than ${max} characters`)
    if (CONTROL.test(s.replace(/[\t\n\r]/g, ''))) return bad('contains control characters')
    return s
  })
}

/** One of `values`, case-insensitive; `aliases` maps other spellings (M, F, 男, 女 ...) onto them. */
export function oneOf<const V extends string>(values: readonly V[], aliases: Record<string, V> = {}): Field<V> {
  const lookup = new Map<string, V>()
  for (const v of values) lookup.set(v.toLowerCase(), v)
  for (const [k, v] of Object.entries(aliases)) lookup.set(k.toLowerCase(), v)
  return make(`one of ${values.join(', ')}`, (v) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    return lookup.get(s.toLowerCase()) ?? bad(`expected one of ${values.join(', ')}`)
  })
}

/** 0 or 1; also true/false, yes/no, y/n, 是/否. */
export function flag(): Field<0 | 1> {
  const map: Record<string, 0 | 1> = { '1': 1, '0': 0, true: 1, false: 0, yes: 1, no: 0, y: 1, n: 0, 是: 1, 否: 0 }
  return make('0 or 1 (true/false)', (v) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    return map[s.toLowerCase()] ?? bad('expected 0 or 1 (or true/false)')
  })
}

export function integer(min: number, max: number): Field<number> {
  return make(`integer ${min}..${max}`, (v) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    if (!/^[+-]?\d+$/.test(s)) return bad('expected an integer')
    const n = Number(s)
    if (n < min || n > max) return bad(`expected an integer between ${min} and ${max}`)
    return n
  })
}

export function number(min: number, max: number, hint?: string): Field<number> {
  return make(`number ${min}..${max}`, (v) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return bad('expected a number')
    const n = Number(s)
    if (n < min || n > max) return bad(`expected a number between ${min} and ${max}${hint ? ` (${hint})` : ''}`)
    return n
  })
}

/**
 * Money as Decimal(18, 2), kept as exact text. More than two decimals are refused unless they are
 * zeros or the float noise of a binary column (12.300000000000001), which rounds to the cent.
 */
export function money(min?: number): Field<string> {
  const MAX = 9_999_999_999_999_999n // 16 integer digits fit Decimal(18, 2)
  return make('decimal amount with at most 2 decimals', (v) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    const m = /^([+-]?)(\d+)(?:\.(\d*))?$/.exec(s) ?? /^([+-]?)()\.(\d+)$/.exec(s)
    let sign: string, whole: string, frac: string
    if (m) {
      sign = m[1] === '-' ? '-' : ''
      whole = m[2] || '0'
      frac = (m[3] ?? '').replace(/0+$/, '')
      if (frac.length > 2) {
        const n = Number(s)
        const cents = Math.round(n * 100)
        if (!Number.isSafeInteger(cents) || Math.abs(n * 100 - cents) > 1e-6) return bad('more than 2 decimal places')
        const a = Math.abs(cents)
        sign = cents < 0 ? '-' : ''
        whole = String(Math.trunc(a / 100))
        frac = String(a % 100).padStart(2, '0')
      }
    } else if (/^[+-]?\d+(\.\d+)?[eE][+-]?\d+$/.test(s)) {
      const cents = Math.round(Number(s) * 100)
      if (!Number.isSafeInteger(cents) || Math.abs(Number(s) * 100 - cents) > 1e-6) return bad('more than 2 decimal places')
      sign = cents < 0 ? '-' : ''
      whole = String(Math.trunc(Math.abs(cents) / 100))
      frac = String(Math.abs(cents) % 100).padStart(2, '0')
    } else {
      return bad('expected a decimal amount such as 1234.50 (no thousands separators)')
    }
    whole = whole.replace(/^0+(?=\d)/, '')
    if (BigInt(whole) > MAX) return bad('too large for Decimal(18, 2)')
    const out = `${sign}${whole}.${frac.padEnd(2, '0')}`
    if (min !== undefined && Number(out) < min) return bad(`must be at least ${min}`)
    return out === '-0.00' ? '0.00' : out
  })
}

const DATE_RE = /^(\d{4})(?:-(\d{1,2})-(\d{1,2})|\/(\d{1,2})\/(\d{1,2})|(\d{2})(\d{2}))$/
const DATE_TIME_RE =
  /^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i

const daysIn = (y: number, m: number) => new Date(Date.UTC(y, m, 0)).getUTCDate()
const validYmd = (y: number, m: number, d: number) => y >= 1900 && y <= 2299 && m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, m)
const pad = (n: number, w = 2) => String(n).padStart(w, '0')

/** A calendar date: YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD (a midnight time part is accepted). */
export function date(): Field<string> {
  return make('date YYYY-MM-DD (1900..2299)', (v) => {
    const s0 = asText(v)
    if (s0 instanceof Invalid) return s0
    // Binary formats may hold a date as a timestamp at midnight.
    const s = s0.replace(/[ T]00:00(:00(\.0+)?)?(Z|\+00:?00)?$/, '')
    const m = DATE_RE.exec(s)
    if (!m) return bad('expected a date YYYY-MM-DD')
    const y = Number(m[1])
    const mo = Number(m[2] ?? m[4] ?? m[6])
    const d = Number(m[3] ?? m[5] ?? m[7])
    if (!validYmd(y, mo, d)) return bad('not a calendar date between 1900-01-01 and 2299-12-31')
    return `${y}-${pad(mo)}-${pad(d)}`
  })
}

/**
 * An instant, stored in UTC. With an offset (Z, +08:00) it is exact; without one it is a local
 * time in `env.zone`. A bare date means its midnight.
 */
export function dateTime(): Field<string> {
  return make('date-time YYYY-MM-DD HH:MM:SS[.fff][Z|+08:00]; without an offset, in the tenant time zone', (v, env) => {
    const s = asText(v)
    if (s instanceof Invalid) return s
    const m = DATE_TIME_RE.exec(s)
    if (!m) return bad('expected a date-time YYYY-MM-DD HH:MM:SS (optionally with Z or +08:00)')
    const [y, mo, d, h, mi, se] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0)) as [number, number, number, number, number, number]
    const ms = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3))
    if (!validYmd(y, mo, d) || h > 23 || mi > 59 || se > 59) return bad('not a valid date-time between 1900 and 2299')
    const local = Date.UTC(y, mo - 1, d, h, mi, se, ms)
    let utc: number
    const zone = m[8]
    if (zone) {
      if (zone.toUpperCase() === 'Z') utc = local
      else {
        const z2 = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone)!
        const off = (Number(z2[2]) * 60 + Number(z2[3] ?? 0)) * (z2[1] === '-' ? -1 : 1)
        utc = local - off * 60_000
      }
    } else {
      utc = zonedToUtc(local, env.zone)
    }
    if (utc < Date.UTC(1900, 0, 1) || utc >= Date.UTC(2300, 0, 1)) return bad('outside 1900..2299')
    return chDateTime(utc)
  })
}

/** Key-value attributes: a JSON object (text in CSV, an object in NDJSON, a Map in Parquet/Arrow). */
export function stringMap(): Field<Record<string, string>> {
  return make(
    'JSON object of text values, e.g. {"term":"3y"}',
    (v) => {
      let obj: unknown = v
      if (typeof v === 'string') {
        try {
          obj = JSON.parse(v)
        } catch {
          return bad('expected a JSON object such as {"term":"3y"}')
        }
      }
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return bad('expected a JSON object such as {"term":"3y"}')
      const out: Record<string, string> = {}
      const entries = Object.entries(obj as Record<string, unknown>)
      if (entries.length > 100) return bad('more than 100 attributes')
      for (const [k, val] of entries) {
        if (k.length > 64 || CONTROL.test(k)) return bad(`attribute name ${JSON.stringify(k.slice(0, 64))} is invalid`)
        if (val === null || typeof val === 'object') return bad(`attribute ${k} must be text, a number or a boolean`)
        const s = String(val)
        if (s.length > 1000) return bad(`attribute ${k} is longer than 1000 characters`)
        out[k] = s
      }
      return out
    },
    'map',
  )
}

// ---------------------------------------------------------------------------------------------

export type Fields = Record<string, Field<unknown>>
export type RowOf<F extends Fields> = { [K in keyof F]: F[K] extends Field<infer T> ? T : never }

/** The zod schema of one row: every column parsed by its field, unknown columns refused. */
export function rowSchema<F extends Fields>(fields: F, env: FieldEnv): z.ZodType<RowOf<F>> {
  const shape: Record<string, z.ZodType> = {}
  for (const [name, f] of Object.entries(fields)) {
    // optional(): a column missing from an NDJSON row is absent, as a blank one (the default applies).
    shape[name] = z.unknown().optional().transform((v, ctx) => {
      if (isBlank(v)) {
        if (f.required) {
          ctx.addIssue({ code: 'custom', message: 'required' })
          return z.NEVER
        }
        return f.default ?? null
      }
      const r = f.parse(v, env)
      if (r instanceof Invalid) {
        ctx.addIssue({ code: 'custom', message: r.message })
        return z.NEVER
      }
      return r
    })
  }
  return z.strictObject(shape) as unknown as z.ZodType<RowOf<F>>
}
