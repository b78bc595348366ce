/**
 * Days and wall-clock times in the bank's time zone, for what the console shows and the dates a
 * marketer types. When a schedule runs is the server's to say (POST /v1/push/schedules/preview).
 */

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

/** The instant of a wall-clock time on a local day in a zone (a "once" schedule typed as date and time). */
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
