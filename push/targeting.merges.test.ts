import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { createIdentityService, type IdentityService } from '../ingest/identity.service.js'
import { createKeyAllocator } from '../ingest/key-allocator.js'
import { newRunId } from '../core/run-id.js'
import { materializeSegment } from '../segments/segment.materialize.js'
import { createSegmentRepository } from '../segments/segment.repository.js'
import { createTagRepository } from '../tags/tag.repository.js'
import { createWithdrawalIndex } from './consent.index.js'
import { campaign, keysWith, no, openPush, seedBank, targetsOf, type PushFixture } from './push.fixture.js'

/**
 * Customers merged by an administrator (customer A into B) are one person to push: A's key is
 * never a target, A's installments and bills remind B, the consent that counts is the latest
 * decision under either key, and undoing the merge makes A a customer of its own again.
 */

let fx: PushFixture
let ids: IdentityService
const DAY1 = new Date('2026-03-15T02:00:00Z') // 10:00 in Shanghai; installments and the bill fall due on 03-18
const admin = { id: 'Li Wei', reason: 'same person' }
const service = (over: Record<string, unknown>) => campaign({ purpose: 'service', priority: 'low', ...over })

/** A bank of 12 customers (push.fixture.ts) with prefix `prefix`. */
async function bank(slug: string, prefix: string): Promise<number> {
  const t = await seedBank(fx, { slug, timeZone: 'Asia/Shanghai', prefix, n: 12, loanDay: '2026-03-18', asOf: DAY1 })
  // Several campaigns reach the same customers here: caps are the first test's business only.
  const wide = { day: 50, week: 100 }
  await fx.push.policies.save(t, { quietHours: null, caps: { low: wide, normal: wide, high: wide } }, 'test')
  return t
}

beforeAll(async () => {
  fx = await openPush({ requireApproval: false })
  ids = createIdentityService({ db: fx.engine.db, allocator: createKeyAllocator({ system: fx.engine.db.system }) })
}, 60_000)
afterAll(async () => fx?.close())

