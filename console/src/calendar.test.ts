import { describe, expect, it } from 'vitest'
import { occurrences, cronsOf, type Runs } from './calendar.js'
import type { Campaign } from './types.js'
import { zoned } from './zone.js'

const campaign = (id: string, schedule: Campaign['schedule'], extra: Partial<Campaign> = {}) => ({ id, name: id, status: 'active', schedule, ...extra }) as Campaign

describe('the campaign calendar', () => {
  it('places a wall-clock time in the tenant zone', () => {
    expect(zoned('2026-03-02', 9, 0, 'Asia/Shanghai').toISOString()).toBe('2026-03-02T01:00:00.000Z')
    // Across a daylight-saving change the offset of the day itself applies.
    expect(zoned('2026-07-01', 9, 0, 'Europe/Berlin').toISOString()).toBe('2026-07-01T07:00:00.000Z')
  })

  it("lays out the server's runs of each cron, once, and each day of an active-hour campaign, within validity", () => {
    const from = new Date('2026-06-01T00:00:00Z')
    const weekdays: Runs = ['2026-06-01', '2026-06-02', '2026-06-03', '2026-06-04', '2026-06-05', '2026-06-08'].map((d) => ({ localDate: d, at: `${d}T02:00:00.000Z` }))
    const list = occurrences(
      [
        campaign('weekdays', { kind: 'cron', cron: '0 10 * * 1-5' }, { validUntil: '2026-06-04T00:00:00Z' }),
        campaign('same-cron', { kind: 'cron', cron: '0 10 * * 1-5' }),
        campaign('unanswered', { kind: 'cron', cron: '0 10 * * 6' }),
        campaign('once', { kind: 'once', at: '2026-06-03T02:00:00Z' }),
        campaign('hourly', { kind: 'active_hour' }),
        campaign('event', { kind: 'event', steps: [], withinMinutes: 5 }),
        campaign('retired', { kind: 'cron', cron: '0 9 * * *' }, { status: 'retired' }),
      ],
      new Map([['0 10 * * 1-5', weekdays]]),
      from,
      7,
      'Asia/Shanghai',
    )
    expect(list.filter((o) => o.campaign.id === 'weekdays').map((o) => o.day)).toEqual(['2026-06-01', '2026-06-02', '2026-06-03'])
    // Past the seventh day (2026-06-08 is the eighth) nothing is shown.
    expect(list.filter((o) => o.campaign.id === 'same-cron').map((o) => o.day)).toEqual(['2026-06-01', '2026-06-02', '2026-06-03', '2026-06-04', '2026-06-05'])
    expect(list.find((o) => o.campaign.id === 'same-cron')?.at?.toISOString()).toBe('2026-06-01T02:00:00.000Z')
    expect(list.some((o) => o.campaign.id === 'unanswered')).toBe(false)
    expect(list.filter((o) => o.campaign.id === 'once').map((o) => o.day)).toEqual(['2026-06-03'])
    expect(list.filter((o) => o.campaign.id === 'hourly')).toHaveLength(7)
    expect(list.some((o) => o.campaign.id === 'event' || o.campaign.id === 'retired')).toBe(false)
  })

  it('asks for each cron once, retired campaigns left out', () => {
    const cs = [campaign('a', { kind: 'cron', cron: '0 9 * * *' }), campaign('b', { kind: 'cron', cron: '0 9 * * *' }), campaign('c', { kind: 'cron', cron: '0 8 * * *' }, { status: 'retired' }), campaign('d', { kind: 'active_hour' })]
    expect(cronsOf(cs)).toEqual(['0 9 * * *'])
  })
})
