import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DeclaredRoute } from '../audit/audit.hook.js'
import { openTestApp, type TestApp } from '../test/app.js'
import { ROLE_PERMISSIONS, ROLES, type Permission, type Role } from './permissions.js'

/**
 * Least privilege, route by route. Every route of the full app is enumerated as registered, so
 * a new route fails here until this table says what it needs; then every role is sent to it with
 * a body that is not even JSON: a role without the permission must get 403 SCOPE_FORBIDDEN (not
 * 400: authentication runs before the body is read), a role with it must not be refused.
 */

type Need = Permission | 'operator' | 'public'
const EXPECTED: Record<string, Need> = {
  'GET /health': 'public',
  'GET /ready': 'public',
  'GET /metrics': 'public',
  'GET /docs': 'public',
  'GET /console': 'public',
  'GET /console/*': 'public',
  'GET /v1/tenant': 'catalog:read',
  'GET /v1/group/members': 'catalog:read',
  'PUT /v1/tenant/privacy': 'tenant:admin',
  'GET /v1/tenant/cors': 'tenant:admin',
  'PUT /v1/tenant/cors': 'tenant:admin',
  'GET /v1/data-catalogue': 'catalog:read',
  'GET /v1/tenant/digests': 'tenant:admin',
  'POST /v1/tenant/digests/rekey': 'tenant:admin',
  'GET /v1/keys': 'tenant:admin',
  'POST /v1/keys': 'tenant:admin',
  'POST /v1/keys/:keyId/rotate': 'tenant:admin',
  'DELETE /v1/keys/:keyId': 'tenant:admin',
  'GET /v1/operator/tenants': 'operator',
  'POST /v1/operator/tenants': 'operator',
  'POST /v1/operator/tenants/:tenant/disable': 'operator',
  'POST /v1/operator/tenants/:tenant/enable': 'operator',
  'POST /v1/operator/tenants/:tenant/keys': 'operator',
  'GET /v1/operator/tenants/:tenant/keys': 'operator',
  'DELETE /v1/operator/tenants/:tenant/keys/:keyId': 'operator',
  'GET /v1/operator/audit': 'operator',
  ...Object.fromEntries(
    ['batch', 'b', 'track', 't', 'identify', 'i', 'page', 'p', 'screen', 's', 'group', 'g', 'alias', 'a'].map((x) => [`POST /v1/${x}`, 'events:write' as const]),
  ),
  // CORS preflights: a browser sends them without the key (tenants/cors.hooks.ts).
  ...Object.fromEntries(['batch', 'b', 'track', 't', 'identify', 'i', 'page', 'p', 'screen', 's', 'group', 'g', 'alias', 'a'].map((x) => [`OPTIONS /v1/${x}`, 'public' as const])),
  'GET /v1/tracking-plan': 'tenant:admin',
  'PUT /v1/tracking-plan': 'tenant:admin',
  'DELETE /v1/tracking-plan': 'tenant:admin',
  'GET /v1/identities/changes': 'personal:read',
  'POST /v1/identities/changes/:changeId/undo': 'identity:merge',
  'POST /v1/identities/merge': 'identity:merge',
  'GET /v1/tags': 'catalog:read',
  'GET /v1/tags/features': 'catalog:read',
  'GET /v1/tags/:name': 'catalog:read',
  'GET /v1/tags/:name/versions': 'catalog:read',
  'PUT /v1/tags/:name': 'tenant:admin',
  'DELETE /v1/tags/:name': 'tenant:admin',
  'POST /v1/tags/apply': 'tenant:admin',
  'GET /v1/customers/:id': 'personal:read',
  'GET /v1/customers/:id/tags/:tag/history': 'personal:read',
  'GET /v1/customers/:id/segments': 'personal:read',
  'PUT /v1/customers/:id/consents': 'consent:write',
  'GET /v1/customers/:id/consents': 'consent:read',
  'GET /v1/customers/:id/export': 'personal:read',
  'POST /v1/customers/:id/erasure': 'tenant:admin',
  'GET /v1/erasures/:id': 'tenant:admin',
  'POST /v1/customers/:id/reregistration': 'tenant:admin',
  'GET /v1/consent/categories': 'tenant:admin',
  'PUT /v1/consent/categories': 'tenant:admin',
  'GET /v1/pipelines/runs': 'catalog:read',
  'GET /v1/pipelines/runs/:runId': 'catalog:read',
  'POST /v1/pipelines/runs': 'tenant:admin',
  'GET /v1/pipelines/status': 'catalog:read',
  'POST /v1/segments/preview': 'catalog:read',
  'POST /v1/segments/explain': 'catalog:read',
  'GET /v1/segments': 'catalog:read',
  'GET /v1/events/names': 'catalog:read',
  'GET /v1/segments/:id': 'catalog:read',
  'GET /v1/segments/:id/versions': 'catalog:read',
  'POST /v1/segments/:id/preview': 'catalog:read',
  'PUT /v1/segments/:id': 'segments:write',
  'DELETE /v1/segments/:id': 'segments:write',
  'PUT /v1/segments/:id/archived': 'segments:write',
  'GET /v1/segments/:id/members': 'personal:read',
  'GET /v1/segments/:id/export': 'personal:read',
  'GET /v1/segments/:id/runs': 'catalog:read',
  'GET /v1/segments/:id/members/:customerId': 'personal:read',
  'GET /v1/layout': 'layout:read',
  'GET /v1/layout/catalog': 'catalog:read',
  'PUT /v1/layout/catalog': 'tenant:admin',
  'GET /v1/layout/catalog/versions': 'catalog:read',
  'GET /v1/layout/model': 'catalog:read',
  'GET /v1/layout/experiments': 'catalog:read',
  'GET /v1/push/campaigns': 'catalog:read',
  'GET /v1/push/campaigns/:id': 'catalog:read',
  'GET /v1/push/campaigns/:id/versions': 'catalog:read',
  'PUT /v1/push/campaigns/:id': 'campaigns:write',
  'POST /v1/push/campaigns/:id/reach': 'campaigns:write',
  'DELETE /v1/push/campaigns/:id': 'campaigns:write',
  'PUT /v1/push/campaigns/:id/archived': 'campaigns:write',
  'POST /v1/push/campaigns/:id/run': 'campaigns:write',
  'GET /v1/push/campaigns/:id/approval': 'catalog:read',
  'POST /v1/push/campaigns/:id/approval/request': 'campaigns:write',
  'POST /v1/push/campaigns/:id/approval': 'campaigns:write',
  'POST /v1/push/campaigns/:id/test': 'campaigns:write',
  'GET /v1/push/test-lists': 'campaigns:write',
  'PUT /v1/push/test-lists/:id': 'campaigns:write',
  'GET /v1/push/campaigns/:id/stats': 'catalog:read',
  'GET /v1/push/campaigns/:id/targets': 'personal:read',
  'POST /v1/push/schedules/preview': 'campaigns:write',
  'POST /v1/push/templates/preview': 'campaigns:write',
  'GET /v1/push/policy': 'catalog:read',
  'PUT /v1/push/policy': 'tenant:admin',
  'POST /v1/push/pull': 'push:deliver',
  'POST /v1/push/ack': 'push:deliver',
  'GET /v1/audit': 'audit:read',
  'POST /v1/import/:kind': 'tenant:admin',
  'GET /v1/import/kinds': 'tenant:admin',
}

