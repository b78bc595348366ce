import { describe, expect, it } from 'vitest'
import { localDate, zonedMidnight, zonedToUtc } from './time.js'

/**
 * Local wall-clock readings to instants. A reading the clocks skip (spring forward) is the first
 * instant after the gap, shifted by the gap's length (02:30 where 02:00 jumps to 03:00 is 03:30),
 * as the engine's wall-clock conversion does (push/targeting.sql.ts wallClockSql): never earlier
 * than the clock says, so a day whose midnight is skipped starts at 01:00 of that day, not at
 * 23:00 of the day before. A reading the clocks repeat (fall back) is its first pass.
 */

const local = (s: string) => Date.parse(`${s}Z`)
const utc = (s: string) => new Date(zonedToUtc(local(s), ZONE)).toISOString()
let ZONE = ''

describe('zonedToUtc', () => {
  // [zone, local reading, instant, what it is]
  const table: [string, string, string, string][] = [
    ['UTC', '2026-03-08T02:30:00', '2026-03-08T02:30:00.000Z', 'no offset'],
    ['Asia/Shanghai', '2026-03-08T00:00:00', '2026-03-07T16:00:00.000Z', 'no daylight saving'],
    // New York: 02:00 EST -> 03:00 EDT on 03-08; 02:00 EDT -> 01:00 EST on 11-01.
    ['America/New_York', '2026-03-08T01:59:00', '2026-03-08T06:59:00.000Z', 'before the gap'],
    ['America/New_York', '2026-03-08T02:00:00', '2026-03-08T07:00:00.000Z', 'in the gap, at its start: 03:00 EDT'],
    ['America/New_York', '2026-03-08T02:30:00', '2026-03-08T07:30:00.000Z', 'in the gap: 03:30 EDT'],
    ['America/New_York', '2026-03-08T03:00:00', '2026-03-08T07:00:00.000Z', 'after the gap'],
    ['America/New_York', '2026-03-08T00:00:00', '2026-03-08T05:00:00.000Z', 'midnight before a gap'],
    ['America/New_York', '2026-11-01T00:59:00', '2026-11-01T04:59:00.000Z', 'before the repeat'],
    ['America/New_York', '2026-11-01T01:30:00', '2026-11-01T05:30:00.000Z', 'repeated: first pass (EDT)'],
    ['America/New_York', '2026-11-01T02:00:00', '2026-11-01T07:00:00.000Z', 'after the repeat'],
    // London: 01:00 GMT -> 02:00 BST on 03-29; 02:00 BST -> 01:00 GMT on 10-25.
    ['Europe/London', '2026-03-29T01:30:00', '2026-03-29T01:30:00.000Z', 'in the gap: 02:30 BST'],
    ['Europe/London', '2026-10-25T01:30:00', '2026-10-25T00:30:00.000Z', 'repeated: first pass (BST)'],
    // Havana: midnight skipped on 03-08 (00:00 -> 01:00), 01:00 -> 00:00 on 11-01.
    ['America/Havana', '2026-03-07T23:59:00', '2026-03-08T04:59:00.000Z', 'before a midnight gap'],
    ['America/Havana', '2026-03-08T00:00:00', '2026-03-08T05:00:00.000Z', 'skipped midnight: 01:00 CDT'],
    ['America/Havana', '2026-03-08T00:30:00', '2026-03-08T05:30:00.000Z', 'in a midnight gap'],
    ['America/Havana', '2026-11-01T00:30:00', '2026-11-01T04:30:00.000Z', 'repeated: first pass (CDT)'],
    // Santiago: midnight skipped on 09-06 (00:00 -> 01:00); 00:00 -> 23:00 of 04-04 on 04-05.
    ['America/Santiago', '2026-09-06T00:00:00', '2026-09-06T04:00:00.000Z', 'skipped midnight: 01:00 -03'],
    ['America/Santiago', '2026-04-04T23:30:00', '2026-04-05T02:30:00.000Z', 'repeated across midnight: first pass (-03)'],
    ['America/Santiago', '2026-04-05T00:00:00', '2026-04-05T04:00:00.000Z', 'after a repeat across midnight'],
    // Beirut: midnight skipped on 03-29.
    ['Asia/Beirut', '2026-03-29T00:00:00', '2026-03-28T22:00:00.000Z', 'skipped midnight: 01:00 +03'],
    // Lord Howe moves by half an hour: 02:00 -> 02:30 on 10-04.
    ['Australia/Lord_Howe', '2026-10-04T02:15:00', '2026-10-03T15:45:00.000Z', 'in a half-hour gap: 02:45 +11'],
    ['Australia/Lord_Howe', '2026-10-04T02:30:00', '2026-10-03T15:30:00.000Z', 'after a half-hour gap'],
  ]
  it.each(table)('%s %s is %s (%s)', (zone, reading, instant) => {
    ZONE = zone
    expect(utc(reading)).toBe(instant)
  })

  it('an instant found reads back as the same local time, outside gaps', () => {
    for (const [zone, reading, instant, what] of table) {
      if (/^in |^skipped/.test(what)) continue
      const f = new Intl.DateTimeFormat('sv-SE', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
      expect(f.format(new Date(instant)).replace(' ', 'T'), `${zone} ${reading}`).toBe(reading)
    }
  })
})

describe('zonedMidnight', () => {
  it('is on the day itself where the clocks skip midnight', () => {
    for (const [day, zone] of [
      ['2026-03-08', 'America/Havana'],
      ['2026-09-06', 'America/Santiago'],
      ['2026-03-29', 'Asia/Beirut'],
    ] as const) {
      const m = zonedMidnight(day, zone)
      expect(localDate(m, zone), `${zone} ${day}`).toBe(day)
      // The instant before is the day before: the day starts there.
      expect(localDate(new Date(m.getTime() - 1), zone), `${zone} ${day}`).not.toBe(day)
    }
  })

  it('is the first pass where midnight repeats', () => {
    // Santiago 2026-04-05: at 00:00 -03 the clocks go back to 23:00 -04 of 04-04, so 04-05's
    // midnight is read once, at 04:00Z; Havana's 00:xx of 11-01 twice, first at -04.
    expect(zonedMidnight('2026-04-05', 'America/Santiago').toISOString()).toBe('2026-04-05T04:00:00.000Z')
    expect(zonedMidnight('2026-11-01', 'America/Havana').toISOString()).toBe('2026-11-01T04:00:00.000Z')
  })
})
