import zlib from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMetrics } from '../core/metrics.js'
import { createKeyService, type KeyService } from '../tenants/keys.service.js'
import { createTenantService, type TenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { buildApp } from './app.js'
import type { Readiness } from './health.routes.js'

const OPERATOR = 'o'.repeat(40)
let engine: TestEngine
let app: FastifyInstance
let tenants: TenantService
let keys: KeyService
const readiness: Readiness = { phase: 'migrating' }
const k: Record<string, string> = {}

beforeAll(async () => {
  engine = await openTestEngine()
  tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
  keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 60_000 })
  app = await buildApp({
    db: engine.db,
    log: engine.log,
    metrics: createMetrics({ collectDefault: false }),
    tenants,
    keys,
    readiness,
    operatorToken: OPERATOR,
    version: '0.0.0-test',
  })
  const a = await tenants.create({ slug: 'bank-a', name: 'Bank A' })
  const b = await tenants.create({ slug: 'bank-b', name: 'Bank B' })
  // Keys of the deprecated scopes: they keep working through the documented mapping to roles.
  for (const scope of ['write', 'read', 'admin'] as const) k[`a-${scope}`] = (await keys.issue(a.id, { roles: [], legacyScope: scope, holder: `test ${scope}` })).key
  k['b-admin'] = (await keys.issue(b.id, { roles: ['admin'], holder: 'test admin' })).key
})
afterAll(async () => {
  await app?.close()
  await engine?.close()
})

const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

describe('operations routes', () => {
  it('answers /health at once and /ready only when start-up finished', async () => {
    expect((await app.inject('/health')).statusCode).toBe(200)
    const notReady = await app.inject('/ready')
    expect(notReady.statusCode).toBe(503)
    expect(notReady.json().error.code).toBe('NOT_READY')
    expect(notReady.json().error.message).toContain('migrating')
    expect(notReady.headers['retry-after']).toBe('1')
    readiness.phase = 'ready'
    expect((await app.inject('/ready')).json()).toEqual({ status: 'ready' })
  })

  it('serves Prometheus text with request latencies', async () => {
    await app.inject('/health')
    const res = await app.inject('/metrics')
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/text\/plain/)
    expect(res.body).toMatch(/qianmian_http_request_duration_seconds_bucket\{.*route="\/health".*\}/)
  })

  it('serves an OpenAPI document generated from the route schemas', async () => {
    const doc = (await app.inject('/docs')).json()
    expect(doc.openapi).toBe('3.1.0')
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/health', '/ready', '/v1/keys', '/v1/operator/tenants']))
    const issue = doc.paths['/v1/keys'].post
    expect(issue.requestBody.content['application/json'].schema.properties.scope.enum).toEqual(['write', 'read', 'admin'])
  })

  it('answers unknown routes with a coded 404', async () => {
    const res = await app.inject('/nope')
    expect(res.statusCode).toBe(404)
    expect(res.json().error.code).toBe('ROUTE_NOT_FOUND')
  })
})

describe('authentication and scopes', () => {
  it('needs a key', async () => {
    const res = await app.inject('/v1/tenant')
    expect(res.statusCode).toBe(401)
    expect(res.json().error.code).toBe('AUTH_MISSING')
  })
  it('refuses a bad key', async () => {
    const res = await app.inject({ url: '/v1/tenant', headers: bearer('qm_r_0000000000000000_' + 'x'.repeat(43)) })
    expect(res.statusCode).toBe(401)
    expect(res.json().error.code).toBe('AUTH_INVALID')
  })
  it('accepts the Segment convention: Basic with the key as user name', async () => {
    const basic = Buffer.from(`${k['a-read']}:`).toString('base64')
    const res = await app.inject({ url: '/v1/tenant', headers: { authorization: `Basic ${basic}` } })
    expect(res.statusCode).toBe(200)
    expect(res.json().slug).toBe('bank-a')
  })
  it('keeps a write key (shipped in the app) away from everything else', async () => {
    const res = await app.inject({ url: '/v1/tenant', headers: bearer(k['a-write']!) })
    expect(res.statusCode).toBe(403)
    expect(res.json().error.code).toBe('SCOPE_FORBIDDEN')
  })
  it('lets admin do read things but not read do admin things', async () => {
    expect((await app.inject({ url: '/v1/tenant', headers: bearer(k['a-admin']!) })).statusCode).toBe(200)
    expect((await app.inject({ url: '/v1/keys', headers: bearer(k['a-read']!) })).statusCode).toBe(403)
  })
})

