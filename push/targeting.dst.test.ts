import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { campaign, openPush, seedBank, targetsOf, type PushFixture } from './push.fixture.js'

/**
 * Local times on the days the clocks change, on the real engine: the end of quiet hours and a
 * customer's active hour are wall-clock times of the tenant's zone, so on a 23- or 25-hour day
 * they are not a fixed number of minutes after local midnight. New York: summer time ends at
 * 02:00 on 2026-11-01 (back to 01:00) and begins at 02:00 on 2026-03-08 (on to 03:00).
 */

let fx: PushFixture
let ny: number
const TZ = 'America/New_York'
const save = (t: number, id: string, over: Record<string, unknown>) => fx.push.campaigns.save(t, id, campaign(over), 'test')
const run = (t: number, id: string, asOf: Date) => fx.push.runTargeting(t, { asOf, campaignIds: [id] })
const reminder = (cron: string) => ({ purpose: 'service', priority: 'high', ttlMinutes: 45, schedule: { kind: 'cron', cron }, message: { body: { zh: '提醒', en: 'reminder' } } })

beforeAll(async () => {
  fx = await openPush({ requireApproval: false })
  ny = await seedBank(fx, { slug: 'ny-dst', timeZone: TZ, prefix: 'NY', n: 3, loanDay: '2026-11-05', asOf: new Date('2026-10-31T12:00:00Z') })
  // Default quiet hours 21:00-08:00 local.
}, 60_000)
afterAll(async () => fx?.close())

describe('quiet hours on the days the clocks change', () => {
  it('releases at 08:00 local the morning summer time ends, inside a short time to live', async () => {
    await save(ny, 'fall', reminder('0 22 * * *'))
    await run(ny, 'fall', new Date('2026-11-01T02:00:00Z')) // 22:00 EDT on 10-31
    // 08:00 EST is 13:00 UTC; an hour earlier would still be quiet and the 45 minutes would run out before 08:00.
    expect((await targetsOf(fx, ny, 'fall')).get(1)).toMatchObject({ status: 'queued', due_at: '2026-11-01 13:00:00.000', send_date: '2026-11-01', local_date: '2026-10-31' })
  })

  it('releases at 08:00 local the morning summer time begins, not an hour late', async () => {
    await save(ny, 'spring', reminder('0 22 * * *'))
    await run(ny, 'spring', new Date('2026-03-08T03:00:00Z')) // 22:00 EST on 03-07
    expect((await targetsOf(fx, ny, 'spring')).get(1)).toMatchObject({ due_at: '2026-03-08 12:00:00.000', send_date: '2026-03-08' }) // 08:00 EDT
  })

  it('takes an end the clocks skip as that time after the shift, and an end they repeat at its first pass', async () => {
    const t = await seedBank(fx, { slug: 'ny-odd', timeZone: TZ, prefix: 'NO', n: 1, loanDay: '2026-11-05', asOf: new Date('2026-10-31T12:00:00Z') })
    await fx.push.policies.save(t, { quietHours: { start: '21:00', end: '02:30' } }, 'test')
    await save(t, 'gap', reminder('0 22 * * *'))
    await run(t, 'gap', new Date('2026-03-08T03:00:00Z'))
    // 02:30 does not exist on 03-08: 03:30 EDT, never before the quiet period is over.
    expect((await targetsOf(fx, t, 'gap')).get(1)).toMatchObject({ due_at: '2026-03-08 07:30:00.000' })
    await fx.push.policies.save(t, { quietHours: { start: '21:00', end: '01:30' } }, 'test')
    await save(t, 'twice', reminder('0 22 * * *'))
    await run(t, 'twice', new Date('2026-11-01T02:00:00Z'))
    // 01:30 comes twice on 11-01: the first, 01:30 EDT.
    expect((await targetsOf(fx, t, 'twice')).get(1)).toMatchObject({ due_at: '2026-11-01 05:30:00.000' })
  })
})

describe('active hours on the days the clocks change', () => {
  const active = { purpose: 'service', priority: 'high', schedule: { kind: 'active_hour', fallbackHour: 10 } }

  it("is due at the customer's hour on the local clock the day summer time ends", async () => {
    await save(ny, 'active-fall', active)
    await run(ny, 'active-fall', new Date('2026-11-01T11:00:00Z')) // 06:00 EST
    expect((await targetsOf(fx, ny, 'active-fall')).get(1)).toMatchObject({ due_at: '2026-11-01 15:00:00.000', local_date: '2026-11-01' }) // 10:00 EST
  })

  it("is due at the customer's hour on the local clock the day summer time begins", async () => {
    await save(ny, 'active-spring', active)
    await run(ny, 'active-spring', new Date('2026-03-08T10:00:00Z')) // 06:00 EDT
    expect((await targetsOf(fx, ny, 'active-spring')).get(1)).toMatchObject({ due_at: '2026-03-08 14:00:00.000', local_date: '2026-03-08' }) // 10:00 EDT
  })
})
