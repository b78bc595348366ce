import { z } from 'zod'

/**
 * Timestamps are kept in UTC everywhere; these helpers format them the way ClickHouse's
 * DateTime64(3, 'UTC') and Date32 columns accept in JSONEachRow.
 */
export function chDateTime(d: Date | number): string {
  const x = typeof d === 'number' ? new Date(d) : d
  return x.toISOString().replace('T', ' ').replace('Z', '')
}

export function chDate(d: Date | number): string {
  const x = typeof d === 'number' ? new Date(d) : d
  return x.toISOString().slice(0, 10)
}

/** Local calendar date (YYYY-MM-DD) of an instant in a time zone such as Asia/Shanghai. */
// Building a formatter costs tens of microseconds; the layout path asks on every request.
const dayFormatters = new Map<string, Intl.DateTimeFormat>()

export function localDate(d: Date, timeZone: string): string {
  let f = dayFormatters.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
    dayFormatters.set(timeZone, f)
  }
  return f.format(d)
}

export const DAY_MS = 86_400_000

/** Calendar arithmetic on YYYY-MM-DD dates (no time zone involved). */
export function addDays(day: string, n: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + n * DAY_MS).toISOString().slice(0, 10)
}

export function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / DAY_MS)
}

/**
 * An instant as seconds with milliseconds ("1732800000.123"), which DateTime64(3) text parsing
 * accepts; five times cheaper to build than the ISO form on the ingest path.
 */
export function chEpoch(ms: number): string {
  return (ms / 1000).toFixed(3)
}

/**
 * An instant in a form DateTime64(3) text parsing reads. Seconds since the epoch are the cheap
 * form, but the engine reads a number as an epoch only with 9 or 10 integer digits (1973-03-03
 * to 2286-11-20); outside that (a decision dated 1950, say) the date-time form, which holds the
 * column's whole range.
 */
export function chInstant(ms: number): string {
  return ms >= 1e11 && ms < 1e13 ? chEpoch(ms) : chDateTime(ms)
}

/**
 * The instants a DateTime64 column holds: 1900-01-01 to 2299-12-31 UTC, the engine's documented
 * range. A time outside it, such as year 0 with an offset (which lands in year -1), is refused by
 * the engine or clamped, so it is refused at the edge with a 400 naming the field instead.
 */
export const MIN_INSTANT_MS = Date.UTC(1900, 0, 1)
export const MAX_INSTANT_MS = Date.UTC(2300, 0, 1) - 1
export const MIN_DAY = '1900-01-01'
export const MAX_DAY = '2299-12-31'
export const INSTANT_RANGE = `between ${MIN_DAY} and ${MAX_DAY}`

export function storableInstant(ms: number): boolean {
  return ms >= MIN_INSTANT_MS && ms <= MAX_INSTANT_MS
}

/**
 * An ISO 8601 date-time with a zone (Z or ±hh:mm) within the stored range, kept as the text
 * given. Every route that hands a caller's time to the engine takes it through this schema.
 */
export const instantSchema = z.iso
  .datetime({ offset: true, message: 'an ISO 8601 time with a zone, e.g. 2026-03-15T09:00:00+08:00' })
  // A malformed time has its message from the format check already: one issue, not two.
  .refine((s) => Number.isNaN(Date.parse(s)) || storableInstant(Date.parse(s)), { message: `a time ${INSTANT_RANGE} (UTC)` })

/**
 * A calendar date YYYY-MM-DD within the stored range. Its midnight in a zone east of UTC falls
 * hours before 1900, which the engine still reads as a query bound (only year -1 and the like,
 * from year 0, it refuses).
 */
export const daySchema = z.iso
  .date({ message: 'a date YYYY-MM-DD' })
  .refine((d) => d >= MIN_DAY && d <= MAX_DAY, { message: `a date ${INSTANT_RANGE}` })

/** An IANA time zone name the runtime knows (Asia/Shanghai, UTC ...). */
export const timeZoneSchema = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz })
      return true
    } catch {
      return false
    }
  },
  { message: 'expected an IANA time zone such as Asia/Shanghai' },
)

// Local time -> UTC without a time zone library. Intl gives a zone's offset at an instant; it is
// slow (microseconds), so the offset is cached per zone and local day, and computed per value
// only on a day when the offset changes (daylight saving, in the zones that have it).

const formatters = new Map<string, Intl.DateTimeFormat>()
const dayOffsets = new Map<string, number | null>()

function offsetAt(utcMs: number, zone: string): number {
  let f = formatters.get(zone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' })
    formatters.set(zone, f)
  }
  const p: Record<string, number> = {}
  for (const part of f.formatToParts(new Date(utcMs))) if (part.type !== 'literal') p[part.type] = Number(part.value)
  const asUtc = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!)
  return asUtc - Math.floor(utcMs / 1000) * 1000
}

/**
 * The instant a local wall-clock reading (`localMs`: the reading's fields as if UTC) names in
 * `zone`. A reading the clocks skip (spring forward) is taken at the offset before the change,
 * which is the first instant after the gap shifted by the gap's length: 02:30 where 02:00 jumps
 * to 03:00 is 03:30, as the engine's wall-clock conversion does (push/targeting.sql.ts
 * `wallClockSql`). So a result is never earlier than the clock says, and a day whose midnight is
 * skipped starts on that day (01:00), not an hour into the day before. A reading the clocks
 * repeat (fall back) is its first pass.
 */
export function zonedToUtc(localMs: number, zone: string): number {
  if (zone === 'UTC' || zone === 'Etc/UTC') return localMs
  const day = Math.floor(localMs / 86_400_000)
  const key = `${zone}\u0000${day}`
  let off = dayOffsets.get(key)
  if (off === undefined) {
    const a = offsetAt(day * 86_400_000 - 14 * 3_600_000, zone)
    const b = offsetAt((day + 1) * 86_400_000 + 14 * 3_600_000, zone)
    off = a === b ? a : null
    if (dayOffsets.size > 200_000) dayOffsets.clear()
    dayOffsets.set(key, off)
  }
  if (off !== null) return localMs - off
  // A day with a change: the offsets on either side of it, a day away from the reading.
  const before = offsetAt(localMs - 86_400_000, zone)
  const after = offsetAt(localMs + 86_400_000, zone)
  // A reading is valid at an offset when the instant it gives shows that offset.
  const valid = [before, after].filter((o) => offsetAt(localMs - o, zone) === o).map((o) => localMs - o)
  // Both valid: a repeated reading, its first pass is the earlier instant. None: a skipped one.
  return valid.length ? Math.min(...valid) : localMs - before
}

/** The UTC instant of local midnight at the start of `day` (YYYY-MM-DD) in `zone`. */
export function zonedMidnight(day: string, zone: string): Date {
  return new Date(zonedToUtc(Date.parse(`${day}T00:00:00Z`), zone))
}
