import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { inHoldout } from '../core/holdout.js'
import { localEvent } from '../test/fixtures.js'
import { campaign, keysWith, no, openPush, seedBank, targetsOf, type PushFixture } from './push.fixture.js'
import { campaignStats } from './stats.js'

/**
 * The comparison groups on the real engine: the global holdout and a campaign's control group
 * are drawn only among the customers the campaign would have sent to (consent given, every field
 * of the message filled, due inside its validity, budget left), so the uplift compares like with
 * like. Who is in the global holdout does not change (layouts share it): only the reason a row
 * records when another one applies first.
 */

let fx: PushFixture
const DAY1 = new Date('2026-03-15T02:00:00Z') // 10:00 in Shanghai
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i)
const at = chDateTime(new Date('2026-01-01T00:00:00Z'))
const amountMessage = { body: { zh: '贷款 {{loan.amount}}', en: 'loan {{loan.amount}}' } }

/** A bank of 40 whose customers 1..20 have an installment due on 03-18 (the fixture gives 1..3 theirs). */
async function borrowers(slug: string, extra: { marketingForAll?: boolean } = {}): Promise<number> {
  const t = await seedBank(fx, { slug, timeZone: 'Asia/Shanghai', prefix: slug.slice(0, 2).toUpperCase(), n: 40, loanDay: '2026-03-18', asOf: DAY1, ...extra })
  await fx.engine.db.forTenant(t).insert('loan_schedules', range(4, 20).map((k) => ({
    customer_key: k, loan_no: `L${k}`, installment_no: 1, due_date: '2026-03-18', amount_due: 1000 + k, amount_paid: 0, paid_at: null, status: 'due', updated_at: at,
  })))
  return t
}

beforeAll(async () => {
  fx = await openPush({ requireApproval: false })
}, 60_000)
afterAll(async () => fx?.close())

describe('control group', () => {
  it('is drawn among the customers the message could be filled for, so a push without effect shows no uplift', async () => {
    const t = await borrowers('ctl-field')
    await fx.push.campaigns.save(t, 'remind', campaign({
      purpose: 'service', priority: 'high', controlPerMille: 500, message: amountMessage,
      conversion: { event: { names: ['loan_repaid'] }, withinHours: 72 },
    }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['remind'] })
    // Every borrower repays, pushed or not.
    const db = fx.engine.db.forTenant(t)
    await db.insert('events', range(1, 20).map((k) => ({ ...localEvent(k, '2026-03-15 14:00', 'loan_repaid'), user_id: no('CT', k), violations: [] })))
    const rows = await targetsOf(fx, t, 'remind')
    const control = keysWith(rows, 'control_group')
    expect(control.length).toBeGreaterThan(3)
    // Customer 12 refused service messages; 21..40 have no loan: none of them is a control.
    expect(keysWith(rows, 'missing_field')).toEqual(range(21, 40))
    expect(keysWith(rows, 'consent_refused')).toEqual([12])
    expect([...control, ...keysWith(rows, 'queued')].sort((a, b) => a - b)).toEqual(range(1, 20).filter((k) => k !== 12))
    const s = await campaignStats(db, await fx.push.campaigns.get(t, 'remind'))
    expect(s.conversion?.groups.control).toMatchObject({ customers: control.length, converted: control.length })
    expect(s.conversion?.upliftVsControl).toBe(0)
  })

  it("is drawn among those with budget left: a capped customer records the cap", async () => {
    const t = await borrowers('ctl-caps')
    await fx.push.policies.save(t, { caps: { low: { day: 1, week: 3 } } }, 'test')
    // The reminder spends the borrowers' budget for the day, then a low campaign comes to all.
    await fx.push.campaigns.save(t, 'remind', campaign({ purpose: 'service', priority: 'high', message: amountMessage }), 'test')
    await fx.push.campaigns.save(t, 'tip', campaign({ purpose: 'service', priority: 'low', controlPerMille: 500 }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['remind', 'tip'] })
    const reminded = keysWith(await targetsOf(fx, t, 'remind'), 'queued')
    expect(reminded).toEqual(range(1, 20).filter((k) => k !== 12))
    const tip = await targetsOf(fx, t, 'tip')
    expect(keysWith(tip, 'cap_day')).toEqual(reminded)
    const control = keysWith(tip, 'control_group')
    expect(control.length).toBeGreaterThan(3)
    expect(control.filter((k) => reminded.includes(k))).toEqual([])
  })
})

describe('global holdout', () => {
  it('keeps the same customers from marketing, recording the holdout only for those who would have been sent', async () => {
    const t = await borrowers('ho-field', { marketingForAll: true })
    fx.holdout.perMille = 300
    try {
      await fx.push.campaigns.save(t, 'offer', campaign({ purpose: 'marketing', message: amountMessage }), 'test')
      await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['offer'] })
    } finally {
      fx.holdout.perMille = 0
    }
    const rows = await targetsOf(fx, t, 'offer')
    const held = range(1, 40).filter((k) => inHoldout(t, no('HO', k), 300))
    expect(held.filter((k) => k <= 20).length).toBeGreaterThan(2)
    expect(held.filter((k) => k > 20).length).toBeGreaterThan(2)
    // Customer 11 refused marketing; 21..40 have no loan to name.
    expect(keysWith(rows, 'holdout')).toEqual(held.filter((k) => k <= 20 && k !== 11))
    expect(keysWith(rows, 'missing_field')).toEqual(range(21, 40))
    // No one of the holdout is sent anything.
    expect(keysWith(rows, 'queued').filter((k) => held.includes(k))).toEqual([])
    expect(keysWith(rows, 'queued')).toEqual(range(1, 20).filter((k) => k !== 11 && !held.includes(k)))
  })
})
