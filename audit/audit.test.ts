import crypto from 'node:crypto'
import Fastify from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../core/log.js'
import { openTestApp, type TestApp } from '../test/app.js'
import { registerAuditHook } from './audit.hook.js'
import type { AuditLog } from './audit.service.js'

/** The audit trail over HTTP: what is recorded, by whom, how it is read, and what it refuses. */

const OPERATOR = 'operator-token-operator-token-operator-token'
let t: TestApp
let a: { id: number; admin: string; adminKeyId: string; ingest: string; analyst: string }
let b: { id: number; admin: string }
const bearer = (key: string) => ({ authorization: `Bearer ${key}` })
const keyIdOf = (key: string) => key.split('_')[2]!

async function trail(key: string, query = '') {
  const res = await t.app.inject({ url: `/v1/audit${query ? `?${query}` : ''}`, headers: bearer(key) })
  expect(res.statusCode, res.body).toBe(200)
  return res.json() as { entries: Record<string, unknown>[]; nextCursor: string | null }
}

beforeAll(async () => {
  t = await openTestApp({ QIANMIAN_OPERATOR_TOKEN: OPERATOR })
  const ta = await t.tenants.create({ slug: 'audit-a', name: 'A' })
  const tb = await t.tenants.create({ slug: 'audit-b', name: 'B' })
  const admin = (await t.keys.issue(ta.id, { roles: ['admin'], holder: 'Li Wei (risk office)' })).key
  a = {
    id: ta.id,
    admin,
    adminKeyId: keyIdOf(admin),
    ingest: (await t.keys.issue(ta.id, { roles: ['ingest'], holder: 'mobile app' })).key,
    analyst: (await t.keys.issue(ta.id, { roles: ['analyst'], holder: 'Zhao Min' })).key,
  }
  b = { id: tb.id, admin: (await t.keys.issue(tb.id, { roles: ['admin'], holder: 'Wang Fang' })).key }
  // Three known customers of A, by events from the app.
  const batch = ['AC001', 'AC002', 'AC003'].map((userId) => ({ type: 'track', event: 'login', userId, messageId: crypto.randomUUID() }))
  const sent = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: bearer(a.ingest), payload: { batch } })
  expect(sent.statusCode, sent.body).toBe(200)
}, 60_000)
afterAll(async () => t?.close())

const tagDef = { type: 'boolean', description: { zh: '测试', en: 'test' }, owner: 'qa', purpose: ['service'], rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } }

describe('the audit trail', () => {
  it('records a change with the key holder, key id, roles, client address and request id', async () => {
    const res = await t.app.inject({ method: 'PUT', url: '/v1/tags/elder_a', headers: { ...bearer(a.admin), 'x-request-id': 'ignored' }, payload: tagDef })
    expect(res.statusCode, res.body).toBe(201)
    const { entries } = await trail(a.admin, 'action=tag.save')
    expect(entries).toHaveLength(1)
    expect(entries[0]).toMatchObject({
      action: 'tag.save',
      objectKind: 'tag',
      objectId: 'elder_a',
      holder: 'Li Wei (risk office)',
      keyId: a.adminKeyId,
      roles: ['admin'],
      clientIp: '127.0.0.1',
      outcome: 'ok',
      status: 201,
      detail: { route: 'PUT /v1/tags/:name' },
    })
    expect(entries[0]!.requestId).toMatch(/\S/)
  })

  it('shows the holder, not the key id, in the version history', async () => {
    const res = await t.app.inject({ url: '/v1/tags/elder_a/versions', headers: bearer(a.admin) })
    expect(res.json().versions[0].createdBy).toBe('Li Wei (risk office)')
  })

  it('records a change refused past authentication, and nothing for a caller without a valid key', async () => {
    const bad = await t.app.inject({ method: 'PUT', url: '/v1/tags/broken_a', headers: bearer(a.admin), payload: { type: 'nonsense' } })
    expect(bad.statusCode).toBe(400)
    const noKey = await t.app.inject({ method: 'PUT', url: '/v1/tags/nokey_a', payload: tagDef })
    expect(noKey.statusCode).toBe(401)
    const wrongRole = await t.app.inject({ method: 'PUT', url: '/v1/tags/analyst_a', headers: bearer(a.analyst), payload: tagDef })
    expect(wrongRole.statusCode).toBe(403)
    const { entries } = await trail(a.admin, 'objectKind=tag&action=tag.save')
    expect(entries.map((e) => [e.objectId, e.outcome, e.status])).toEqual([
      ['broken_a', 'refused', 400],
      ['elder_a', 'ok', 201],
    ])
  })

  it('records every read of a customer profile, found or not, with the customer number', async () => {
    expect((await t.app.inject({ url: '/v1/customers/AC001', headers: bearer(a.admin) })).statusCode).toBe(200)
    expect((await t.app.inject({ url: '/v1/customers/NOSUCH', headers: bearer(a.admin) })).statusCode).toBe(404)
    const one = await trail(a.admin, 'customer=AC001')
    expect(one.entries).toEqual([expect.objectContaining({ action: 'customer.profile.read', customerNo: 'AC001', customers: 1, outcome: 'ok' })])
    const probe = await trail(a.admin, 'customer=NOSUCH')
    expect(probe.entries).toEqual([expect.objectContaining({ action: 'customer.profile.read', outcome: 'refused', status: 404, customers: 0 })])
  })

  it('filters by actor (holder or key id) and action prefix, and pages with a cursor', async () => {
    const byHolder = await trail(a.admin, `actor=${encodeURIComponent('Li Wei (risk office)')}&action=customer.`)
    expect(byHolder.entries.length).toBe(2)
    const byKey = await trail(a.admin, `actor=${a.adminKeyId}&action=customer.`)
    expect(byKey.entries).toEqual(byHolder.entries)
    // A fixed end: reading the trail adds entries, which later pages must not see.
    const to = `to=${encodeURIComponent(new Date().toISOString())}`
    const all = await trail(a.admin, `limit=1000&${to}`)
    expect(all.entries.length).toBeGreaterThan(4)
    const seen: unknown[] = []
    let cursor: string | null = null
    do {
      const page: Awaited<ReturnType<typeof trail>> = await trail(a.admin, `limit=2&${to}${cursor ? `&cursor=${cursor}` : ''}`)
      expect(page.entries.length).toBeLessThanOrEqual(2)
      seen.push(...page.entries)
      cursor = page.nextCursor
    } while (cursor)
    expect(seen).toEqual(all.entries)
  })

  it('refuses a bad time range with a coded 400 naming the field', async () => {
    const ask = (q: string) => t.app.inject({ url: `/v1/audit?${q}`, headers: bearer(a.admin) })
    const reversed = await ask('from=2026-06-02T00:00:00Z&to=2026-06-01T00:00:00Z')
    expect(reversed.statusCode).toBe(400)
    expect(reversed.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [expect.objectContaining({ field: 'from' })] })
    const tooLong = await ask('from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z')
    expect(tooLong.statusCode).toBe(400)
    expect(tooLong.json().error.issues[0].field).toBe('to')
    const notIso = await ask('from=yesterday')
    expect(notIso.statusCode).toBe(400)
    expect(notIso.json().error.issues[0].field).toBe('querystring.from')
    const badCursor = await ask('cursor=bm90LWEtY3Vyc29y')
    expect(badCursor.statusCode).toBe(400)
    expect(badCursor.json().error.issues[0].field).toBe('cursor')
  })

  it("keeps each tenant's trail to itself", async () => {
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/elder_b', headers: bearer(b.admin), payload: tagDef })).statusCode).toBe(201)
    const own = await trail(b.admin, 'limit=1000')
    expect(own.entries.map((e) => e.objectId)).toContain('elder_b')
    expect(own.entries.every((e) => e.holder === 'Wang Fang')).toBe(true)
    expect((await trail(b.admin, `actor=${a.adminKeyId}`)).entries).toEqual([])
    expect((await trail(b.admin, 'customer=AC001')).entries).toEqual([])
    // A's trail holds none of B's reads.
    expect((await trail(a.admin, 'actor=Wang%20Fang')).entries).toEqual([])
  })

  it('needs the audit:read permission', async () => {
    expect((await t.app.inject({ url: '/v1/audit', headers: bearer(a.analyst) })).statusCode).toBe(403)
    expect((await t.app.inject({ url: '/v1/audit', headers: bearer(a.ingest) })).statusCode).toBe(403)
  })

  it("records the operator's actions in the operator trail", async () => {
    const created = await t.app.inject({ method: 'POST', url: '/v1/operator/tenants', headers: bearer(OPERATOR), payload: { slug: 'audit-c', name: 'C' } })
    expect(created.statusCode, created.body).toBe(201)
    const res = await t.app.inject({ url: '/v1/operator/audit?action=tenant.', headers: bearer(OPERATOR) })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().entries).toEqual([expect.objectContaining({ action: 'tenant.create', holder: 'operator', keyId: 'operator', status: 201 })])
    const ofA = await t.app.inject({ url: '/v1/operator/audit?tenant=audit-a&action=tag.save', headers: bearer(OPERATOR) })
    expect(ofA.json().entries.length).toBe(2)
    expect((await t.app.inject({ url: '/v1/operator/audit', headers: bearer(a.admin) })).statusCode).toBe(401)
  })

  it('names the tenant created and every key issued, by the operator and by a rotation', async () => {
    const created = await t.app.inject({ method: 'POST', url: '/v1/operator/tenants', headers: bearer(OPERATOR), payload: { slug: 'audit-d', name: 'D' } })
    expect(created.statusCode, created.body).toBe(201)
    const issued = await t.app.inject({ method: 'POST', url: '/v1/operator/tenants/audit-d/keys', headers: bearer(OPERATOR), payload: { roles: ['admin'], holder: 'D administrator' } })
    expect(issued.statusCode, issued.body).toBe(201)
    const ops = (await t.app.inject({ url: '/v1/operator/audit?limit=100', headers: bearer(OPERATOR) })).json().entries as Record<string, unknown>[]
    expect(ops.find((e) => e.action === 'tenant.create' && e.status === 201 && e.objectId === 'audit-d')).toBeDefined()
    expect(ops.find((e) => e.action === 'key.issue' && e.objectId === 'audit-d')).toMatchObject({
      detail: { keyId: issued.json().info.keyId, roles: ['admin'], holder: 'D administrator' },
    })
    // A rotation issues a new key: the trail names it beside the key it replaces.
    const d = await t.tenants.get('audit-d')
    const admin = issued.json().key as string
    const push = await t.keys.issue(d.id, { roles: ['push'], holder: 'notifier d' })
    const rotated = await t.app.inject({ method: 'POST', url: `/v1/keys/${push.view.keyId}/rotate`, headers: bearer(admin) })
    expect(rotated.statusCode, rotated.body).toBe(201)
    const { entries } = await trail(admin, 'action=key.rotate')
    expect(entries).toEqual([
      expect.objectContaining({ objectId: push.view.keyId, outcome: 'ok', detail: expect.objectContaining({ successor: rotated.json().info.keyId, roles: ['push'], holder: 'notifier d' }) }),
    ])
  })
})

