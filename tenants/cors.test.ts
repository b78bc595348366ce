import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Browser origins, route by route: what an administrator may list, the preflight every Segment
 * API route answers, and the origin enforced on the actual request once the key names the tenant.
 */

const PATHS = ['batch', 'b', 'track', 't', 'identify', 'i', 'page', 'p', 'screen', 's', 'group', 'g', 'alias', 'a'].map((x) => `/v1/${x}`)
const TYPE_OF: Record<string, string> = { track: 'track', t: 'track', identify: 'identify', i: 'identify', page: 'page', p: 'page', screen: 'screen', s: 'screen', group: 'group', g: 'group', alias: 'alias', a: 'alias' }
const ALLOWED = 'https://h5.qingshan-bank.cn'
const OTHER = 'https://h5.other-bank.cn'

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let other: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp({ INGEST_RATE_REQUESTS_PER_S: '1', INGEST_RATE_REQUESTS_BURST: '80' })
  bank = await tenantWithKeys(t, 'cors-bank')
  other = await tenantWithKeys(t, 'cors-other')
}, 60_000)
afterAll(async () => t?.close())

const bearer = (k: string) => ({ authorization: `Bearer ${k}` })
const putOrigins = (key: string, origins: unknown) => t.app.inject({ method: 'PUT', url: '/v1/tenant/cors', headers: bearer(key), payload: { origins } })

/** One valid message for the path (a batch of one on /v1/batch and /v1/b). */
function bodyFor(path: string, extra: Record<string, unknown> = {}) {
  const kind = TYPE_OF[path.slice(4)]
  const m: Record<string, unknown> = { messageId: crypto.randomUUID(), userId: 'CORS1' }
  if (kind === 'track' || !kind) m.event = 'h5_opened'
  if (kind === 'group') m.groupId = 'g1'
  if (kind === 'alias') m.previousId = 'anon-cors'
  return kind ? { ...m, ...extra } : { batch: [{ type: 'track', ...m }], ...extra }
}

const stored = async (tenantId: number) =>
  Number((await t.engine.db.forTenant(tenantId).query<{ n: string }>('SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16}'))[0]!.n)

describe('browser origins: the settings', () => {
  it('starts with none, takes exact origins, and lists them for the tenant only', async () => {
    expect((await t.app.inject({ url: '/v1/tenant/cors', headers: bearer(bank.admin) })).json()).toMatchObject({ origins: [], updatedAt: null })
    const res = await putOrigins(bank.admin, [ALLOWED, 'https://h5.qingshan-bank.cn:8443', 'http://localhost:5173', 'http://127.0.0.1:9000', ALLOWED])
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ origins: [ALLOWED, 'https://h5.qingshan-bank.cn:8443', 'http://localhost:5173', 'http://127.0.0.1:9000'], updatedBy: 'test admin' })
    expect((await t.app.inject({ url: '/v1/tenant/cors', headers: bearer(bank.admin) })).json().origins).toHaveLength(4)
    expect((await t.app.inject({ url: '/v1/tenant/cors', headers: bearer(other.admin) })).json().origins).toEqual([])
    expect((await putOrigins(other.admin, [OTHER])).statusCode).toBe(200)
  })

  it('records each change in the audit trail with its holder and the origins', async () => {
    const trail = (await t.app.inject({ url: '/v1/audit?action=tenant.cors', headers: bearer(bank.admin) })).json().entries as { action: string; holder: string; detail: unknown }[]
    expect(trail).toHaveLength(1)
    expect(trail[0]).toMatchObject({ action: 'tenant.cors.save', holder: 'test admin' })
    expect(JSON.stringify(trail[0]!.detail)).toContain(ALLOWED)
  })

  it.each([
    ['a wildcard', '*', 'wildcards are refused'],
    ['a wildcard subdomain', 'https://*.qingshan-bank.cn', 'wildcards are refused'],
    ['plain http off this machine', 'http://h5.qingshan-bank.cn', 'expected https://'],
    ['a trailing slash', 'https://h5.qingshan-bank.cn/', 'expected exactly https://h5.qingshan-bank.cn'],
    ['a path', 'https://h5.qingshan-bank.cn/app', 'expected exactly https://h5.qingshan-bank.cn'],
    ['upper case', 'https://H5.Qingshan-Bank.cn', 'expected exactly https://h5.qingshan-bank.cn'],
    ['the default port', 'https://h5.qingshan-bank.cn:443', 'expected exactly https://h5.qingshan-bank.cn'],
    ['a user name', 'https://me@h5.qingshan-bank.cn', 'expected exactly https://h5.qingshan-bank.cn'],
    ['null', 'null', 'expected an origin'],
    ['another scheme', 'ftp://files.qingshan-bank.cn', 'expected https://'],
  ])('refuses %s with a 400 naming the entry', async (_label, origin, message) => {
    const res = await putOrigins(bank.admin, [ALLOWED, origin])
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'body.origins.1', message: expect.stringContaining(message) }] })
  })

  it('refuses more than 50 origins, a list that is not one, and unknown fields', async () => {
    const many = Array.from({ length: 51 }, (_, i) => `https://h${i}.qingshan-bank.cn`)
    for (const payload of [{ origins: many }, { origins: ALLOWED }, { origins: [ALLOWED], credentials: true }, {}]) {
      const res = await t.app.inject({ method: 'PUT', url: '/v1/tenant/cors', headers: bearer(bank.admin), payload })
      expect(res.statusCode, JSON.stringify(payload)).toBe(400)
      expect(res.json().error.code).toBe('VALIDATION_FAILED')
    }
    // Nothing refused was saved.
    expect((await t.app.inject({ url: '/v1/tenant/cors', headers: bearer(bank.admin) })).json().origins).toContain('http://localhost:5173')
  })
})

