import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, type TestApp } from '../../test/app.js'

/**
 * How files saved by everyday tools end and begin: spreadsheets and editors leave empty lines at
 * the end of a CSV, and Notepad starts a UTF-8 file with a byte-order mark, NDJSON too. Neither is
 * a row, so neither may reject a file whose rows are all valid.
 */

let t: TestApp
let tmp: string
let n = 0
beforeAll(async () => {
  t = await openTestApp({ INGEST_WORKERS: '0' })
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-lines-'))
})
afterAll(async () => {
  await t?.close()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

const importText = async (tenantId: number, name: string, content: string) => {
  const file = path.join(tmp, `${++n}-${name}`)
  fs.writeFileSync(file, content)
  return t.ingest.importer.importFile({ tenantId, kind: 'customers', file, actor: 'test' })
}
const stored = async (tenantId: number) =>
  (await t.engine.db.forTenant(tenantId).query<{ customer_no: string }>(`SELECT customer_no FROM customers FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY customer_no`)).map((r) => r.customer_no)

describe('empty lines at the end of a CSV, and a byte-order mark before NDJSON', () => {
  it('imports a CSV ending with empty lines, LF or CRLF', async () => {
    const tenant = (await t.tenants.create({ slug: 'lines-csv', name: 'lines csv' })).id
    const lf = await importText(tenant, 'a.csv', 'customer_no,opened_at\nL1,2020-01-01\nL2,2020-01-01\n\n\n')
    expect(lf).toMatchObject({ status: 'imported', issues: [], rows: { read: 2, inserted: 2 } })
    const crlf = await importText(tenant, 'b.csv', '\uFEFFcustomer_no,opened_at\r\nL3,2020-01-01\r\n\r\n')
    expect(crlf).toMatchObject({ status: 'imported', issues: [], rows: { read: 1, inserted: 1 } })
    expect(await stored(tenant)).toEqual(['L1', 'L2', 'L3'])
  })

  it('still refuses an empty line between rows, naming its row', async () => {
    const tenant = (await t.tenants.create({ slug: 'lines-mid', name: 'lines mid' })).id
    const r = await importText(tenant, 'c.csv', 'customer_no,opened_at\nM1,2020-01-01\n\nM2,2020-01-01\n')
    expect(r).toMatchObject({ status: 'rejected', issues: [{ row: 2, reason: 'unreadable' }] })
    expect(await stored(tenant)).toEqual([])
  })

  it('imports NDJSON that starts with a byte-order mark', async () => {
    const tenant = (await t.tenants.create({ slug: 'lines-nd', name: 'lines nd' })).id
    const r = await importText(tenant, 'd.ndjson', '\uFEFF{"customer_no":"J1","opened_at":"2020-01-01"}\r\n{"customer_no":"J2","opened_at":"2020-01-01"}\r\n')
    expect(r).toMatchObject({ status: 'imported', issues: [], rows: { read: 2, inserted: 2 } })
    expect(await stored(tenant)).toEqual(['J1', 'J2'])
  })
})

describe('an NDJSON line that is not JSON', () => {
  it('is reported by its row, without the bytes of the line', async () => {
    const tenant = (await t.tenants.create({ slug: 'lines-bytes', name: 'lines bytes' })).id
    // A CSV line sent as NDJSON: the parser's message would quote its start (a name and a phone).
    const r = await importText(tenant, 'e.ndjson', '{"customer_no":"K1","opened_at":"2020-01-01"}\n张三丰,13800138000,2020-01-01\n')
    expect(r).toMatchObject({ status: 'rejected', issues: [{ row: 2, column: null, reason: 'invalid', message: 'not valid JSON' }] })
    expect(JSON.stringify(r.issues)).not.toMatch(/张|1380/)
  })
})