describe('personal-data reads count the customers they hand out', () => {
  it('member pages, exports and previews', async () => {
    const admin = bearer(a.admin)
    const now = new Date().toISOString().replace('T', ' ').replace('Z', '')
    const keys = Array.from({ length: 6 }, (_, i) => 101 + i)
    const no = (k: number) => `M${k}`
    await t.engine.db.forTenant(a.id).insert('customers', keys.map((k) => ({
      customer_key: k, customer_no: no(k), gender: 'unknown', birth_date: k <= 104 ? '1950-01-01' : '1990-01-01', region_code: 'r', branch_code: 'b', occupation: 'o', phone_hash: '', name_masked: '', opened_at: '2015-01-01 00:00:00', updated_at: now,
    })))
    await t.engine.db.forTenant(a.id).insert('identities', keys.map((k) => ({ id_kind: 'customer_no', id_value: no(k), customer_key: k, source: 'test', created_at: now, updated_at: now })))
    const run = async (pipeline: string) => {
      const r = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: admin, payload: { pipeline, mode: 'full', wait: true } })
      expect(r.json().status, r.body).toBe('succeeded')
    }
    await run('tags')
    const seg = await t.app.inject({ method: 'PUT', url: '/v1/segments/elders-a', headers: admin, payload: { name: 'Elders', purpose: 'service', rule: { tag: 'elder_a', op: 'eq', value: true } } })
    expect(seg.statusCode, seg.body).toBe(201)
    await run('segments')
    const page = await t.app.inject({ url: '/v1/segments/elders-a/members?limit=3', headers: admin })
    expect(page.json().members).toHaveLength(3)
    expect((await t.app.inject({ url: '/v1/segments/elders-a/export', headers: admin })).statusCode).toBe(200)
    const preview = await t.app.inject({ method: 'POST', url: '/v1/segments/elders-a/preview', headers: admin, payload: { sampleSize: 2 } })
    expect(preview.json().sample).toHaveLength(2)
    const { entries } = await trail(a.admin, 'objectId=elders-a&action=segment.')
    const by = Object.fromEntries(entries.map((e) => [e.action, e.customers]))
    expect(by).toMatchObject({ 'segment.members.read': 3, 'segment.export': 4, 'segment.preview': 2, 'segment.save': 0 })
  }, 60_000)
})

