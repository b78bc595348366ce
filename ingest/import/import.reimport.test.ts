import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPii } from '../../core/pii.js'
import { openTestApp, type TestApp } from '../../test/app.js'

/**
 * A customers row replaces the whole profile (README): a column left empty is stored empty, the
 * national id too, although it lives in customer_traits beside the profile. On the real engine,
 * since what counts is which version the table keeps.
 */

const pii = createPii('test-secret-test-secret-test-secret')
const ID = '11010519491231002X'
let t: TestApp
let tmp: string
let n = 0
beforeAll(async () => {
  t = await openTestApp({ INGEST_WORKERS: '0' })
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-reimport-'))
})
afterAll(async () => {
  await t?.close()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

const importCsv = async (tenantId: number, csv: string) => {
  const file = path.join(tmp, `${++n}.csv`)
  fs.writeFileSync(file, csv)
  const r = await t.ingest.importer.importFile({ tenantId, kind: 'customers', file, actor: 'test' })
  expect(r.issues).toEqual([])
  return r
}
const nationalIds = (tenantId: number) =>
  t.engine.db
    .forTenant(tenantId)
    .query<{ customer_no: string; value: string; hashed: number; updated_at: string }>(
      `SELECT c.customer_no AS customer_no, tr.value AS value, tr.hashed AS hashed, toString(tr.updated_at) AS updated_at
       FROM customer_traits AS tr FINAL INNER JOIN (SELECT customer_key, customer_no FROM customers FINAL WHERE tenant_id = {tenant:UInt16}) AS c ON c.customer_key = tr.customer_key
       WHERE tr.tenant_id = {tenant:UInt16} AND tr.trait = 'national_id' ORDER BY customer_no`,
    )

describe('re-importing customers without their national id', () => {
  it('stores it empty, stamped with the row, so the old digest is gone; an older file does not bring it back', async () => {
    const tenant = (await t.tenants.create({ slug: 'reimport', name: 'reimport' })).id
    const header = 'customer_no,national_id,opened_at,updated_at'
    await importCsv(tenant, `${header}\nC1,${ID},2020-01-01,2026-01-01T00:00:00Z\nC2,${ID},2020-01-01,2026-01-01T00:00:00Z\n`)
    expect(await nationalIds(tenant)).toEqual([
      { customer_no: 'C1', value: pii.hash('national_id', ID, tenant), hashed: 1, updated_at: '2026-01-01 00:00:00.000' },
      { customer_no: 'C2', value: pii.hash('national_id', ID, tenant), hashed: 1, updated_at: '2026-01-01 00:00:00.000' },
    ])
    // C1 now without one; C2 not in this file at all, so untouched.
    await importCsv(tenant, `${header}\nC1,,2020-01-01,2026-02-01T00:00:00Z\n`)
    expect(await nationalIds(tenant)).toEqual([
      { customer_no: 'C1', value: '', hashed: 1, updated_at: '2026-02-01 00:00:00.000' },
      { customer_no: 'C2', value: pii.hash('national_id', ID, tenant), hashed: 1, updated_at: '2026-01-01 00:00:00.000' },
    ])
    // An older extract imported late loses to the newer row, as the profile does.
    await importCsv(tenant, `${header}\nC1,${ID},2020-01-01,2025-12-01T00:00:00Z\n`)
    expect((await nationalIds(tenant))[0]).toMatchObject({ customer_no: 'C1', value: '' })
    // And a newer one with the number sets it again.
    await importCsv(tenant, `${header}\nC1,${ID},2020-01-01,2026-03-01T00:00:00Z\n`)
    expect((await nationalIds(tenant))[0]).toMatchObject({ customer_no: 'C1', value: pii.hash('national_id', ID, tenant) })
  })

  it('writes no empty national id for customers that never had one', async () => {
    const tenant = (await t.tenants.create({ slug: 'never', name: 'never' })).id
    await importCsv(tenant, 'customer_no,opened_at\nN1,2020-01-01\nN2,2020-01-01\n')
    await importCsv(tenant, 'customer_no,national_id,opened_at\nN1,,2020-01-01\n')
    expect(await nationalIds(tenant)).toEqual([])
  })
})
