import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { newRunId } from '../core/run-id.js'
import { materializeSegment } from '../segments/segment.materialize.js'
import { createSegmentRepository } from '../segments/segment.repository.js'
import { createTagRepository } from '../tags/tag.repository.js'
import { localEvent } from '../test/fixtures.js'
import { campaign, keysWith, openPush, seedBank, targetsOf, type PushFixture } from './push.fixture.js'

/**
 * What targets say and who gets them: templates filled in the engine (profile, loan, bill,
 * product and tag fields; elder and English variants; a missing value suppresses, a fallback
 * fills), date triggers (loan and bill due, birthday, a date tag, a product opening), the
 * audience from a saved segment (materialized, or compiled when stale) or an inline rule, and
 * each customer's usual active hour.
 */

let fx: PushFixture
let t: number
const DAY1 = new Date('2026-03-15T02:00:00Z') // 10:00 in Shanghai; installments fall due on 03-18
const save = (id: string, over: Record<string, unknown>) => fx.push.campaigns.save(t, id, campaign(over), 'test')
const run = (ids: string[], asOf = DAY1) => fx.push.runTargeting(t, { asOf, campaignIds: ids })
const service = { purpose: 'service', priority: 'high' }

beforeAll(async () => {
  // Not about approval (approval.routes.test.ts is): marketing campaigns here run unapproved.
  fx = await openPush({ requireApproval: false })
  t = await seedBank(fx, { slug: 'content', timeZone: 'Asia/Shanghai', prefix: 'CT', n: 12, loanDay: '2026-03-18', asOf: DAY1 })
  // Many campaigns reach the same customers here: caps are another test's business.
  const wide = { day: 50, week: 100 }
  await fx.push.policies.save(t, { caps: { low: wide, normal: wide, high: wide } }, 'test')
}, 60_000)
afterAll(async () => fx?.close())

describe('messages', () => {
  it('fills loan fields, with the elder text for elders and English where the profile says so', async () => {
    await save('loan-due', {
      ...service,
      dateTrigger: { on: 'loan_due', daysBefore: 3 },
      message: {
        title: { zh: '还款提醒', en: 'Repayment reminder' },
        body: { zh: '{{name}}，您的贷款 {{loan.amount}} 元将于 {{loan.due_date}} 到期', en: 'Your installment of {{loan.amount}} is due on {{loan.due_date}}' },
        elder: { body: { zh: '贷款 {{loan.amount}} 元，{{loan.due_date}} 还', en: 'Pay {{loan.amount}} by {{loan.due_date}}' } },
      },
    })
    const out = await run(['loan-due'])
    expect(out.campaigns[0]).toMatchObject({ targeted: 3, queued: 3 })
    const rows = await targetsOf(fx, t, 'loan-due')
    expect([...rows.keys()]).toEqual([1, 2, 3])
    expect(rows.get(1)).toMatchObject({ variant: 'elder', title: '还款提醒', body: '贷款 1001.00 元，2026-03-18 还' })
    // Not due in three days: nobody else. Two days later it is due in one day: nobody.
    expect((await run(['loan-due'], new Date('2026-03-17T02:00:00Z'))).campaigns[0]).toMatchObject({ targeted: 0 })
  })

  it('uses the standard text for others, English for an English profile, and suppresses an unfilled message', async () => {
    await save('loan-all', {
      ...service,
      message: { body: { zh: '{{name}}：{{loan.amount}} 元 {{loan.due_date|近期}} 到期', en: '{{loan.amount}} due {{loan.due_date|soon}}' }, elder: { body: { zh: '老 {{loan.amount}}', en: 'old {{loan.amount}}' } } },
    })
    await run(['loan-all'])
    const rows = await targetsOf(fx, t, 'loan-all')
    expect(rows.get(2)).toMatchObject({ status: 'queued', variant: 'elder', body: '老 1002.00' })
    expect(keysWith(rows, 'missing_field')).toEqual([4, 5, 6, 7, 8, 9, 10, 11])
    expect(rows.get(12)?.reason).toBe('consent_refused')

    await save('hello', { ...service, message: { body: { zh: '您好 {{name}}，今天是 {{today}}', en: 'Hello {{name|there}}' } } })
    await run(['hello'])
    const hello = await targetsOf(fx, t, 'hello')
    expect(hello.get(5)).toMatchObject({ language: 'en', body: 'Hello 张5*' })
    expect(hello.get(6)).toMatchObject({ language: 'zh', body: '您好 张6*，今天是 2026-03-15' })
  })

  it('fills bill fields in the message language and tag values', async () => {
    await save('bill-due', { ...service, dateTrigger: { on: 'bill_due', daysBefore: 3 }, message: { body: { zh: '{{bill.biller}} {{bill.amount}} 元', en: '{{bill.biller}} {{bill.amount}}' } } })
    await save('next-inst', {
      ...service,
      dateTrigger: { on: 'tag_date', tag: 'next_installment_date', daysBefore: 3 },
      message: { body: { zh: '下次还款日 {{tag.next_installment_date}}', en: 'Next due {{tag.next_installment_date}}' } },
    })
    await run(['bill-due', 'next-inst'])
    expect([...(await targetsOf(fx, t, 'bill-due')).values()].map((r) => [r.customer_key, r.body])).toEqual([[6, '水费 88.50 元']])
    const next = await targetsOf(fx, t, 'next-inst')
    expect([...next.keys()]).toEqual([1, 2, 3])
    expect(next.get(3)?.body).toBe('下次还款日 2026-03-18')
  })
})

