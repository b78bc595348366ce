import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/** Segment preview, explain and saved segments over HTTP, as the console calls them. */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let other: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (key: string) => ({ authorization: `Bearer ${key}` })

const base = { description: { zh: '测试', en: 'test' }, owner: 'qa' }
// Six customers: 1-3 born 1950 (elder), 4-6 born 1990; accounts give AUM tiers; customer 2 has an
// overdue loan (a risk-only tag); customers 1 and 4 used the wealth screen three times recently.
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'seg-bank')
  other = await tenantWithKeys(t, 'seg-other')
  const db = t.engine.db.forTenant(bank.tenant.id)
  const now = chDateTime(new Date())
  const born = (k: number) => (k <= 3 ? '1950-03-01' : '1990-03-01')
  await db.insert('customers', [1, 2, 3, 4, 5, 6].map((k) => ({
    customer_key: k, customer_no: `C00${k}`, gender: 'unknown', birth_date: born(k), region_code: 'r', branch_code: 'b', occupation: 'o',
    phone_hash: '', name_masked: '', opened_at: '2015-01-01 00:00:00', updated_at: now,
  })))
  await db.insert('accounts', [1, 2, 3, 4, 5, 6].map((k) => ({
    customer_key: k, account_no: `A${k}`, kind: 'savings', currency: 'CNY', balance: k * 20_000, opened_at: '2015-01-01', status: 'active', updated_at: now,
  })))
  await db.insert('loans', [{ customer_key: 2, loan_no: 'L2', product_id: 'l', principal: 1000, outstanding: 900, annual_rate: 0.05, start_date: '2025-01-01', maturity_date: '2027-01-01', status: 'overdue', overdue_days: 30, updated_at: now }])
  const ev = (k: number, i: number) => ({
    customer_key: k, timestamp: chDateTime(Date.now() - (i + 1) * 3_600_000), type: 'screen', event: 'wealth', message_id: `m-${k}-${i}`, anonymous_id: '',
    user_id: `C00${k}`, session_id: 's', properties: '{}', context: '{}', sent_at: now, received_at: now, violations: [],
  })
  await db.insert('events', [1, 4].flatMap((k) => [0, 1, 2].map((i) => ev(k, i))))
  const put = (name: string, body: object) => t.app.inject({ method: 'PUT', url: `/v1/tags/${name}`, headers: auth(bank.admin), payload: body })
  await put('elder', { ...base, type: 'boolean', purpose: ['service', 'marketing'], rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } })
  await put('aum_tier', {
    ...base, type: 'enum', values: ['mass', 'affluent'], purpose: ['service', 'marketing'],
    rule: { kind: 'rule', cases: [{ when: { feature: 'aum', op: 'gte', value: 50_000 }, value: 'affluent' }], else: 'mass' },
  })
  await put('loan_overdue', { ...base, type: 'boolean', purpose: ['risk'], sensitivity: 'high', rule: { kind: 'rule', when: { feature: 'overdue_loans', op: 'gt', value: 0 } } })
  const run = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { mode: 'full', wait: true } })
  expect(run.json().status).toBe('succeeded')
}, 60_000)

afterAll(async () => {
  await t?.close()
})

const elderAffluent = { all: [{ tag: 'elder', op: 'eq', value: true }, { tag: 'aum_tier', op: 'eq', value: 'affluent' }] }

describe('preview and explain', () => {
  it('counts, shares, breaks down and samples a rule by customer number', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/segments/preview',
      // The sample is customer numbers: an admin key (personal:read); a read key gets none.
      headers: auth(bank.admin),
      payload: { purpose: 'marketing', rule: { any: [elderAffluent, { event: { names: ['wealth'] }, measure: 'count', op: 'gte', value: 3, window: { lastDays: 7 } }] }, breakdown: ['aum_tier'] },
    })
    expect(res.statusCode).toBe(200)
    const p = res.json()
    // Elder and affluent (AUM >= 50,000): customer 3 (60,000). Three wealth views: 1 and 4.
    // Of those, 3 (60,000) and 4 (80,000) are affluent, 1 (20,000) mass.
    expect(p).toMatchObject({ count: 3, total: 6, share: 0.5, sample: ['C001', 'C003', 'C004'] })
    expect(p.breakdown.aum_tier).toEqual(expect.arrayContaining([{ value: 'mass', customers: 1 }, { value: 'affluent', customers: 2 }]))
    expect(p.plan.eventScans).toBe(1)
  })

  it('explains which nodes are bitmap algebra and which an event scan', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/segments/explain', headers: auth(bank.read), payload: { purpose: 'marketing', rule: elderAffluent } })
    expect(res.json().plan).toMatchObject({ eventScans: 0, bitmapLeaves: 2, root: { node: 'all', strategy: 'bitmap' } })
  })

  it('refuses a risk-only tag in a marketing segment, and an unknown tag, at the node', async () => {
    const risky = await t.app.inject({
      method: 'POST', url: '/v1/segments/preview', headers: auth(bank.read),
      payload: { purpose: 'marketing', rule: { all: [{ tag: 'elder', op: 'eq', value: true }, { tag: 'loan_overdue', op: 'eq', value: true }] } },
    })
    expect(risky.statusCode).toBe(400)
    expect(risky.json().error.issues[0].field).toBe('rule.all.1.tag')
    // A risk segment may use the risk tag, but only an admin key sees a high-sensitivity tag.
    const risk = { purpose: 'risk', rule: { tag: 'loan_overdue', op: 'eq', value: true } }
    const hidden = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: auth(bank.read), payload: risk })
    expect(hidden.statusCode).toBe(400)
    const ok = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: auth(bank.admin), payload: risk })
    expect(ok.json()).toMatchObject({ count: 1, sample: ['C002'] })
    const unknown = await t.app.inject({ method: 'POST', url: '/v1/segments/explain', headers: auth(bank.read), payload: { purpose: 'marketing', rule: { not: { tag: 'no_such', op: 'exists' } } } })
    expect(unknown.statusCode).toBe(400)
    expect(unknown.json().error.issues[0].field).toMatch(/^rule\.not/)
  })

  it("never sees another tenant's tags or customers", async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: auth(other.read), payload: { purpose: 'marketing', rule: elderAffluent } })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.message).toMatch(/elder/)
  })
})

