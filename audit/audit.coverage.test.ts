import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, type TestApp } from '../test/app.js'
import type { DeclaredRoute } from './audit.hook.js'

/**
 * Every route of the full app, as registered (not a hand-kept list): a new route that changes
 * something or reads personal data without declaring `config.audit` fails here.
 */

/** Events are data, not actions: the Segment endpoints are not audited per request. */
const EVENT_ROUTES = new Set(['/v1/batch', '/v1/b', ...['track', 'identify', 'page', 'screen', 'group', 'alias', 't', 'i', 'p', 's', 'g', 'a'].map((x) => `/v1/${x}`)])
const UNAUDITED = (url: string) => EVENT_ROUTES.has(url) || /^\/(health|ready|metrics|docs|console)\b/.test(url)

/** Routes that hand out or change one or many customers' personal data. */
const PERSONAL = [
  'GET /v1/customers/:id',
  'GET /v1/customers/:id/tags/:tag/history',
  'GET /v1/customers/:id/segments',
  'GET /v1/segments/:id/members',
  'GET /v1/segments/:id/members/:customerId',
  'GET /v1/segments/:id/export',
  'POST /v1/segments/preview',
  'POST /v1/segments/:id/preview',
  'GET /v1/push/campaigns/:id/targets',
  'POST /v1/push/pull',
  'GET /v1/push/test-lists',
  'POST /v1/push/campaigns/:id/test',
  'GET /v1/identities/changes',
  'GET /v1/audit',
  'GET /v1/operator/audit',
]
/** Permissions that exist to reach personal data: a route requiring one is personal. */
const PERSONAL_PERMISSIONS = new Set(['personal:read', 'consent:read', 'consent:write', 'push:deliver'])

let t: TestApp
let routes: readonly DeclaredRoute[]
beforeAll(async () => {
  t = await openTestApp()
  routes = t.audit.declared()
})
afterAll(async () => t?.close())

const name = (r: DeclaredRoute) => `${r.method} ${r.url}`
const permissionOf = (r: DeclaredRoute) => r.onRequest.map((h) => (h as { permission?: string }).permission).find(Boolean)

describe('audit coverage', () => {
  it('sees the whole app', () => {
    // A sanity floor, so an empty enumeration cannot pass the checks below.
    expect(routes.length).toBeGreaterThan(60)
    expect(routes.map(name)).toContain('PUT /v1/tags/:name')
  })

  it('declares config.audit on every route that changes something', () => {
    const missing = routes.filter((r) => r.method !== 'GET' && !UNAUDITED(r.url) && !r.audit).map(name)
    expect(missing).toEqual([])
  })

  it('marks every personal-data route personal', () => {
    const byName = new Map(routes.map((r) => [name(r), r]))
    for (const n of PERSONAL) {
      expect(byName.has(n), `${n} is not a route any more: update this list`).toBe(true)
      expect(byName.get(n)!.audit?.personal, n).toBe(true)
    }
    const derived = routes.filter((r) => PERSONAL_PERMISSIONS.has(permissionOf(r) ?? '') && r.method === 'GET' && !r.audit?.personal).map(name)
    expect(derived).toEqual([])
  })

  it('names actions as object.verb and parameters the route has', () => {
    for (const r of routes.filter((x) => x.audit)) {
      expect(r.audit!.action, name(r)).toMatch(/^[a-z_]+(\.[a-z_]+)+$/)
      for (const p of [r.audit!.objectParam, r.audit!.customerParam]) if (p) expect(r.url, name(r)).toContain(`:${p}`)
    }
  })

  it('offers no way to change or delete an audit entry', () => {
    const trailRoutes = routes.filter((r) => /\/audit\b/.test(r.url))
    expect(trailRoutes.length).toBeGreaterThan(0)
    expect(trailRoutes.filter((r) => r.method !== 'GET').map(name)).toEqual([])
  })
})