describe('date triggers', () => {
  it('greets on the birthday and announces a product opening', async () => {
    await save('birthday', { ...service, priority: 'normal', dateTrigger: { on: 'birthday' }, message: { body: { zh: '生日快乐 {{name}}', en: 'Happy birthday' } } })
    await run(['birthday'])
    expect([...(await targetsOf(fx, t, 'birthday')).keys()]).toEqual([7])

    const db = fx.engine.db.forTenant(t)
    const now = chDateTime(DAY1)
    await save('opening', {
      purpose: 'marketing',
      audience: { rule: { tag: 'elder', op: 'eq', value: true } },
      dateTrigger: { on: 'product_opening', productKind: 'wealth', daysBefore: 1 },
      message: { body: { zh: '{{product.name}} 明天开放，年化 {{product.rate}}%', en: '{{product.name}} opens {{product.opening_date}}' } },
    })
    const none = await run(['opening'])
    expect(none.campaigns[0]).toMatchObject({ skipped: 'no_product_opening' })
    await db.insert('products', [
      { product_id: 'w1', kind: 'wealth', name_zh: '稳健理财一号', name_en: 'Steady One', category: 'c', risk_level: 2, min_amount: 1000, annual_rate: 0.0385, valid_from: '2026-03-16', valid_to: '2026-12-31', attributes: {}, status: 'active', updated_at: now },
    ])
    await run(['opening'])
    const rows = await targetsOf(fx, t, 'opening')
    expect(keysWith(rows, 'queued')).toEqual([1, 2, 3, 4])
    expect(rows.get(1)?.body).toBe('稳健理财一号 明天开放，年化 3.85%')
  })
})