describe('saved segments', () => {
  it('creates, versions with who and a note, previews, and retires', async () => {
    const put = (body: object, q = '') => t.app.inject({ method: 'PUT', url: `/v1/segments/rich-elders${q}`, headers: auth(bank.admin), payload: body })
    const body = { name: 'Rich elders', purpose: 'marketing', rule: elderAffluent, changeNote: 'first cut' }
    expect((await put(body)).statusCode).toBe(201)
    expect((await put(body)).json()).toMatchObject({ changed: false, segment: { version: 1 } })
    const v2 = await put({ ...body, rule: { tag: 'elder', op: 'eq', value: true }, changeNote: 'all elders' })
    expect(v2.json()).toMatchObject({ changed: true, segment: { version: 2, changeNote: 'all elders', createdBy: 'test admin' } })
    expect((await put(body, '?expectedVersion=1')).statusCode).toBe(409)
    const versions = (await t.app.inject({ method: 'GET', url: '/v1/segments/rich-elders/versions', headers: auth(bank.read) })).json().versions
    expect(versions.map((v: { changeNote: string }) => v.changeNote)).toEqual(['first cut', 'all elders'])
    const p = await t.app.inject({ method: 'POST', url: '/v1/segments/rich-elders/preview', headers: auth(bank.admin), payload: {} })
    expect(p.json()).toMatchObject({ count: 3, sample: ['C001', 'C002', 'C003'] })
    const asRead = await t.app.inject({ method: 'POST', url: '/v1/segments/rich-elders/preview', headers: auth(bank.read), payload: {} })
    expect(asRead.json()).toMatchObject({ count: 3, sample: [] })
    expect((await t.app.inject({ method: 'PUT', url: '/v1/segments/rich-elders', headers: auth(bank.read), payload: body })).statusCode).toBe(403)
    expect((await t.app.inject({ method: 'GET', url: '/v1/segments/rich-elders', headers: auth(other.read) })).statusCode).toBe(404)
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/segments/rich-elders', headers: auth(bank.admin) })).statusCode).toBe(204)
    expect((await t.app.inject({ method: 'GET', url: '/v1/segments', headers: auth(bank.read) })).json().segments).toEqual([])
  })

  it('refers to other segments, and refuses cycles and unknown ones at the node', async () => {
    const put = (id: string, rule: object) => t.app.inject({ method: 'PUT', url: `/v1/segments/${id}`, headers: auth(bank.admin), payload: { name: id, purpose: 'marketing', rule } })
    expect((await put('elders', { tag: 'elder', op: 'eq', value: true })).statusCode).toBe(201)
    expect((await put('affluent-elders', { all: [{ segment: 'elders' }, { tag: 'aum_tier', op: 'eq', value: 'affluent' }] })).statusCode).toBe(201)
    const p = await t.app.inject({ method: 'POST', url: '/v1/segments/affluent-elders/preview', headers: auth(bank.admin), payload: {} })
    expect(p.json()).toMatchObject({ count: 1, sample: ['C003'] })
    // Narrowing "elders" changes what refers to it.
    await put('elders', { all: [{ tag: 'elder', op: 'eq', value: true }, { not: { tag: 'aum_tier', op: 'eq', value: 'affluent' } }] })
    expect((await t.app.inject({ method: 'POST', url: '/v1/segments/affluent-elders/preview', headers: auth(bank.read), payload: {} })).json().count).toBe(0)
    const cycle = await put('elders', { segment: 'affluent-elders' })
    expect(cycle.statusCode).toBe(400)
    expect(cycle.json().error.message).toMatch(/cycle: elders -> affluent-elders -> elders/)
    const unknown = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: auth(bank.read), payload: { purpose: 'marketing', rule: { any: [{ segment: 'nope' }] } } })
    expect(unknown.json().error.issues[0]).toMatchObject({ field: 'rule.any.0.segment', code: 'invalid_reference' })
  })

  it('refuses an event window on a day that does not exist, 400 naming the field, to preview, explain and save alike', async () => {
    const rule = { event: { names: ['wealth'] }, measure: 'count', op: 'gte', value: 1, window: { from: '2026-02-30', to: '2026-03-05' } }
    for (const [method, url] of [['POST', '/v1/segments/preview'], ['POST', '/v1/segments/explain'], ['PUT', '/v1/segments/feb-30']] as const) {
      const res = await t.app.inject({ method, url, headers: auth(bank.admin), payload: { name: 'x', purpose: 'marketing', rule } })
      expect(res.statusCode, url).toBe(400)
      expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'rule.window.from' }] })
    }
  })

  it('refuses to save a rule that does not compile against the tags', async () => {
    const res = await t.app.inject({ method: 'PUT', url: '/v1/segments/bad', headers: auth(bank.admin), payload: { name: 'x', purpose: 'marketing', rule: { tag: 'aum_tier', op: 'gt', value: 3 } } })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.issues[0].field).toMatch(/^rule/)
  })
})
