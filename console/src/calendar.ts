import type { Campaign, SchedulePreview } from './types.js'
import { addDays, localDay, zoned } from './zone.js'

/**
 * The campaign calendar: which campaigns fall on which of the next local days. When a cron
 * campaign runs comes from the server (POST /v1/push/schedules/preview, the scheduler's own
 * rule: one occurrence per local day), given here as `runs` by cron; the console only lays the
 * answers out and keeps each campaign within its validity.
 */

export type Runs = SchedulePreview['runs']

export interface Occurrence {
  day: string
  /** null: each customer's own hour (active_hour campaigns). */
  at: Date | null
  campaign: Campaign
}

/** The crons whose runs the calendar needs, each once. */
export const cronsOf = (campaigns: readonly Campaign[]): string[] =>
  [...new Set(campaigns.flatMap((c) => (c.status !== 'retired' && c.schedule.kind === 'cron' ? [c.schedule.cron] : [])))]

/** Occurrences on the `days` local days from `from`; event-triggered campaigns have none, nor a cron the server did not answer for. */
export function occurrences(campaigns: readonly Campaign[], runs: ReadonlyMap<string, Runs>, from: Date, days: number, timeZone: string): Occurrence[] {
  const first = localDay(from, timeZone)
  const last = addDays(first, days)
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
      if (day >= first && day < last) out.push({ day, at, campaign: c })
    } else if (s.kind === 'cron') {
      for (const r of runs.get(s.cron) ?? []) {
        const at = new Date(r.at)
        if (r.localDate >= first && r.localDate < last && valid(at, r.localDate)) out.push({ day: r.localDate, at, campaign: c })
      }
    } else if (s.kind === 'active_hour') {
      for (let i = 0; i < days; i++) {
        const day = addDays(first, i)
        if (valid(null, day)) out.push({ day, at: null, campaign: c })
      }
    }
  }
  return out.sort((a, b) => a.day.localeCompare(b.day) || (a.at?.getTime() ?? 0) - (b.at?.getTime() ?? 0))
}
