import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Fault isolation on the shared ingest path: one tenant's bad values never fail another
 * tenant's requests that were coalesced into the same insert.
 */

let t: TestApp
let a: Awaited<ReturnType<typeof tenantWithKeys>>
let b: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  // A longer flush window than the other route tests: A's and B's requests share one insert.
  t = await openTestApp({ INGEST_FLUSH_MS: '40' })
  a = await tenantWithKeys(t, 'bank-a')
  b = await tenantWithKeys(t, 'bank-b')
})
afterAll(async () => t?.close())

const auth = (key: string) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` })
const post = (url: string, payload: unknown, key: string) => t.app.inject({ method: 'POST', url, headers: auth(key), payload: payload as object })
const mid = () => crypto.randomUUID()
const track = (over: Record<string, unknown> = {}) => ({ type: 'track', messageId: mid(), userId: 'C0001', event: 'product_viewed', properties: { product_id: 'wm-01' }, ...over })

async function count(ids: string[]) {
  const r = await t.engine.db.system.query<{ n: string }>('SELECT count() AS n FROM events WHERE message_id IN {ids:Array(String)}', { ids })
  return Number(r[0]!.n)
}

/** Device clocks the events table cannot hold as sent, or that correct to such an event time. */
const BAD_TIMES: [string, Record<string, unknown>][] = [
  ['sentAt 1970', { sentAt: '1970-01-01T00:00:00Z' }],
  ['sentAt 1973-03-03 (just before the 9-digit epoch)', { sentAt: '1973-03-03T09:46:39.999Z' }],
  ['sentAt year 0', { sentAt: '0000-01-01T00:00:00Z' }],
  ['sentAt 2286-11-21', { sentAt: '2286-11-21T00:00:00Z' }],
  ['sentAt 2300', { sentAt: '2300-01-01T00:00:00Z' }],
  ['sentAt year 9999', { sentAt: '9999-12-31T23:59:59Z' }],
  ['timestamp and sentAt both 1970 (a reset device clock)', { sentAt: '1970-01-01T00:00:10Z', timestamp: '1970-01-01T00:00:00Z' }],
  ['originalTimestamp and sentAt year 0', { sentAt: '0000-01-01T00:00:10Z', originalTimestamp: '0000-01-01T00:00:00Z' }],
  ['timestamp 1970 alone', { timestamp: '1970-01-01T00:00:00Z' }],
  ['timestamp year 0 alone', { timestamp: '0000-01-01T00:00:00Z' }],
  ['timestamp 2286 alone', { timestamp: '2286-11-21T00:00:00Z' }],
]

describe('a device clock the engine cannot hold', () => {
  it.each(BAD_TIMES)('%s: never fails another tenant, and is answered for itself', async (_name, times) => {
    const good = Array.from({ length: 20 }, () => track())
    const bad = track(times)
    const [resA, ...resB] = await Promise.all([post('/v1/batch', { batch: [bad, track()] }, a.write), ...good.map((g) => post('/v1/track', g, b.write))])
    for (const r of resB) expect(r.statusCode, r.body).toBe(200)
    expect(await count(good.map((g) => g.messageId))).toBe(good.length)
    // A's request: its good event is stored; the bad one is stored as sent or named as rejected.
    expect(resA.statusCode, resA.body).toBe(200)
    const body = resA.json()
    expect(body.accepted + body.rejected.length).toBe(2)
    for (const r of body.rejected) {
      expect(r.index).toBe(0)
      expect(['TIMESTAMP_OUT_OF_RANGE', 'EVENT_NOT_STORABLE']).toContain(r.code)
      expect(['sentAt', 'timestamp']).toContain(r.field)
    }
  })

  it('keeps a reset device clock (1970) as sent, with the event time corrected', async () => {
    const e = track({ sentAt: '1970-01-01T00:10:00Z', timestamp: '1970-01-01T00:05:00Z' })
    const res = await post('/v1/track', e, a.write)
    expect(res.json()).toMatchObject({ accepted: 1 })
    const [r] = await t.engine.db.system.query<{ sent: string; lag: string }>(
      "SELECT toString(sent_at) AS sent, toUnixTimestamp64Milli(received_at) - toUnixTimestamp64Milli(timestamp) AS lag FROM events WHERE message_id = {m:String}",
      { m: e.messageId },
    )
    expect(r!.sent).toBe('1970-01-01 00:10:00.000')
    expect(Number(r!.lag)).toBe(5 * 60_000)
  })

  it('refuses a sentAt outside what the column holds, naming the field', async () => {
    for (const sentAt of ['0000-01-01T00:00:00Z', '1899-12-31T23:59:59Z', '2300-01-01T00:00:00Z']) {
      const res = await post('/v1/track', track({ sentAt }), a.write)
      expect(res.statusCode, sentAt).toBe(400)
      expect(res.json().error).toMatchObject({ code: 'TIMESTAMP_OUT_OF_RANGE', issues: [{ field: 'sentAt' }] })
    }
  })
})

describe('bodies nested deeper than any recursion can take', () => {
  it('refuses 4,100 and 100,000 levels with a coded 400 naming the path, and stores the batch around them', async () => {
    // Built as text: the request must not depend on this process being able to stringify it.
    const deepObject = (n: number, key = 'd') => `${`{"${key}":`.repeat(n)}1${'}'.repeat(n)}`
    const deepArray = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`
    const send = (url: string, body: string) => t.app.inject({ method: 'POST', url, headers: { ...auth(a.write), 'content-type': 'application/json' }, payload: body })

    const single = await send('/v1/track', `{"type":"track","userId":"C1","event":"e","properties":${deepObject(4_100)}}`)
    expect(single.statusCode, single.body).toBe(400)
    expect(single.json().error).toMatchObject({ code: 'NESTING_TOO_DEEP', issues: [{ field: `properties${'.d'.repeat(8)}` }] })
    // secure-json-parse scans a body naming "constructor" for prototype keys: deep, it must not overflow either.
    const ctor = await send('/v1/batch', `{"batch":[{"type":"track","userId":"C1","event":"e","properties":${deepObject(20_000, 'constructor')}}]}`)
    expect(ctor.statusCode, ctor.body).toBe(400)
    expect(ctor.json().error.issues[0]).toMatchObject({ code: 'NESTING_TOO_DEEP' })

    const good = track()
    const batch = await send('/v1/batch', `{"batch":[{"type":"track","userId":"C1","event":"e","properties":{"a":${deepArray(100_000)}}},${JSON.stringify(good)}]}`)
    expect(batch.statusCode, batch.body).toBe(200)
    expect(batch.json()).toMatchObject({ accepted: 1, rejected: [{ index: 0, code: 'NESTING_TOO_DEEP', field: `properties.a${'.0'.repeat(7)}` }] })
    expect(await count([good.messageId])).toBe(1)
  })
})
