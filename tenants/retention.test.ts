import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { RETENTION_DEFAULTS } from './privacy.schema.js'
import { createRetentionJob } from './retention.job.js'

let t: TestApp
let a: Awaited<ReturnType<typeof tenantWithKeys>>
let b: Awaited<ReturnType<typeof tenantWithKeys>>
const bearer = (key: string) => ({ authorization: `Bearer ${key}` })
beforeAll(async () => {
  t = await openTestApp()
  a = await tenantWithKeys(t, 'ret-a')
  b = await tenantWithKeys(t, 'ret-b')
})
afterAll(async () => t?.close())

const put = (key: string, body: unknown) => t.app.inject({ method: 'PUT', url: '/v1/tenant/privacy', headers: bearer(key), payload: body as object })

describe('retention settings', () => {
  it('shows the defaults in GET /v1/tenant until an admin changes them, and the change is audited', async () => {
    const before = (await t.app.inject({ url: '/v1/tenant', headers: bearer(a.read) })).json()
    expect(before.privacy).toMatchObject({ ...RETENTION_DEFAULTS, legalMinimumDays: 0, valuePolicy: 'digest', updatedAt: null })
    const res = await put(a.admin, { eventsDays: 200, legalMinimumDays: 90, valuePolicy: 'mask' })
    expect(res.statusCode).toBe(200)
    const after = (await t.app.inject({ url: '/v1/tenant', headers: bearer(a.read) })).json()
    expect(after.privacy).toMatchObject({ eventsDays: 200, legalMinimumDays: 90, valuePolicy: 'mask', exposuresDays: RETENTION_DEFAULTS.exposuresDays })
    expect(after.privacy.updatedBy).not.toBe('')
    // The other bank keeps its own.
    expect((await t.app.inject({ url: '/v1/tenant', headers: bearer(b.read) })).json().privacy.eventsDays).toBe(RETENTION_DEFAULTS.eventsDays)
    const trail = (await t.app.inject({ url: '/v1/audit?action=tenant.retention', headers: bearer(a.admin) })).json()
    expect(JSON.stringify(trail)).toContain('tenant.retention.save')
  })

  it('refuses a retention below the legal minimum or above the maximum with a 400 naming the field; only admin may change', async () => {
    const below = await put(a.admin, { exposuresDays: 30 })
    expect(below.statusCode).toBe(400)
    expect(below.json().error.issues[0].field).toBe('exposuresDays')
    const raising = await put(a.admin, { legalMinimumDays: 365 })
    expect(raising.statusCode).toBe(400)
    expect(raising.json().error.issues.map((i: { field: string }) => i.field)).toContain('legalMinimumDays')
    const above = await put(a.admin, { pushOutcomesDays: 401 })
    expect(above.statusCode).toBe(400)
    expect(JSON.stringify(above.json().error.issues)).toContain('pushOutcomesDays')
    expect((await put(a.admin, { tagHistoryDays: 3 })).statusCode).toBe(400)
    expect((await put(a.admin, { eventsDays: 200, other: 1 })).statusCode).toBe(400)
    expect((await put(a.read, { eventsDays: 300 })).statusCode).toBe(403)
    expect((await t.tenants.privacy(a.tenant.id)).eventsDays).toBe(200)
  })
})