describe('tenant self-service', () => {
  it('issues, lists and revokes keys of its own tenant only', async () => {
    const issued = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['layout', 'analyst'], holder: 'app gateway', label: 'layout', expiresAt: '2099-01-01T00:00:00+08:00' } })
    expect(issued.statusCode).toBe(201)
    const { key, info } = issued.json()
    expect(info).toMatchObject({ roles: ['layout', 'analyst'], holder: 'app gateway', expiresAt: '2098-12-31 16:00:00.000', legacyScope: null })
    expect(key).toMatch(/^qm_x_/)
    expect((await app.inject({ url: '/v1/tenant', headers: bearer(key) })).json().slug).toBe('bank-a')
    const listA = (await app.inject({ url: '/v1/keys', headers: bearer(k['a-admin']!) })).json().keys
    expect(listA.map((x: { keyId: string }) => x.keyId)).toContain(info.keyId)
    expect(JSON.stringify(listA)).not.toContain(key)
    const listB = (await app.inject({ url: '/v1/keys', headers: bearer(k['b-admin']!) })).json().keys
    expect(listB.map((x: { keyId: string }) => x.keyId)).not.toContain(info.keyId)
    const crossRevoke = await app.inject({ method: 'DELETE', url: `/v1/keys/${info.keyId}`, headers: bearer(k['b-admin']!) })
    expect(crossRevoke.statusCode).toBe(404)
    expect((await app.inject({ method: 'DELETE', url: `/v1/keys/${info.keyId}`, headers: bearer(k['a-admin']!) })).statusCode).toBe(200)
    expect((await app.inject({ url: '/v1/tenant', headers: bearer(key) })).statusCode).toBe(401)
  })

  it('rotates a key: the successor has the same roles and holder, the old one works until the grace ends', async () => {
    const old = (await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['push'], holder: 'notification service' } })).json()
    const rot = await app.inject({ method: 'POST', url: `/v1/keys/${old.info.keyId}/rotate`, headers: bearer(k['a-admin']!), payload: { graceSeconds: 0 } })
    expect(rot.statusCode).toBe(201)
    expect(rot.json()).toMatchObject({ info: { roles: ['push'], holder: 'notification service' }, previous: { keyId: old.info.keyId } })
    const gone = await app.inject({ url: '/v1/tenant', headers: bearer(old.key) })
    expect(gone.json().error.code).toBe('AUTH_EXPIRED')
    expect((await app.inject({ method: 'POST', url: `/v1/keys/${old.info.keyId}/rotate`, headers: bearer(k['b-admin']!) })).statusCode).toBe(404)
  })

  it('keeps issuing keys by the deprecated scope, mapped to roles', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { scope: 'read', holder: 'old gateway' } })
    expect(res.statusCode).toBe(201)
    expect(res.json().info).toMatchObject({ roles: ['layout', 'push', 'analyst'], legacyScope: 'read' })
    expect(res.json().key).toMatch(/^qm_r_/)
  })

  it('issues and rotates no key that would outlive the key asking: a temporary administrator’s access ends when theirs does', async () => {
    const until = '2090-01-01T00:00:00Z'
    const temp = (await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['admin'], holder: 'temporary admin', expiresAt: until } })).json()
    const issue = (expiresAt?: string) =>
      app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(temp.key), payload: { roles: ['admin'], holder: 'Zhao Lei', ...(expiresAt ? { expiresAt } : {}) } })
    for (const forever of [await issue(), await issue('2091-01-01T00:00:00Z')]) {
      expect(forever.statusCode, forever.body).toBe(400)
      expect(forever.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'expiresAt' }] })
    }
    expect((await issue('2089-12-31T00:00:00Z')).statusCode).toBe(201)
    // A rotation hands out a successor with the rotated key's expiry: not one outliving the caller's.
    const lasting = (await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['push'], holder: 'notification service' } })).json()
    const rot = await app.inject({ method: 'POST', url: `/v1/keys/${lasting.info.keyId}/rotate`, headers: bearer(temp.key), payload: { graceSeconds: 0 } })
    expect(rot.statusCode, rot.body).toBe(403)
    expect(rot.json().error).toMatchObject({ code: 'SCOPE_FORBIDDEN', issues: [{ field: 'keyId' }] })
    // Refused before anything changed: the key keeps its life.
    const listed = (await app.inject({ url: '/v1/keys', headers: bearer(k['a-admin']!) })).json().keys as { keyId: string; expiresAt: string | null }[]
    expect(listed.find((x) => x.keyId === lasting.info.keyId)).toMatchObject({ expiresAt: null })
  })

  it('names the field at fault in a bad body, and codes bad JSON', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['root'], holder: 'x y' } })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.code).toBe('VALIDATION_FAILED')
    expect(res.json().error.issues[0].field).toMatch(/^body\.roles/)
    const noHolder = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['ingest'] } })
    expect(noHolder.json().error.issues[0].field).toBe('body.holder')
    const both = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['ingest'], scope: 'write', holder: 'app' } })
    expect(both.json().error.issues[0].field).toBe('body.roles')
    const past = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { roles: ['ingest'], holder: 'app', expiresAt: '2001-01-01T00:00:00Z' } })
    expect(past.json().error.issues[0].field).toBe('expiresAt')
    const bad = await app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: { ...bearer(k['a-admin']!), 'content-type': 'application/json' },
      payload: '{"scope": "read",',
    })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.code).toBe('INVALID_JSON')
  })

  it('accepts gzip bodies and refuses unknown encodings', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: { ...bearer(k['a-admin']!), 'content-type': 'application/json', 'content-encoding': 'gzip' },
      payload: zlib.gzipSync(JSON.stringify({ roles: ['ingest'], holder: 'gz app', label: 'gz' })),
    })
    expect(res.statusCode).toBe(201)
    const br = await app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: { ...bearer(k['a-admin']!), 'content-type': 'application/json', 'content-encoding': 'br' },
      payload: 'x',
    })
    expect(br.statusCode).toBe(415)
    expect(br.json().error.code).toBe('UNSUPPORTED_MEDIA_TYPE')
  })
})

