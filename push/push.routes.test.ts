import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { inHoldout } from '../core/holdout.js'
import { campaign, no, openPushApp, seedBank, type PushFixture } from './push.fixture.js'

/** Push over HTTP as the console and the notification service call it, on the real engine. */

let fx: PushFixture
let app: FastifyInstance
let t: number
let other: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const put = (id: string, body: object, key = keys.admin!, q = '') => app.inject({ method: 'PUT', url: `/v1/push/campaigns/${id}${q}`, headers: auth(key), payload: body })

beforeAll(async () => {
  // Not about approval (approval.routes.test.ts is): marketing campaigns here run unapproved.
  const opened = await openPushApp({ requireApproval: false })
  fx = opened.fx
  app = opened.app
  const service = opened.keyService
  t = await seedBank(fx, { slug: 'http-bank', timeZone: 'Asia/Shanghai', prefix: 'HB', n: 40, loanDay: '2026-03-18', asOf: new Date(), marketingForAll: true })
  other = (await fx.tenants.create({ slug: 'http-other', name: 'other' })).id
  for (const scope of ['write', 'read', 'admin'] as const) keys[scope] = (await service.issue(t, { roles: [], legacyScope: scope, holder: `test ${scope}` })).key
  keys.otherAdmin = (await service.issue(other, { roles: ['admin'], holder: 'other admin' })).key
  // Quiet hours off for the bank: the delivery tests pull at whatever time of day they run.
  await fx.push.policies.save(t, { quietHours: null }, 'test')
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

describe('campaigns', () => {
  it('creates, versions with who and a note, guards concurrent changes, and retires', async () => {
    const body = campaign({ changeNote: 'first' })
    expect((await put('spring', body)).statusCode).toBe(201)
    expect((await put('spring', body)).json()).toMatchObject({ changed: false, campaign: { version: 1 } })
    const v2 = await put('spring', { ...body, priority: 'normal', changeNote: 'more important' }, keys.admin, '?expectedVersion=1')
    expect(v2.json()).toMatchObject({ changed: true, campaign: { version: 2, createdBy: 'test admin' } })
    const stale = await put('spring', { ...body, name: 'x' }, keys.admin, '?expectedVersion=1')
    expect(stale.statusCode).toBe(409)
    expect(stale.json().error).toMatchObject({ code: 'CONFLICT', issues: [{ field: 'expectedVersion' }] })
    const versions = (await app.inject({ url: '/v1/push/campaigns/spring/versions', headers: auth(keys.read!) })).json().versions
    expect(versions.map((v: { changeNote: string }) => v.changeNote)).toEqual(['first', 'more important'])
    expect((await put('spring', body, keys.read)).statusCode).toBe(403)
    expect((await app.inject({ url: '/v1/push/campaigns/spring', headers: auth(keys.otherAdmin!) })).statusCode).toBe(404)
    expect((await app.inject({ method: 'DELETE', url: '/v1/push/campaigns/spring', headers: auth(keys.admin!) })).statusCode).toBe(204)
    expect((await app.inject({ url: '/v1/push/campaigns', headers: auth(keys.read!) })).json().campaigns).toEqual([])
  })

  it('refuses an invalid campaign with the field at fault', async () => {
    const bad = async (body: object) => (await put('bad', body)).json().error
    expect(await bad(campaign({ message: { body: { zh: '{{balance}}', en: 'x' } } }))).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'message.body.zh' }] })
    expect(await bad(campaign({ message: { body: { zh: '{{tag.no_such}}', en: 'x' } } }))).toMatchObject({ issues: [{ field: 'message' }] })
    expect(await bad(campaign({ audience: { rule: { tag: 'no_such', op: 'eq', value: true } } }))).toMatchObject({ issues: [{ field: expect.stringMatching(/^audience\.rule/) }] })
    expect(await bad(campaign({ audience: { segment: 'missing' } }))).toMatchObject({ issues: [{ field: 'audience.segment' }] })
    expect(await bad(campaign({ priority: 'critical' }))).toMatchObject({ issues: [{ field: 'priority' }] })
    expect(await bad(campaign({ schedule: { kind: 'cron', cron: '61 * * * *' } }))).toMatchObject({ issues: [{ field: 'schedule.cron' }] })
    expect(await bad({ ...campaign(), channel: 'fax' })).toMatchObject({ issues: [{ field: 'channel' }] })
  })
})

describe('policy', () => {
  it('reads the defaults, saves a version, and guards concurrent changes', async () => {
    const key = keys.otherAdmin!
    const first = (await app.inject({ url: '/v1/push/policy', headers: auth(key) })).json()
    expect(first).toMatchObject({ version: 0, quietHours: { start: '21:00', end: '08:00' }, consent: { service: 'unless_refused', security: 'always' } })
    const bad = await app.inject({ method: 'PUT', url: '/v1/push/policy', headers: auth(key), payload: { quietHours: { start: '25:00', end: '08:00' } } })
    expect(bad.json().error.issues[0].field).toBe('quietHours.start')
    const ok = await app.inject({ method: 'PUT', url: '/v1/push/policy?expectedVersion=0', headers: auth(key), payload: { quietHours: { start: '22:00', end: '07:00' }, changeNote: 'later nights' } })
    expect(ok.json()).toMatchObject({ changed: true, policy: { version: 1, quietHours: { start: '22:00' }, changeNote: 'later nights' } })
    expect((await app.inject({ method: 'PUT', url: '/v1/push/policy?expectedVersion=0', headers: auth(key), payload: {} })).statusCode).toBe(409)
    expect((await app.inject({ method: 'PUT', url: '/v1/push/policy', headers: auth(keys.read!), payload: {} })).statusCode).toBe(403)
  })
})

