import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { campaign, no, openPushApp, seedBank, type PushFixture } from './push.fixture.js'

/**
 * The approval step and test sends on the real engine: a marketing campaign runs only once a
 * second holder approved its current version; a test send travels the pull path marked as a
 * test, counts in no statistics and spends no cap, and consent still applies to it.
 */

let fx: PushFixture
let app: FastifyInstance
let t: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const put = (id: string, body: object, key: string) => app.inject({ method: 'PUT', url: `/v1/push/campaigns/${id}`, headers: auth(key), payload: body })
const post = (url: string, body: object, key: string) => app.inject({ method: 'POST', url, headers: auth(key), payload: body })
const approval = async (id: string) => (await app.inject({ url: `/v1/push/campaigns/${id}/approval`, headers: auth(keys.analyst!) })).json()
const dueNow = () => ({ kind: 'once', at: new Date(Date.now() - 60_000).toISOString() })

beforeAll(async () => {
  const opened = await openPushApp()
  fx = opened.fx
  app = opened.app
  const service = opened.keyService
  // Marketing push granted to customers 1..10, refused by 11 (push.fixture.ts).
  t = await seedBank(fx, { slug: 'approve-bank', timeZone: 'Asia/Shanghai', prefix: 'AB', n: 20, loanDay: '2026-03-18', asOf: new Date() })
  const issue = async (name: string, roles: ('marketer' | 'admin' | 'analyst' | 'push')[], holder: string) => (keys[name] = (await service.issue(t, { roles, holder })).key)
  await issue('li', ['marketer'], 'Li Na')
  await issue('li2', ['admin'], 'Li Na') // the same person with a second key
  await issue('wang', ['marketer'], 'Wang Fang')
  await issue('analyst', ['analyst'], 'An Analyst')
  await issue('push', ['push'], 'notification service')
  await fx.push.policies.save(t, { quietHours: null }, 'test')
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

describe('test sends', () => {
  const pull = async () => (await post('/v1/push/pull', { limit: 1000, leaseSeconds: 60 }, keys.push!)).json().targets as { campaignId: string; customerNo: string; test: boolean; title: string; body: string; targetId: string }[]
  const stats = async (id: string) => (await app.inject({ url: `/v1/push/campaigns/${id}/stats`, headers: auth(keys.analyst!) })).json()

  it('keeps test lists of the bank\'s customers and names an unknown one by its field', async () => {
    const bad = await app.inject({ method: 'PUT', url: '/v1/push/test-lists/staff', headers: auth(keys.li!), payload: { name: '员工测试机', members: [{ customerNo: no('AB', 1) }, { customerNo: 'NOPE' }] } })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.issues).toEqual([{ field: 'members.1.customerNo', message: 'no customer NOPE' }])
    const members = [{ customerNo: no('AB', 2), label: '李娜的手机' }, { customerNo: no('AB', 11), label: '王芳的手机' }, { customerNo: no('AB', 15), label: '柜台测试机' }]
    const ok = await app.inject({ method: 'PUT', url: '/v1/push/test-lists/staff', headers: auth(keys.li!), payload: { name: '员工测试机', members } })
    expect(ok.statusCode, ok.body).toBe(200)
    expect(ok.json()).toMatchObject({ id: 'staff', name: '员工测试机', changedBy: 'Li Na' })
    expect(ok.json().members).toHaveLength(3)
    expect((await app.inject({ url: '/v1/push/test-lists', headers: auth(keys.analyst!) })).statusCode).toBe(403)
  })

  it('is pulled marked as a test, before approval, counts in no statistics, spends no cap, and leaves out a customer without consent', async () => {
    // A paused, unapproved marketing campaign: a test send goes out all the same.
    expect((await put('autumn', campaign({ status: 'paused', schedule: dueNow() }), keys.li!)).statusCode).toBe(201)
    expect(await pull()).toEqual([])
    const sent = await post('/v1/push/campaigns/autumn/test', { list: 'staff' }, keys.wang!)
    expect(sent.statusCode, sent.body).toBe(200)
    const body = sent.json()
    // Customer 11 refused marketing push; 15 never granted it: consent still applies to tests.
    expect(body.leftOut).toEqual([
      { customerNo: no('AB', 11), label: '王芳的手机', reason: 'consent_refused' },
      { customerNo: no('AB', 15), label: '柜台测试机', reason: 'no_consent' },
    ])
    expect(body.queued.map((q: { customerNo: string }) => q.customerNo)).toEqual([no('AB', 2)])
    // A marketer's key does not read personal data: the filled text is left out of the answer.
    expect(body.queued[0].body).toBeUndefined()

    const got = await pull()
    expect(got).toHaveLength(1)
    expect(got[0]).toMatchObject({ campaignId: 'autumn', customerNo: no('AB', 2), test: true, body: '您好 张2*' })
    const ack = await post('/v1/push/ack', { results: [{ targetId: got[0]!.targetId, status: 'delivered' }] }, keys.push!)
    expect(ack.json()).toMatchObject({ accepted: 1 })
    expect(await stats('autumn')).toMatchObject({ targeted: 0, queued: 0, sent: 0 })

    // A second test the same day goes out again.
    expect((await post('/v1/push/campaigns/autumn/test', { list: 'staff' }, keys.li!)).json().queued).toHaveLength(1)
    expect((await pull()).map((x) => x.test)).toEqual([true])

    // The low class's cap is one a day: customer 2 got two tests and still has today's budget.
    // (Approved by a second holder, made active: a new version, approved again.)
    await post('/v1/push/campaigns/autumn/approval', { version: 1 }, keys.wang!)
    expect((await put('autumn', campaign({ schedule: dueNow() }), keys.li!)).json().campaign.version).toBe(2)
    await post('/v1/push/campaigns/autumn/approval', { version: 2 }, keys.wang!)
    const run = await fx.push.runTargeting(t, { campaignIds: ['autumn'] })
    expect(run.campaigns[0]).toMatchObject({ queued: 10, suppressed: { consent_refused: 1, no_consent: 9 } })
    expect(await stats('autumn')).toMatchObject({ targeted: 20, queued: 10, sent: 0 })
  })

  it('refuses an unknown or empty list with the field at fault', async () => {
    expect((await post('/v1/push/campaigns/autumn/test', { list: 'none-such' }, keys.li!)).statusCode).toBe(404)
    expect((await post('/v1/push/campaigns/autumn/test', { list: 'Bad List' }, keys.li!)).json().error.issues[0].field).toBe('body.list')
    expect((await app.inject({ method: 'PUT', url: '/v1/push/test-lists/empty', headers: auth(keys.li!), payload: { name: '空', members: [] } })).statusCode).toBe(200)
    const empty = await post('/v1/push/campaigns/autumn/test', { list: 'empty' }, keys.li!)
    expect(empty.statusCode).toBe(400)
    expect(empty.json().error.issues).toEqual([{ field: 'list', message: 'empty' }])
  })
})

describe('approval of marketing campaigns', () => {
  it('refuses the holder who made the version, under any of their keys, and a version that changed meanwhile', async () => {
    // Normal class (two a day): customers 1..10 already have autumn's low-class message today.
    expect((await put('spring', campaign({ priority: 'normal', schedule: dueNow() }), keys.li!)).statusCode).toBe(201)
    expect(await approval('spring')).toMatchObject({ required: true, status: 'draft', version: 1, changedBy: 'Li Na' })
    const asked = await post('/v1/push/campaigns/spring/approval/request', { version: 1, note: '请审批' }, keys.li!)
    expect(asked.statusCode).toBe(200)
    expect(asked.json()).toMatchObject({ status: 'requested', requestedBy: 'Li Na' })
    for (const k of [keys.li!, keys.li2!]) {
      const self = await post('/v1/push/campaigns/spring/approval', { version: 1 }, k)
      expect(self.statusCode).toBe(403)
      expect(self.json().error).toMatchObject({ code: 'SELF_APPROVAL', issues: [{ field: 'holder' }] })
    }
    const stale = await post('/v1/push/campaigns/spring/approval', { version: 2 }, keys.wang!)
    expect(stale.json().error).toMatchObject({ code: 'CONFLICT', issues: [{ field: 'version' }] })
    expect((await post('/v1/push/campaigns/spring/approval', { version: 1 }, keys.analyst!)).statusCode).toBe(403)
    expect((await approval('spring')).status).toBe('requested')
  })

  it('a scheduled run skips an unapproved campaign with a reason, run now refuses it, and an approved one runs', async () => {
    const before = await fx.push.runTargeting(t, { campaignIds: ['spring'] })
    expect(before.campaigns[0]).toMatchObject({ campaignId: 'spring', skipped: 'not_approved', targeted: 0 })
    const now = await post('/v1/push/campaigns/spring/run', {}, keys.li!)
    expect(now.statusCode).toBe(409)
    expect(now.json().error).toMatchObject({ code: 'NOT_APPROVED', issues: [{ field: 'approval' }] })

    const ok = await post('/v1/push/campaigns/spring/approval', { version: 1, note: '同意' }, keys.wang!)
    expect(ok.statusCode).toBe(200)
    expect(ok.json()).toMatchObject({ status: 'approved', approvedBy: 'Wang Fang', requestedBy: 'Li Na', note: '同意' })
    const run = await fx.push.runTargeting(t, { campaignIds: ['spring'] })
    expect(run.campaigns[0]).toMatchObject({ campaignId: 'spring', queued: 10 })
    expect(run.campaigns[0]!.skipped).toBeUndefined()
  })

  it('any change after approval needs approval again; the approver may then not approve their own change', async () => {
    const changed = await put('spring', campaign({ priority: 'normal', schedule: dueNow(), name: 'spring, reworded' }), keys.wang!)
    expect(changed.json()).toMatchObject({ changed: true, campaign: { version: 2, createdBy: 'Wang Fang' } })
    expect(await approval('spring')).toMatchObject({ status: 'draft', version: 2, approvedBy: null })
    expect((await fx.push.runTargeting(t, { campaignIds: ['spring'] })).campaigns[0]).toMatchObject({ skipped: 'not_approved' })
    expect((await post('/v1/push/campaigns/spring/approval', { version: 2 }, keys.wang!)).json().error.code).toBe('SELF_APPROVAL')
    expect((await post('/v1/push/campaigns/spring/approval', { version: 2 }, keys.li2!)).json()).toMatchObject({ status: 'approved', approvedBy: 'Li Na' })
  })

  it('service campaigns need no approval', async () => {
    expect((await put('loan-reminder', campaign({ purpose: 'service', schedule: dueNow() }), keys.li!)).statusCode).toBe(201)
    expect(await approval('loan-reminder')).toMatchObject({ required: false, status: 'not_required' })
    expect((await fx.push.runTargeting(t, { campaignIds: ['loan-reminder'] })).campaigns[0]!.skipped).toBeUndefined()
    const ask = await post('/v1/push/campaigns/loan-reminder/approval/request', { version: 1 }, keys.li!)
    expect(ask.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'purpose' }] })
  })
})
