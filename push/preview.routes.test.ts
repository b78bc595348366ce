import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { campaign, no, openPushApp, seedBank, targetsOf, type PushFixture } from './push.fixture.js'
import { occurrenceOf } from './schedule.js'

/** The console's schedule and message previews, answered by the scheduler's and targeting's own code. */

let fx: PushFixture
let app: FastifyInstance
let t: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const post = (url: string, payload: object, key = keys.admin!) => app.inject({ method: 'POST', url, headers: auth(key), payload })
const schedules = (body: object, key?: string) => post('/v1/push/schedules/preview', body, key)
const templates = (body: object, key?: string) => post('/v1/push/templates/preview', body, key)

beforeAll(async () => {
  const opened = await openPushApp()
  fx = opened.fx
  app = opened.app
  const service = opened.keyService
  const soon = new Date(Date.now() + 5 * 86_400_000).toISOString().slice(0, 10)
  t = await seedBank(fx, { slug: 'preview-bank', timeZone: 'Asia/Shanghai', prefix: 'PV', n: 12, loanDay: soon, asOf: new Date(), marketingForAll: true })
  for (const role of ['admin', 'marketer', 'analyst'] as const) keys[role] = (await service.issue(t, { roles: [role], holder: `test ${role}` })).key
  await fx.push.policies.save(t, { quietHours: null }, 'test')
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

describe('POST /v1/push/schedules/preview', () => {
  it("answers one run per local day in the bank's zone, each the one the scheduler makes that day", async () => {
    // Monday 2026-03-16 12:00 in Shanghai: today's 09:00 has passed, a run now makes it (due at once).
    const from = '2026-03-16T12:00:00+08:00'
    const res = await schedules({ cron: '0 9,18 * * 1-5', count: 6, from })
    expect(res.statusCode, res.body).toBe(200)
    const out = res.json() as { timeZone: string; runs: { localDate: string; at: string }[] }
    expect(out.timeZone).toBe('Asia/Shanghai')
    expect(out.runs.map((r) => r.localDate)).toEqual(['2026-03-16', '2026-03-17', '2026-03-18', '2026-03-19', '2026-03-20', '2026-03-23'])
    expect(out.runs[0]!.at).toBe('2026-03-16T01:00:00.000Z')
    expect(out.runs[1]!.at).toBe('2026-03-17T01:00:00.000Z')
    // Each agrees with the scheduler's own decision for a run at that time.
    for (const r of out.runs) expect(occurrenceOf({ kind: 'cron', cron: '0 9,18 * * 1-5' }, new Date(r.at), 'Asia/Shanghai')).toEqual({ due: true, localDate: r.localDate, dueAt: new Date(r.at) })
  })

  it('reads the cron in another zone when asked, and the last day of the month as node-cron does', async () => {
    const res = await schedules({ cron: '30 8 L * *', timeZone: 'Europe/London', count: 2, from: '2026-03-30T12:00:00Z' })
    expect(res.statusCode, res.body).toBe(200)
    // London is on summer time (UTC+1) from 29 March.
    expect(res.json().runs).toEqual([{ localDate: '2026-03-31', at: '2026-03-31T07:30:00.000Z' }, { localDate: '2026-04-30', at: '2026-04-30T07:30:00.000Z' }])
  })

  it('refuses a bad cron, zone or count with a coded 400 naming the field', async () => {
    for (const [body, field] of [
      [{ cron: '0 25 * * *' }, 'body.cron'],
      [{ cron: '0 9 * *' }, 'body.cron'],
      [{ cron: '0 9 * * *', timeZone: 'Mars/Olympus' }, 'body.timeZone'],
      [{ cron: '0 9 * * *', count: 0 }, 'body.count'],
      [{ cron: '0 9 * * *', extra: 1 }, ''],
    ] as const) {
      const res = await schedules(body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json().error.code).toBe('VALIDATION_FAILED')
      if (field) expect(res.json().error.issues.map((i: { field: string }) => i.field), JSON.stringify(body)).toContain(field)
    }
  })

  it('is for keys that may write campaigns', async () => {
    expect((await schedules({ cron: '0 9 * * *' }, keys.analyst)).statusCode).toBe(403)
    expect((await schedules({ cron: '0 9 * * *' }, keys.marketer)).statusCode).toBe(200)
  })
})

const loanMessage = {
  body: { zh: '{{name}}，您的贷款{{loan.amount}}元将于{{loan.due_date}}到期', en: '{{loan.amount}} due on {{loan.due_date}}' },
  elder: { body: { zh: '{{name|您}}：还款{{loan.amount}}元', en: 'Repay {{loan.amount}}' } },
}

describe('POST /v1/push/templates/preview', () => {
  it('fills the message as targeting does, variant and language included', async () => {
    // A run of the same message writes the targets' text: the previews must read the same.
    const body = campaign({ purpose: 'service', schedule: { kind: 'once', at: new Date(Date.now() - 60_000).toISOString() }, message: loanMessage })
    expect((await app.inject({ method: 'PUT', url: '/v1/push/campaigns/loan-preview', headers: auth(keys.admin!), payload: body })).statusCode).toBe(201)
    expect((await post('/v1/push/campaigns/loan-preview/run', {})).statusCode).toBe(200)
    const written = await targetsOf(fx, t, 'loan-preview')
    const queued = [...written.values()].filter((x) => x.status === 'queued')
    expect(queued.length).toBeGreaterThan(1)
    for (const target of queued) {
      const res = await templates({ message: loanMessage, customerNo: target.customer_no })
      expect(res.statusCode, res.body).toBe(200)
      const p = res.json()
      expect(p.language).toBe(target.language)
      expect(p.elder).toBe(target.variant === 'elder')
      expect(p.texts[p.language].body).toBe(target.body)
    }
    // Customer 1: elder, Chinese, an installment of 1001.00.
    const one = (await templates({ message: loanMessage, customerNo: no('PV', 1) })).json()
    expect(one).toMatchObject({ customerNo: no('PV', 1), elder: true, language: 'zh', texts: { zh: { title: null, body: '张1*：还款1001.00元' }, en: { body: 'Repay 1001.00' } } })
    expect(one.fields).toContainEqual({ field: 'loan.amount', value: '1001.00', masked: false })
  })

  it('leaves the body unfilled where targeting would leave the customer out (missing_field)', async () => {
    // Customer 8 has no installment: the run above suppressed them for it.
    const p = (await templates({ message: loanMessage, customerNo: no('PV', 8) })).json()
    expect(p.texts.zh.body).toBeNull()
    expect(p.fields).toContainEqual({ field: 'loan.amount', value: null, masked: false })
    expect((await targetsOf(fx, t, 'loan-preview')).get(8)?.reason).toBe('missing_field')
  })

  it('masks C2 values for a key without personal:read, and says a value is there', async () => {
    const res = await templates({ message: loanMessage, customerNo: no('PV', 2) }, keys.marketer)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.body).not.toContain('张2*')
    expect(res.body).not.toContain('1002.00')
    expect(res.json().texts.zh.body).toBe('***：还款***元')
    expect(res.json().fields).toContainEqual({ field: 'name', value: '***', masked: true })
    // A medium-sensitivity tag is C2 too; a missing value stays missing.
    const tagged = await templates({ message: { body: { zh: '{{tag.next_installment_date|无}}', en: '{{tag.next_installment_date}}' } }, customerNo: no('PV', 2) }, keys.marketer)
    expect(tagged.json().texts.zh.body).toBe('***')
    const admin = await templates({ message: { body: { zh: '{{tag.next_installment_date|无}}', en: '-' } }, customerNo: no('PV', 2) })
    expect(admin.json().texts.zh.body).toMatch(/^\d{4}-\d{2}-\d{2}$/)
    const none = await templates({ message: { body: { zh: '{{tag.next_installment_date|无}}', en: '-' } }, customerNo: no('PV', 9) }, keys.marketer)
    expect(none.json().texts.zh.body).toBe('无')
  })

  it('without a customer fills only today and the fallbacks', async () => {
    const p = (await templates({ message: { body: { zh: '{{name|客户}}您好，今天是{{today}}', en: 'Hi {{name}}' } } })).json()
    expect(p.customerNo).toBeNull()
    expect(p.language).toBeNull()
    expect(p.texts.zh.body).toBe(`客户您好，今天是${p.localDate}`)
    expect(p.texts.en.body).toBeNull()
  })

  it('refuses a bad template or an unknown customer, naming the field', async () => {
    const bad = await templates({ message: { body: { zh: '{{nope}}', en: 'x' } } })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'body.message.body.zh' }] })
    const noBody = await templates({ message: { title: { zh: 'x', en: 'x' } } })
    expect(noBody.statusCode).toBe(400)
    expect(noBody.json().error.issues.map((i: { field: string }) => i.field)).toContain('body.message.body')
    const unknown = await templates({ message: loanMessage, customerNo: 'NO-SUCH' })
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json().error.code).toBe('NOT_FOUND')
    expect((await templates({ message: loanMessage }, keys.analyst)).statusCode).toBe(403)
  })
})