describe('retention enforced', () => {
  const NOW = new Date('2026-12-01T00:00:00Z')
  const daysAgo = (d: number) => new Date(NOW.getTime() - d * 86_400_000).toISOString().replace('T', ' ').replace('Z', '')
  async function seed(tenantId: number) {
    const db = t.engine.db.forTenant(tenantId)
    await db.insert('events', [10, 150, 250, 500].map((d, i) => ({ customer_key: 1, timestamp: daysAgo(d), sent_at: daysAgo(d), received_at: daysAgo(d), message_id: `m${d}-${i}`, type: 'track', event: 'e' })))
    await db.insert('layout_exposures', [10, 100, 300].map((d) => ({ customer_key: 1, served_at: daysAgo(d), model_build: 1 })))
    await db.insert('push_outcomes', [10, 300].map((d) => ({ target_id: `t${d}`, campaign_id: 'c', customer_key: 1, status: 'delivered', final: 1, at: daysAgo(d) })))
    // Customer 1: a value from 1000 days ago superseded 900 days ago, then one from 10 days ago.
    // Customer 2: one value from 1000 days ago still in effect.
    await db.insert('tag_history', [
      { tag: 'x', customer_key: 1, valid_from: daysAgo(1000), value: 'a', run_id: 1 },
      { tag: 'x', customer_key: 1, valid_from: daysAgo(900), value: 'b', run_id: 2 },
      { tag: 'x', customer_key: 1, valid_from: daysAgo(10), value: 'c', run_id: 3 },
      { tag: 'x', customer_key: 2, valid_from: daysAgo(1000), value: 'a', run_id: 1 },
    ])
  }
  const count = async (tenantId: number, table: string) =>
    Number((await t.engine.db.forTenant(tenantId).query<{ n: string }>(`SELECT toString(count()) AS n FROM ${table} WHERE tenant_id = {tenant:UInt16}`))[0]!.n)

  it('deletes per bank what is older than its setting, keeps the tag value in effect, and a second run finds nothing', async () => {
    await seed(a.tenant.id)
    await seed(b.tenant.id)
    // Bank a: events 200 days, exposures 180 (default), outcomes 400, tag history 730.
    const job = createRetentionJob({ db: t.engine.db, tenants: t.tenants, log: t.engine.log, now: () => NOW })
    const ra = await job.run(a.tenant.id)
    expect(ra.deleted).toEqual({ events: 2, layout_exposures: 1, push_outcomes: 0, tag_history: 1 })
    expect(await count(a.tenant.id, 'events')).toBe(2)
    const history = await t.engine.db.forTenant(a.tenant.id).query<{ k: number; v: string }>(
      `SELECT customer_key AS k, value AS v FROM tag_history WHERE tenant_id = {tenant:UInt16} ORDER BY k, valid_from`,
    )
    expect(history.map((r) => `${r.k}${r.v}`)).toEqual(['1b', '1c', '2a'])
    // Bank b on the defaults (events 400 days): only the 500-day-old event goes.
    expect((await job.run(b.tenant.id)).deleted).toEqual({ events: 1, layout_exposures: 1, push_outcomes: 0, tag_history: 1 })
    expect(await count(b.tenant.id, 'events')).toBe(3)
    expect((await job.run(a.tenant.id)).deleted).toEqual({ events: 0, layout_exposures: 0, push_outcomes: 0, tag_history: 0 })
    const all = await job.runAll()
    expect(all.map((r) => r.tenantId)).toEqual(expect.arrayContaining([a.tenant.id, b.tenant.id]))
  })

  it('deletes for every bank on the same setting in one statement per table (each DELETE versions every part of the table)', async () => {
    const c = await tenantWithKeys(t, 'ret-c')
    const d = await tenantWithKeys(t, 'ret-d')
    await seed(c.tenant.id)
    await seed(d.tenant.id)
    const mutations = async () =>
      Number((await t.engine.db.system.query<{ n: string }>(`SELECT toString(count()) AS n FROM system.mutations WHERE database = currentDatabase() AND table = 'events'`))[0]!.n)
    const before = await mutations()
    const job = createRetentionJob({ db: t.engine.db, tenants: t.tenants, log: t.engine.log, now: () => NOW })
    const all = await job.runAll()
    // c and d share the default (400 days), a (200 days) and b have nothing left to delete.
    expect(await mutations()).toBe(before + 1)
    for (const bank of [c, d]) {
      expect(all.find((r) => r.tenantId === bank.tenant.id)?.deleted).toEqual({ events: 1, layout_exposures: 1, push_outcomes: 0, tag_history: 1 })
      expect(await count(bank.tenant.id, 'events')).toBe(3)
    }
    expect(await count(a.tenant.id, 'events')).toBe(2)
    expect(await count(b.tenant.id, 'events')).toBe(3)
  })
})

