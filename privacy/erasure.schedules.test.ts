import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * The bank's next full schedule file after an erasure: it still lists the erased customer's
 * loans, which the erasure deleted. Those rows are the erased customer's (counted as erased,
 * nothing stored), not rows of an unknown loan that would refuse the whole file.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const V = 'S0001' // erased
const N = 'S0002' // a neighbour

const customersCsv = 'customer_no,gender,opened_at\n' + [V, N].map((no) => `${no},female,2020-01-01 09:00:00`).join('\n') + '\n'
const loansCsv = 'customer_no,loan_no,principal,outstanding,annual_rate,start_date,maturity_date\n' + [V, N].map((no) => `${no},L-${no},10000.00,8000.00,0.0435,2024-01-10,2025-01-10`).join('\n') + '\n'
const schedulesCsv = 'loan_no,installment_no,due_date,amount_due\n' + [V, N].flatMap((no) => [1, 2].map((i) => `L-${no},${i},2024-0${i + 1}-10,1500.00`)).join('\n') + '\n'

const upload = (kind: string, body: string) =>
  t.app.inject({ method: 'POST', url: `/v1/import/${kind}`, headers: { authorization: `Bearer ${bank.admin}`, 'content-type': 'text/csv' }, payload: body })

async function schedules(): Promise<string[]> {
  const db = t.engine.db.forTenant(bank.tenant.id)
  const rows = await db.query(`SELECT loan_no FROM loan_schedules FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY loan_no, installment_no`, {}, z.object({ loan_no: z.string() }))
  return rows.map((r) => r.loan_no)
}

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'erase-schedules-bank')
  for (const [kind, body] of [['customers', customersCsv], ['loans', loansCsv], ['loan_schedules', schedulesCsv]] as const) {
    const r = await upload(kind, body)
    expect(r.statusCode, r.body).toBe(200)
  }
  const started = await t.app.inject({ method: 'POST', url: `/v1/customers/${V}/erasure`, headers: { authorization: `Bearer ${bank.admin}` }, payload: { reason: 'PIPL art. 47 request' } })
  expect(started.statusCode, started.body).toBe(202)
  await t.privacy.erasure.idle()
  expect(await schedules()).toEqual([`L-${N}`, `L-${N}`])
}, 120_000)
afterAll(async () => t?.close())

describe('a schedule file listing a loan of an erased customer', () => {
  it('is accepted, the erased customer’s rows counted as erased and not stored', async () => {
    const r = await upload('loan_schedules', schedulesCsv)
    expect(r.statusCode, r.body).toBe(200)
    expect(r.json().rows).toMatchObject({ read: 4, valid: 4, rejected: 0, erased: 2, inserted: 2 })
    expect(r.json().issues.map((i: { row: number; reason: string }) => [i.row, i.reason])).toEqual([
      [1, 'customer_erased'],
      [2, 'customer_erased'],
    ])
    expect(await schedules()).toEqual([`L-${N}`, `L-${N}`])
  })

  it('still refuses a loan never imported', async () => {
    const r = await upload('loan_schedules', 'loan_no,installment_no,due_date,amount_due\nL404,1,2024-02-10,1500.00\n')
    expect(r.statusCode).toBe(400)
    expect(r.json().error.issues[0]).toMatchObject({ row: 1, reason: 'unknown_reference' })
  })
})
