import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chDateTime } from '../core/time.js'
import { inHoldout } from '../core/holdout.js'
import { campaign, keysWith, no, openPush, seedBank, targetsOf, type PushFixture } from './push.fixture.js'
import { bucketSql, HOLDOUT_SALT, saltState } from './targeting.sql.js'

/**
 * Policy at targeting time, on the real engine: consent per purpose and channel, quiet hours in
 * the tenant's zone (two zones), one budget across campaigns, one target per (campaign,
 * customer, local date) across reruns, and a holdout that agrees with the layout experiments.
 */

let fx: PushFixture
const DAY1 = new Date('2026-03-15T02:00:00Z') // 10:00 in Shanghai
const at = (d: Date, hours: number) => new Date(d.getTime() + hours * 3_600_000)
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i)
const bank = (slug: string, extra: { timeZone?: string; n?: number; marketingForAll?: boolean } = {}) =>
  seedBank(fx, { slug, timeZone: extra.timeZone ?? 'Asia/Shanghai', prefix: slug.slice(0, 2).toUpperCase(), n: extra.n ?? 20, loanDay: '2026-03-18', asOf: DAY1, ...extra })
const save = (t: number, id: string, over: Record<string, unknown>) => fx.push.campaigns.save(t, id, campaign(over), 'test')
const run = (t: number, ids: string[], asOf: Date) => fx.push.runTargeting(t, { asOf, campaignIds: ids })

beforeAll(async () => {
  // Not about approval (approval.routes.test.ts is): marketing campaigns here run unapproved.
  fx = await openPush({ requireApproval: false })
}, 60_000)
afterAll(async () => fx?.close())

describe('consent', () => {
  it('sends marketing only with a grant, service unless refused, security always; tenant policy can ask more', async () => {
    const t = await bank('consent')
    await save(t, 'promo', { purpose: 'marketing' })
    await save(t, 'reminder', { purpose: 'service', priority: 'high' })
    await save(t, 'alert', { purpose: 'security', priority: 'critical' })
    // The promotion first: the reminder would spend the day's budget a low-priority message has.
    const out = await run(t, ['promo'], DAY1)
    expect(out.errors).toEqual([])
    await run(t, ['reminder', 'alert'], DAY1)
    const promo = await targetsOf(fx, t, 'promo')
    expect(keysWith(promo, 'queued')).toEqual(range(1, 10))
    expect(keysWith(promo, 'consent_refused')).toEqual([11])
    expect(keysWith(promo, 'no_consent')).toEqual(range(12, 20))
    const reminder = await targetsOf(fx, t, 'reminder')
    expect(keysWith(reminder, 'consent_refused')).toEqual([12])
    expect(keysWith(reminder, 'queued')).toHaveLength(19)
    expect(keysWith(await targetsOf(fx, t, 'alert'), 'queued')).toEqual(range(1, 20))
    expect(out.campaigns.find((c) => c.campaignId === 'promo')).toMatchObject({ targeted: 20, queued: 10, suppressed: { consent_refused: 1, no_consent: 9 } })

    await fx.push.policies.save(t, { consent: { service: 'explicit' } }, 'test')
    await save(t, 'reminder-2', { purpose: 'service', priority: 'high' })
    await run(t, ['reminder-2'], DAY1)
    const strict = await targetsOf(fx, t, 'reminder-2')
    expect(keysWith(strict, 'queued')).toEqual([])
    expect(keysWith(strict, 'no_consent')).toHaveLength(19)
  })
})

