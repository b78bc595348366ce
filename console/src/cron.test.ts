import { describe, expect, it } from 'vitest'
import { cronOnDay, occurrences, parseCron, zoned } from './cron.js'
import { fill } from './template-fill.js'
import type { Campaign } from './types.js'

const campaign = (id: string, schedule: Campaign['schedule'], extra: Partial<Campaign> = {}) =>
  ({ id, name: id, status: 'active', schedule, ...extra }) as Campaign

describe('the campaign calendar', () => {
  it('reads five-field crons with ranges, steps, lists and names', () => {
    const c = parseCron('*/15 9-10 * * mon-fri')
    expect(c.minute).toEqual([0, 15, 30, 45])
    expect(c.hour).toEqual([9, 10])
    expect(c.dow).toEqual([1, 2, 3, 4, 5])
    expect(parseCron('0 8 1,15 * 7').dow).toEqual([0])
    expect(() => parseCron('0 8 * *')).toThrow(/five fields/)
  })

  it('places a wall-clock time in the tenant zone', () => {
    expect(zoned('2026-03-02', 9, 0, 'Asia/Shanghai').toISOString()).toBe('2026-03-02T01:00:00.000Z')
    // Across a daylight-saving change the offset of the day itself applies.
    expect(zoned('2026-07-01', 9, 0, 'Europe/Berlin').toISOString()).toBe('2026-07-01T07:00:00.000Z')
  })

  it('matches a day only when day of month and weekday both match, as the server does', () => {
    const c = parseCron('0 9 1 * 1')
    expect(cronOnDay(c, '2026-06-01', 'UTC')).not.toBeNull() // a Monday, the 1st
    expect(cronOnDay(c, '2026-06-08', 'UTC')).toBeNull() // a Monday, not the 1st
    expect(cronOnDay(parseCron('30 7,18 L * *'), '2026-02-28', 'UTC')?.toISOString()).toBe('2026-02-28T07:30:00.000Z')
  })

  it('lists one occurrence per local day, within validity, none for event triggers', () => {
    const from = new Date('2026-06-01T00:00:00Z')
    const list = occurrences(
      [
        campaign('weekdays', { kind: 'cron', cron: '0 10 * * 1-5' }, { validUntil: '2026-06-04T00:00:00Z' }),
        campaign('once', { kind: 'once', at: '2026-06-03T02:00:00Z' }),
        campaign('hourly', { kind: 'active_hour' }),
        campaign('event', { kind: 'event', steps: [], withinMinutes: 5 }),
      ],
      from,
      7,
      'Asia/Shanghai',
    )
    expect(list.filter((o) => o.campaign.id === 'weekdays').map((o) => o.day)).toEqual(['2026-06-01', '2026-06-02', '2026-06-03'])
    expect(list.filter((o) => o.campaign.id === 'once').map((o) => o.day)).toEqual(['2026-06-03'])
    expect(list.filter((o) => o.campaign.id === 'hourly')).toHaveLength(7)
    expect(list.some((o) => o.campaign.id === 'event')).toBe(false)
  })
})

describe('filling a template for a sample customer', () => {
  it('uses values, then fallbacks, and marks what only targeting can fill', () => {
    const out = fill('{{name}}, {{loan.amount}} due {{loan.due_date|soon}} ({{tag.aum_tier}})', { name: '陈**', 'tag.aum_tier': 'mass' })
    expect(out.text).toBe('陈**, ⟨loan.amount⟩ due soon (mass)')
    expect(out.pending).toEqual(['loan.amount'])
  })
})
