import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/** The tag catalogue, customer and pipeline APIs over HTTP, as a bank's tools would call them. */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let other: Awaited<ReturnType<typeof tenantWithKeys>>

const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const elder = {
  type: 'boolean',
  description: { zh: '老年客户', en: 'Elder customer' },
  owner: 'data-team',
  purpose: ['service', 'marketing'],
  rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } },
}
const risky = {
  type: 'boolean',
  description: { zh: '逾期', en: 'Overdue' },
  owner: 'risk',
  purpose: ['risk'],
  sensitivity: 'high',
  rule: { kind: 'rule', when: { feature: 'overdue_loans', op: 'gt', value: 0 } },
}

beforeAll(async () => {
  t = await openTestApp({ PIPELINE_RETRIES: '0' })
  bank = await tenantWithKeys(t, 'bank-a')
  other = await tenantWithKeys(t, 'bank-b')
  const now = chDateTime(new Date())
  const db = t.engine.db.forTenant(bank.tenant.id)
  await db.insert('customers', [
    { customer_key: 1, customer_no: 'C001', gender: 'female', birth_date: '1950-05-01', region_code: '3301', branch_code: 'b1', occupation: 'retired', phone_hash: 'h', name_masked: '王*', opened_at: '2010-01-01 00:00:00', updated_at: now },
    { customer_key: 2, customer_no: 'C002', gender: 'male', birth_date: '1990-05-01', region_code: '3301', branch_code: 'b1', occupation: 'farmer', phone_hash: 'h', name_masked: '李*', opened_at: '2015-01-01 00:00:00', updated_at: now },
  ])
  await db.insert('identities', [
    { id_kind: 'customer_no', id_value: 'C001', customer_key: 1, source: 'test', created_at: now, updated_at: now },
    { id_kind: 'customer_no', id_value: 'C002', customer_key: 2, source: 'test', created_at: now, updated_at: now },
  ])
  await db.insert('loans', [
    { customer_key: 1, loan_no: 'L1', product_id: 'l-credit', principal: 1000, outstanding: 500, annual_rate: 0.05, start_date: '2025-01-01', maturity_date: '2027-01-01', status: 'overdue', overdue_days: 12, updated_at: now },
  ])
}, 60_000)

afterAll(async () => {
  await t?.close()
})

