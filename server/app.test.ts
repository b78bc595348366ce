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
  for (const scope of ['write', 'read', 'admin'] as const) k[`a-${scope}`] = (await keys.issue(a.id, scope)).key
  k['b-admin'] = (await keys.issue(b.id, 'admin')).key
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
    const issued = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { scope: 'read', label: 'layout' } })
    expect(issued.statusCode).toBe(201)
    const { key, info } = issued.json()
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

  it('names the field at fault in a bad body, and codes bad JSON', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(k['a-admin']!), payload: { scope: 'root' } })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.code).toBe('VALIDATION_FAILED')
    expect(res.json().error.issues[0].field).toBe('body.scope')
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
      payload: zlib.gzipSync(JSON.stringify({ scope: 'write', label: 'gz' })),
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
    const key = (await app.inject({ method: 'POST', url: '/v1/operator/tenants/county/keys', headers: bearer(OPERATOR), payload: { scope: 'read' } })).json().key
    expect((await app.inject({ url: '/v1/tenant', headers: bearer(key) })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: '/v1/operator/tenants/county/disable', headers: bearer(OPERATOR) })).json().status).toBe('disabled')
    const refused = await app.inject({ url: '/v1/tenant', headers: bearer(key) })
    expect(refused.statusCode).toBe(403)
    expect(refused.json().error.code).toBe('TENANT_DISABLED')
  })
})
