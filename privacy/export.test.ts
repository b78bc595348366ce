import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/** A customer's copy of their data: every section, readable labels, events in pages, audited. */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const C = 'X0001'

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'export-bank')
  const now = Date.now()
  const batch = [
    { type: 'identify', userId: C, anonymousId: 'anon-x', traits: { plan: 'gold' }, timestamp: new Date(now - 5000).toISOString(), messageId: 'x-0' },
    ...[1, 2, 3, 4].map((i) => ({ type: 'track', userId: C, event: `e${i}`, properties: { i }, timestamp: new Date(now - 5000 + i * 1000).toISOString(), messageId: `x-${i}` })),
    { type: 'track', userId: 'X0002', event: 'other', timestamp: new Date(now).toISOString(), messageId: 'y-1' },
  ]
  expect((await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch } })).json().accepted).toBe(6)
  const c = await t.app.inject({ method: 'PUT', url: `/v1/customers/${C}/consents`, headers: auth(bank.admin), payload: { purpose: 'marketing', channel: 'sms', granted: false, source: 'counter', noticeVersion: 'v2' } })
  expect(c.statusCode, c.body).toBe(200)
}, 120_000)
afterAll(async () => t?.close())

describe('GET /v1/customers/:id/export', () => {
  it('gives every section of the customer, with labels in Chinese and English, and nobody else’s events', async () => {
    const res = await t.app.inject({ url: `/v1/customers/${C}/export`, headers: auth(bank.admin) })
    expect(res.statusCode, res.body).toBe(200)
    const x = res.json()
    expect(x.customerId).toBe(C)
    expect(Object.keys(x.sections).sort()).toEqual(['consentHistory', 'consents', 'identities', 'layouts', 'profile', 'pushes', 'segments', 'tags', 'traits'])
    expect(x.sections.traits.rows).toEqual([expect.objectContaining({ trait: 'plan', value: 'gold' })])
    expect(x.sections.identities.rows.map((r: { id_value: string }) => r.id_value).sort()).toEqual(['X0001', 'anon-x'])
    expect(x.sections.consentHistory.rows).toEqual([expect.objectContaining({ purpose: 'marketing', channel: 'sms', granted: 0, notice_version: 'v2' })])
    expect(x.labels.fields.notice_version).toEqual({ zh: '隐私政策版本', en: 'privacy notice version' })
    expect(x.labels.sections.events.zh).toBe('应用行为事件')
    expect(x.events.rows.map((e: { message_id: string }) => e.message_id)).toEqual(['x-4', 'x-3', 'x-2', 'x-1', 'x-0'])
    expect(x.events.rows[0].properties).toEqual({ i: 4 })
    expect(x.events.next).toBeNull()
  })

  it('pages the events with a cursor, and refuses a cursor it did not give (400, naming after)', async () => {
    const first = (await t.app.inject({ url: `/v1/customers/${C}/export?limit=2`, headers: auth(bank.admin) })).json()
    expect(first.events.rows.map((e: { message_id: string }) => e.message_id)).toEqual(['x-4', 'x-3'])
    const second = (await t.app.inject({ url: `/v1/customers/${C}/export?limit=2&after=${first.events.next}`, headers: auth(bank.admin) })).json()
    expect(second.events.rows.map((e: { message_id: string }) => e.message_id)).toEqual(['x-2', 'x-1'])
    const third = (await t.app.inject({ url: `/v1/customers/${C}/export?limit=2&after=${second.events.next}`, headers: auth(bank.admin) })).json()
    expect(third.events.rows.map((e: { message_id: string }) => e.message_id)).toEqual(['x-0'])
    expect(third.events.next).toBeNull()
    const bad = await t.app.inject({ url: `/v1/customers/${C}/export?after=nonsense`, headers: auth(bank.admin) })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.issues[0].field).toBe('after')
  })

  it('answers 404 for an unknown customer, 403 without personal:read, and records each export in the audit trail', async () => {
    expect((await t.app.inject({ url: '/v1/customers/NOPE/export', headers: auth(bank.admin) })).statusCode).toBe(404)
    expect((await t.app.inject({ url: `/v1/customers/${C}/export`, headers: auth(bank.write) })).statusCode).toBe(403)
    const rows = await t.engine.db
      .forTenant(bank.tenant.id)
      .query(`SELECT customer_no, status FROM audit_log WHERE tenant_id = {tenant:UInt16} AND action = 'customer.export' ORDER BY at`, {}, z.object({ customer_no: z.string(), status: z.coerce.number() }))
    expect(rows.filter((r) => r.customer_no === C && r.status === 200).length).toBeGreaterThanOrEqual(4)
  })
})