/** Route parameters that name nothing that exists: an admitted request changes nothing. */
const PARAMS: Record<string, string> = {
  id: 'no-such-thing',
  name: 'no_such_tag',
  tag: 'no_such_tag',
  keyId: '0123456789abcdef',
  changeId: '00000000-0000-4000-8000-000000000000',
  tenant: 'no-such-tenant',
  kind: 'customers',
  customerId: 'NO-SUCH-CUSTOMER',
  runId: '1',
  '*': 'index.html',
}
const OPERATOR = 'permission-test-operator-token-0123456789'
const NOT_JSON = '{"this is": not json'

let t: TestApp
let routes: DeclaredRoute[]
const keys = {} as Record<Role, string>
let expired: string
let revoked: string
let otherAdmin: string

beforeAll(async () => {
  t = await openTestApp({ QIANMIAN_OPERATOR_TOKEN: OPERATOR })
  routes = [...t.audit.declared()]
  const a = await t.tenants.create({ slug: 'perm-a', name: 'A' })
  for (const role of ROLES) keys[role] = (await t.keys.issue(a.id, { roles: [role], holder: `only ${role}` })).key
  const old = await t.keys.issue(a.id, { roles: ['admin'], holder: 'rotated away' })
  await t.keys.rotate(a.id, old.view.keyId, 0)
  expired = old.key
  const gone = await t.keys.issue(a.id, { roles: ['admin'], holder: 'revoked' })
  await t.keys.revoke(a.id, gone.view.keyId)
  revoked = gone.key
  const b = await t.tenants.create({ slug: 'perm-b', name: 'B' })
  otherAdmin = (await t.keys.issue(b.id, { roles: ['admin'], holder: 'B admin' })).key
}, 60_000)
afterAll(async () => t?.close())