describe('retention for every bank', () => {
  const NOW = new Date('2026-12-01T00:00:00Z')
  const daysAgo = (d: number) => new Date(NOW.getTime() - d * 86_400_000).toISOString().replace('T', ' ').replace('Z', '')
  const seedEvents = (tenantId: number) =>
    t.engine.db.forTenant(tenantId).insert('events', [10, 500].map((d) => ({ customer_key: 1, timestamp: daysAgo(d), sent_at: daysAgo(d), received_at: daysAgo(d), message_id: `m${d}`, type: 'track', event: 'e' })))
  const events = async (tenantId: number) =>
    Number((await t.engine.db.forTenant(tenantId).query<{ n: string }>(`SELECT toString(count()) AS n FROM events WHERE tenant_id = {tenant:UInt16}`))[0]!.n)

  it("deletes a disabled bank's data past its retention: the status stops its keys, not its retention", async () => {
    const e = await tenantWithKeys(t, 'ret-e')
    await seedEvents(e.tenant.id)
    await t.tenants.setStatus(e.tenant.id, 'disabled')
    const all = await createRetentionJob({ db: t.engine.db, tenants: t.tenants, log: t.engine.log, now: () => NOW }).runAll()
    expect(all.find((r) => r.tenantId === e.tenant.id)?.deleted.events).toBe(1)
    expect(await events(e.tenant.id)).toBe(1)
  })

  it("a bank whose settings cannot be read fails alone, counted in its result; the others' retention is applied", async () => {
    const f = await tenantWithKeys(t, 'ret-f')
    const g = await tenantWithKeys(t, 'ret-g')
    for (const bank of [f, g]) await seedEvents(bank.tenant.id)
    const broken = (id: number) => (id === f.tenant.id ? Promise.reject(new Error('settings unreadable (simulated)')) : t.tenants.privacy(id))
    const tenants = new Proxy(t.tenants, { get: (x, p) => (p === 'privacy' ? broken : Reflect.get(x, p)) })
    const job = createRetentionJob({ db: t.engine.db, tenants, log: t.engine.log, now: () => NOW })
    const all = await job.runAll()
    expect(all.find((r) => r.tenantId === f.tenant.id)).toMatchObject({ deleted: {}, errors: [expect.stringMatching(/settings unreadable/)] })
    expect(all.find((r) => r.tenantId === g.tenant.id)).toMatchObject({ deleted: { events: 1 }, errors: [] })
    expect(await events(f.tenant.id)).toBe(2)
    expect(await events(g.tenant.id)).toBe(1)
    // Asked for that bank alone, the failure is the answer.
    await expect(job.run(f.tenant.id)).rejects.toThrow(/settings unreadable/)
  })
})

describe('digests under the shared key, over HTTP', () => {
  it('are counted and re-keyed by an admin key only, audited', async () => {
    const admin = { authorization: `Bearer ${b.admin}` }
    const status = await t.app.inject({ url: '/v1/tenant/digests', headers: admin })
    expect(status.statusCode).toBe(200)
    const none = { customersPhone: 0, traits: 0 }
    expect(status.json()).toEqual({ sharedKey: none, bankKey: none, unrecognized: none })
    expect((await t.app.inject({ url: '/v1/tenant/digests', headers: bearer(b.read) })).statusCode).toBe(403)
    expect((await t.app.inject({ method: 'POST', url: '/v1/tenant/digests/rekey', headers: bearer(b.read) })).statusCode).toBe(403)
    const run = await t.app.inject({ method: 'POST', url: '/v1/tenant/digests/rekey', headers: admin })
    expect(run.statusCode).toBe(200)
    expect(run.json()).toMatchObject({ converted: none, pages: 0, after: { sharedKey: none } })
    const trail = (await t.app.inject({ url: '/v1/audit?action=tenant.digests', headers: admin })).json()
    expect(JSON.stringify(trail)).toContain('tenant.digests.rekey')
  })
})