describe('browser origins on the Segment API routes, route by route', () => {
  it('answers the preflight of every route for any origin, before a key is known, with no credentials mode', async () => {
    for (const url of PATHS) {
      for (const origin of [ALLOWED, 'https://anyone.example']) {
        const res = await t.app.inject({ method: 'OPTIONS', url, headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,anonymousid' } })
        expect(res.statusCode, url).toBe(204)
        expect(res.headers['access-control-allow-origin'], url).toBe(origin)
        expect(String(res.headers['access-control-allow-headers']).toLowerCase()).toContain('authorization')
        expect(String(res.headers['access-control-allow-headers']).toLowerCase()).toContain('anonymousid')
        expect(res.headers['access-control-allow-credentials']).toBeUndefined()
      }
      // Not a preflight for a POST, or not an origin: no CORS answer.
      for (const headers of [{ origin: ALLOWED, 'access-control-request-method': 'DELETE' }, { origin: 'null', 'access-control-request-method': 'POST' }, {}]) {
        const res = await t.app.inject({ method: 'OPTIONS', url, headers })
        expect(res.headers['access-control-allow-origin'], `${url} ${JSON.stringify(headers)}`).toBeUndefined()
      }
    }
  })

  it('stores and answers a listed origin, key in the header or in the body', async () => {
    const before = await stored(bank.tenant.id)
    for (const url of PATHS) {
      const byHeader = await t.app.inject({ method: 'POST', url, headers: { ...bearer(bank.write), origin: ALLOWED }, payload: bodyFor(url) })
      expect(byHeader.statusCode, `${url} ${byHeader.body}`).toBe(200)
      expect(byHeader.headers['access-control-allow-origin']).toBe(ALLOWED)
      expect(byHeader.headers.vary).toContain('Origin')
      // analytics.js: text/plain, the key as writeKey in the body, no Authorization header.
      const byBody = await t.app.inject({ method: 'POST', url, headers: { origin: ALLOWED, 'content-type': 'text/plain' }, payload: JSON.stringify(bodyFor(url, { writeKey: bank.write })) })
      expect(byBody.statusCode, `${url} ${byBody.body}`).toBe(200)
      expect(byBody.headers['access-control-allow-origin']).toBe(ALLOWED)
    }
    expect((await stored(bank.tenant.id)) - before).toBe(PATHS.length * 2)
  })

  it('refuses an origin the tenant does not list (another bank’s included) with 403 ORIGIN_FORBIDDEN, no CORS headers, nothing stored', async () => {
    const before = await stored(bank.tenant.id)
    for (const url of PATHS) {
      for (const origin of ['https://evil.example', OTHER, 'null', 'http://localhost:5174']) {
        const byHeader = await t.app.inject({ method: 'POST', url, headers: { ...bearer(bank.write), origin }, payload: bodyFor(url) })
        const byBody = await t.app.inject({ method: 'POST', url, headers: { origin, 'content-type': 'text/plain' }, payload: JSON.stringify(bodyFor(url, { writeKey: bank.write })) })
        for (const res of [byHeader, byBody]) {
          expect(res.statusCode, `${url} ${origin} ${res.body}`).toBe(403)
          expect(res.json().error).toMatchObject({ code: 'ORIGIN_FORBIDDEN', issues: [{ field: 'headers.origin' }] })
          expect(res.headers['access-control-allow-origin']).toBeUndefined()
        }
      }
    }
    expect(await stored(bank.tenant.id)).toBe(before)
  })

  it('leaves requests without an Origin (server SDKs) as they were, with no CORS headers', async () => {
    for (const url of PATHS) {
      const res = await t.app.inject({ method: 'POST', url, headers: bearer(bank.write), payload: bodyFor(url) })
      expect(res.statusCode, res.body).toBe(200)
      expect(res.headers['access-control-allow-origin']).toBeUndefined()
    }
  })

  it('still needs the key: a listed origin without one, or with a wrong one, gets 401 and no CORS headers', async () => {
    for (const url of PATHS) {
      const none = await t.app.inject({ method: 'POST', url, headers: { origin: ALLOWED, 'content-type': 'text/plain' }, payload: JSON.stringify(bodyFor(url)) })
      const wrong = await t.app.inject({ method: 'POST', url, headers: { origin: ALLOWED, ...bearer('qm_i_0000000000000000_' + 'A'.repeat(43)) }, payload: bodyFor(url) })
      expect([none.statusCode, none.json().error.code]).toEqual([401, 'AUTH_MISSING'])
      expect([wrong.statusCode, wrong.json().error.code]).toEqual([401, 'AUTH_INVALID'])
      expect(none.headers['access-control-allow-origin']).toBeUndefined()
    }
  })

  it('lets a listed page read its refusals: a bad event (400) and the rate limit (429 with Retry-After exposed)', async () => {
    const bad = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { ...bearer(bank.write), origin: ALLOWED }, payload: { batch: [{ type: 'track', userId: 'x' }] } })
    expect(bad.statusCode).toBe(400)
    expect(bad.headers['access-control-allow-origin']).toBe(ALLOWED)
    // A burst of 80 requests, one more a second: spent by now or by these.
    let limited
    for (let i = 0; i < 200 && !limited; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/t', headers: { origin: ALLOWED, 'content-type': 'text/plain' }, payload: JSON.stringify(bodyFor('/v1/t', { writeKey: bank.write })) })
      if (res.statusCode === 429) limited = res
    }
    expect(limited, 'the rate limit was never reached').toBeDefined()
    expect(limited!.headers['access-control-allow-origin']).toBe(ALLOWED)
    expect(limited!.headers['access-control-expose-headers']).toBe('Retry-After')
    expect(limited!.headers['retry-after']).toBeDefined()
  }, 60_000)

  it('offers no CORS on the other routes: no preflight, no Access-Control-Allow-Origin', async () => {
    const pre = await t.app.inject({ method: 'OPTIONS', url: '/v1/tenant', headers: { origin: ALLOWED, 'access-control-request-method': 'GET' } })
    expect(pre.statusCode).toBe(404)
    expect(pre.headers['access-control-allow-origin']).toBeUndefined()
    const get = await t.app.inject({ url: '/v1/tenant/cors', headers: { ...bearer(bank.admin), origin: ALLOWED } })
    expect(get.statusCode).toBe(200)
    expect(get.headers['access-control-allow-origin']).toBeUndefined()
  })
})