describe('audiences and timing', () => {
  it('targets a saved segment from its materialized build, or compiled when the build is stale', async () => {
    const segments = createSegmentRepository({ db: fx.engine.db })
    const { segment } = await segments.save(t, 'elders', { name: 'Elders', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } }, 'test')
    const defs = new Map((await createTagRepository({ db: fx.engine.db }).list(t)).map((d) => [d.name, d]))
    await materializeSegment({ db: fx.engine.db }, { tenantId: t, timeZone: 'Asia/Shanghai', segment, defs, asOf: DAY1, build: newRunId(), trigger: 'test' })
    // The build holds 1-4; the bitmap is what targeting reads, so a changed build shows, once it
    // is complete (its run recorded): a build whose materialization stopped half-way is not read.
    const db = fx.engine.db.forTenant(t)
    const newer = (plus: number, keys: number[]) =>
      db.command(
        `INSERT INTO segment_members (tenant_id, segment_id, build, version, size, keys, built_at)
         SELECT {tenant:UInt16}, 'elders', build + ${plus}, version, ${keys.length}, bitmapBuild([${keys.map((k) => `toUInt32(${k})`).join(', ')}]), built_at FROM segment_members
         WHERE tenant_id = {tenant:UInt16} AND segment_id = 'elders' ORDER BY build LIMIT 1`,
      )
    await newer(1, [1, 2])
    await db.command(
      `INSERT INTO segment_runs (tenant_id, segment_id, build, version, size, entered, exited, started_at, finished_at, trigger)
       SELECT {tenant:UInt16}, 'elders', build + 1, version, 2, 0, 2, now64(3), now64(3), 'test' FROM segment_runs
       WHERE tenant_id = {tenant:UInt16} AND segment_id = 'elders' ORDER BY build LIMIT 1`,
    )
    await newer(2, [3])
    await save('seg-built', { ...service, audience: { segment: 'elders' } })
    await run(['seg-built'])
    expect([...(await targetsOf(fx, t, 'seg-built')).keys()]).toEqual([1, 2])
    // A newer version than the build: compiled now.
    await segments.save(t, 'elders', { name: 'Elders', purpose: 'service', rule: { all: [{ tag: 'elder', op: 'eq', value: true }, { attribute: 'language', op: 'eq', value: 'zh' }] } }, 'test')
    await save('seg-fresh', { ...service, audience: { segment: 'elders' } })
    await run(['seg-fresh'])
    expect([...(await targetsOf(fx, t, 'seg-fresh')).keys()]).toEqual([1, 2, 3, 4])
    // A service campaign cannot target a marketing segment: refused when saved, and when the
    // segment changed purpose since.
    await segments.save(t, 'm-seg', { name: 'M', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } }, 'test')
    await save('wrong-seg', { ...service, audience: { segment: 'm-seg' } })
    await segments.save(t, 'm-seg', { name: 'M', purpose: 'marketing', rule: { tag: 'elder', op: 'eq', value: true } }, 'test')
    await expect(save('wrong-seg-2', { ...service, audience: { segment: 'm-seg' } })).rejects.toMatchObject({ issues: [{ field: 'audience.segment' }] })
    const wrong = await run(['wrong-seg'])
    expect(wrong.errors[0]).toMatchObject({ campaignId: 'wrong-seg', code: 'VALIDATION_FAILED', issues: [{ field: 'audience.segment' }] })
  })

  it("releases at each customer's usual active hour, after quiet hours, with a fallback", async () => {
    const db = fx.engine.db.forTenant(t)
    const events = []
    for (const d of ['2026-03-10', '2026-03-11', '2026-03-12']) {
      events.push(localEvent(1, `${d} 19:15`, 'app_open'), localEvent(1, `${d} 19:40`, 'app_open'))
      events.push(localEvent(2, `${d} 23:10`, 'app_open'))
    }
    events.push(localEvent(1, '2026-03-12 08:00', 'app_open'))
    await db.insert('events', events.map((e) => ({ ...e, user_id: `CT000${e.customer_key}`, violations: [] })))
    await save('active', { ...service, schedule: { kind: 'active_hour', fallbackHour: 12 } })
    await run(['active'])
    const rows = await targetsOf(fx, t, 'active')
    expect(rows.get(1)?.due_at).toBe('2026-03-15 11:00:00.000') // 19:00 local
    expect(rows.get(2)?.due_at).toBe('2026-03-16 00:00:00.000') // 23:00 is quiet: 08:00 the next morning
    expect(rows.get(3)?.due_at).toBe('2026-03-15 04:00:00.000') // no events: 12:00 local
  })
})
