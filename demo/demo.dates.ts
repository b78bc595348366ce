/**
 * Calendar helpers for the customer generator, which formats two dates per customer: at a
 * million customers, Date#toISOString was a third of its time, so these use integer arithmetic.
 */

const DAY = 86_400_000

/** Midnight UTC of the same calendar day `years` years before (29 February becomes 28 February). */
export function sameDayYearsAgo(y: number, m: number, d: number, years: number): number {
  const year = y - years
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
  return Date.UTC(year, m - 1, m === 2 && d === 29 && !leap ? 28 : d)
}

const pad2 = (n: number) => (n < 10 ? '0' : '') + n

/** YYYY-MM-DD of a UTC instant (civil-from-days, H. Hinnant). */
export function formatDate(ms: number): string {
  const z = Math.floor(ms / DAY) + 719_468
  const era = Math.floor(z / 146_097)
  const doe = z - era * 146_097
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365)
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1
  const m = mp < 10 ? mp + 3 : mp - 9
  return `${yoe + era * 400 + (m <= 2 ? 1 : 0)}-${pad2(m)}-${pad2(d)}`
}

/** `YYYY-MM-DD hh:mm:ss.sss` of a UTC instant, as chDateTime writes it. */
export function formatDateTime(ms: number): string {
  const t = Math.floor(ms)
  const r = t - Math.floor(t / DAY) * DAY
  const milli = r % 1000
  const sec = Math.floor(r / 1000)
  return `${formatDate(t)} ${pad2(Math.floor(sec / 3600))}:${pad2(Math.floor(sec / 60) % 60)}:${pad2(sec % 60)}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}`
}

