import crypto from 'node:crypto'
import zlib from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * The content types the Segment-family SDKs label their JSON with, route by route: the server SDKs
 * (application/json; RudderStack's Node SDK application/x-www-form-urlencoded), analytics.js
 * (text/plain), the RudderStack JS SDK (application/json;charset=UTF-8, its beacon
 * text/plain;charset=UTF-8). Only the Segment API routes read a form label as JSON.
 */

const PATHS = ['batch', 'b', 'track', 't', 'identify', 'i', 'page', 'p', 'screen', 's', 'group', 'g', 'alias', 'a'].map((x) => `/v1/${x}`)
const TYPE_OF: Record<string, string> = { t: 'track', i: 'identify', p: 'page', s: 'screen', g: 'group', a: 'alias' }

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'ctype-bank')
}, 60_000)
afterAll(async () => t?.close())

function bodyFor(path: string): Record<string, unknown> {
  const seg = path.slice(4)
  const kind = TYPE_OF[seg] ?? seg
  const m: Record<string, unknown> = { messageId: crypto.randomUUID(), userId: 'CT1', event: 'opened' }
  if (kind === 'group') m.groupId = 'g1'
  if (kind === 'alias') m.previousId = 'anon-ct'
  return kind === 'batch' || kind === 'b' ? { batch: [{ type: 'track', ...m }] } : m
}

const send = (url: string, contentType: string, payload: string | Buffer, extra: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${bank.write}`, 'content-type': contentType, ...extra }, payload })

describe('content types on the Segment API routes', () => {
  it.each([
    ['application/json'],
    ['application/json; charset=utf-8'],
    ['application/json;charset=UTF-8'],
    ['text/plain'],
    ['text/plain;charset=UTF-8'],
    ['application/x-www-form-urlencoded'],
    ['application/x-www-form-urlencoded; charset=utf-8'],
  ])('reads %s as JSON on every route', async (type) => {
    for (const url of PATHS) {
      const res = await send(url, type, JSON.stringify(bodyFor(url)))
      expect(res.statusCode, `${url} ${res.body}`).toBe(200)
      expect(res.json()).toMatchObject({ accepted: 1 })
    }
  })

  it('reads a gzip body labelled form-urlencoded, as RudderStack’s Node SDK sends it', async () => {
    for (const url of PATHS) {
      const res = await send(url, 'application/x-www-form-urlencoded', zlib.gzipSync(JSON.stringify(bodyFor(url))), { 'content-encoding': 'gzip' })
      expect(res.statusCode, `${url} ${res.body}`).toBe(200)
    }
  })

  it('answers a real form body 400 INVALID_JSON, and other types 415', async () => {
    for (const url of PATHS) {
      const form = await send(url, 'application/x-www-form-urlencoded', 'type=track&event=opened&userId=CT1')
      expect([form.statusCode, form.json().error.code], url).toEqual([400, 'INVALID_JSON'])
      const multi = await send(url, 'multipart/form-data; boundary=x', '--x--')
      expect([multi.statusCode, multi.json().error.code], url).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE'])
    }
  })

  it('refuses a form label on the other routes (415), whatever the body', async () => {
    const headers = { authorization: `Bearer ${bank.admin}`, 'content-type': 'application/x-www-form-urlencoded' }
    for (const [method, url] of [['PUT', '/v1/tenant/cors'], ['PUT', '/v1/tenant/privacy'], ['POST', '/v1/segments/preview'], ['PUT', '/v1/tracking-plan']] as const) {
      const res = await t.app.inject({ method, url, headers, payload: JSON.stringify({ origins: ['https://h5.example.cn'] }) })
      expect([res.statusCode, res.json().error.code], url).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE'])
    }
    expect((await t.app.inject({ url: '/v1/tenant/cors', headers: { authorization: `Bearer ${bank.admin}` } })).json().origins).toEqual([])
  })
})