describe('tag definitions', () => {
  it('creates (201), keeps an unchanged definition (200, same version) and versions a change', async () => {
    const put = (body: object, key = bank.admin) => t.app.inject({ method: 'PUT', url: '/v1/tags/elder', headers: auth(key), payload: body })
    const created = await put(elder)
    expect(created.statusCode).toBe(201)
    expect(created.json().tag.version).toBe(1)
    const same = await put(elder)
    expect(same.statusCode).toBe(200)
    expect(same.json()).toMatchObject({ changed: false, tag: { version: 1 } })
    const changed = await put({ ...elder, rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 65 } } })
    expect(changed.json()).toMatchObject({ changed: true, tag: { version: 2 } })
    const back = await put(elder)
    expect(back.json().tag.version).toBe(3)
    const versions = await t.app.inject({ method: 'GET', url: '/v1/tags/elder/versions', headers: auth(bank.read) })
    expect(versions.json().versions.map((v: { version: number }) => v.version)).toEqual([1, 2, 3])
    // Optimistic concurrency: a writer that read version 1 is refused.
    const stale = await t.app.inject({ method: 'PUT', url: '/v1/tags/elder?expectedVersion=1', headers: auth(bank.admin), payload: { ...elder, owner: 'x' } })
    expect(stale.statusCode).toBe(409)
    expect(stale.json().error.code).toBe('CONFLICT')
  })

  it('needs an admin key to change, and a read key to look', async () => {
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/elder', headers: auth(bank.read), payload: elder })).statusCode).toBe(403)
    expect((await t.app.inject({ method: 'GET', url: '/v1/tags', headers: auth(bank.write) })).statusCode).toBe(403)
    expect((await t.app.inject({ method: 'GET', url: '/v1/tags' })).statusCode).toBe(401)
  })

  it('reports each problem of a bad definition with its field', async () => {
    const res = await t.app.inject({
      method: 'PUT',
      url: '/v1/tags/bad_tag',
      headers: auth(bank.admin),
      payload: { ...elder, type: 'enum', purpose: ['gossip'], rule: { kind: 'rule', when: { feature: 'shoe_size', op: 'gt', value: 40 } } },
    })
    expect(res.statusCode).toBe(400)
    const fields = res.json().error.issues.map((i: { field: string }) => i.field)
    expect(fields).toEqual(expect.arrayContaining(['purpose.0', 'rule.when.feature']))
    const mismatch = await t.app.inject({ method: 'PUT', url: '/v1/tags/elder', headers: auth(bank.admin), payload: { ...elder, name: 'other' } })
    expect(mismatch.json().error.issues[0].field).toBe('name')
    // A property filter without its value would fail every run (tags/tag.filters.test.ts).
    const window = { ...elder, name: 'web_7d', type: 'number', rule: { kind: 'window', where: [{ property: 'channel', op: 'eq' }], measure: 'count', days: 7 } }
    const valueless = await t.app.inject({ method: 'PUT', url: '/v1/tags/web_7d', headers: auth(bank.admin), payload: window })
    expect(valueless.statusCode).toBe(400)
    expect(valueless.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'rule.where.0.value' }] })
  })

  it('refuses a cycle and a dependency on a tag that does not exist', async () => {
    const reads = (name: string, dep: string) => ({ ...elder, name, rule: { kind: 'rule', when: { tag: dep, op: 'exists' } } })
    const missing = await t.app.inject({ method: 'PUT', url: '/v1/tags/a_tag', headers: auth(bank.admin), payload: reads('a_tag', 'no_such_tag') })
    expect(missing.statusCode).toBe(400)
    expect(missing.json().error.message).toMatch(/no_such_tag/)
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/a_tag', headers: auth(bank.admin), payload: reads('a_tag', 'elder') })).statusCode).toBe(201)
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/b_tag', headers: auth(bank.admin), payload: reads('b_tag', 'a_tag') })).statusCode).toBe(201)
    const cycle = await t.app.inject({ method: 'PUT', url: '/v1/tags/a_tag', headers: auth(bank.admin), payload: reads('a_tag', 'b_tag') })
    expect(cycle.statusCode).toBe(400)
    expect(cycle.json().error.message).toMatch(/cycle: (a_tag -> b_tag -> a_tag|b_tag -> a_tag -> b_tag)/)
  })

  it('retires a tag only when no other tag reads it', async () => {
    const blocked = await t.app.inject({ method: 'DELETE', url: '/v1/tags/a_tag', headers: auth(bank.admin) })
    expect(blocked.statusCode).toBe(409)
    expect(blocked.json().error.message).toMatch(/b_tag/)
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/tags/b_tag', headers: auth(bank.admin) })).statusCode).toBe(204)
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/tags/a_tag', headers: auth(bank.admin) })).statusCode).toBe(204)
    expect((await t.app.inject({ method: 'GET', url: '/v1/tags/a_tag', headers: auth(bank.read) })).statusCode).toBe(404)
  })

  it('refuses a SQL tag that reads a table directly, naming the field', async () => {
    const res = await t.app.inject({
      method: 'PUT',
      url: '/v1/tags/sneaky',
      headers: auth(bank.admin),
      payload: { ...elder, rule: { kind: 'sql', sql: 'SELECT customer_key, 1 AS value FROM customers' } },
    })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.issues[0]).toMatchObject({ field: 'rule.sql', code: 'SQL_TABLE_NOT_ALLOWED' })
  })
})

