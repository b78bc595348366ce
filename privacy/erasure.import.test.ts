import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createPii } from '../core/pii.js'
import { createImportService } from '../ingest/import/import.service.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * A bank re-importing a stock file that still lists an erased customer: the erased rows are
 * skipped and reported (rows.erased, an issue with reason customer_erased each), the rest of the
 * file imports, and once the number is re-registered it imports again.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const V = 'R0001' // erased
const N = 'R0002' // a neighbour, imported before
const NEW = 'R0003' // first seen in the re-import

const customersCsv = (nos: string[]) => 'customer_no,gender,opened_at\n' + nos.map((no) => `${no},female,2020-01-01 09:00:00`).join('\n') + '\n'
const accountsCsv = (nos: string[]) => 'customer_no,account_no,kind,balance,opened_at\n' + nos.map((no) => `${no},A-${no},savings,100.00,2020-01-01`).join('\n') + '\n'

const upload = (kind: string, body: string) =>
  t.app.inject({ method: 'POST', url: `/v1/import/${kind}`, headers: { authorization: `Bearer ${bank.admin}`, 'content-type': 'text/csv' }, payload: body })

async function present(table: 'customers' | 'accounts'): Promise<string[]> {
  const db = t.engine.db.forTenant(bank.tenant.id)
  const sql =
    table === 'customers'
      ? `SELECT customer_no AS no FROM customers FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY no`
      : `SELECT c.customer_no AS no FROM accounts AS a FINAL
         INNER JOIN (SELECT customer_key, id_value AS customer_no FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no') AS c ON c.customer_key = a.customer_key
         WHERE a.tenant_id = {tenant:UInt16} ORDER BY no`
  return (await db.query(sql, {}, z.object({ no: z.string() }))).map((r) => r.no)
}

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'erase-import-bank')
  for (const [kind, body] of [['customers', customersCsv([V, N])], ['accounts', accountsCsv([V, N])]] as const) {
    const r = await upload(kind, body)
    expect(r.statusCode, r.body).toBe(200)
    expect(r.json().rows.inserted).toBe(2)
  }
  const started = await t.app.inject({ method: 'POST', url: `/v1/customers/${V}/erasure`, headers: { authorization: `Bearer ${bank.admin}` }, payload: { reason: 'PIPL art. 47 request' } })
  expect(started.statusCode, started.body).toBe(202)
  await t.privacy.erasure.idle()
  expect(await present('customers')).toEqual([N])
}, 120_000)
afterAll(async () => t?.close())

describe('importing a file that lists an erased customer', () => {
  it('asks the tombstones once per file, with its distinct customer numbers (a bill payer among them)', async () => {
    const calls: string[][] = []
    const importer = createImportService({
      db: t.engine.db,
      identities: t.ingest.identities,
      pii: createPii('test-secret-test-secret-test-secret'),
      log: t.engine.log,
      options: { pageRows: 2 },
      erased: {
        among: (tenant, kind, nos) => {
          calls.push([...nos])
          return t.privacy.tombstones.erasedAmong(tenant, nos, kind)
        },
      },
    })
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-erased-import-'))
    try {
      const file = path.join(dir, 'bills.csv')
      const lines = ['customer_no,bill_no,biller,amount,due_date,payer_customer_no']
      // The erased customer owns rows 2, 5 and 8 and paid the neighbour's row 4.
      for (let i = 0; i < 9; i++) lines.push(`${[N, V, 'R0009'][i % 3]},BL-${i},water,1.00,2024-05-01,${i === 3 ? V : ''}`)
      fs.writeFileSync(file, lines.join('\n') + '\n')
      const r = await importer.importFile({ tenantId: bank.tenant.id, kind: 'bills', file, actor: 'test' })
      expect(r).toMatchObject({ status: 'imported', rows: { read: 9, valid: 9, rejected: 0, erased: 3, inserted: 6 } })
      expect(r.issues.map((x) => [x.row, x.reason])).toEqual([[2, 'customer_erased'], [5, 'customer_erased'], [8, 'customer_erased']])
      expect(calls).toEqual([[N, V, 'R0009']])
      // The neighbour's bill paid by the erased customer is kept, without its payer.
      const bills = await t.engine.db.forTenant(bank.tenant.id).query(`SELECT bill_no, payer_key FROM bills FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY bill_no`, {}, z.object({ bill_no: z.string(), payer_key: z.coerce.number() }))
      expect(bills.map((b) => b.bill_no)).toEqual(['BL-0', 'BL-2', 'BL-3', 'BL-5', 'BL-6', 'BL-8'])
      expect(bills.every((b) => b.payer_key === 0)).toBe(true)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('skips and reports the erased rows, imports the rest, and imports the number again after re-registration', async () => {
    const c = await upload('customers', customersCsv([V, N, NEW]))
    expect(c.statusCode, c.body).toBe(200)
    expect(c.json()).toMatchObject({ status: 'imported', rows: { read: 3, valid: 3, rejected: 0, erased: 1, inserted: 2 }, issuesTotal: 1 })
    expect(c.json().issues).toEqual([{ field: 'row 1: customer_no', row: 1, column: 'customer_no', reason: 'customer_erased', message: expect.stringContaining('re-regist') }])
    expect(c.body).not.toContain(V)
    const a = await upload('accounts', accountsCsv([NEW, V]))
    expect(a.json()).toMatchObject({ status: 'imported', rows: { read: 2, erased: 1, inserted: 1 } })
    expect(a.json().issues.map((i: { row: number; reason: string }) => [i.row, i.reason])).toEqual([[2, 'customer_erased']])
    expect(await present('customers')).toEqual([N, NEW])
    expect(await present('accounts')).toEqual([N, NEW])
    // No key was allocated for the erased number either.
    const keys = await t.engine.db.forTenant(bank.tenant.id).query(`SELECT count() AS n FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_value = {no:String}`, { no: V }, z.object({ n: z.coerce.number() }))
    expect(keys[0]!.n).toBe(0)

    const rereg = await t.app.inject({ method: 'POST', url: `/v1/customers/${V}/reregistration`, headers: { authorization: `Bearer ${bank.admin}` }, payload: { reason: 'opened a new relationship' } })
    expect(rereg.statusCode, rereg.body).toBe(200)
    const again = await upload('customers', customersCsv([V]))
    expect(again.json()).toMatchObject({ status: 'imported', rows: { erased: 0, inserted: 1 }, issues: [] })
    expect((await upload('accounts', accountsCsv([V]))).json()).toMatchObject({ rows: { erased: 0, inserted: 1 } })
    expect(await present('customers')).toEqual([V, N, NEW])
    expect(await present('accounts')).toEqual([V, N, NEW])
  })
})