describe('quiet hours', () => {
  it("holds marketing and service to the end of the tenant's quiet period, releases security flagged, in each tenant's zone", async () => {
    const sh = await bank('quiet-sh')
    const ldn = await bank('quiet-ldn', { timeZone: 'Europe/London' })
    const night = new Date('2026-03-15T14:00:00Z') // 22:00 in Shanghai, 14:00 in London
    for (const t of [sh, ldn]) {
      await save(t, 'promo', { schedule: { kind: 'once', at: night.toISOString() } })
      await save(t, 'reminder', { purpose: 'service', priority: 'high', schedule: { kind: 'once', at: night.toISOString() } })
      await save(t, 'alert', { purpose: 'security', priority: 'critical', schedule: { kind: 'once', at: night.toISOString() } })
    }
    await run(sh, ['promo'], night)
    const out = await run(sh, ['reminder', 'alert'], night)
    expect(out.campaigns.find((c) => c.campaignId === 'alert')?.quietExempt).toBe(20)
    const promo = (await targetsOf(fx, sh, 'promo')).get(1)!
    expect(promo).toMatchObject({ status: 'queued', due_at: '2026-03-16 00:00:00.000', send_date: '2026-03-16', quiet_exempt: 0, local_date: '2026-03-15' })
    expect((await targetsOf(fx, sh, 'reminder')).get(1)).toMatchObject({ due_at: '2026-03-16 00:00:00.000' })
    expect((await targetsOf(fx, sh, 'alert')).get(1)).toMatchObject({ status: 'queued', due_at: '2026-03-15 14:00:00.000', quiet_exempt: 1 })
    expect(await fx.metrics.registry.getSingleMetricAsString('qianmian_push_quiet_exempt_total')).toMatch(/ 20$/m)

    // The same instant is 14:00 in London: nothing to hold.
    await run(ldn, ['promo', 'alert'], night)
    expect((await targetsOf(fx, ldn, 'promo')).get(1)).toMatchObject({ due_at: '2026-03-15 14:00:00.000', send_date: '2026-03-15' })
    expect((await targetsOf(fx, ldn, 'alert')).get(1)).toMatchObject({ quiet_exempt: 0 })

    // 23:30 UTC: 07:30 in Shanghai (quiet until 08:00 the same day), 23:30 in London (until 08:00 the next day).
    const late = new Date('2026-03-15T23:30:00Z')
    for (const t of [sh, ldn]) await save(t, 'late', { schedule: { kind: 'once', at: late.toISOString() } })
    await run(sh, ['late'], late)
    await run(ldn, ['late'], late)
    expect((await targetsOf(fx, sh, 'late')).get(1)).toMatchObject({ due_at: '2026-03-16 00:00:00.000', local_date: '2026-03-16' })
    expect((await targetsOf(fx, ldn, 'late')).get(1)).toMatchObject({ due_at: '2026-03-16 08:00:00.000', local_date: '2026-03-15' })

    // A quiet period that does not cross midnight ends the same day.
    await fx.push.policies.save(ldn, { quietHours: { start: '13:00', end: '15:30' } }, 'test')
    await save(ldn, 'noon', { schedule: { kind: 'once', at: night.toISOString() } })
    await run(ldn, ['noon'], night)
    expect((await targetsOf(fx, ldn, 'noon')).get(1)).toMatchObject({ due_at: '2026-03-15 15:30:00.000' })

    // Held past the end of the campaign's validity: suppressed for quiet hours.
    await save(sh, 'short', { schedule: { kind: 'once', at: night.toISOString() }, validUntil: '2026-03-15T23:00:00+08:00' })
    await run(sh, ['short'], night)
    expect(keysWith(await targetsOf(fx, sh, 'short'), 'quiet_hours')).toEqual(range(1, 10))
  })
})

describe('frequency caps', () => {
  it('spends one budget across campaigns by priority class; security neither spends nor is held', async () => {
    const t = await bank('caps')
    await fx.push.policies.save(t, { caps: { low: { day: 1, week: 3 }, high: { day: 3, week: 10 } } }, 'test')
    const daily = { kind: 'cron', cron: '0 10 * * *' }
    for (const id of ['p-a', 'p-b', 'p-d', 'p-e']) await save(t, id, { schedule: daily })
    await save(t, 'sec', { purpose: 'security', priority: 'normal', schedule: daily })
    await save(t, 'svc', { purpose: 'service', priority: 'high', schedule: daily })

    await run(t, ['p-a', 'p-b'], DAY1)
    expect(keysWith(await targetsOf(fx, t, 'p-a'), 'queued')).toEqual(range(1, 10))
    expect(keysWith(await targetsOf(fx, t, 'p-b'), 'cap_day')).toEqual(range(1, 10))
    await run(t, ['sec'], DAY1)
    expect(keysWith(await targetsOf(fx, t, 'sec'), 'queued')).toEqual(range(1, 20))
    // A high-priority reminder still fits in the day where a second promotion did not.
    await run(t, ['svc'], DAY1)
    expect(keysWith(await targetsOf(fx, t, 'svc'), 'queued')).toHaveLength(19)
    // Next day: a fresh day budget, two of the three weekly spent (a and c; not s).
    await run(t, ['p-d'], at(DAY1, 24))
    expect(keysWith(await targetsOf(fx, t, 'p-d'), 'queued')).toEqual(range(1, 10))
    await run(t, ['p-e'], at(DAY1, 48))
    expect(keysWith(await targetsOf(fx, t, 'p-e'), 'cap_week')).toEqual(range(1, 10))
  })
})