describe("windows longer than the bank's events retention", () => {
  const win = (days: number, offsetDays = 0) => ({
    type: 'number',
    description: { zh: '登录', en: 'Logins' },
    owner: 'digital',
    purpose: ['service'],
    rule: { kind: 'window', events: ['login'], measure: 'count', days, ...(offsetDays ? { offsetDays } : {}) },
  })
  it('saving a tag, applying tags and shortening the retention name the tags that read further back', async () => {
    const w = await tenantWithKeys(t, 'bank-w')
    const put = async (name: string, body: object) => t.app.inject({ method: 'PUT', url: `/v1/tags/${name}`, headers: auth(w.admin), payload: body })
    const privacy = async (eventsDays: number) => t.app.inject({ method: 'PUT', url: '/v1/tenant/privacy', headers: auth(w.admin), payload: { eventsDays } })
    // The default retention (400 days) covers a 60-day window: no warnings.
    const first = await put('logins_60d', win(60))
    expect(first.statusCode).toBe(201)
    expect(first.json()).not.toHaveProperty('warnings')
    const shorter = await privacy(30)
    expect(shorter.statusCode).toBe(200)
    expect(shorter.json()).toMatchObject({ eventsDays: 30, warnings: [{ code: 'WINDOW_BEYOND_EVENTS_RETENTION', tag: 'logins_60d', days: 60, eventsDays: 30 }] })
    expect(shorter.json().warnings).toHaveLength(1)
    expect(shorter.json().warnings[0].message).toContain('30 days')
    // A window's offset counts: 20 days ending 15 days ago reach 35 days back.
    const offset = await put('logins_prev_20d', win(20, 15))
    expect(offset.json().warnings).toEqual([expect.objectContaining({ tag: 'logins_prev_20d', days: 35, eventsDays: 30 })])
    expect((await put('logins_20d', win(20))).json()).not.toHaveProperty('warnings')
    expect((await put('elder', elder)).json()).not.toHaveProperty('warnings')
    const applied = await t.app.inject({
      method: 'POST',
      url: '/v1/tags/apply',
      headers: auth(w.admin),
      payload: { definitions: [{ name: 'logins_90d', ...win(90) }, { name: 'logins_7d', ...win(7) }] },
    })
    expect(applied.statusCode).toBe(200)
    expect(applied.json().warnings.map((x: { tag: string }) => x.tag)).toEqual(['logins_90d'])
    // Back to a retention that covers every window: no warnings.
    const longer = await privacy(120)
    expect(longer.statusCode).toBe(200)
    expect(longer.json()).not.toHaveProperty('warnings')
    expect((await privacy(40)).json().warnings.map((x: { tag: string }) => x.tag).sort()).toEqual(['logins_60d', 'logins_90d'])
  })
})

