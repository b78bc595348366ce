import crypto from 'node:crypto'
import zlib from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let other: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'bank-a')
  other = await tenantWithKeys(t, 'bank-b')
})
afterAll(async () => t?.close())

const auth = (key: string) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` })
const post = (url: string, payload: unknown, key = bank.write, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, headers: { ...auth(key), ...headers }, payload: payload as object })
const mid = () => crypto.randomUUID()
const track = (over: Record<string, unknown> = {}) => ({
  type: 'track',
  messageId: mid(),
  userId: 'C0001',
  event: 'product_viewed',
  properties: { product_id: 'wm-01', amount: 12.5 },
  timestamp: new Date().toISOString(),
  ...over,
})

async function rows(sql: string, params: Record<string, unknown> = {}) {
  return t.engine.db.system.query<Record<string, unknown>>(sql, params)
}

describe('the Segment tracking API', () => {
  it('stores a track event with its fields, and promotes product_id and amount', async () => {
    const e = track({ context: { ip: '10.1.2.3', app: { version: '4.0.1' }, device: { model: 'HUAWEI P60', advertisingId: 'ad-1' } } })
    const res = await post('/v1/track', e)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ success: true, accepted: 1, duplicates: 0, rejected: [], queued: false })
    const [r] = await rows('SELECT *, product_id, amount FROM events WHERE message_id = {m:String}', { m: e.messageId })
    expect(r).toMatchObject({ tenant_id: bank.tenant.id, type: 'track', event: 'product_viewed', user_id: 'C0001', product_id: 'wm-01', amount: 12.5 })
    expect(Number(r!.customer_key)).toBeGreaterThan(0)
    const ctx = JSON.parse(r!.context as string)
    expect(ctx).toEqual({ app: { version: '4.0.1' }, device: { model: 'HUAWEI P60' } })
  })

  it('takes every message type at its own endpoint and in a batch', async () => {
    for (const type of ['identify', 'page', 'screen', 'group'] as const) {
      const body = { messageId: mid(), anonymousId: 'anon-types', ...(type === 'group' ? { groupId: 'g1' } : {}), ...(type === 'screen' ? { name: 'home' } : {}) }
      expect((await post(`/v1/${type}`, body)).statusCode, type).toBe(200)
    }
    const alias = await post('/v1/alias', { messageId: mid(), previousId: 'anon-types', userId: 'C0100' })
    expect(alias.statusCode).toBe(200)
    const batch = await post('/v1/batch', { batch: [track(), { type: 'screen', name: 'wealth', anonymousId: 'x', messageId: mid() }] })
    expect(batch.json()).toMatchObject({ accepted: 2 })
  })

  it('answers on the short paths analytics.js uses (/v1/t, /v1/p ... and /v1/b)', async () => {
    const beacon = { ...track(), writeKey: bank.write }
    const t1 = await t.app.inject({ method: 'POST', url: '/v1/t', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify(beacon) })
    expect(t1.json()).toMatchObject({ accepted: 1 })
    const p1 = await t.app.inject({ method: 'POST', url: '/v1/p', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify({ anonymousId: 'a', messageId: mid(), writeKey: bank.write }) })
    expect(p1.json()).toMatchObject({ accepted: 1 })
    expect((await post('/v1/b', { batch: [track(), track()] })).json()).toMatchObject({ accepted: 2 })
  })

  it('stores the valid events of a mixed batch and names each rejected one', async () => {
    const good = [track(), track()]
    const res = await post('/v1/batch', {
      batch: [good[0], { type: 'track', messageId: mid(), event: 'x' }, good[1], { type: 'track', userId: 'u', event: 42, messageId: mid() }, 'junk', { type: 'nope', userId: 'u' }],
    })
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.accepted).toBe(2)
    expect(body.rejected.map((r: { index: number; field: string; code: string }) => [r.index, r.field, r.code])).toEqual([
      [1, 'userId', 'VALIDATION_FAILED'],
      [3, 'event', 'VALIDATION_FAILED'],
      [4, '(event)', 'VALIDATION_FAILED'],
      [5, 'type', 'VALIDATION_FAILED'],
    ])
    const stored = await rows('SELECT count() AS n FROM events WHERE message_id IN {ids:Array(String)}', { ids: good.map((g) => g.messageId) })
    expect(Number(stored[0]!.n)).toBe(2)
  })

  it('answers a wholly bad batch with a coded 400 listing every event', async () => {
    const res = await post('/v1/batch', { batch: [{ type: 'track', event: 'x', messageId: mid() }] })
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toMatchObject({ code: 'BATCH_REJECTED', issues: [{ field: 'batch.0.userId', index: 0 }] })
  })

  it('deduplicates by messageId per tenant, across requests', async () => {
    const batch = [track(), track(), track()]
    expect((await post('/v1/batch', { batch })).json()).toMatchObject({ accepted: 3, duplicates: 0 })
    expect((await post('/v1/batch', { batch })).json()).toMatchObject({ accepted: 0, duplicates: 3 })
    // Inside one batch too, and the same id in another tenant is another event.
    const e = track()
    expect((await post('/v1/batch', { batch: [e, e] })).json()).toMatchObject({ accepted: 1, duplicates: 1 })
    expect((await post('/v1/batch', { batch: [e] }, other.write)).json()).toMatchObject({ accepted: 1, duplicates: 0 })
    const n = await rows('SELECT count() AS n FROM events WHERE message_id IN {ids:Array(String)}', { ids: [...batch.map((b) => b.messageId), e.messageId] })
    expect(Number(n[0]!.n)).toBe(5)
    const metrics = await t.metrics.registry.getSingleMetricAsString('qianmian_ingest_events_total')
    expect(metrics).toMatch(/outcome="duplicate"[^}]*} [1-9]/)
  })

  it('corrects client clock skew: receivedAt - (sentAt - timestamp)', async () => {
    // The device clock runs 2 hours fast; the event happened 5 minutes before the batch was sent.
    const skew = 2 * 3600_000
    const deviceNow = Date.now() + skew
    const e = track({ timestamp: new Date(deviceNow - 5 * 60_000).toISOString() })
    const before = Date.now()
    await post('/v1/batch', { batch: [e], sentAt: new Date(deviceNow).toISOString() })
    const [r] = await rows("SELECT toUnixTimestamp64Milli(timestamp) AS ts, toUnixTimestamp64Milli(received_at) AS rcv FROM events WHERE message_id = {m:String}", { m: e.messageId })
    expect(Number(r!.rcv) - Number(r!.ts)).toBeGreaterThanOrEqual(5 * 60_000 - 5)
    expect(Number(r!.rcv) - Number(r!.ts)).toBeLessThan(5 * 60_000 + 1000)
    expect(Number(r!.ts)).toBeGreaterThan(before - 6 * 60_000)
  })

  it('takes originalTimestamp as the event time when there is no timestamp (RudderStack SDKs)', async () => {
    const at = new Date(Date.now() - 3600_000).toISOString()
    const e = track({ timestamp: undefined, originalTimestamp: at })
    await post('/v1/track', e)
    const [r] = await rows("SELECT toUnixTimestamp64Milli(timestamp) AS ts FROM events WHERE message_id = {m:String}", { m: e.messageId })
    expect(Number(r!.ts)).toBe(Date.parse(at))
  })

  it('clamps slightly future times, refuses far future and ancient ones', async () => {
    const soon = track({ timestamp: new Date(Date.now() + 10 * 60_000).toISOString() })
    expect((await post('/v1/track', soon)).statusCode).toBe(200)
    const [r] = await rows('SELECT timestamp <= received_at AS ok FROM events WHERE message_id = {m:String}', { m: soon.messageId })
    expect(Number(r!.ok)).toBe(1)
    const far = await post('/v1/track', track({ timestamp: '2099-01-01T00:00:00Z' }))
    expect(far.statusCode).toBe(400)
    expect(far.json().error).toMatchObject({ code: 'TIMESTAMP_OUT_OF_RANGE', issues: [{ field: 'timestamp' }] })
    const old = await post('/v1/track', track({ timestamp: '1999-01-01T00:00:00Z' }))
    expect(old.statusCode).toBe(400)
    expect(old.json().error.code).toBe('TIMESTAMP_OUT_OF_RANGE')
    // Back-dated within the window (offline use) is fine.
    expect((await post('/v1/track', track({ timestamp: new Date(Date.now() - 5 * 86_400_000).toISOString() }))).statusCode).toBe(200)
  })

  it('keeps sensitive traits out of events and stores them in the profile only as digests', async () => {
    const e = { type: 'identify', messageId: mid(), userId: 'C0200', traits: { phone: '13800138000', name: '张三', gender: 'female', password: 'hunter2' } }
    expect((await post('/v1/identify', e)).statusCode).toBe(200)
    const ev = await rows('SELECT properties FROM events WHERE message_id = {m:String}', { m: e.messageId })
    expect(JSON.stringify(ev)).not.toMatch(/13800138000|张三|hunter2/)
    const traits = await rows('SELECT trait, value, hashed FROM customer_traits FINAL WHERE tenant_id = {t:UInt16} ORDER BY trait', { t: bank.tenant.id })
    const dump = JSON.stringify(traits)
    expect(dump).not.toMatch(/13800138000|张三|hunter2/)
    expect(traits.find((x) => x.trait === 'gender')).toMatchObject({ value: 'female', hashed: 0 })
    expect(traits.find((x) => x.trait === 'phone')).toMatchObject({ hashed: 1 })
    expect(traits.find((x) => x.trait === 'password')).toBeUndefined()
    // Track properties too: a phone number in properties is dropped, not stored.
    const tr = track({ properties: { phone: '13900139000', product_id: 'p' } })
    await post('/v1/track', tr)
    const [p] = await rows('SELECT properties FROM events WHERE message_id = {m:String}', { m: tr.messageId })
    expect(JSON.parse(p!.properties as string)).toEqual({ product_id: 'p' })
  })
})

describe('bad input gets a coded 4xx and the server stays up', () => {
  it.each([
    ['malformed JSON', '{"batch": [', 'application/json', 400, 'INVALID_JSON'],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 'application/json', 400, 'INVALID_ENCODING'],
    ['an empty body', '', 'application/json', 400, 'INVALID_JSON'],
    ['prototype pollution', '{"batch":[{}],"__proto__":{"x":1}}', 'application/json', 400, 'INVALID_JSON'],
    ['a wrong content type', '<xml/>', 'application/xml', 415, 'UNSUPPORTED_MEDIA_TYPE'],
  ])('%s', async (_name, payload, type, status, code) => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { ...auth(bank.write), 'content-type': type }, payload })
    expect(res.statusCode).toBe(status)
    expect(res.json().error.code).toBe(code)
  })

  it('no key, an unknown key, a read key', async () => {
    expect((await t.app.inject({ method: 'POST', url: '/v1/track', payload: track() })).json().error.code).toBe('AUTH_MISSING')
    expect((await post('/v1/track', track(), 'qm_w_0123456789abcdef_' + 'A'.repeat(43))).json().error.code).toBe('AUTH_INVALID')
    expect((await post('/v1/track', track(), bank.read)).statusCode).toBe(403)
  })

  it('oversize batches and events', async () => {
    const big = 'x'.repeat(600 * 1024)
    const res = await post('/v1/batch', { batch: [track({ properties: { big } })] })
    expect(res.statusCode).toBe(413)
    expect(res.json().error.code).toBe('PAYLOAD_TOO_LARGE')
    const oneBig = await post('/v1/batch', { batch: [track(), track({ properties: { big: 'y'.repeat(40 * 1024) } })] })
    expect(oneBig.statusCode).toBe(200)
    expect(oneBig.json().rejected).toEqual([expect.objectContaining({ index: 1, code: 'EVENT_TOO_LARGE' })])
    const single = await post('/v1/track', track({ properties: { big: 'y'.repeat(40 * 1024) } }))
    expect(single.statusCode).toBe(413)
  })

  it('deeply nested or huge properties', async () => {
    let deep: Record<string, unknown> = { v: 1 }
    for (let i = 0; i < 20; i++) deep = { d: deep }
    const res = await post('/v1/track', track({ properties: deep }))
    expect(res.statusCode).toBe(400)
    expect(res.json().error.issues[0].field).toMatch(/^properties\.d\.d/)
    const many = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`k${i}`, i]))
    expect((await post('/v1/track', track({ properties: many }))).statusCode).toBe(400)
  })

  it('wrong types and missing ids', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [track({ userId: undefined }), 'userId'],
      [track({ userId: { a: 1 } }), 'userId'],
      [track({ timestamp: 'yesterday' }), 'timestamp'],
      [track({ properties: [1, 2] }), 'properties'],
      [track({ event: '' }), 'event'],
    ]
    for (const [body, field] of cases) {
      const res = await post('/v1/track', body)
      expect(res.statusCode, field).toBe(400)
      expect(res.json().error.issues[0].field, JSON.stringify(body)).toBe(field)
    }
    expect((await post('/v1/alias', { messageId: mid(), userId: 'x' })).json().error.issues[0].field).toBe('previousId')
    expect((await t.app.inject('/health')).statusCode).toBe(200)
  })

  it('accepts gzip bodies, text/plain beacons and a writeKey in the body', async () => {
    const e = track()
    const gz = await t.app.inject({
      method: 'POST',
      url: '/v1/batch',
      headers: { ...auth(bank.write), 'content-type': 'application/json', 'content-encoding': 'gzip' },
      payload: zlib.gzipSync(JSON.stringify({ batch: [e] })),
    })
    expect(gz.json()).toMatchObject({ accepted: 1 })
    const beacon = await t.app.inject({ method: 'POST', url: '/v1/track', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify({ ...track(), writeKey: bank.write }) })
    expect(beacon.statusCode).toBe(200)
    const bomb = zlib.gzipSync(Buffer.alloc(5 * 1024 * 1024, 0x20))
    const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { ...auth(bank.write), 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: bomb })
    expect(res.statusCode).toBe(413)
  })
})