describe('dedup', () => {
  it('makes one target per campaign, customer and local date whatever reruns happen', async () => {
    const t = await bank('dedup')
    await save(t, 'rr', { purpose: 'security', schedule: { kind: 'cron', cron: '0 9,18 * * *' } })
    const first = await run(t, ['rr'], DAY1)
    expect(first.campaigns[0]).toMatchObject({ targeted: 20, localDate: '2026-03-15' })
    expect((await run(t, ['rr'], DAY1)).campaigns[0]).toMatchObject({ targeted: 0 })
    expect((await run(t, ['rr'], at(DAY1, 9))).campaigns[0]).toMatchObject({ targeted: 0 })
    const rows = await targetsOf(fx, t, 'rr')
    const expected = crypto.createHash('md5').update(`${t}:rr:1:2026-03-15`).digest('hex')
    expect(rows.get(1)?.target_id).toBe(expected)
    // The day's occurrence (09:00) had passed when the run made it at 10:00: due at once.
    expect(rows.get(1)?.due_at).toBe('2026-03-15 02:00:00.000')
    // A newcomer is targeted by a rerun; the others are not again.
    const ts = chDateTime(DAY1)
    await fx.engine.db.forTenant(t).insert('customers', [{ customer_key: 21, customer_no: 'NEW21', gender: 'unknown', birth_date: null, opened_at: ts, updated_at: ts }])
    expect((await run(t, ['rr'], at(DAY1, 10))).campaigns[0]).toMatchObject({ targeted: 1 })
    expect((await run(t, ['rr'], at(DAY1, 24))).campaigns[0]).toMatchObject({ targeted: 21, localDate: '2026-03-16' })
  })
})

describe('holdout', () => {
  it('keeps out of marketing exactly the customers inHoldout names, the same in every campaign; service is not held out', async () => {
    const t = await bank('holdout', { n: 300, marketingForAll: true })
    fx.holdout.perMille = 200
    try {
      await save(t, 'm1', {})
      await save(t, 'm2', { schedule: { kind: 'once', at: DAY1.toISOString() } })
      await save(t, 'svc', { purpose: 'service' })
      await run(t, ['m1', 'm2', 'svc'], DAY1)
      const expected = range(1, 300).filter((k) => k !== 11 && inHoldout(t, no('HO', k), 200))
      expect(expected.length).toBeGreaterThan(30)
      const m1 = await targetsOf(fx, t, 'm1')
      expect(keysWith(m1, 'holdout')).toEqual(expected)
      expect(keysWith(await targetsOf(fx, t, 'm2'), 'holdout')).toEqual(expected)
      expect(keysWith(await targetsOf(fx, t, 'svc'), 'holdout')).toEqual([])
      // The next day's run keeps the same customers out.
      await run(t, ['m1'], at(DAY1, 24))
      const day2 = await fx.engine.db.forTenant(t).query(
        `SELECT customer_key FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = 'm1' AND local_date = '2026-03-16' AND reason = 'holdout' ORDER BY customer_key`,
        {},
        z.object({ customer_key: z.coerce.number() }),
      )
      expect(day2.map((r) => r.customer_key)).toEqual(expected)
    } finally {
      fx.holdout.perMille = 0
    }
  })

  it('computes the holdout bucket in the engine exactly as core/holdout.ts does', async () => {
    const t = await bank('parity', { n: 1 })
    const nos = Array.from({ length: 3000 }, (_, i) => `C${(i * 104729) % 9_999_991}`)
    const [r] = await fx.engine.db.forTenant(t).query(
      `SELECT arrayMap(x -> toUInt8(${bucketSql('{s:UInt32}', 'x')} < 37), {nos:Array(String)}) AS inside`,
      { s: saltState(HOLDOUT_SALT, t), nos },
      z.object({ inside: z.array(z.coerce.number()) }),
    )
    expect(r!.inside).toEqual(nos.map((n) => (inHoldout(t, n, 37) ? 1 : 0)))
  })

  it('keeps a stable per-campaign control group', async () => {
    const t = await bank('control', { n: 60, marketingForAll: true })
    await save(t, 'ctl', { controlPerMille: 500 })
    await run(t, ['ctl'], DAY1)
    await run(t, ['ctl'], at(DAY1, 24))
    const rows = await fx.engine.db.forTenant(t).query(
      `SELECT local_date, arraySort(groupArray(customer_key)) AS ks FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = 'ctl' AND reason = 'control_group'
       GROUP BY local_date ORDER BY local_date`,
      {},
      z.object({ local_date: z.string(), ks: z.array(z.coerce.number()) }),
    )
    expect(rows).toHaveLength(2)
    expect(rows[0]!.ks.length).toBeGreaterThan(10)
    expect(rows[0]!.ks.length).toBeLessThan(50)
    expect(rows[1]!.ks).toEqual(rows[0]!.ks)
  })
})