describe('runs, catalogue and customers', () => {
  it('runs the pipeline on request and records it', async () => {
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/loan_overdue', headers: auth(bank.admin), payload: risky })).statusCode).toBe(201)
    const res = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { mode: 'full', wait: true } })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ status: 'succeeded', mode: 'full', trigger: 'api', rows: 2 })
    // The segments pipeline follows a tag run and may already be listed above it: look at tag runs.
    const runs = await t.app.inject({ method: 'GET', url: '/v1/pipelines/runs?pipeline=tags&limit=5', headers: auth(bank.read) })
    expect(runs.json().runs[0]).toMatchObject({ runId: res.json().runId, pipeline: 'tags', status: 'succeeded' })
    const one = await t.app.inject({ method: 'GET', url: `/v1/pipelines/runs/${res.json().runId}`, headers: auth(bank.read) })
    expect(one.json().rows).toBe(2)
    // Another tenant sees none of it.
    expect((await t.app.inject({ method: 'GET', url: '/v1/pipelines/runs', headers: auth(other.read) })).json().runs).toEqual([])
  })

  it('refuses a second run of the same tenant while one runs', async () => {
    const first = t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { mode: 'full', wait: true } })
    await new Promise((r) => setTimeout(r, 5))
    const second = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { mode: 'full' } })
    expect(second.statusCode).toBe(409)
    expect((await first).statusCode).toBe(200)
    const status = await t.app.inject({ method: 'GET', url: '/v1/pipelines/status', headers: auth(bank.read) })
    expect(status.json().pipelines[0]).toMatchObject({ pipeline: 'tags', running: false, lastSuccess: { status: 'succeeded' } })
  })

  it('recomputes every tag on request, and refuses a recompute that is not a full tag run, naming the field', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { mode: 'full', recompute: true, wait: true } })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ status: 'succeeded', mode: 'full', rows: 0 })
    expect(res.json().details.tags.elder).toEqual({ changed: 0, customers: 1 })
    for (const payload of [{ recompute: true }, { mode: 'incremental', recompute: true }, { pipeline: 'segments', mode: 'full', recompute: true }]) {
      const refused = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload })
      expect(refused.statusCode, JSON.stringify(payload)).toBe(400)
      expect(refused.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'recompute' }] })
    }
  })

  it('shows coverage and distribution, and hides high-sensitivity tags from read keys', async () => {
    const asRead = (await t.app.inject({ method: 'GET', url: '/v1/tags', headers: auth(bank.read) })).json().tags
    expect(asRead.map((x: { name: string }) => x.name)).toEqual(['elder'])
    expect(asRead[0]).toMatchObject({ coverage: 0.5, state: { covered: 1, version: 3 } })
    const asAdmin = (await t.app.inject({ method: 'GET', url: '/v1/tags', headers: auth(bank.admin) })).json().tags
    expect(asAdmin.map((x: { name: string }) => x.name)).toEqual(['elder', 'loan_overdue'])
    const detail = (await t.app.inject({ method: 'GET', url: '/v1/tags/elder', headers: auth(bank.read) })).json()
    expect(detail.distribution).toEqual([{ value: 'true', customers: 1 }])
    expect((await t.app.inject({ method: 'GET', url: '/v1/tags/loan_overdue', headers: auth(bank.read) })).statusCode).toBe(404)
    expect((await t.app.inject({ method: 'GET', url: '/v1/tags/elder', headers: auth(other.read) })).statusCode).toBe(404)
  })

  it("returns a customer's profile (minimum necessary) and tags, honouring sensitivity", async () => {
    // A profile is personal data: keys without personal:read (layout, push, analyst) are refused.
    const read = await t.app.inject({ method: 'GET', url: '/v1/customers/C001', headers: auth(bank.read) })
    expect(read.statusCode).toBe(403)
    const admin = (await t.app.inject({ method: 'GET', url: '/v1/customers/C001', headers: auth(bank.admin) })).json()
    expect(admin.profile).toMatchObject({ customerId: 'C001', nameMasked: '王*', gender: 'female', ageBand: '70+', elderMode: false })
    expect(admin.profile).not.toHaveProperty('birthDate')
    expect(JSON.stringify(admin)).not.toContain('1950-05-01')
    expect(admin.tags.map((x: { name: string }) => x.name)).toEqual(['elder', 'loan_overdue'])
    expect((await t.app.inject({ method: 'GET', url: '/v1/customers/C001', headers: auth(other.admin) })).statusCode).toBe(404)
    expect((await t.app.inject({ method: 'GET', url: '/v1/customers/NOPE', headers: auth(bank.admin) })).json().error.code).toBe('NOT_FOUND')
  })

  it('answers as of a time and lists the changes of a tag', async () => {
    const past = (await t.app.inject({ method: 'GET', url: '/v1/customers/C001?at=2020-01-01', headers: auth(bank.admin) })).json()
    expect(past.tags).toEqual([])
    const hist = (await t.app.inject({ method: 'GET', url: '/v1/customers/C001/tags/elder/history', headers: auth(bank.admin) })).json()
    expect(hist.changes).toHaveLength(1)
    expect(hist.changes[0]).toMatchObject({ value: 'true', removed: false, version: 3 })
    const bad = await t.app.inject({ method: 'GET', url: '/v1/customers/C001?at=yesterday', headers: auth(bank.admin) })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.issues[0].field).toMatch(/at/)
  })

  it("reads a date alone as the end of that day in the bank's time zone (Asia/Shanghai), and refuses a day that does not exist", async () => {
    // C002 was elder from 18:00 local time on 15 March 2020 to 01:00 on the 16th (10:00 and 17:00 UTC).
    await t.engine.db.forTenant(bank.tenant.id).insert('tag_history', [
      { tag: 'elder', customer_key: 2, valid_from: '2020-03-15 10:00:00.000', value: 'true', num: 0, list: [], removed: 0, run_id: 1, tag_version: 3 },
      { tag: 'elder', customer_key: 2, valid_from: '2020-03-15 17:00:00.000', value: '', num: 0, list: [], removed: 1, run_id: 2, tag_version: 3 },
    ])
    const on = async (at: string) => (await t.app.inject({ method: 'GET', url: `/v1/customers/C002?at=${encodeURIComponent(at)}`, headers: auth(bank.admin) })).json()
    const day = await on('2020-03-15')
    expect(day.at).toBe('2020-03-15 15:59:59.999')
    expect(day.tags.map((x: { name: string }) => x.name)).toEqual(['elder'])
    expect((await on('2020-03-14')).tags).toEqual([])
    expect((await on('2020-03-16')).tags).toEqual([])
    // A time with its offset is read as given.
    expect((await on('2020-03-15T12:00:00+08:00')).tags).toEqual([])
    expect((await on('2020-03-15T19:00:00+08:00')).tags.map((x: { name: string }) => x.name)).toEqual(['elder'])
    const bad = await t.app.inject({ method: 'GET', url: '/v1/customers/C002?at=2020-02-30', headers: auth(bank.admin) })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.issues[0].field).toMatch(/at/)
  })

  it('applies the banking pack in one call', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/tags/apply', headers: auth(other.admin), payload: { pack: 'banking' } })
    expect(res.statusCode).toBe(200)
    expect(res.json().applied.length).toBeGreaterThanOrEqual(22)
    const again = await t.app.inject({ method: 'POST', url: '/v1/tags/apply', headers: auth(other.admin), payload: { pack: 'banking' } })
    expect(again.json().applied.every((a: { changed: boolean }) => !a.changed)).toBe(true)
  })
})
