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
  const guess = localMs - offsetAt(localMs, zone)
  return localMs - offsetAt(guess, zone)
}

/** The UTC instant of local midnight at the start of `day` (YYYY-MM-DD) in `zone`. */
export function zonedMidnight(day: string, zone: string): Date {
  return new Date(zonedToUtc(Date.parse(`${day}T00:00:00Z`), zone))
}