const name = (r: DeclaredRoute) => `${r.method} ${r.url}`
const urlOf = (r: DeclaredRoute) => r.url.replace(/:(\w+)|\*/g, (m, p: string | undefined) => encodeURIComponent(PARAMS[p ?? '*'] ?? 'x'))

function send(r: DeclaredRoute, key: string | undefined, body = NOT_JSON) {
  const withBody = r.method !== 'GET' && r.method !== 'DELETE'
  return t.app.inject({
    method: r.method as 'GET',
    url: urlOf(r),
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(withBody ? { 'content-type': 'application/json' } : {}) },
    ...(withBody ? { payload: body } : {}),
  })
}

describe('least privilege, route by route', () => {
  it('has an expected permission for every route of the app, and no stale entries', () => {
    expect(routes.length).toBeGreaterThan(60)
    const names = new Set(routes.map(name))
    expect(routes.map(name).filter((n) => !(n in EXPECTED))).toEqual([])
    expect(Object.keys(EXPECTED).filter((n) => !names.has(n))).toEqual([])
  })

  it('requires on each route the permission the table says', () => {
    const wrong = routes
      .filter((r) => EXPECTED[name(r)] && EXPECTED[name(r)] !== 'operator' && EXPECTED[name(r)] !== 'public')
      .map((r) => [name(r), r.onRequest.map((h) => (h as { permission?: string }).permission).find(Boolean)] as const)
      .filter(([n, p]) => p !== EXPECTED[n])
    expect(wrong).toEqual([])
  })

  it('refuses every role without the permission with 403 before reading the body, and admits the others', async () => {
    const failures: string[] = []
    for (const r of routes) {
      const need = EXPECTED[name(r)]
      if (!need || need === 'public') continue
      for (const role of ROLES) {
        const res = await send(r, keys[role])
        const admitted = need !== 'operator' && ROLE_PERMISSIONS[role].includes(need)
        if (admitted && (res.statusCode === 401 || res.statusCode === 403)) failures.push(`${name(r)} ${role}: refused ${res.statusCode} ${res.body}`)
        const code = res.statusCode >= 400 ? (res.json() as { error?: { code?: string } }).error?.code : undefined
        if (!admitted && need !== 'operator' && (res.statusCode !== 403 || code !== 'SCOPE_FORBIDDEN')) failures.push(`${name(r)} ${role}: ${res.statusCode} ${code}`)
        if (need === 'operator' && res.statusCode !== 401) failures.push(`${name(r)} ${role}: a tenant key got ${res.statusCode} on an operator route`)
      }
    }
    expect(failures).toEqual([])
  }, 120_000)

  it('answers 401 without a key, with an expired key and with a revoked key, on every protected route', async () => {
    const failures: string[] = []
    for (const r of routes) {
      const need = EXPECTED[name(r)]
      if (!need || need === 'public') continue
      const cases: [string, string | undefined, string][] = [['no key', undefined, 'AUTH_MISSING']]
      if (need !== 'operator') cases.push(['expired', expired, 'AUTH_EXPIRED'], ['revoked', revoked, 'AUTH_INVALID'], ['operator token', OPERATOR, 'AUTH_INVALID'])
      for (const [label, key, code] of cases) {
        // Segment browser beacons may carry the key as `writeKey` in the body: without a header
        // the body must be read to look for it, so it has to be JSON to get that far.
        const res = await send(r, key, !key && need === 'events:write' ? '{}' : NOT_JSON)
        const got = (res.json() as { error?: { code?: string } }).error?.code
        if (res.statusCode !== 401 || got !== code) failures.push(`${name(r)} ${label}: ${res.statusCode} ${got}`)
      }
    }
    expect(failures).toEqual([])
  }, 120_000)

  it('admits the operator token on operator routes only', async () => {
    const failures: string[] = []
    for (const r of routes.filter((x) => EXPECTED[name(x)] === 'operator')) {
      const res = await send(r, OPERATOR)
      if (res.statusCode === 401 || res.statusCode === 403) failures.push(`${name(r)}: ${res.statusCode}`)
    }
    expect(failures).toEqual([])
  })

  it("gives an analyst a preview's size but no customer numbers (those need personal:read)", async () => {
    const admin = { authorization: `Bearer ${keys.admin}` }
    const tenantId = (await t.tenants.get('perm-a')).id
    const now = new Date().toISOString().replace('T', ' ').replace('Z', '')
    const nos = ['PV1', 'PV2', 'PV3']
    await t.engine.db.forTenant(tenantId).insert('customers', nos.map((no, i) => ({
      customer_key: 900 + i, customer_no: no, gender: 'unknown', birth_date: '1950-01-01', region_code: 'r', branch_code: 'b', occupation: 'o', phone_hash: '', name_masked: '', opened_at: '2015-01-01 00:00:00', updated_at: now,
    })))
    await t.engine.db.forTenant(tenantId).insert('identities', nos.map((no, i) => ({ id_kind: 'customer_no', id_value: no, customer_key: 900 + i, source: 'test', created_at: now, updated_at: now })))
    const tag = { type: 'boolean', description: { zh: '长辈', en: 'elder' }, owner: 'qa', purpose: ['marketing'], rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } }
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/pv_elder', headers: admin, payload: tag })).statusCode).toBe(201)
    const run = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: admin, payload: { pipeline: 'tags', mode: 'full', wait: true } })
    expect(run.json().status, run.body).toBe('succeeded')
    const body = { purpose: 'marketing', rule: { tag: 'pv_elder', op: 'eq', value: true }, sampleSize: 10 }
    const asAdmin = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: admin, payload: body })
    expect(asAdmin.json()).toMatchObject({ count: 3, sample: expect.arrayContaining(nos) })
    const asAnalyst = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: { authorization: `Bearer ${keys.analyst}` }, payload: body })
    expect(asAnalyst.statusCode).toBe(200)
    expect(asAnalyst.json()).toMatchObject({ count: 3, sample: [] })
  }, 60_000)

  it("does not show one tenant's objects to another tenant's admin key", async () => {
    const admin = { authorization: `Bearer ${keys.admin}` }
    const other = { authorization: `Bearer ${otherAdmin}` }
    const tag = { type: 'boolean', description: { zh: '测试', en: 'test' }, owner: 'qa', purpose: ['service'], rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } }
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/a_only', headers: admin, payload: tag })).statusCode).toBe(201)
    const ev = { batch: [{ type: 'track', event: 'login', userId: 'PA001', messageId: crypto.randomUUID() }] }
    expect((await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${keys.ingest}` }, payload: ev })).statusCode).toBe(200)
    expect((await t.app.inject({ url: '/v1/customers/PA001', headers: admin })).statusCode).toBe(200)
    for (const url of ['/v1/tags/a_only', '/v1/tags/a_only/versions', '/v1/customers/PA001', '/v1/customers/PA001/segments']) {
      expect((await t.app.inject({ url, headers: other })).statusCode, url).toBe(404)
    }
    // B's trail holds B's own probes (refused), nothing A did.
    const trail = (await t.app.inject({ url: '/v1/audit?limit=1000', headers: other })).json().entries as { holder: string; outcome: string; customerNo: string }[]
    expect(trail.filter((e) => e.customerNo === 'PA001').map((e) => e.outcome)).toEqual(['refused', 'refused'])
    expect(trail.filter((e) => e.holder !== 'B admin')).toEqual([])
  })
})
