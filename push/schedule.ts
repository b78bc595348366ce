import { parse as parseCron } from 'node-cron'
import { addDays, localDate, zonedToUtc } from '../core/time.js'
import type { Schedule } from './campaign.schema.js'

/**
 * When a scheduled campaign's occurrence falls, for a targeting run at `asOf` in the tenant's
 * time zone. A run may come at any time of the day (after the morning tag run, on a timer, by
 * hand): it makes the targets of the local day's occurrence, due at the occurrence's time, so
 * they are released then; reruns later that day find them made and add only newcomers.
 *
 * - once: the local date of `at`, due at `at`; runs before that date do nothing. A run after
 *   `at` (the campaign approved, resumed or saved late) still makes it while `at` + the
 *   campaign's time to live has not passed: its targets keep the date of `at` (one per customer
 *   whatever the reruns) and go out at once. After that the occurrence has expired: a message
 *   for a moment long past is not sent days later.
 * - cron: one occurrence per local day (targets are one per customer and local date): the
 *   latest time of the day at or before `asOf`, or the first one after it. A day the cron does
 *   not match has none.
 * - active_hour: today, due at each customer's usual hour (computed in the engine).
 */

export type Occurrence =
  | { due: true; localDate: string; dueAt: Date | null }
  | { due: false; reason: 'not_yet' | 'not_today' | 'event_triggered' | 'expired' }

/** The UTC instants of a five-field cron's matches on a local date (ascending). */
export function cronTimes(cron: string, day: string, timeZone: string): Date[] {
  const f = parseCron(cron)
  const [y, mo, d] = day.split('-').map(Number) as [number, number, number]
  const weekday = new Date(Date.UTC(y, mo - 1, d)).getUTCDay()
  const lastDay = new Date(Date.UTC(y, mo, 0)).getUTCDate()
  const domOk = f.dayOfMonth.some((x) => (x === 'L' ? d === lastDay : Number(x) === d))
  const dowOk = f.dayOfWeek.some((x) => Number(x) % 7 === weekday)
  if (!f.month.includes(mo) || !domOk || !dowOk) return []
  const midnight = Date.UTC(y, mo - 1, d)
  const out: Date[] = []
  for (const h of [...f.hour].sort((a, b) => a - b)) {
    for (const m of [...f.minute].sort((a, b) => a - b)) out.push(new Date(zonedToUtc(midnight + (h * 60 + m) * 60_000, timeZone)))
  }
  return out
}

/** `ttlMinutes`: the campaign's time to live, which bounds how late a once occurrence is made. */
export function occurrenceOf(s: Schedule, asOf: Date, timeZone: string, ttlMinutes = Infinity): Occurrence {
  const today = localDate(asOf, timeZone)
  switch (s.kind) {
    case 'once': {
      const at = new Date(s.at)
      const day = localDate(at, timeZone)
      if (today < day) return { due: false, reason: 'not_yet' }
      if (asOf.getTime() >= at.getTime() + ttlMinutes * 60_000) return { due: false, reason: 'expired' }
      return { due: true, localDate: day, dueAt: at }
    }
    case 'cron': {
      const times = cronTimes(s.cron, today, timeZone)
      if (!times.length) return { due: false, reason: 'not_today' }
      const past = times.filter((t) => t.getTime() <= asOf.getTime())
      return { due: true, localDate: today, dueAt: past.length ? past[past.length - 1]! : times[0]! }
    }
    case 'active_hour':
      return { due: true, localDate: today, dueAt: null }
    case 'event':
      return { due: false, reason: 'event_triggered' }
  }
}

export interface Run {
  localDate: string
  at: Date
}

/** How far ahead `nextRuns` looks: a cron such as Feb 29 on a Monday matches once in years. */
const HORIZON_DAYS = 366 * 4

/**
 * The next `count` occurrences of a cron campaign from `from`, as the scheduler makes them: one
 * per local day, today's being the one a run now would make (it may lie before `from`: then it
 * is due at once), a later day's its first time (what a run early that day makes). The console's
 * calendar and cron field show these. A later day is taken by its date, not by an instant such as
 * its local midnight, which a zone that moves its clocks at 00:00 skips (the instant would fall
 * on the day before).
 */
export function nextRuns(cron: string, from: Date, count: number, timeZone: string): Run[] {
  const out: Run[] = []
  const first = localDate(from, timeZone)
  const today = occurrenceOf({ kind: 'cron', cron }, from, timeZone)
  if (today.due && today.dueAt) out.push({ localDate: today.localDate, at: today.dueAt })
  for (let i = 1; i < HORIZON_DAYS && out.length < count; i++) {
    const day = addDays(first, i)
    const [at] = cronTimes(cron, day, timeZone)
    if (at) out.push({ localDate: day, at })
  }
  return out.slice(0, count)
}
