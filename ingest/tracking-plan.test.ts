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

/** Every name Object.prototype has: a plan is read by own names only, so none of these may look planned. */
const PROTO_NAMES = Object.getOwnPropertyNames(Object.prototype)
/** A plan cannot name `__proto__`: the server's JSON parser refuses the key and zod's record leaves it out. */
const PLANNABLE = PROTO_NAMES.filter((n) => n !== '__proto__')

describe('checkEvent with names that Object.prototype has', () => {
  const strict = trackingPlanInput.parse({ mode: 'flag', events: { ok_event: { properties: { amount: { type: 'number' } }, allowAdditionalProperties: false } } })

  it.each(PROTO_NAMES)('an event named %s is unplanned, not a crash', (name) => {
    expect(checkEvent(strict, name, {})).toEqual([`unplanned_event:${name}`])
    expect(checkEvent({ ...strict, allowUnplannedEvents: true }, name, {})).toEqual([])
  })

  it.each(PROTO_NAMES)('a property %s sent to a closed event is unplanned', (name) => {
    expect(checkEvent(strict, 'ok_event', { amount: 1, [name]: 'x' })).toEqual([`unplanned_property:${name}`])
    expect(checkEvent(strict, 'ok_event', { amount: 1 })).toEqual([])
  })

  it.each(PLANNABLE)('a planned property %s is checked by what was sent, not by what Object.prototype has', (name) => {
    // A planned property of that name, optional and not sent: nothing to say.
    const own = trackingPlanInput.parse({ mode: 'flag', events: { e: { properties: { [name]: { type: 'string' } } } } })
    expect(checkEvent(own, 'e', {})).toEqual([])
    expect(checkEvent(own, 'e', { [name]: 'x' })).toEqual([])
    const required = trackingPlanInput.parse({ mode: 'flag', events: { e: { properties: { [name]: { type: 'string', required: true } } } } })
    expect(checkEvent(required, 'e', {})).toEqual([`missing_property:${name}`])
  })

  it.each(PLANNABLE)('a plan that names the event %s checks it as planned', (name) => {
    const own = trackingPlanInput.parse({ mode: 'flag', events: { [name]: { properties: { n: { type: 'number', required: true } } } } })
    expect(checkEvent(own, name, { n: 1 })).toEqual([])
    expect(checkEvent(own, name, {})).toEqual(['missing_property:n'])
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

  it.each(['flag', 'block'] as const)(
    'in %s mode, stores the planned events of a batch that also holds events named like Object.prototype members, in the worker and in this thread',
    async (mode) => {
      const k = await tenantWithKeys(t, `proto-${mode}`)
      const put = await t.app.inject({ method: 'PUT', url: '/v1/tracking-plan', headers: h(k.admin), payload: { mode, allowUnplannedEvents: false, events: { ok_event: { properties: {} } } } })
      expect(put.statusCode).toBe(200)
      const batch = () => [ev('ok_event', {}), ...PROTO_NAMES.map((name) => ev(name, {}))]
      const expectAnswer = (body: { accepted: number; flagged: number; rejected: { index: number; code: string }[] }) => {
        if (mode === 'flag') expect(body).toMatchObject({ accepted: 1 + PROTO_NAMES.length, flagged: PROTO_NAMES.length, rejected: [] })
        else {
          expect(body).toMatchObject({ accepted: 1, flagged: 0 })
          expect(body.rejected.map((r) => [r.index, r.code])).toEqual(PROTO_NAMES.map((_, i) => [i + 1, 'TRACKING_PLAN_VIOLATION']))
        }
      }
      // The route hands the body to a worker thread (INGEST_WORKERS, one at least in tests) ...
      expect(t.ingest.pool).toBeDefined()
      const viaPool = batch()
      const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: h(k.write), payload: { batch: viaPool } })
      expect(res.statusCode, res.body).toBe(200)
      expectAnswer(res.json())
      // ... and the service's own entry normalizes in this thread.
      const inThread = batch()
      expectAnswer(await t.ingest.service.ingest({ tenantId: k.tenant.id, actor: 'test', messages: inThread, envelope: {}, single: false }))
      const stored = await t.engine.db
        .forTenant(k.tenant.id)
        .query<{ event: string; violations: string[] }>('SELECT event, violations FROM events WHERE tenant_id = {tenant:UInt16} ORDER BY event')
      const expected = mode === 'flag' ? [...PROTO_NAMES.map((name) => ({ event: name, violations: [`unplanned_event:${name}`] })), { event: 'ok_event', violations: [] }] : [{ event: 'ok_event', violations: [] }]
      const twice = expected.flatMap((r) => [r, r]).sort((a, b) => (a.event < b.event ? -1 : a.event > b.event ? 1 : 0))
      expect(stored).toEqual(twice)
    },
  )

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
