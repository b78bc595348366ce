import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/** A customer's copy of their data: every section, readable labels, events in pages, audited. */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const C = 'X0001'
/** The customer's key and the neighbour's (X0002). */
let xk = 0
let yk = 0

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
  // The bank's data of both customers: C's bill paid by the neighbour, and a bill of the neighbour's paid by C.
  const db = t.engine.db.forTenant(bank.tenant.id)
  const ids = await db.query(`SELECT id_value AS no, customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no'`, {}, z.object({ no: z.string(), k: z.coerce.number() }))
  xk = ids.find((r) => r.no === C)!.k
  yk = ids.find((r) => r.no === 'X0002')!.k
  const [x, y] = [xk, yk]
  const at = '2026-11-01 08:00:00.000'
  await db.insert('accounts', [x, y].map((k) => ({ customer_key: k, account_no: `acct-${k}`, kind: 'savings', balance: '1234.50', opened_at: '2020-01-02', status: 'active', updated_at: at })))
  await db.insert('loans', [x, y].map((k) => ({ customer_key: k, loan_no: `loan-${k}`, product_id: 'agri', principal: '50000.00', outstanding: '20000.00', annual_rate: 0.0435, start_date: '2025-01-01', maturity_date: '2027-01-01', status: 'active', updated_at: at })))
  await db.insert('loan_schedules', [1, 2].map((n) => ({ customer_key: x, loan_no: `loan-${x}`, installment_no: n, due_date: `2026-1${n}-10`, amount_due: '1000.00', amount_paid: n === 1 ? '1000.00' : '0.00', paid_at: n === 1 ? at : null, status: n === 1 ? 'paid' : 'due', updated_at: at })))
  await db.insert('bills', [
    { customer_key: x, bill_no: 'b-own', biller: 'water', amount: '35.20', due_date: '2026-11-15', status: 'paid', paid_at: at, payer_key: y, updated_at: at },
    { customer_key: y, bill_no: 'b-neighbour', biller: 'electricity', amount: '88.00', due_date: '2026-11-20', status: 'paid', paid_at: at, payer_key: x, updated_at: at },
    { customer_key: y, bill_no: 'b-neighbour-own', biller: 'gas', amount: '40.00', due_date: '2026-11-21', status: 'unpaid', paid_at: null, payer_key: 0, updated_at: at },
  ])
}, 120_000)
afterAll(async () => t?.close())

describe('GET /v1/customers/:id/export', () => {
  it('gives every section of the customer, with labels in Chinese and English, and nobody else’s events', async () => {
    const res = await t.app.inject({ url: `/v1/customers/${C}/export`, headers: auth(bank.admin) })
    expect(res.statusCode, res.body).toBe(200)
    const x = res.json()
    expect(x.customerId).toBe(C)
    expect(Object.keys(x.sections).sort()).toEqual(
      ['accounts', 'bills', 'billsPaidForOthers', 'consentHistory', 'consents', 'identities', 'identityHistory', 'layouts', 'loanSchedules', 'loans', 'profile', 'pushes', 'recommendations', 'segments', 'tagHistory', 'tags', 'traits'].sort(),
    )
    // The bank's data of the customer, and of nobody else; a bill paid for another says what was
    // paid, not whose bill it was; the customer's own bill says someone else paid, not who.
    expect(x.sections.accounts.rows).toEqual([expect.objectContaining({ account_no: `acct-${xk}`, account_kind: 'savings', balance: 1234.5 })])
    expect(x.sections.loans.rows).toEqual([expect.objectContaining({ loan_no: `loan-${xk}`, outstanding: 20000 })])
    expect(x.sections.loanSchedules.rows.map((r: { installment_no: number; status: string }) => [r.installment_no, r.status])).toEqual([[1, 'paid'], [2, 'due']])
    expect(x.sections.bills.rows).toEqual([expect.objectContaining({ bill_no: 'b-own', biller: 'water', paid_by_another: 1 })])
    expect(x.sections.billsPaidForOthers.rows).toEqual([{ biller: 'electricity', amount: 88, due_date: '2026-11-20', paid_at: expect.any(String) }])
    expect(JSON.stringify(x.sections)).not.toMatch(new RegExp(`b-neighbour|"acct-${yk}"|"loan-${yk}"|"gas"`))
    expect(x.sections.identityHistory.rows.map((r: { id_value: string }) => r.id_value).sort()).toEqual(expect.arrayContaining(['anon-x']))
    expect(x.labels.sections.billsPaidForOthers).toEqual({ zh: '为他人代缴的账单', en: 'bills you paid for others' })
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
    // A refused attempt is found by the customer number asked for too, a request refused as malformed included.
    expect(rows).toContainEqual({ customer_no: 'NOPE', status: 404 })
    expect(rows).toContainEqual({ customer_no: C, status: 400 })
  })
})
