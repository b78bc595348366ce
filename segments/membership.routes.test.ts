import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/** Materialized segments over HTTP: members, export, history, a customer's segments, runs. */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const base = { description: { zh: '测试', en: 'test' }, owner: 'qa', purpose: ['service', 'marketing'] }

const runPipeline = async (pipeline: string) => {
  const r = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { pipeline, mode: 'full', wait: true } })
  expect(r.json().status, JSON.stringify(r.json())).toBe('succeeded')
  return r.json()
}

// Twelve customers; 1-6 born 1950 (elder), 7-12 born 1990. Segment "elders" = elder tag.
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'mem-bank')
  const now = chDateTime(new Date())
  const keys = Array.from({ length: 12 }, (_, i) => i + 1)
  await t.engine.db.forTenant(bank.tenant.id).insert('customers', keys.map((k) => ({
    customer_key: k, customer_no: `N${String(k).padStart(3, '0')}`, gender: 'unknown', birth_date: k <= 6 ? '1950-01-01' : '1990-01-01', region_code: k % 2 ? 'r1' : 'r2',
    branch_code: 'b', occupation: 'o', phone_hash: '', name_masked: '', opened_at: '2015-01-01 00:00:00', updated_at: now,
  })))
  await t.engine.db.forTenant(bank.tenant.id).insert('identities', keys.map((k) => ({ id_kind: 'customer_no', id_value: `N${String(k).padStart(3, '0')}`, customer_key: k, source: 'test', created_at: now, updated_at: now })))
  await t.app.inject({ method: 'PUT', url: '/v1/tags/elder', headers: auth(bank.admin), payload: { ...base, type: 'boolean', rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } } })
  await runPipeline('tags')
  await t.app.inject({ method: 'PUT', url: '/v1/segments/elders', headers: auth(bank.admin), payload: { name: 'Elders', purpose: 'marketing', rule: { tag: 'elder', op: 'eq', value: true } } })
  await runPipeline('segments')
}, 60_000)

afterAll(async () => {
  await t?.close()
})

describe('materialized segments', () => {
  it('pages through the members by customer number', async () => {
    const page = (cursor?: string) =>
      t.app.inject({ method: 'GET', url: `/v1/segments/elders/members?limit=4${cursor ? `&cursor=${cursor}` : ''}`, headers: auth(bank.admin) }).then((r) => r.json())
    const first = await page()
    expect(first).toMatchObject({ members: ['N001', 'N002', 'N003', 'N004'], size: 6 })
    const second = await page(first.nextCursor)
    expect(second).toMatchObject({ members: ['N005', 'N006'], nextCursor: null })
  })

  it('exports the members as CSV for admin keys only', async () => {
    const csv = await t.app.inject({ method: 'GET', url: '/v1/segments/elders/export?format=csv', headers: auth(bank.admin) })
    expect(csv.statusCode).toBe(200)
    expect(csv.headers['content-type']).toMatch(/text\/csv/)
    const lines = csv.body.trim().split('\n')
    expect(lines).toHaveLength(7)
    expect(lines[1]).toMatch(/1.*N001/)
    expect((await t.app.inject({ method: 'GET', url: '/v1/segments/elders/export', headers: auth(bank.read) })).statusCode).toBe(403)
    const parquet = await t.app.inject({ method: 'GET', url: '/v1/segments/elders/export?format=parquet', headers: auth(bank.admin) })
    expect(parquet.rawPayload.subarray(0, 4).toString()).toBe('PAR1')
  })

  it("answers which segments hold a customer, and why (since when, which version)", async () => {
    expect((await t.app.inject({ method: 'GET', url: '/v1/customers/N002/segments', headers: auth(bank.admin) })).json().segments).toEqual([
      { id: 'elders', name: 'Elders', purpose: 'marketing' },
    ])
    expect((await t.app.inject({ method: 'GET', url: '/v1/customers/N008/segments', headers: auth(bank.admin) })).json().segments).toEqual([])
    const why = (await t.app.inject({ method: 'GET', url: '/v1/segments/elders/members/N002', headers: auth(bank.admin) })).json()
    expect(why).toMatchObject({ member: true, version: 1, history: [{ kind: 'enter', version: 1 }] })
  })

  it('records exits with the new version, and sizes per run', async () => {
    // Version 2: only the odd region among elders (1, 3, 5): 2, 4, 6 leave.
    await t.app.inject({
      method: 'PUT', url: '/v1/segments/elders', headers: auth(bank.admin),
      payload: { name: 'Elders', purpose: 'marketing', rule: { all: [{ tag: 'elder', op: 'eq', value: true }, { attribute: 'region_code', op: 'eq', value: 'r1' }] } },
    })
    const before = new Date().toISOString()
    await runPipeline('segments')
    const why = (await t.app.inject({ method: 'GET', url: '/v1/segments/elders/members/N002', headers: auth(bank.admin) })).json()
    expect(why).toMatchObject({ member: false, version: 2, history: [{ kind: 'enter', version: 1 }, { kind: 'exit', version: 2 }] })
    const past = (await t.app.inject({ method: 'GET', url: `/v1/segments/elders/members/N002?at=${encodeURIComponent(before)}`, headers: auth(bank.admin) })).json()
    expect(past).toMatchObject({ member: true, version: 1 })
    const runs = (await t.app.inject({ method: 'GET', url: '/v1/segments/elders/runs', headers: auth(bank.read) })).json().runs
    expect(runs.map((r: { size: number; entered: number; exited: number }) => [r.size, r.entered, r.exited])).toEqual([[3, 0, 3], [6, 6, 0]])
  })

  it("reads a date alone as the end of that day in the bank's time zone (Asia/Shanghai)", async () => {
    const runs = (await t.app.inject({ method: 'GET', url: '/v1/segments/elders/runs', headers: auth(bank.read) })).json().runs
    // N010 entered at 18:00 local time on 15 March 2020 and left at 01:00 on the 16th (10:00 and 17:00 UTC).
    const build = runs[runs.length - 1].build
    await t.engine.db.forTenant(bank.tenant.id).insert('segment_events', [
      { segment_id: 'elders', customer_key: 10, at: '2020-03-15 10:00:00.000', kind: 'enter', version: 1, build },
      { segment_id: 'elders', customer_key: 10, at: '2020-03-15 17:00:00.000', kind: 'exit', version: 1, build },
    ])
    const on = (at: string) => t.app.inject({ method: 'GET', url: `/v1/segments/elders/members/N010?at=${encodeURIComponent(at)}`, headers: auth(bank.admin) })
    expect((await on('2020-03-15')).json()).toMatchObject({ member: true, since: '2020-03-15 10:00:00.000' })
    expect((await on('2020-03-14')).json()).toMatchObject({ member: false, since: null })
    expect((await on('2020-03-16')).json()).toMatchObject({ member: false, since: '2020-03-15 17:00:00.000' })
    // A time with its offset is read as given.
    expect((await on('2020-03-15T12:00:00+08:00')).json()).toMatchObject({ member: false, since: null })
    const bad = await on('2020-02-30')
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.issues[0].field).toMatch(/at/)
  })

  it('materializes saved segments after each tag run', async () => {
    await runPipeline('tags')
    for (let i = 0; i < 50; i++) {
      const runs = (await t.app.inject({ method: 'GET', url: '/v1/pipelines/runs?pipeline=segments', headers: auth(bank.read) })).json().runs
      if (runs.some((r: { trigger: string; status: string }) => r.trigger === 'after-tags' && r.status === 'succeeded')) return
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error('no segments run followed the tag run')
  })
})
