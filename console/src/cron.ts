import type { Campaign } from './types.js'

/**
 * The campaign calendar: when each campaign's next occurrences fall, in the tenant's time zone.
 * It mirrors push/schedule.ts, which decides for real: a cron campaign has at most one
 * occurrence per local day, and a day matches when its day of month AND its weekday match (as
 * node-cron reads the five fields, not classic cron's OR).
 */

interface Cron {
  minute: number[]
  hour: number[]
  dom: number[]
  lastDom: boolean
  month: number[]
  dow: number[]
}

const NAMES: Record<string, number> = {
  jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12,
  sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6,
}

function field(text: string, lo: number, hi: number): number[] {
  const out = new Set<number>()
  const num = (s: string) => {
    const n = NAMES[s.toLowerCase()] ?? Number(s)
    if (!Number.isInteger(n)) throw new Error(`not a cron value: ${s}`)
    return n
  }
  for (const part of text.split(',')) {
    const [range = '', stepText] = part.split('/')
    const step = stepText === undefined ? 1 : Number(stepText)
    if (!Number.isInteger(step) || step < 1) throw new Error(`not a cron step: ${part}`)
    let a = lo
    let b = hi
    if (range !== '*') {
      const [x = '', y] = range.split('-')
      a = num(x)
      b = y === undefined ? (stepText === undefined ? a : hi) : num(y)
    }
    for (let v = a; v <= b; v += step) out.add(v)
  }
  return [...out].sort((x, y) => x - y)
}

export function parseCron(expr: string): Cron {
  const f = expr.trim().split(/\s+/)
  if (f.length !== 5) throw new Error('a cron has five fields: minute hour day month weekday')
  const [mi = '', ho = '', dm = '', mo = '', dw = ''] = f
  const lastDom = dm.split(',').includes('L')
  const domText = dm.split(',').filter((x) => x !== 'L').join(',')
  return {
    minute: field(mi, 0, 59),
    hour: field(ho, 0, 23),
    dom: domText ? field(domText, 1, 31) : [],
    lastDom,
    month: field(mo, 1, 12),
    dow: field(dw, 0, 7).map((d) => d % 7),
  }
}

/** YYYY-MM-DD of an instant in a time zone. */
export function localDay(at: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(at)
}

/** The zone's offset from UTC at an instant, in minutes. */
function offsetMinutes(at: number, timeZone: string): number {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' })
      .formatToParts(new Date(at))
      .map((p) => [p.type, p.value]),
  )
  const asUtc = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day), Number(parts.hour), Number(parts.minute))
  return Math.round((asUtc - Math.floor(at / 60_000) * 60_000) / 60_000)
}

/** The instant of a wall-clock time on a local day in a zone. */
export function zoned(day: string, hour: number, minute: number, timeZone: string): Date {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number]
  const wall = Date.UTC(y, m - 1, d, hour, minute)
  // Twice: the offset at the first guess may differ from the offset at the answer near a change.
  let t = wall - offsetMinutes(wall, timeZone) * 60_000
  t = wall - offsetMinutes(t, timeZone) * 60_000
  return new Date(t)
}

export function addDays(day: string, n: number): string {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number]
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10)
}

/** The first time a cron matches on a local day, or null when the day does not match. */
export function cronOnDay(c: Cron, day: string, timeZone: string): Date | null {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number]
  const weekday = new Date(Date.UTC(y, m - 1, d)).getUTCDay()
  const lastDay = new Date(Date.UTC(y, m, 0)).getUTCDate()
  const domOk = c.dom.includes(d) || (c.lastDom && d === lastDay)
  if (!c.month.includes(m) || !domOk || !c.dow.includes(weekday)) return null
  return zoned(day, c.hour[0]!, c.minute[0]!, timeZone)
}

export interface Occurrence {
  day: string
  /** null: each customer's own hour (active_hour campaigns). */
  at: Date | null
  campaign: Campaign
}

/** Occurrences of the campaigns on the `days` local days from `from`; event-triggered ones have none. */
export function occurrences(campaigns: readonly Campaign[], from: Date, days: number, timeZone: string): Occurrence[] {
  const first = localDay(from, timeZone)
  const out: Occurrence[] = []
  for (const c of campaigns) {
    if (c.status === 'retired') continue
    const s = c.schedule
    const valid = (at: Date | null, day: string) => {
      const t = at?.getTime() ?? zoned(day, 12, 0, timeZone).getTime()
      return (!c.validFrom || t >= Date.parse(c.validFrom)) && (!c.validUntil || t <= Date.parse(c.validUntil))
    }
    if (s.kind === 'once') {
      const at = new Date(s.at)
      const day = localDay(at, timeZone)
      if (day >= first && day < addDays(first, days)) out.push({ day, at, campaign: c })
      continue
    }
    let cron: Cron | undefined
    if (s.kind === 'cron') {
      try {
        cron = parseCron(s.cron)
      } catch {
        continue
      }
    }
    if (s.kind !== 'cron' && s.kind !== 'active_hour') continue
    for (let i = 0; i < days; i++) {
      const day = addDays(first, i)
      const at = cron ? cronOnDay(cron, day, timeZone) : null
      if (cron && !at) continue
      if (valid(at, day)) out.push({ day, at, campaign: c })
    }
  }
  return out.sort((a, b) => a.day.localeCompare(b.day) || (a.at?.getTime() ?? 0) - (b.at?.getTime() ?? 0))
}
