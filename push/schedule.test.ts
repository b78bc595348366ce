import { describe, expect, it } from 'vitest'
import { defaultPolicy, inQuiet, localMinute, minutesOf, policyInput } from './policy.js'
import { cronTimes, nextRuns, occurrenceOf } from './schedule.js'

/** When occurrences fall in the tenant's zone, and the policy's defaults. */

const iso = (ds: Date[]) => ds.map((d) => d.toISOString())

describe('schedules', () => {
  it("lists a cron's times on a local day in the tenant's zone", () => {
    // Monday 2026-03-16; 09:00 and 18:00 in Shanghai are 01:00 and 10:00 UTC.
    expect(iso(cronTimes('0 9,18 * * 1-5', '2026-03-16', 'Asia/Shanghai'))).toEqual(['2026-03-16T01:00:00.000Z', '2026-03-16T10:00:00.000Z'])
    expect(cronTimes('0 9,18 * * 1-5', '2026-03-15', 'Asia/Shanghai')).toEqual([])
    expect(iso(cronTimes('30 8 L * *', '2026-02-28', 'UTC'))).toEqual(['2026-02-28T08:30:00.000Z'])
    expect(cronTimes('30 8 L * *', '2026-02-27', 'UTC')).toEqual([])
    // New York in summer time: 09:00 is 13:00 UTC.
    expect(iso(cronTimes('0 9 * * *', '2026-07-01', 'America/New_York'))).toEqual(['2026-07-01T13:00:00.000Z'])
  })

  it('takes the latest time of the day already passed, else the next one; once on its date', () => {
    const cron = { kind: 'cron' as const, cron: '0 9,18 * * *' }
    expect(occurrenceOf(cron, new Date('2026-03-16T00:30:00Z'), 'Asia/Shanghai')).toEqual({ due: true, localDate: '2026-03-16', dueAt: new Date('2026-03-16T01:00:00Z') })
    expect(occurrenceOf(cron, new Date('2026-03-16T05:00:00Z'), 'Asia/Shanghai')).toEqual({ due: true, localDate: '2026-03-16', dueAt: new Date('2026-03-16T01:00:00Z') })
    expect(occurrenceOf(cron, new Date('2026-03-16T11:00:00Z'), 'Asia/Shanghai')).toMatchObject({ dueAt: new Date('2026-03-16T10:00:00Z') })
    const once = { kind: 'once' as const, at: '2026-03-20T09:00:00+08:00' }
    expect(occurrenceOf(once, new Date('2026-03-19T10:00:00Z'), 'Asia/Shanghai')).toEqual({ due: false, reason: 'not_yet' })
    expect(occurrenceOf(once, new Date('2026-03-19T17:00:00Z'), 'Asia/Shanghai')).toMatchObject({ due: true, localDate: '2026-03-20' })
    expect(occurrenceOf({ kind: 'event', steps: [{ event: { names: ['x'] } }], withinMinutes: 5 }, new Date(), 'UTC')).toEqual({ due: false, reason: 'event_triggered' })
  })
})

describe('once, late', () => {
  it('is due until its time to live from `at` has passed, on the date of `at`, then expired', () => {
    const once = { kind: 'once' as const, at: '2026-03-10T09:00:00+08:00' }
    // Three hours of a four-hour time to live gone: due, on its own date.
    expect(occurrenceOf(once, new Date('2026-03-10T04:00:00Z'), 'Asia/Shanghai', 240)).toEqual({ due: true, localDate: '2026-03-10', dueAt: new Date('2026-03-10T01:00:00Z') })
    expect(occurrenceOf(once, new Date('2026-03-10T05:00:00Z'), 'Asia/Shanghai', 240)).toEqual({ due: false, reason: 'expired' })
    expect(occurrenceOf(once, new Date('2026-03-22T01:00:00Z'), 'Asia/Shanghai', 1440)).toEqual({ due: false, reason: 'expired' })
  })
})

describe('schedule preview', () => {
  it('gives each local day once where the day does not begin at midnight', () => {
    // America/Santiago moves from 00:00 to 01:00 on 2026-09-06: that day has no midnight.
    const runs = nextRuns('0 9 * * *', new Date('2026-09-04T15:00:00Z'), 4, 'America/Santiago')
    expect(runs.map((r) => [r.localDate, r.at.toISOString()])).toEqual([
      ['2026-09-04', '2026-09-04T13:00:00.000Z'],
      ['2026-09-05', '2026-09-05T13:00:00.000Z'],
      ['2026-09-06', '2026-09-06T12:00:00.000Z'],
      ['2026-09-07', '2026-09-07T12:00:00.000Z'],
    ])
    // A later day's run is its first time, as a run at the start of that day makes it.
    expect(nextRuns('0 9,18 * * *', new Date('2026-09-05T23:30:00Z'), 2, 'America/Santiago').map((r) => r.at.toISOString())).toEqual(['2026-09-05T22:00:00.000Z', '2026-09-06T12:00:00.000Z'])
  })
})

describe('policy', () => {
  it('defaults to quiet 21:00-08:00, consent-free security, and caps by class', () => {
    expect(defaultPolicy()).toMatchObject({ version: 0, quietHours: { start: '21:00', end: '08:00' }, consent: { service: 'unless_refused', security: 'always' }, maxAttempts: 5 })
    expect(policyInput.parse({ caps: { low: { day: 0, week: 0 } } }).caps).toMatchObject({ low: { day: 0, week: 0 }, normal: { day: 2, week: 6 } })
    expect(policyInput.safeParse({ quietHours: { start: '08:00', end: '08:00' } }).success).toBe(false)
  })

  it('tells quiet minutes at pull time, across midnight or not, in the local clock', () => {
    expect([minutesOf('00:00'), minutesOf('08:00'), minutesOf('21:30'), minutesOf('23:59')]).toEqual([0, 480, 1290, 1439])
    const night = { start: '21:00', end: '08:00' }
    expect(['20:59', '21:00', '03:00', '07:59', '08:00'].map((m) => inQuiet(minutesOf(m), night))).toEqual([false, true, true, true, false])
    const noon = { start: '12:00', end: '13:30' }
    expect(['11:59', '12:00', '13:29', '13:30'].map((m) => inQuiet(minutesOf(m), noon))).toEqual([false, true, true, false])
    expect(inQuiet(0, null)).toBe(false)
    expect(localMinute(new Date('2026-03-15T14:05:00Z'), 'Asia/Shanghai')).toBe(22 * 60 + 5)
    expect(localMinute(new Date('2026-03-15T14:05:00Z'), 'Asia/Kolkata')).toBe(19 * 60 + 35)
  })
})
