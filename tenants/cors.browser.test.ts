import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Browser sources in a real browser (Debian's chromium driven by playwright-core): a page served
 * from another origin than the API sends events the way the browser libraries do, and the browser
 * itself enforces the answer. Two shapes:
 * - analytics.js: fetch POST /v1/b, `Content-Type: text/plain`, the key as `writeKey` in the body:
 *   a "simple" request, sent without a preflight;
 * - the RudderStack JS SDK: XMLHttpRequest POST /v1/track, `application/json;charset=UTF-8`, the key
 *   as Basic user name and an `AnonymousId` header: preflighted.
 */

const CHROMIUM = '/usr/bin/chromium'

let t: TestApp
let api: string
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let browser: Browser | undefined
const pages: http.Server[] = []

/** A page server on its own port (so its own origin): the page sends both requests and reports. */
async function pageServer(): Promise<string> {
  const srv = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end('<!doctype html><title>h5</title><p>bank H5 page</p>')
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  pages.push(srv)
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
}

interface Outcome {
  ok: boolean
  status: number
  body: string
  error?: string
}

/** Runs both browser-library request shapes from a page of `origin`, tagging the events with `tag`. */
async function sendFrom(origin: string, tag: string): Promise<{ fetch: Outcome; xhr: Outcome }> {
  const page = await browser!.newPage()
  try {
    await page.goto(origin)
    return await page.evaluate(
      async ({ api, key, tag }) => {
        const now = new Date().toISOString()
        const viaFetch = async (): Promise<Outcome> => {
          try {
            const res = await fetch(`${api}/v1/b`, {
              method: 'post',
              headers: { 'Content-Type': 'text/plain' },
              body: JSON.stringify({ writeKey: key, batch: [{ type: 'track', event: `${tag}_fetch`, anonymousId: 'h5-anon-1', messageId: `${tag}-f1`, timestamp: now }, { type: 'page', name: `${tag}_page`, anonymousId: 'h5-anon-1', messageId: `${tag}-f2`, timestamp: now }], sentAt: now }),
            })
            return { ok: res.ok, status: res.status, body: await res.text() }
          } catch (e) {
            return { ok: false, status: 0, body: '', error: String(e) }
          }
        }
        const viaXhr = () =>
          new Promise<Outcome>((resolve) => {
            const xhr = new XMLHttpRequest()
            xhr.open('POST', `${api}/v1/track`)
            xhr.setRequestHeader('Accept', 'application/json')
            xhr.setRequestHeader('Content-Type', 'application/json;charset=UTF-8')
            xhr.setRequestHeader('Authorization', `Basic ${btoa(`${key}:`)}`)
            xhr.setRequestHeader('AnonymousId', btoa('h5-anon-1'))
            xhr.onload = () => resolve({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status, body: xhr.responseText })
            xhr.onerror = () => resolve({ ok: false, status: xhr.status, body: '', error: 'network error' })
            xhr.send(JSON.stringify({ type: 'track', event: `${tag}_xhr`, anonymousId: 'h5-anon-1', messageId: `${tag}-x1`, originalTimestamp: now, sentAt: now, channel: 'web' }))
          })
        type Outcome = { ok: boolean; status: number; body: string; error?: string }
        return { fetch: await viaFetch(), xhr: await viaXhr() }
      },
      { api, key: bank.write, tag },
    )
  } finally {
    await page.close()
  }
}

const storedEvents = async () =>
  (await t.engine.db.forTenant(bank.tenant.id).query<{ event: string }>('SELECT event FROM events WHERE tenant_id = {tenant:UInt16} ORDER BY event')).map((r) => r.event)

let allowed: string
let refused: string
beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}; the browser test of CORS needs it: apt-get update && apt-get install -y chromium`)
  }
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'cors-browser')
  api = await t.app.listen({ port: 0, host: '127.0.0.1' })
  allowed = await pageServer()
  refused = await pageServer()
  const res = await t.app.inject({ method: 'PUT', url: '/v1/tenant/cors', headers: { authorization: `Bearer ${bank.admin}` }, payload: { origins: [allowed] } })
  expect(res.statusCode, res.body).toBe(200)
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
}, 120_000)
afterAll(async () => {
  await browser?.close()
  for (const s of pages) s.close()
  await t?.close()
})

describe('CORS with a real browser', () => {
  it('lets a page on a listed origin send both ways and read the answers; the events are stored', async () => {
    const out = await sendFrom(allowed, 'listed')
    expect(out.fetch, JSON.stringify(out.fetch)).toMatchObject({ ok: true, status: 200 })
    expect(JSON.parse(out.fetch.body)).toMatchObject({ success: true, accepted: 2 })
    expect(out.xhr, JSON.stringify(out.xhr)).toMatchObject({ ok: true, status: 200 })
    expect(JSON.parse(out.xhr.body)).toMatchObject({ success: true, accepted: 1 })
    expect(await storedEvents()).toEqual(['listed_fetch', 'listed_page', 'listed_xhr'])
  }, 60_000)

  it('blocks a page on another origin: the browser shows it nothing, and nothing it sent is stored', async () => {
    const out = await sendFrom(refused, 'unlisted')
    expect(out.fetch).toMatchObject({ ok: false, status: 0, error: expect.stringContaining('Failed to fetch') })
    expect(out.xhr).toMatchObject({ ok: false, status: 0 })
    expect((await storedEvents()).filter((e) => e.startsWith('unlisted'))).toEqual([])
  }, 60_000)
})