describe('targeting customers merged into others', () => {
  it('never targets the key merged away, so the person gets one message within one budget', async () => {
    const t = await bank('merge-all', 'MA')
    // A day cap of one: two keys of one person would each have spent their own.
    await fx.push.policies.save(t, { quietHours: null, caps: { low: { day: 1, week: 3 } } }, 'test')
    await ids.merge(t, no('MA', 8), no('MA', 9), admin)
    await fx.push.campaigns.save(t, 'all', service({}), 'test')
    await fx.push.campaigns.save(t, 'all-2', service({}), 'test')
    const out = await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['all', 'all-2'] })
    expect(out.errors).toEqual([])
    const rows = await targetsOf(fx, t, 'all')
    expect([...rows.keys()]).toEqual([1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12])
    expect(rows.get(9)).toMatchObject({ status: 'queued', customer_no: no('MA', 9) })
    // The second campaign finds the day's budget spent for everyone it reached, the merged person once.
    expect(keysWith(await targetsOf(fx, t, 'all-2'), 'cap_day')).toEqual([1, 2, 3, 4, 5, 6, 7, 9, 10, 11])
  })

  it('counts what the merged customer was sent before the merge in the survivor’s budget and dedup', async () => {
    const t = await bank('merge-before', 'MP')
    await fx.push.policies.save(t, { quietHours: null, caps: { low: { day: 1, week: 3 } } }, 'test')
    const loan = service({ dateTrigger: { on: 'loan_due', daysBefore: 3 }, message: { body: { zh: '{{loan.amount}}', en: '{{loan.amount}}' } } })
    await fx.push.campaigns.save(t, 'loan', loan, 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['loan'] })
    expect(keysWith(await targetsOf(fx, t, 'loan'), 'queued')).toEqual([1, 2, 3])
    // 1, reminded today, is found to be 9.
    await ids.merge(t, no('MP', 1), no('MP', 9), admin)
    // The reminder is not sent again to the same person for the same day, and it spent the day's budget.
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['loan'] })
    expect([...(await targetsOf(fx, t, 'loan')).keys()]).toEqual([1, 2, 3])
    await fx.push.campaigns.save(t, 'all', service({}), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['all'] })
    expect(keysWith(await targetsOf(fx, t, 'all'), 'cap_day')).toEqual([2, 3, 9])
  })

  it('reminds the survivor of the installments and bills of the customer merged into it, filled from them', async () => {
    const t = await bank('merge-stock', 'MS')
    // 1 has an installment, 9 none; 6 has the bill, 10 none; 2 and 3 both have installments.
    await ids.merge(t, no('MS', 1), no('MS', 9), admin)
    await ids.merge(t, no('MS', 6), no('MS', 10), admin)
    await ids.merge(t, no('MS', 2), no('MS', 3), admin)
    await fx.push.campaigns.save(t, 'loan', service({ dateTrigger: { on: 'loan_due', daysBefore: 3 }, message: { body: { zh: '{{loan.amount}} 元 {{loan.due_date}}', en: '{{loan.amount}} on {{loan.due_date}}' } } }), 'test')
    await fx.push.campaigns.save(t, 'bill', service({ dateTrigger: { on: 'bill_due', daysBefore: 3 }, message: { body: { zh: '{{bill.biller}} {{bill.amount}} 元', en: '{{bill.amount}}' } } }), 'test')
    await fx.push.campaigns.save(t, 'amount', service({ message: { body: { zh: '{{loan.amount}}', en: '{{loan.amount}}' } } }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['loan', 'bill', 'amount'] })
    const loan = await targetsOf(fx, t, 'loan')
    expect([...loan.keys()]).toEqual([3, 9])
    expect(loan.get(9)).toMatchObject({ status: 'queued', body: '1001.00 元 2026-03-18' })
    // Two installments due the same day: the first by due date (either) fills the message, once.
    expect(loan.get(3)?.status).toBe('queued')
    const bill = await targetsOf(fx, t, 'bill')
    expect([...bill.keys()]).toEqual([10])
    expect(bill.get(10)).toMatchObject({ status: 'queued', body: '水费 88.50 元' })
    // A field read for the whole audience comes from the merged customer's stock data too.
    const amount = await targetsOf(fx, t, 'amount')
    expect(amount.get(9)).toMatchObject({ status: 'queued', body: '1001.00' })
    expect([1, 2, 6].filter((k) => amount.has(k))).toEqual([])
  })

  it('reads a segment built before the merge as the merges stand: the survivor in the merged customer’s place', async () => {
    const t = await bank('merge-segment', 'MG')
    const segments = createSegmentRepository({ db: fx.engine.db })
    const { segment } = await segments.save(t, 'elders', { name: 'Elders', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } }, 'test')
    const defs = new Map((await createTagRepository({ db: fx.engine.db }).list(t)).map((d) => [d.name, d]))
    await materializeSegment({ db: fx.engine.db }, { tenantId: t, timeZone: 'Asia/Shanghai', segment, defs, asOf: DAY1, build: newRunId(), trigger: 'test' })
    // The build holds 1-4; then 1 is found to be 9.
    const merged = await ids.merge(t, no('MG', 1), no('MG', 9), admin)
    await fx.push.campaigns.save(t, 'elders', service({ audience: { segment: 'elders' } }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['elders'] })
    expect([...(await targetsOf(fx, t, 'elders')).keys()]).toEqual([2, 3, 4, 9])
    await ids.undo(t, merged!.changeId, 'Li Wei')
    await fx.push.campaigns.save(t, 'elders-2', service({ audience: { segment: 'elders' } }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['elders-2'] })
    expect([...(await targetsOf(fx, t, 'elders-2')).keys()]).toEqual([1, 2, 3, 4])
  })

  it('does not greet the key merged away on its birthday', async () => {
    const t = await bank('merge-birthday', 'MB')
    // 7 was born on 03-15; 8, its survivor, on 06-01: the survivor's own profile says when.
    await ids.merge(t, no('MB', 7), no('MB', 8), admin)
    await fx.push.campaigns.save(t, 'birthday', service({ dateTrigger: { on: 'birthday' } }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['birthday'] })
    expect([...(await targetsOf(fx, t, 'birthday')).keys()]).toEqual([])
  })

  it('takes the latest consent decision under either key: a withdrawal under the key merged away holds', async () => {
    const t = await bank('merge-consent', 'MC')
    const db = fx.engine.db.forTenant(t)
    // 4 withdrew (02-01) after 3's grant (01-01); 7 granted (03-01) after 11's refusal (01-01).
    await db.insert('consents', [
      { customer_key: 4, purpose: 'marketing', channel: 'push', granted: 0, source: 'app', updated_at: '2026-02-01 00:00:00.000' },
      { customer_key: 7, purpose: 'marketing', channel: 'push', granted: 1, source: 'app', updated_at: '2026-03-01 00:00:00.000' },
    ])
    await ids.merge(t, no('MC', 4), no('MC', 3), admin)
    await ids.merge(t, no('MC', 11), no('MC', 7), admin)
    await fx.push.campaigns.save(t, 'promo', campaign({}), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['promo'] })
    const rows = await targetsOf(fx, t, 'promo')
    expect(rows.get(3)).toMatchObject({ status: 'suppressed', reason: 'consent_refused' })
    expect(rows.get(7)).toMatchObject({ status: 'queued' })
    expect(rows.has(4) || rows.has(11)).toBe(false)
    expect(keysWith(rows, 'queued')).toEqual([1, 2, 5, 6, 7, 8, 9, 10])
  })

  it('targets the customer on its own again once the merge is undone', async () => {
    const t = await bank('merge-undo', 'MU')
    const merged = await ids.merge(t, no('MU', 1), no('MU', 9), admin)
    await fx.push.campaigns.save(t, 'loan-1', service({ dateTrigger: { on: 'loan_due', daysBefore: 3 }, message: { body: { zh: '{{loan.amount}}', en: '{{loan.amount}}' } } }), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['loan-1'] })
    expect([...(await targetsOf(fx, t, 'loan-1')).keys()]).toEqual([2, 3, 9])
    await ids.undo(t, merged!.changeId, 'Li Wei')
    await fx.push.campaigns.save(t, 'loan-2', service({ dateTrigger: { on: 'loan_due', daysBefore: 3 }, message: { body: { zh: '{{loan.amount}}', en: '{{loan.amount}}' } } }), 'test')
    await fx.push.campaigns.save(t, 'all', service({}), 'test')
    await fx.push.runTargeting(t, { asOf: DAY1, campaignIds: ['loan-2', 'all'] })
    const loan = await targetsOf(fx, t, 'loan-2')
    expect([...loan.keys()]).toEqual([1, 2, 3])
    expect(loan.get(1)).toMatchObject({ status: 'queued', body: '1001.00' })
    expect((await targetsOf(fx, t, 'all')).size).toBe(12)
  })
})