describe('delivery and stats', () => {
  it('runs, pulls with a read key, acknowledges, pages targets and reports the funnel with uplift', async () => {
    fx.holdout.perMille = 300
    try {
      const body = campaign({ schedule: { kind: 'once', at: new Date(Date.now() - 60_000).toISOString() }, conversion: { event: { names: ['wealth_purchased'] }, withinHours: 48 } })
      expect((await put('wealth', body)).statusCode).toBe(201)
      const run = await app.inject({ method: 'POST', url: '/v1/push/campaigns/wealth/run', headers: auth(keys.admin!), payload: {} })
      expect(run.statusCode).toBe(200)
      const held = Array.from({ length: 40 }, (_, i) => i + 1).filter((k) => k !== 11 && inHoldout(t, no('HB', k), 300))
      expect(run.json().campaigns[0]).toMatchObject({ targeted: 40, queued: 39 - held.length, suppressed: { consent_refused: 1, holdout: held.length } })

      expect((await app.inject({ method: 'POST', url: '/v1/push/pull', headers: auth(keys.write!), payload: {} })).statusCode).toBe(403)
      const pulled = (await app.inject({ method: 'POST', url: '/v1/push/pull', headers: auth(keys.read!), payload: { limit: 100, leaseSeconds: 60 } })).json().targets
      expect(pulled).toHaveLength(39 - held.length)
      const [a, b, c] = pulled
      const bad = await app.inject({ method: 'POST', url: '/v1/push/ack', headers: auth(keys.read!), payload: { results: [{ targetId: 'nope', status: 'delivered' }] } })
      expect(bad.json().error.issues[0].field).toBe('body.results.0.targetId')
      const ack = await app.inject({
        method: 'POST', url: '/v1/push/ack', headers: auth(keys.read!),
        payload: { results: [...pulled.slice(0, -1).map((p: { targetId: string }) => ({ targetId: p.targetId, status: 'delivered' })), { targetId: pulled.at(-1).targetId, status: 'failed', reason: 'unregistered' }] },
      })
      expect(ack.json()).toEqual({ accepted: pulled.length, rejected: [] })

      // The app reports delivery, opens and clicks through ingest; some customers convert.
      const db = fx.engine.db.forTenant(t)
      const soon = chDateTime(Date.now() + 60_000)
      const ev = (k: number, name: string, props: object) => ({
        customer_key: k, timestamp: soon, type: 'track', event: name, message_id: `${name}-${k}`, anonymous_id: '', user_id: no('HB', k),
        session_id: 's', properties: JSON.stringify(props), context: '{}', sent_at: soon, received_at: soon, violations: [],
      })
      const keyOf = (p: { customerNo: string }) => Number(p.customerNo.slice(2))
      await db.insert('events', [
        ...[a, b, c].map((p) => ev(keyOf(p), 'push_delivered', { target_id: p.targetId })),
        ev(keyOf(a), 'push_opened', { target_id: a.targetId }),
        ev(keyOf(a), 'push_clicked', { target_id: a.targetId }),
        ...[a, b].map((p) => ev(keyOf(p), 'wealth_purchased', {})),
        ev(held[0]!, 'wealth_purchased', {}),
      ])
      const stats = (await app.inject({ url: '/v1/push/campaigns/wealth/stats', headers: auth(keys.read!) })).json()
      const treated = 39 - held.length
      expect(stats).toMatchObject({ targeted: 40, queued: treated, sent: treated - 1, failed: 1, delivered: 3, opened: 1, clicked: 1 })
      expect(stats.conversion.groups).toMatchObject({ treated: { customers: treated, converted: 2 }, holdout: { customers: held.length, converted: 1 } })
      expect(stats.conversion.upliftVsHoldout).toBeCloseTo(2 / treated - 1 / held.length, 5)

      const page1 = (await app.inject({ url: '/v1/push/campaigns/wealth/targets?limit=10', headers: auth(keys.admin!) })).json()
      expect(page1.targets).toHaveLength(10)
      const page2 = (await app.inject({ url: `/v1/push/campaigns/wealth/targets?limit=10&cursor=${page1.nextCursor}`, headers: auth(keys.admin!) })).json()
      expect(page2.targets[0].customerNo > page1.targets[9].customerNo).toBe(true)
      const failed = (await app.inject({ url: '/v1/push/campaigns/wealth/targets?status=failed', headers: auth(keys.admin!) })).json()
      expect(failed.targets).toMatchObject([{ status: 'failed', reason: 'unregistered' }])
      const held1 = (await app.inject({ url: '/v1/push/campaigns/wealth/targets?status=suppressed&limit=1000', headers: auth(keys.admin!) })).json()
      expect(held1.targets.filter((x: { reason: string }) => x.reason === 'holdout')).toHaveLength(held.length)
      expect((await app.inject({ url: '/v1/push/campaigns/wealth/targets?cursor=zzz', headers: auth(keys.admin!) })).json().error.issues[0].field).toBe('cursor')
    } finally {
      fx.holdout.perMille = 0
    }
  })

  it('runs an event campaign only as its events arrive', async () => {
    const body = campaign({ purpose: 'security', priority: 'critical', schedule: { kind: 'event', steps: [{ event: { names: ['x_done'] } }], withinMinutes: 5 } })
    expect((await put('on-event', body)).statusCode).toBe(201)
    const res = await app.inject({ method: 'POST', url: '/v1/push/campaigns/on-event/run', headers: auth(keys.admin!), payload: {} })
    expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'schedule.kind' }] })
  })
})