describe('identity merges', () => {
  it('refuses an alias of two known customer numbers from the app, event by event; identify still links', async () => {
    const batch = [
      { type: 'alias', previousId: 'AC001', userId: 'AC002', messageId: crypto.randomUUID() },
      { type: 'identify', anonymousId: 'dev-a1', userId: 'AC003', messageId: crypto.randomUUID() },
      { type: 'alias', previousId: 'dev-a2', userId: 'AC003', messageId: crypto.randomUUID() },
    ]
    const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: bearer(a.ingest), payload: { batch } })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ accepted: 2, rejected: [{ index: 0, code: 'ALIAS_MERGE_FORBIDDEN', field: 'previousId' }] })
    const single = await t.app.inject({ method: 'POST', url: '/v1/alias', headers: bearer(a.ingest), payload: { previousId: 'AC001', userId: 'AC002', messageId: crypto.randomUUID() } })
    expect(single.statusCode).toBe(403)
    expect(single.json().error.code).toBe('ALIAS_MERGE_FORBIDDEN')
    const changes = await t.ingest.identities.changes(a.id)
    expect(changes.filter((c) => c.action === 'merge')).toEqual([])
    expect(changes.map((c) => c.idValue).sort()).toEqual(['dev-a1', 'dev-a2'])
  })

  it('merges two customers through the admin route, with a reason, audited; the undo is audited too', async () => {
    const body = { from: 'AC001', to: 'AC002', reason: 'duplicate registration confirmed at branch 12' }
    expect((await t.app.inject({ method: 'POST', url: '/v1/identities/merge', headers: bearer(a.ingest), payload: body })).statusCode).toBe(403)
    const noReason = await t.app.inject({ method: 'POST', url: '/v1/identities/merge', headers: bearer(a.admin), payload: { from: 'AC001', to: 'AC002' } })
    expect(noReason.statusCode).toBe(400)
    expect(noReason.json().error.issues[0].field).toBe('body.reason')
    const unknown = await t.app.inject({ method: 'POST', url: '/v1/identities/merge', headers: bearer(a.admin), payload: { ...body, to: 'AC999' } })
    expect(unknown.statusCode).toBe(404)
    const merged = await t.app.inject({ method: 'POST', url: '/v1/identities/merge', headers: bearer(a.admin), payload: body })
    expect(merged.statusCode, merged.body).toBe(200)
    expect(merged.json()).toMatchObject({ action: 'merge', idValue: 'AC001', actor: 'Li Wei (risk office)', reason: body.reason })
    const changeId = merged.json().changeId as string
    const undo = await t.app.inject({ method: 'POST', url: `/v1/identities/changes/${changeId}/undo`, headers: bearer(a.admin) })
    expect(undo.statusCode).toBe(200)
    const { entries } = await trail(a.admin, 'action=identity.')
    expect(entries.map((e) => [e.action, e.objectId, e.outcome])).toEqual([
      ['identity.undo', changeId, 'ok'],
      ['identity.merge', changeId, 'ok'],
      ['identity.merge', '', 'refused'],
      ['identity.merge', '', 'refused'],
    ])
    expect(entries[1]).toMatchObject({ customerNo: 'AC001', customers: 2, detail: { into: 'AC002', reason: body.reason } })
    // The undo is found by the customer it gave back, as the merge is.
    expect(entries[0]).toMatchObject({ customerNo: 'AC001', customers: 2 })
    const byCustomer = await trail(a.admin, 'customer=AC001&action=identity.')
    expect(byCustomer.entries.map((e) => e.action)).toEqual(['identity.undo', 'identity.merge'])
  })
})

describe('when the trail cannot be written', () => {
  it('withholds personal data (503) but does not hide a change already made', async () => {
    const failing: AuditLog = {
      record: () => Promise.reject(new Error('disk full')),
      query: () => Promise.reject(new Error('unused')),
    }
    const app = Fastify()
    registerAuditHook(app, { audit: failing, log: createLogger({ level: 'silent' }) })
    app.addHook('onRequest', async (req) => {
      req.principal = { tenantId: 1, keyId: 'k', roles: ['admin'], holder: 'h', permissions: new Set() }
    })
    app.get('/personal', { config: { audit: { action: 'x.read', objectKind: 'x', personal: true } } }, async () => ({ secret: 'customer data' }))
    app.post('/change', { config: { audit: { action: 'x.save', objectKind: 'x' } } }, async () => ({ saved: true }))
    const read = await app.inject({ url: '/personal' })
    expect(read.statusCode).toBe(503)
    expect(read.body).not.toContain('customer data')
    expect(read.json().error.code).toBe('STORAGE_UNAVAILABLE')
    const change = await app.inject({ method: 'POST', url: '/change', payload: {} })
    expect(change.statusCode).toBe(200)
    expect(change.json()).toEqual({ saved: true })
    await app.close()
  })
})
