import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { checkEvent, trackingPlanInput } from './tracking-plan.js'

const plan = trackingPlanInput.parse({
  mode: 'block',
  events: {
    transfer_completed: { properties: { amount: { type: 'number', required: true }, channel: { type: 'string', enum: ['app', 'counter'] } }, allowAdditionalProperties: false },
    product_viewed: { properties: { product_id: { type: 'string', required: true } } },
  },
})

describe('checkEvent', () => {
  it('lists every violation', () => {
    expect(checkEvent(plan, 'transfer_completed', { amount: 5, channel: 'app' })).toEqual([])
    expect(checkEvent(plan, 'transfer_completed', { channel: 'atm', extra: 1 })).toEqual(['missing_property:amount', 'not_in_enum:channel', 'unplanned_property:extra'])
    expect(checkEvent(plan, 'transfer_completed', { amount: '5' })).toEqual(['wrong_type:amount:number'])
    expect(checkEvent(plan, 'nope', {})).toEqual(['unplanned_event:nope'])
    expect(checkEvent({ ...plan, allowUnplannedEvents: true }, 'nope', {})).toEqual([])
  })
})

describe('tracking plans over HTTP', () => {
  let t: TestApp
  let bank: Awaited<ReturnType<typeof tenantWithKeys>>
  let other: Awaited<ReturnType<typeof tenantWithKeys>>
  beforeAll(async () => {
    t = await openTestApp()
    bank = await tenantWithKeys(t, 'plan-bank')
    other = await tenantWithKeys(t, 'free-bank')
  })
  afterAll(async () => t?.close())
  const h = (k: string) => ({ authorization: `Bearer ${k}` })
  const ev = (event: string, properties: Record<string, unknown>) => ({ type: 'track', messageId: crypto.randomUUID(), userId: 'u1', event, properties })

  it('blocks, then flags, then is removed', async () => {
    expect((await t.app.inject({ url: '/v1/tracking-plan', headers: h(bank.admin) })).statusCode).toBe(404)
    const put = await t.app.inject({ method: 'PUT', url: '/v1/tracking-plan', headers: h(bank.admin), payload: plan })
    expect(put.statusCode).toBe(200)
    expect(put.json()).toMatchObject({ mode: 'block', version: 1 })
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tracking-plan', headers: h(bank.write), payload: plan })).statusCode).toBe(403)

    const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: h(bank.write), payload: { batch: [ev('transfer_completed', { amount: 3 }), ev('transfer_completed', { amount: 'x' }), ev('unknown_thing', {})] } })
    expect(res.json().accepted).toBe(1)
    expect(res.json().rejected.map((r: { index: number; code: string; field: string }) => [r.index, r.code, r.field])).toEqual([
      [1, 'TRACKING_PLAN_VIOLATION', 'properties.amount'],
      [2, 'TRACKING_PLAN_VIOLATION', 'event'],
    ])
    // Other tenants are not bound by this plan.
    expect((await t.app.inject({ method: 'POST', url: '/v1/track', headers: h(other.write), payload: ev('unknown_thing', {}) })).statusCode).toBe(200)

    await t.app.inject({ method: 'PUT', url: '/v1/tracking-plan', headers: h(bank.admin), payload: { ...plan, mode: 'flag' } })
    const flagged = ev('unknown_thing', {})
    const f = await t.app.inject({ method: 'POST', url: '/v1/track', headers: h(bank.write), payload: flagged })
    expect(f.json()).toMatchObject({ accepted: 1, flagged: 1 })
    const [row] = await t.engine.db.system.query<{ violations: string[] }>('SELECT violations FROM events WHERE message_id = {m:String}', { m: flagged.messageId })
    expect(row!.violations).toEqual(['unplanned_event:unknown_thing'])

    expect((await t.app.inject({ method: 'DELETE', url: '/v1/tracking-plan', headers: h(bank.admin) })).statusCode).toBe(204)
    expect((await t.app.inject({ url: '/v1/tracking-plan', headers: h(bank.admin) })).statusCode).toBe(404)
    const free = await t.app.inject({ method: 'POST', url: '/v1/track', headers: h(bank.write), payload: ev('unknown_thing', {}) })
    expect(free.json()).toMatchObject({ accepted: 1, flagged: 0 })
  })

  it('refuses an invalid plan naming the field', async () => {
    const res = await t.app.inject({ method: 'PUT', url: '/v1/tracking-plan', headers: h(bank.admin), payload: { mode: 'loud', events: {} } })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.issues[0].field).toBe('body.mode')
  })
})

describe('backpressure', () => {
  let t: TestApp
  beforeAll(async () => {
    // A tiny queue and a slow flush make the writer fall behind on purpose.
    t = await openTestApp({ INGEST_MAX_QUEUE_EVENTS: '150', INGEST_FLUSH_MS: '300', INGEST_FLUSH_ROWS: '100000' })
  })
  afterAll(async () => t?.close())

  it('answers 503 with Retry-After instead of queueing without bound, and stores what it accepted', async () => {
    const bank = await tenantWithKeys(t, 'busy-bank')
    const batch = () => ({ batch: Array.from({ length: 100 }, () => ({ type: 'track', messageId: crypto.randomUUID(), userId: 'u', event: 'e' })) })
    const [a, b] = await Promise.all([
      t.app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${bank.write}` }, payload: batch() }),
      t.app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${bank.write}` }, payload: batch() }),
    ])
    const statuses = [a.statusCode, b.statusCode].sort()
    expect(statuses).toEqual([200, 503])
    const refused = a.statusCode === 503 ? a : b
    expect(refused.headers['retry-after']).toBe('1')
    expect(refused.json().error.code).toBe('OVERLOADED')
    const [r] = await t.engine.db.system.query<{ n: string }>('SELECT count() AS n FROM events')
    expect(Number(r!.n)).toBe(100)
  })
})