describe('operator routes', () => {
  it('need the operator token', async () => {
    expect((await app.inject({ url: '/v1/operator/tenants', headers: bearer(k['a-admin']!) })).json().error.code).toBe('AUTH_INVALID')
    expect((await app.inject({ url: '/v1/operator/tenants' })).statusCode).toBe(401)
  })
  it('create a member bank, issue its key, and disable it', async () => {
    const g = await app.inject({ method: 'POST', url: '/v1/operator/tenants', headers: bearer(OPERATOR), payload: { slug: 'grp', name: '联社', kind: 'group' } })
    expect(g.statusCode).toBe(201)
    const m = await app.inject({ method: 'POST', url: '/v1/operator/tenants', headers: bearer(OPERATOR), payload: { slug: 'county', name: '县农商行', parent: 'grp' } })
    expect(m.json()).toMatchObject({ slug: 'county', kind: 'member', parentId: g.json().id, timeZone: 'Asia/Shanghai', status: 'active' })
    const dup = await app.inject({ method: 'POST', url: '/v1/operator/tenants', headers: bearer(OPERATOR), payload: { slug: 'county', name: 'x' } })
    expect(dup.statusCode).toBe(409)
    const key = (await app.inject({ method: 'POST', url: '/v1/operator/tenants/county/keys', headers: bearer(OPERATOR), payload: { roles: ['analyst'], holder: 'county analyst' } })).json().key
    expect((await app.inject({ url: '/v1/tenant', headers: bearer(key) })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: '/v1/operator/tenants/county/disable', headers: bearer(OPERATOR) })).json().status).toBe('disabled')
    const refused = await app.inject({ url: '/v1/tenant', headers: bearer(key) })
    expect(refused.statusCode).toBe(403)
    expect(refused.json().error.code).toBe('TENANT_DISABLED')
  })
})