describe('the withdrawal index at pull time', () => {
  it('holds a withdrawal recorded under a key merged away for its survivor, until the merge is undone', async () => {
    const t = await bank('merge-index', 'MI')
    const db = fx.engine.db.forTenant(t)
    const index = createWithdrawalIndex({ db: fx.engine.db, windowMs: 3650 * 86_400_000, refreshMs: 0 })
    await index.refresh(t)
    expect(index.withdrawn(t, 3, 'marketing', 'push')).toBe(false)
    // 4 withdraws (as a customer of its own), then is found to be 3.
    const at = '2026-03-01 00:00:00.000'
    await db.insert('consent_history', [{ customer_key: 4, customer_no: no('MI', 4), purpose: 'marketing', channel: 'push', granted: 0, customer_at: at, received_at: chDateTime(new Date()), source: 'app', notice_version: 'v1', key_id: '', holder: '', change_id: 'c4', message_id: '', category: '' }])
    await db.insert('consents', [{ customer_key: 4, purpose: 'marketing', channel: 'push', granted: 0, source: 'app', updated_at: at }])
    await index.refresh(t)
    expect([index.withdrawn(t, 4, 'marketing', 'push'), index.withdrawn(t, 3, 'marketing', 'push')]).toEqual([true, false])
    const merged = await ids.merge(t, no('MI', 4), no('MI', 3), admin)
    // 12 refused service pushes; 2 never decided.
    const service = await ids.merge(t, no('MI', 12), no('MI', 2), admin)
    await index.refresh(t)
    // A target made for 3 before the merge is closed at the pull, and one left for 4 too.
    expect([index.withdrawn(t, 3, 'marketing', 'push'), index.withdrawn(t, 4, 'marketing', 'push')]).toEqual([true, true])
    expect(index.withdrawn(t, 2, 'service', 'push')).toBe(true)
    // A grant of the survivor's later than the withdrawal (told by this process) decides for both.
    index.apply(t, [{ customerKey: 3, purpose: 'marketing', channel: 'push', granted: true }])
    expect([index.withdrawn(t, 3, 'marketing', 'push'), index.withdrawn(t, 4, 'marketing', 'push')]).toEqual([false, false])
    await ids.undo(t, merged!.changeId, 'Li Wei')
    await ids.undo(t, service!.changeId, 'Li Wei')
    await index.refresh(t)
    // Apart again: each key by its own stored decisions (3's grant of 01-01, 4's withdrawal; none of 2's).
    expect([index.withdrawn(t, 3, 'marketing', 'push'), index.withdrawn(t, 4, 'marketing', 'push')]).toEqual([false, true])
    expect([index.withdrawn(t, 2, 'service', 'push'), index.withdrawn(t, 12, 'service', 'push')]).toEqual([false, true])
  })
})
