import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { localDate } from '../core/time.js'
import { campaign, keysWith, openPush, seedBank, targetsOf, type PushFixture } from './push.fixture.js'

/**
 * A `once` campaign targeted after its time (approved, resumed or saved late), on the real
 * engine: while `at` + ttlMinutes has not passed it is targeted, due at once, and spends the
 * budget of the day it goes out; after that it is skipped as expired. What it queued is handed
 * out until it expires, however long ago its date was.
 */

let fx: PushFixture
const DAY = 86_400_000
const DAY1 = new Date('2026-03-15T02:00:00Z') // 10:00 in Shanghai
const bank = (slug: string, asOf: Date) => seedBank(fx, { slug, timeZone: 'Asia/Shanghai', prefix: slug.slice(0, 2).toUpperCase(), n: 12, loanDay: '2026-03-18', asOf })
const service = (over: Record<string, unknown>) => campaign({ purpose: 'service', priority: 'low', ...over })

beforeAll(async () => {
  fx = await openPush({ requireApproval: false })
}, 60_000)
afterAll(async () => fx?.close())

describe('a once campaign targeted late', () => {
  it('spends the budget of the day it goes out', async () => {
    const t = await bank('late-caps', DAY1)
    await fx.push.policies.save(t, { quietHours: null, caps: { low: { day: 1, week: 3 } } }, 'test')
    await fx.push.campaigns.save(t, 'first', service({ schedule: { kind: 'cron', cron: '0 9 * * *' } }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['first'] })
    const sent = keysWith(await targetsOf(fx, t, 'first'), 'queued')
    expect(sent).toHaveLength(11) // 12 refused service messages
    // Due three days ago, deliverable for a week: targeted now, it goes out today, where the day's one low message is spent.
    const at = new Date(DAY1.getTime() - 3 * DAY).toISOString()
    await fx.push.campaigns.save(t, 'once-late', service({ schedule: { kind: 'once', at }, ttlMinutes: 7 * 1440 }), 'test')
    const out = await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['once-late'] })
    expect(out.campaigns[0]).toMatchObject({ localDate: '2026-03-12', queued: 0, suppressed: { cap_day: 11, consent_refused: 1 } })
    expect((await targetsOf(fx, t, 'once-late')).get(1)).toMatchObject({ send_date: '2026-03-15', local_date: '2026-03-12', due_at: '2026-03-15 02:00:00.000' })
  })

  it('is skipped as expired once its time to live has passed, and writes nothing', async () => {
    const t = await bank('late-gone', DAY1)
    const at = new Date(DAY1.getTime() - 12 * DAY).toISOString()
    await fx.push.campaigns.save(t, 'once-gone', service({ schedule: { kind: 'once', at }, ttlMinutes: 1440 }), 'test')
    const out = await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['once-gone'] })
    expect(out.campaigns[0]).toMatchObject({ skipped: 'expired', targeted: 0 })
    expect((await targetsOf(fx, t, 'once-gone')).size).toBe(0)
    // Within its time to live it would have been targeted.
    const inTime = await fx.push.runTargeting(t, { asOf: new Date(Date.parse(at) + 1000), campaignIds: ['once-gone'] })
    expect(inTime.campaigns[0]).toMatchObject({ targeted: 12 })
  })

  it('is handed out until it expires, though its date is more than nine days back', async () => {
    // On the real clock: pulls lease what is due now.
    const now = Date.now()
    const t = await bank('late-pull', new Date(now))
    await fx.push.policies.save(t, { quietHours: null }, 'test')
    // Due twelve days ago, deliverable for a week; targeted six days late, so it lives until tomorrow.
    const at = new Date(now - 12 * DAY)
    await fx.push.campaigns.save(t, 'once-old', service({ schedule: { kind: 'once', at: at.toISOString() }, ttlMinutes: 7 * 1440 }), 'test')
    const out = await fx.push.runTargeting(t, { asOf: new Date(now - 6 * DAY), campaignIds: ['once-old'] })
    expect(out.campaigns[0]).toMatchObject({ localDate: localDate(at, 'Asia/Shanghai'), queued: 11 })
    const pulled = await fx.push.leases.pull(t, { limit: 100, leaseSeconds: 60 })
    expect(pulled.map((p) => p.campaignId)).toEqual(Array(11).fill('once-old'))
  })
})

describe('a targeting run whose lease was lost', () => {
  it('begins no further campaign and fails with the reason', async () => {
    const t = await bank('lost-lease', DAY1)
    await fx.push.policies.save(t, { quietHours: null }, 'test')
    await fx.push.campaigns.save(t, 'lost-a', service({ schedule: { kind: 'cron', cron: '0 9 * * *' } }), 'test')
    const lease = new AbortController()
    lease.abort(new Error('the push lease was lost'))
    await expect(fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['lost-a'], signal: lease.signal })).rejects.toThrow('the push lease was lost')
    expect((await targetsOf(fx, t, 'lost-a')).size).toBe(0)
  })
})
