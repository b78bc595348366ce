import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import type { ImportKind } from '../ingest/import/import.schemas.js'

/**
 * The export of customers the bank's files and its staff changed: one the bank marked deleted
 * (still held until erased), and customers merged into one another, standing or undone. Each is
 * a copy of what is held about that person and of nobody else.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let tmp: string
let n = 0
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const post = (url: string, payload: unknown) => t.app.inject({ method: 'POST', url, headers: auth(bank.admin), payload: payload as object })

beforeAll(async () => {
  t = await openTestApp({ PIPELINE_RETRIES: '0' })
  bank = await tenantWithKeys(t, 'export-merged')
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-export-merged-'))
}, 120_000)
afterAll(async () => {
  await t?.close()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

const importCsv = async (kind: ImportKind, csv: string) => {
  const file = path.join(tmp, `${++n}.csv`)
  fs.writeFileSync(file, csv)
  const r = await t.ingest.importer.importFile({ tenantId: bank.tenant.id, kind, file, actor: 'test' })
  expect(r.issues).toEqual([])
}
interface Export {
  sections: Record<string, { rows: Record<string, unknown>[] }>
}
const exportOf = async (no: string): Promise<Export> => {
  const res = await t.app.inject({ url: `/v1/customers/${no}/export`, headers: auth(bank.admin) })
  expect(res.statusCode, res.body).toBe(200)
  return res.json()
}
const merge = async (from: string, into: string): Promise<string> => {
  const m = await post('/v1/identities/merge', { from, to: into, reason: 'the same person' })
  expect(m.statusCode, m.body).toBe(200)
  return m.json<{ changeId: string }>().changeId
}

describe('the export of changed customers', () => {
  it('gives the profile of a customer the bank marked deleted: it is held until erased', async () => {
    await importCsv('customers', 'customer_no,name,phone,opened_at,deleted\nMD1,张三,13800000001,2020-01-01,1\n')
    const x = await exportOf('MD1')
    expect(x.sections.profile!.rows).toEqual([expect.objectContaining({ customer_no: 'MD1', name_masked: '张*', deleted: 1 })])
  })

  it('does not call a bill paid by someone else when the payer is a customer merged into the same person', async () => {
    await importCsv('customers', 'customer_no,opened_at\nMA1,2020-01-01\nMB1,2020-01-01\nMC1,2020-01-01\n')
    await importCsv('bills', 'customer_no,bill_no,biller,amount,due_date,payer_customer_no\nMA1,mb-1,water,10.00,2026-01-01,MB1\nMA1,mb-2,gas,20.00,2026-01-02,MC1\n')
    await merge('MA1', 'MB1')
    const bills = (await exportOf('MB1')).sections.bills!.rows.map((r) => [r.bill_no, r.paid_by_another])
    expect(bills.sort()).toEqual([
      ['mb-1', 0],
      ['mb-2', 1],
    ])
  })

  it('after a merge is undone, does not name the other customer’s number in the history', async () => {
    await importCsv('customers', 'customer_no,opened_at\nMU1,2020-01-01\nMU2,2020-01-01\n')
    const change = await merge('MU1', 'MU2')
    expect((await exportOf('MU2')).sections.identityHistory!.rows).toEqual([expect.objectContaining({ action: 'merge', id_value: 'MU1' })])
    const undo = await post(`/v1/identities/changes/${change}/undo`, {})
    expect(undo.statusCode, undo.body).toBe(200)
    // The merge stays in both histories; only the customer it came from keeps its number.
    const into = (await exportOf('MU2')).sections.identityHistory!.rows
    expect(into).toEqual([expect.objectContaining({ action: 'merge', id_value: '', undone_at: expect.any(String) })])
    expect(JSON.stringify((await exportOf('MU2')).sections)).not.toContain('MU1')
    expect((await exportOf('MU1')).sections.identityHistory!.rows).toEqual([expect.objectContaining({ action: 'merge', id_value: 'MU1' })])
  })
})
