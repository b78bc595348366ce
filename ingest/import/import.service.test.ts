import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import { tableFromArrays, tableToIPC } from 'apache-arrow'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPii } from '../../core/pii.js'
import { createRng } from '../../demo/demo.random.js'
import { chDateTime } from '../../core/time.js'
import { moduleApp, openTestApp, tenantWithKeys, type TestApp } from '../../test/app.js'
import { runImport } from './import.cli.js'
import { registerImportRoutes } from './import.routes.js'
import type { ImportFormat, ImportKind, ImportReport } from './import.schemas.js'
import { createImportService, type ImportService } from './import.service.js'
import { ONE_BLOCK } from './import.staging.js'

/**
 * Bulk import on the real embedded engine: every format, the all-or-nothing policy and its
 * report, skip-invalid, upsert on re-import, loans and their schedules, the HTTP route and its
 * scope, and tenant isolation. Fixtures are written by the tests themselves: CSV and NDJSON as
 * text, Parquet by ClickHouse, Arrow by apache-arrow.
 */

const SECRET = 'test-secret-test-secret-test-secret'
const pii = createPii(SECRET)
let t: TestApp
let app: FastifyInstance
let importer: ImportService
let tmp: string
let n = 0

beforeAll(async () => {
  t = await openTestApp()
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-import-test-'))
  importer = createImportService({ db: t.engine.db, identities: t.ingest.identities, pii, log: t.engine.log, metrics: t.metrics, options: { pageRows: 64 } })
  app = await moduleApp({ db: t.engine.db, log: t.engine.log, metrics: t.metrics, tenants: t.tenants, keys: t.keys }, [
    (a, auth) => registerImportRoutes(a, auth, { importer, maxBytes: 64 * 1024, tmpDir: tmp }),
  ])
})
afterAll(async () => {
  await app?.close()
  await t?.close()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

const newTenant = async (prefix = 'bank') => t.tenants.create({ slug: `${prefix}-${++n}`, name: `${prefix} ${n}` })
const write = (name: string, content: string | Uint8Array) => {
  const file = path.join(tmp, `${++n}-${name}`)
  fs.writeFileSync(file, content)
  return file
}
const rows = <T = Record<string, unknown>>(sql: string, params: Record<string, unknown> = {}) => t.engine.db.system.query<T>(sql, params)
const count = async (sql: string, params: Record<string, unknown> = {}) => Number((await rows<{ n: string }>(sql, params))[0]!.n)
const run = (tenantId: number, kind: ImportKind, file: string, opts: { format?: ImportFormat; skipInvalid?: boolean } = {}) =>
  importer.importFile({ tenantId, kind, file, actor: 'test', ...opts })

// ---------------------------------------------------------------------------------------------
// Fixtures

const CUSTOMER_HEADER = 'customer_no,gender,birth_date,region_code,branch_code,phone,name,national_id,elder_mode,opened_at'
interface Customer {
  customer_no: string
  gender: string
  birth_date: string | null
  region_code: string
  branch_code: string
  phone: string
  name: string
  national_id: string
  elder_mode: number
  opened_at: string
}
const customer = (i: number): Customer => ({
  customer_no: `C${String(i).padStart(8, '0')}`,
  gender: i % 3 === 0 ? 'female' : 'male',
  birth_date: i % 7 === 0 ? null : `19${50 + (i % 50)}-0${1 + (i % 9)}-1${i % 10}`,
  region_code: `3307${String(i % 20).padStart(2, '0')}`,
  branch_code: `B${i % 5}`,
  phone: `138${String(10_000_000 + i).slice(-8)}`,
  name: i % 2 ? '张三丰' : 'Alice Wang',
  national_id: `33070219800101${String(1000 + (i % 9000)).slice(-4)}`,
  elder_mode: i % 4 === 0 ? 1 : 0,
  // Local time of the bank (Asia/Shanghai): 08:00 is midnight UTC.
  opened_at: `2020-0${1 + (i % 9)}-0${1 + (i % 9)} 08:00:00`,
})
const customers = (count: number, from = 1) => Array.from({ length: count }, (_, i) => customer(from + i))
const csvOf = (cs: Customer[]) =>
  [CUSTOMER_HEADER, ...cs.map((c) => [c.customer_no, c.gender, c.birth_date ?? '', c.region_code, c.branch_code, c.phone, `"${c.name}"`, c.national_id, c.elder_mode, c.opened_at].join(','))].join('\n') + '\n'
const ndjsonOf = (cs: Customer[]) => cs.map((c) => JSON.stringify(c)).join('\n') + '\n'

/** Parquet written by ClickHouse itself, with real column types (Date32, UInt8, DateTime64). */
async function parquetOf(cs: Customer[]): Promise<string> {
  const csv = write('src.csv', csvOf(cs))
  const out = path.join(tmp, `${++n}-customers.parquet`)
  await t.engine.db.system.command(
    `INSERT INTO FUNCTION file({out:String}, 'Parquet')
     SELECT customer_no, gender, toDate32OrNull(birth_date) AS birth_date, region_code, branch_code, phone, name, national_id,
            toUInt8(elder_mode) AS elder_mode, parseDateTime64BestEffort(opened_at, 3, 'Asia/Shanghai') AS opened_at
     FROM file({csv:String}, 'CSVWithNames', 'customer_no String, gender String, birth_date String, region_code String, branch_code String, phone String, name String, national_id String, elder_mode String, opened_at String')`,
    { out, csv },
  )
  return out
}

/** Arrow IPC written by apache-arrow: dictionary-encoded text, Int8 flags, millisecond timestamps. */
function arrowOf(cs: Customer[], kind: 'stream' | 'file'): string {
  const table = tableFromArrays({
    customer_no: cs.map((c) => c.customer_no),
    gender: cs.map((c) => c.gender),
    birth_date: cs.map((c) => c.birth_date ?? ''),
    region_code: cs.map((c) => c.region_code),
    branch_code: cs.map((c) => c.branch_code),
    phone: cs.map((c) => c.phone),
    name: cs.map((c) => c.name),
    national_id: cs.map((c) => c.national_id),
    elder_mode: Int8Array.from(cs.map((c) => c.elder_mode)),
    opened_at: cs.map((c) => new Date(c.opened_at.replace(' ', 'T') + '+08:00')),
  })
  return write(kind === 'stream' ? 'customers.arrows' : 'customers.arrow', tableToIPC(table, kind))
}

const profileSql = `SELECT customer_no, gender, toString(birth_date) AS birth_date, region_code, branch_code, phone_hash, name_masked, elder_mode,
                           toString(opened_at) AS opened_at, deleted
                    FROM customers FINAL WHERE tenant_id = {t:UInt16} ORDER BY customer_no`
const profiles = (tenantId: number) => rows(profileSql, { t: tenantId })

// ---------------------------------------------------------------------------------------------

describe('importing customers', () => {
  const file = customers(150)
  let csvTenant: number
  let report: ImportReport

  beforeAll(async () => {
    csvTenant = (await newTenant()).id
    report = await run(csvTenant, 'customers', write('customers.csv', csvOf(file)))
  })

  it('imports a CSV file and reports its counts', async () => {
    expect(report).toMatchObject({ kind: 'customers', format: 'csv', status: 'imported', rows: { read: 150, valid: 150, rejected: 0, inserted: 150 }, issues: [], issuesTotal: 0 })
    const stored = await profiles(csvTenant)
    expect(stored).toHaveLength(150)
    const c = file[6]! // customer 7: no birth date
    expect(stored[6]).toEqual({
      customer_no: c.customer_no,
      gender: c.gender,
      birth_date: null,
      region_code: c.region_code,
      branch_code: c.branch_code,
      phone_hash: pii.hash('phone', c.phone, csvTenant),
      name_masked: pii.maskName(c.name),
      elder_mode: c.elder_mode,
      opened_at: '2020-08-08 00:00:00.000', // 08:00 in Shanghai
      deleted: 0,
    })
    // Dense keys come from the identity service, one per customer number, allocated in file order.
    const keys = await rows<{ no: string; k: number }>(`SELECT customer_no AS no, customer_key AS k FROM customers FINAL WHERE tenant_id = {t:UInt16}`, { t: csvTenant })
    const keyOf = new Map(keys.map((r) => [r.no, Number(r.k)]))
    expect(file.map((c) => keyOf.get(c.customer_no))).toEqual(Array.from({ length: 150 }, (_, i) => i + 1))
  })

  it('keeps personal fields only hashed or masked: no phone, name or id in clear anywhere', async () => {
    const traits = await rows<{ value: string; hashed: number }>(`SELECT value, hashed FROM customer_traits FINAL WHERE tenant_id = {t:UInt16} AND trait = 'national_id' ORDER BY customer_key`, { t: csvTenant })
    expect(traits).toHaveLength(150)
    expect(traits[0]).toEqual({ value: pii.hash('national_id', file[0]!.national_id, csvTenant), hashed: 1 })
    const c = file[1]!
    for (const needle of [c.phone, c.national_id, c.name]) {
      for (const table of ['customers', 'customer_traits', 'identities']) {
        expect(await count(`SELECT count() AS n FROM ${table} WHERE position(toString(tuple(*)), {s:String}) > 0`, { s: needle }), `${needle} in ${table}`).toBe(0)
      }
    }
    // And no staging table is left behind.
    expect(await count(`SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name LIKE 'import\\_%'`)).toBe(0)
  })

  it.each([
    ['ndjson', () => write('customers.ndjson', ndjsonOf(file))],
    ['parquet', () => parquetOf(file)],
    ['arrow stream', () => arrowOf(file, 'stream')],
    ['arrow file', () => arrowOf(file, 'file')],
  ] as const)('imports the same customers from %s, with the same result', async (name, make) => {
    const tenant = (await newTenant()).id
    const r = await run(tenant, 'customers', await make())
    expect(r.issues).toEqual([])
    expect(r).toMatchObject({ format: name.split(' ')[0], status: 'imported', rows: { read: 150, inserted: 150 } })
    // Each bank digests under its own key: the phone digests are the bank's, the rest is equal.
    const byFile = file.map((c) => pii.hash('phone', c.phone, tenant))
    const got = await profiles(tenant)
    expect(got.map((p) => p.phone_hash)).toEqual([...file].sort((a, b) => a.customer_no.localeCompare(b.customer_no)).map((c) => byFile[file.indexOf(c)]))
    const withoutDigest = (ps: Record<string, unknown>[]) => ps.map(({ phone_hash: _h, ...p }) => p)
    expect(withoutDigest(got)).toEqual(withoutDigest(await profiles(csvTenant)))
  })

  it('re-imports idempotently: no duplicates, and the newest import wins', async () => {
    const tenant = (await newTenant()).id
    const first = write('customers.csv', csvOf(file.slice(0, 40)))
    await run(tenant, 'customers', first)
    await run(tenant, 'customers', first)
    expect(await count(`SELECT count() AS n FROM customers FINAL WHERE tenant_id = {t:UInt16}`, { t: tenant })).toBe(40)
    expect(await count(`SELECT count() AS n FROM customer_traits FINAL WHERE tenant_id = {t:UInt16}`, { t: tenant })).toBe(40)
    const changed = file.slice(0, 40).map((c, i) => (i === 3 ? { ...c, branch_code: 'B-NEW', phone: '13999999999' } : c))
    await new Promise((r) => setTimeout(r, 5)) // a later updated_at
    await run(tenant, 'customers', write('customers.csv', csvOf(changed)))
    const after = await rows<{ branch_code: string; phone_hash: string }>(
      `SELECT branch_code, phone_hash FROM customers FINAL WHERE tenant_id = {t:UInt16} AND customer_no = {c:String}`,
      { t: tenant, c: file[3]!.customer_no },
    )
    expect(after).toEqual([{ branch_code: 'B-NEW', phone_hash: pii.hash('phone', '13999999999', tenant) }])
    expect(await count(`SELECT count() AS n FROM customers FINAL WHERE tenant_id = {t:UInt16}`, { t: tenant })).toBe(40)
    // The customer keeps their key across imports.
    expect(await count(`SELECT uniqExact(customer_key) AS n FROM customers WHERE tenant_id = {t:UInt16}`, { t: tenant })).toBe(40)
  })

  it('reads a date-time without offset in the tenant zone, and one with an offset as given', async () => {
    const tenant = (await t.tenants.create({ slug: `utc-bank-${++n}`, name: 'UTC bank', timeZone: 'Europe/Berlin' })).id
    const csv = `customer_no,opened_at,updated_at\nZ1,2024-07-01 12:00:00,2024-07-01T12:00:00Z\nZ2,2024-01-15,2024-01-15 09:30:00.250+08:00\n`
    expect((await run(tenant, 'customers', write('tz.csv', csv))).status).toBe('imported')
    const r = await rows(`SELECT customer_no, toString(opened_at) AS o, toString(updated_at) AS u FROM customers FINAL WHERE tenant_id = {t:UInt16} ORDER BY customer_no`, { t: tenant })
    expect(r).toEqual([
      { customer_no: 'Z1', o: '2024-07-01 10:00:00.000', u: '2024-07-01 12:00:00.000' }, // CEST +02:00
      { customer_no: 'Z2', o: '2024-01-14 23:00:00.000', u: '2024-01-15 01:30:00.250' }, // CET +01:00
    ])
  })

  it('reads the zone the tenant holds when two changes of it were stamped with the same time', async () => {
    const tn = await t.tenants.create({ slug: `tie-bank-${++n}`, name: 'Tie bank', timeZone: 'Europe/Berlin' })
    await t.engine.db.system.command('SYSTEM STOP MERGES tenants')
    try {
      const at = chDateTime(new Date(Date.now() + 60_000))
      const row = (timeZone: string) => ({ tenant_id: tn.id, slug: tn.slug, name: tn.name, kind: tn.kind, parent_id: 0, time_zone: timeZone, status: 'active', created_at: at, updated_at: at })
      // Inserted in this order: the table keeps the last one, and so does the tenant service.
      for (const zone of ['Asia/Tokyo', 'America/New_York']) await t.engine.db.system.insert('tenants', [row(zone)])
      await t.tenants.reload()
      expect((await t.tenants.get(tn.id)).timeZone).toBe('America/New_York')
      const csv = `customer_no,opened_at\nT1,2024-01-15 00:00:00\n`
      expect((await run(tn.id, 'customers', write('tie.csv', csv))).status).toBe('imported')
      const r = await rows(`SELECT toString(opened_at) AS o FROM customers FINAL WHERE tenant_id = {t:UInt16}`, { t: tn.id })
      expect(r).toEqual([{ o: '2024-01-15 05:00:00.000' }]) // EST -05:00
    } finally {
      await t.engine.db.system.command('SYSTEM START MERGES tenants')
    }
  })
})

describe('a file with invalid rows', () => {
  const good = customers(20)
  const lines = csvOf(good).trimEnd().split('\n')
  lines[3] = lines[3]!.replace(/,19\d\d-\d\d-\d\d,/, ',1985-02-30,') // row 3: no such date
  lines[5] = lines[5]!.replace(/^C\d+/, '') // row 5: no customer number
  lines[8] = lines[8]!.replace(/^C\d+/, good[0]!.customer_no) // row 8: the key of row 1 again
  lines[12] = lines[12]!.replace(/,(male|female),/, ',robot,').replace(/,138\d+,/, ',call me,') // row 12: two issues
  const bad = lines.join('\n') + '\n'

  it('is rejected whole, with every issue by row and column, and nothing is written', async () => {
    const tenant = (await newTenant()).id
    const r = await run(tenant, 'customers', write('bad.csv', bad))
    expect(r).toMatchObject({ status: 'rejected', rows: { read: 20, valid: 16, rejected: 4, inserted: 0 }, issuesTotal: 5 })
    expect(r.issues.map((i) => [i.field, i.reason])).toEqual([
      ['row 3: birth_date', 'invalid'],
      ['row 5: customer_no', 'required'],
      ['row 8: customer_no', 'duplicate'],
      ['row 12: gender', 'invalid'],
      ['row 12: phone', 'invalid'],
    ])
    expect(r.issues[2]!.message).toContain('row 1')
    for (const table of ['customers', 'customer_traits', 'identities']) {
      expect(await count(`SELECT count() AS n FROM ${table} WHERE tenant_id = {t:UInt16}`, { t: tenant }), table).toBe(0)
    }
  })

  it('imports the valid rows with skip-invalid, and reports the others', async () => {
    const tenant = (await newTenant()).id
    const r = await run(tenant, 'customers', write('bad.csv', bad), { skipInvalid: true })
    expect(r).toMatchObject({ status: 'imported', skipInvalid: true, rows: { read: 20, valid: 16, rejected: 4, inserted: 16 }, issuesTotal: 5 })
    expect(await count(`SELECT count() AS n FROM customers FINAL WHERE tenant_id = {t:UInt16}`, { t: tenant })).toBe(16)
  })

  it('caps the listed issues but counts them all', async () => {
    const small = createImportService({ db: t.engine.db, identities: t.ingest.identities, pii, log: t.engine.log, options: { maxIssues: 3 } })
    const tenant = (await newTenant()).id
    const r = await small.importFile({ tenantId: tenant, kind: 'customers', file: write('bad.csv', bad), actor: 'test' })
    expect(r.issues).toHaveLength(3)
    expect(r.issuesTotal).toBe(5)
  })

  it('takes a CSV with a byte-order mark and CRLF line ends', async () => {
    const tenant = (await newTenant()).id
    const r = await run(tenant, 'customers', write('win.csv', '\uFEFFcustomer_no,name,opened_at\r\nW1,"王, 五",2020-01-01\r\nW2,,2020-01-02\r\n'))
    expect(r).toMatchObject({ status: 'imported', rows: { read: 2, inserted: 2 } })
    expect(await rows(`SELECT customer_no, name_masked FROM customers FINAL WHERE tenant_id = {t:UInt16} ORDER BY customer_no`, { t: tenant })).toEqual([
      { customer_no: 'W1', name_masked: pii.maskName('王, 五') },
      { customer_no: 'W2', name_masked: '' },
    ])
  })

  it('names unknown and missing columns before loading anything', async () => {
    const tenant = (await newTenant()).id
    const r = await run(tenant, 'customers', write('hdr.csv', 'customer_no,birthdate\nC1,1980-01-01\n'))
    expect(r.status).toBe('rejected')
    expect(r.issues.map((i) => [i.field, i.reason])).toEqual([
      ['header: birthdate', 'unknown_column'],
      ['header: opened_at', 'missing_column'],
    ])
  })

  it('reports NDJSON lines that are not JSON objects or carry unknown fields', async () => {
    const tenant = (await newTenant()).id
    const ok = JSON.stringify({ customer_no: 'N1', opened_at: '2020-01-01' })
    const r = await run(tenant, 'customers', write('x.ndjson', `${ok}\n\n{"customer_no": "N2",\n[1]\n{"customer_no":"N3","opened_at":"2020-01-01","shoe_size":42}\n`))
    expect(r.rows).toMatchObject({ read: 4, valid: 1, rejected: 3 })
    expect(r.issues.map((i) => [i.row, i.column, i.reason])).toEqual([
      [3, null, 'invalid'],
      [4, null, 'invalid'],
      [5, 'shoe_size', 'unknown_column'],
    ])
  })

  it('rejects a file the engine cannot read, without leaking its bytes into the message', async () => {
    const tenant = (await newTenant()).id
    const r = await run(tenant, 'customers', write('broken.parquet', 'PAR1 13800001234 not really parquet'))
    expect(r.status).toBe('rejected')
    expect(r.issues[0]).toMatchObject({ field: 'file', reason: 'unreadable' })
    expect(r.issues[0]!.message).toMatch(/^cannot be read as PARQUET/)
    expect(r.issues[0]!.message).not.toContain('13800001234')
    const short = await run(tenant, 'customers', write('short.csv', 'customer_no,opened_at\nC1,2020-01-01\nC2\n'))
    expect(short.issues[0]).toMatchObject({ row: 2, reason: 'unreadable' })
  })
})

describe('the other kinds', () => {
  let tenant: number
  beforeAll(async () => {
    tenant = (await newTenant()).id
    await run(tenant, 'customers', write('c.csv', csvOf(customers(5))))
  })

  it('imports loans, then their schedules under the loan customer', async () => {
    const loans = [
      { customer_no: 'C00000001', loan_no: 'L1', product_id: 'agri-loan', principal: 50000, outstanding: '32000.5', annual_rate: 0.0435, start_date: '2024-01-10', maturity_date: '20270110' },
      { customer_no: 'C00000002', loan_no: 'L2', principal: '8000.00', outstanding: 0, annual_rate: '0.05', start_date: '2023-03-01', maturity_date: '2024-03-01', status: 'closed' },
    ]
    const lr = await run(tenant, 'loans', write('loans.ndjson', loans.map((l) => JSON.stringify(l)).join('\n')))
    expect(lr).toMatchObject({ status: 'imported', rows: { inserted: 2 } })
    const schedules = 'loan_no,installment_no,due_date,amount_due,amount_paid,paid_at,status\nL1,1,2024-02-10,1500.00,1500.00,2024-02-09 10:00:00,paid\nL1,2,2024-03-10,1500.00,,,due\nL2,1,2023-04-01,700,700,2023-04-01 08:00:00,paid\n'
    const sr = await run(tenant, 'loan_schedules', write('sched.csv', schedules))
    expect(sr).toMatchObject({ status: 'imported', rows: { read: 3, inserted: 3 } })
    const stored = await rows(
      `SELECT s.loan_no AS loan_no, s.installment_no AS i, toString(s.amount_paid) AS paid, s.status AS status, c.customer_no AS customer_no
       FROM loan_schedules AS s FINAL INNER JOIN (SELECT customer_key, customer_no FROM customers FINAL WHERE tenant_id = {t:UInt16}) AS c USING customer_key
       WHERE s.tenant_id = {t:UInt16} ORDER BY loan_no, i`,
      { t: tenant },
    )
    expect(stored).toEqual([
      { loan_no: 'L1', i: 1, paid: '1500', status: 'paid', customer_no: 'C00000001' },
      { loan_no: 'L1', i: 2, paid: '0', status: 'due', customer_no: 'C00000001' },
      { loan_no: 'L2', i: 1, paid: '700', status: 'paid', customer_no: 'C00000002' },
    ])
    const [loan] = await rows(`SELECT toString(outstanding) AS o, toString(maturity_date) AS m FROM loans FINAL WHERE tenant_id = {t:UInt16} AND loan_no = 'L1'`, { t: tenant })
    expect(loan).toEqual({ o: '32000.5', m: '2027-01-10' })
  })

  it('rejects schedules of an unknown loan, or skips them when asked', async () => {
    const csv = 'loan_no,installment_no,due_date,amount_due\nL1,3,2024-04-10,1500\nL404,1,2024-04-10,99\n'
    const r = await run(tenant, 'loan_schedules', write('s.csv', csv))
    expect(r).toMatchObject({ status: 'rejected', rows: { read: 2, valid: 1, rejected: 1, inserted: 0 } })
    expect(r.issues).toEqual([{ field: 'row 2: loan_no', row: 2, column: 'loan_no', reason: 'unknown_reference', message: 'unknown loan L404: import the loan first' }])
    const skipped = await run(tenant, 'loan_schedules', write('s.csv', csv), { skipInvalid: true })
    expect(skipped).toMatchObject({ status: 'imported', rows: { valid: 1, rejected: 1, inserted: 1 } })
    expect(await count(`SELECT count() AS n FROM loan_schedules FINAL WHERE tenant_id = {t:UInt16}`, { t: tenant })).toBe(4)
  })

  it('a loan, an account or a bill moved to another customer is that customer’s alone, and a loan’s schedules follow it', async () => {
    const tenant = (await newTenant('moves')).id
    await run(tenant, 'customers', write('c.csv', csvOf(customers(5))))
    const owners = (table: string, column: string, no: string) =>
      rows<{ no: string }>(
        `SELECT c.customer_no AS no FROM ${table} AS x FINAL INNER JOIN (SELECT customer_key, customer_no FROM customers FINAL WHERE tenant_id = {t:UInt16}) AS c USING customer_key
         WHERE x.tenant_id = {t:UInt16} AND x.${column} = {no:String} ORDER BY no`,
        { t: tenant, no },
      ).then((r) => r.map((x) => x.no))
    const loan = (customer: string, at: string) =>
      `customer_no,loan_no,principal,outstanding,annual_rate,start_date,maturity_date,updated_at\n${customer},LM,9000,4000,0.04,2025-01-01,2027-01-01,${at}\n`
    expect(await run(tenant, 'loans', write('lm.csv', loan('C00000001', '2026-01-01 00:00:00')))).toMatchObject({ status: 'imported' })
    const sched = 'loan_no,installment_no,due_date,amount_due,updated_at\nLM,1,2026-02-01,500,2026-01-01 00:00:00\nLM,2,2026-03-01,500,2026-01-01 00:00:00\n'
    expect(await run(tenant, 'loan_schedules', write('lms.csv', sched))).toMatchObject({ status: 'imported' })
    // The bank corrects the loan's customer.
    expect(await run(tenant, 'loans', write('lm2.csv', loan('C00000002', '2026-02-01 00:00:00')))).toMatchObject({ status: 'imported' })
    expect(await owners('loans', 'loan_no', 'LM')).toEqual(['C00000002'])
    expect(await owners('loan_schedules', 'loan_no', 'LM')).toEqual(['C00000002', 'C00000002'])
    // An older extract imported late does not take it back; one of the same time does (the file's row wins a tie).
    expect(await run(tenant, 'loans', write('lm3.csv', loan('C00000003', '2025-12-01 00:00:00')))).toMatchObject({ status: 'imported' })
    expect(await owners('loans', 'loan_no', 'LM')).toEqual(['C00000002'])
    expect(await run(tenant, 'loans', write('lm4.csv', loan('C00000004', '2026-02-01 00:00:00')))).toMatchObject({ status: 'imported' })
    expect(await owners('loans', 'loan_no', 'LM')).toEqual(['C00000004'])
    expect(await owners('loan_schedules', 'loan_no', 'LM')).toEqual(['C00000004', 'C00000004'])

    const account = (customer: string, at: string) => `customer_no,account_no,kind,balance,opened_at,updated_at\n${customer},AM,savings,10,2020-01-01,${at}\n`
    await run(tenant, 'accounts', write('am.csv', account('C00000001', '2026-01-01 00:00:00')))
    await run(tenant, 'accounts', write('am2.csv', account('C00000005', '2026-01-02 00:00:00')))
    expect(await owners('accounts', 'account_no', 'AM')).toEqual(['C00000005'])
    const bill = (customer: string, at: string) => `customer_no,bill_no,biller,amount,due_date,updated_at\n${customer},BM,water,12,2026-05-01,${at}\n`
    await run(tenant, 'bills', write('bm.csv', bill('C00000001', '2026-01-01 00:00:00')))
    await run(tenant, 'bills', write('bm2.csv', bill('C00000003', '2026-01-02 00:00:00')))
    expect(await owners('bills', 'bill_no', 'BM')).toEqual(['C00000003'])
  })

  it('random re-imports of loans among customers, with ties: each loan and its schedules have the newest row’s customer alone', async () => {
    const tenant = (await newTenant('moves-random')).id
    await run(tenant, 'customers', write('c.csv', csvOf(customers(4))))
    const r = createRng(7, 1)
    const loansNos = ['R1', 'R2', 'R3']
    const days = ['2026-01-01 00:00:00', '2026-01-02 00:00:00', '2026-01-03 00:00:00']
    const expected = new Map<string, { owner: string; at: string }>()
    const scheduled = new Set<string>()
    for (let round = 0; round < 12; round++) {
      const picked = loansNos.filter(() => r.chance(0.6))
      if (!picked.length) continue
      const file = picked.map((no) => ({ no, owner: `C0000000${r.int(1, 4)}`, at: r.pick(days) }))
      const csv = `customer_no,loan_no,principal,outstanding,annual_rate,start_date,maturity_date,updated_at\n${file.map((f) => `${f.owner},${f.no},9000,4000,0.04,2025-01-01,2027-01-01,${f.at}`).join('\n')}\n`
      expect(await run(tenant, 'loans', write(`r${round}.csv`, csv))).toMatchObject({ status: 'imported' })
      for (const f of file) {
        const was = expected.get(f.no)
        if (!was || f.at >= was.at) expected.set(f.no, { owner: f.owner, at: f.at })
      }
      // A loan's schedules, imported once: they stay with whoever holds the loan.
      const unscheduled = picked.filter((no) => !scheduled.has(no))
      if (unscheduled.length) {
        const sched = `loan_no,installment_no,due_date,amount_due\n${unscheduled.map((no) => `${no},1,2026-02-01,500\n${no},2,2026-03-01,500`).join('\n')}\n`
        expect(await run(tenant, 'loan_schedules', write(`rs${round}.csv`, sched))).toMatchObject({ status: 'imported' })
        for (const no of unscheduled) scheduled.add(no)
      }
      const held = await rows<{ table: string; no: string; owner: string; n: number }>(
        `SELECT x.t AS table, x.no AS no, c.customer_no AS owner, count() AS n FROM (
           SELECT 'loans' AS t, loan_no AS no, customer_key FROM loans FINAL WHERE tenant_id = {t:UInt16}
           UNION ALL SELECT 'schedules' AS t, loan_no AS no, customer_key FROM loan_schedules FINAL WHERE tenant_id = {t:UInt16}) AS x
         INNER JOIN (SELECT customer_key, customer_no FROM customers FINAL WHERE tenant_id = {t:UInt16}) AS c USING customer_key
         GROUP BY table, no, owner ORDER BY table, no, owner`,
        { t: tenant },
      )
      const want = [
        ...[...expected].map(([no, e]) => ({ table: 'loans', no, owner: e.owner, n: 1 })),
        ...[...scheduled].map((no) => ({ table: 'schedules', no, owner: expected.get(no)!.owner, n: 2 })),
      ].sort((a, b) => `${a.table} ${a.no}`.localeCompare(`${b.table} ${b.no}`))
      expect(held.map((h) => ({ ...h, n: Number(h.n) })), `round ${round}: ${JSON.stringify(file)}`).toEqual(want)
    }
    expect(expected.size).toBe(3)
  })

  it('checks rules across columns', async () => {
    const r = await run(tenant, 'loans', write('l.csv', 'customer_no,loan_no,principal,outstanding,annual_rate,start_date,maturity_date\nC00000001,L9,100,100,4.35,2024-01-01,2023-01-01\nC00000001,L10,100,100,0.04,2024-01-01,2023-01-01\n'))
    expect(r.issues.map((i) => [i.field, i.message])).toEqual([
      ['row 1: annual_rate', 'expected a number between 0 and 1 (a fraction: 4.35% is 0.0435)'],
      ['row 2: maturity_date', 'before start_date'],
    ])
  })

  it('imports accounts, bills with their payer, products and consents', async () => {
    const accounts = 'customer_no,account_no,kind,balance,opened_at\nC00000001,A1,savings,"1,000.00",2020-01-01\nC00000001,A2,time_deposit,20000.10,2021-06-30\nC00000009,A3,current,-0.5,2022-01-01\n'
    const ar = await run(tenant, 'accounts', write('a.csv', accounts))
    expect(ar.issues.map((i) => i.field)).toEqual(['row 1: balance'])
    const fixed = accounts.replace('"1,000.00"', '1000.00')
    expect(await run(tenant, 'accounts', write('a.csv', fixed))).toMatchObject({ status: 'imported', rows: { inserted: 3 } })
    // C00000009 had no profile yet: it gets a key now, and keeps it when its profile arrives.
    const [key9] = await rows<{ k: number }>(`SELECT customer_key AS k FROM accounts FINAL WHERE tenant_id = {t:UInt16} AND account_no = 'A3'`, { t: tenant })
    await run(tenant, 'customers', write('c9.csv', csvOf([customer(9)])))
    const [profile9] = await rows<{ k: number }>(`SELECT customer_key AS k FROM customers FINAL WHERE tenant_id = {t:UInt16} AND customer_no = 'C00000009'`, { t: tenant })
    expect(profile9!.k).toBe(key9!.k)

    const bills = 'customer_no,bill_no,biller,amount,due_date,status,paid_at,payer_customer_no\nC00000002,B1,electricity,88.20,2024-05-01,paid,2024-04-28 20:00:00,C00000003\nC00000002,B2,water,12,2024-05-01,unpaid,,\n'
    expect(await run(tenant, 'bills', write('b.csv', bills))).toMatchObject({ status: 'imported', rows: { inserted: 2 } })
    const payers = await rows<{ bill_no: string; payer: number; payer_no: string }>(
      `SELECT b.bill_no AS bill_no, b.payer_key AS payer, c.customer_no AS payer_no FROM bills AS b FINAL
       LEFT JOIN (SELECT customer_key, customer_no FROM customers FINAL WHERE tenant_id = {t:UInt16}) AS c ON c.customer_key = b.payer_key
       WHERE b.tenant_id = {t:UInt16} ORDER BY bill_no`,
      { t: tenant },
    )
    expect(payers.map((p) => [p.bill_no, p.payer_no])).toEqual([
      ['B1', 'C00000003'],
      ['B2', ''],
    ])

    const products = [
      { product_id: 'wm-01', kind: 'wealth', name_zh: '稳健理财', risk_level: 2, min_amount: 10000, annual_rate: 0.031, valid_from: '2024-01-01', attributes: { term: '1y', channel: 'app' } },
      { product_id: 'dp-01', kind: 'deposit', name_zh: '定期存款', valid_from: '2024-01-01', valid_to: '2025-12-31' },
    ]
    expect(await run(tenant, 'products', write('p.ndjson', products.map((p) => JSON.stringify(p)).join('\n')))).toMatchObject({ status: 'imported' })
    const [p] = await rows(`SELECT attributes, toString(valid_to) AS valid_to FROM products FINAL WHERE tenant_id = {t:UInt16} AND product_id = 'wm-01'`, { t: tenant })
    expect(p).toEqual({ attributes: { term: '1y', channel: 'app' }, valid_to: '2299-12-31' })

    // Parquet attributes as a Map, or as JSON text: both land as the same Map.
    const pq = path.join(tmp, `${++n}-products.parquet`)
    await t.engine.db.system.command(
      `INSERT INTO FUNCTION file({out:String}, 'Parquet')
       SELECT 'wm-02' AS product_id, 'wealth' AS kind, '理财二号' AS name_zh, toDate32('2024-01-01') AS valid_from, map('term', '3y') AS attributes`,
      { out: pq },
    )
    const pqText = path.join(tmp, `${++n}-products.parquet`)
    await t.engine.db.system.command(
      `INSERT INTO FUNCTION file({out:String}, 'Parquet')
       SELECT 'wm-03' AS product_id, 'wealth' AS kind, '理财三号' AS name_zh, '2024-01-01' AS valid_from, '{"term":"5y"}' AS attributes`,
      { out: pqText },
    )
    for (const f of [pq, pqText]) expect((await run(tenant, 'products', f)).issues).toEqual([])
    const attrs = await rows(`SELECT product_id, attributes FROM products FINAL WHERE tenant_id = {t:UInt16} AND product_id IN ('wm-02', 'wm-03') ORDER BY product_id`, { t: tenant })
    expect(attrs).toEqual([
      { product_id: 'wm-02', attributes: { term: '3y' } },
      { product_id: 'wm-03', attributes: { term: '5y' } },
    ])

    const consents = 'customer_no,purpose,channel,granted,updated_at\nC00000001,marketing,sms,0,2024-05-01 10:00:00\nC00000001,marketing,push,true,2024-05-01 10:00:00\nC00000002,service,in_app,1,2024-05-02 09:00:00\n'
    expect(await run(tenant, 'consents', write('k.csv', consents))).toMatchObject({ status: 'imported', rows: { inserted: 3 } })
    expect(await count(`SELECT count() AS n FROM consents FINAL WHERE tenant_id = {t:UInt16} AND granted = 1 AND source = 'import'`, { t: tenant })).toBe(2)
  })
})

describe('over HTTP', () => {
  let a: Awaited<ReturnType<typeof tenantWithKeys>>
  let b: Awaited<ReturnType<typeof tenantWithKeys>>
  beforeAll(async () => {
    a = await tenantWithKeys(t, `http-a-${++n}`)
    b = await tenantWithKeys(t, `http-b-${++n}`)
  })
  const post = (url: string, key: string, contentType: string, payload: string | Buffer, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}`, 'content-type': contentType, ...headers }, payload })

  it('imports a CSV body with an admin key, into the key tenant only', async () => {
    const res = await post('/v1/import/customers', a.admin, 'text/csv', csvOf(customers(30)))
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ status: 'imported', rows: { inserted: 30 } })
    const mine = await t.engine.db.forTenant(a.tenant.id).query(`SELECT count() AS n FROM customers FINAL WHERE tenant_id = {tenant:UInt16}`)
    const theirs = await t.engine.db.forTenant(b.tenant.id).query(`SELECT count() AS n FROM customers FINAL WHERE tenant_id = {tenant:UInt16}`)
    expect([Number(mine[0]!.n), Number(theirs[0]!.n)]).toEqual([30, 0])
    // The same customer numbers in the other bank are other customers with their own keys.
    expect((await post('/v1/import/customers', b.admin, 'text/csv', csvOf(customers(30).map((c) => ({ ...c, branch_code: 'OTHER' }))))).statusCode).toBe(200)
    const [mineAfter] = await t.engine.db.forTenant(a.tenant.id).query(`SELECT countIf(branch_code = 'OTHER') AS n FROM customers FINAL WHERE tenant_id = {tenant:UInt16}`)
    expect(Number(mineAfter!.n)).toBe(0)
  })

  it('refuses write and read keys', async () => {
    for (const key of [a.write, a.read]) {
      const res = await post('/v1/import/customers', key, 'text/csv', csvOf(customers(2)))
      expect(res.statusCode).toBe(403)
      expect(res.json().error.code).toBe('SCOPE_FORBIDDEN')
    }
    expect((await app.inject({ method: 'POST', url: '/v1/import/customers', headers: { 'content-type': 'text/csv' }, payload: 'x' })).statusCode).toBe(401)
  })

  it('answers 400 VALIDATION_FAILED with the issues and the report for a rejected file', async () => {
    const res = await post('/v1/import/customers', a.admin, 'text/csv', 'customer_no,opened_at\nX1,yesterday\n')
    expect(res.statusCode).toBe(400)
    const body = res.json()
    expect(body.error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'row 1: opened_at', reason: 'invalid' }] })
    expect(body.report).toMatchObject({ status: 'rejected', rows: { read: 1, rejected: 1, inserted: 0 } })
  })

  it('takes Parquet as application/octet-stream, NDJSON gzipped, and skipInvalid', async () => {
    const parquet = fs.readFileSync(await parquetOf(customers(10, 100)))
    const res = await post('/v1/import/customers?format=parquet', a.admin, 'application/octet-stream', parquet)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ format: 'parquet', rows: { inserted: 10 } })
    const nd = ndjsonOf(customers(3, 200)) + '{"customer_no":"bad"}\n'
    const gz = await post('/v1/import/customers?skipInvalid=true', a.admin, 'application/x-ndjson', zlib.gzipSync(nd), { 'content-encoding': 'gzip' })
    expect(gz.statusCode, gz.body).toBe(200)
    expect(gz.json()).toMatchObject({ format: 'ndjson', rows: { read: 4, inserted: 3, rejected: 1 } })
  })

  it('answers 400 INVALID_ENCODING for a body labelled gzip that is not gzip (not 500)', async () => {
    for (const [enc, body] of [
      ['gzip', csvOf(customers(3))],
      ['gzip', Buffer.concat([zlib.gzipSync(csvOf(customers(3))).subarray(0, 30), Buffer.from('not the rest of it')])],
      ['deflate', 'plain text'],
    ] as const) {
      const res = await post('/v1/import/customers', a.admin, 'text/csv', body, { 'content-encoding': enc })
      expect(res.statusCode, res.body).toBe(400)
      expect(res.json().error.code).toBe('INVALID_ENCODING')
    }
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('qianmian-import-'))).toEqual([])
    // The JSON routes share the decoding: the same mislabel there is the same 400.
    const ev = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${a.write}`, 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: '{"batch":[]}' })
    expect(ev.statusCode, ev.body).toBe(400)
    expect(ev.json().error.code).toBe('INVALID_ENCODING')
  })

  it('reports dates the columns cannot hold as row errors, and stores the rest with skipInvalid', async () => {
    const cs = customers(6, 700)
    cs[1]!.opened_at = '0000-01-01 00:00:00'
    cs[2]!.birth_date = '1899-12-31'
    cs[3]!.opened_at = '2300-01-01 00:00:00'
    cs[4]!.birth_date = '1970-01-01' // holds: kept
    const rejected = await post('/v1/import/customers', a.admin, 'text/csv', csvOf(cs))
    expect(rejected.statusCode).toBe(400)
    expect(rejected.json().error.issues.map((i: { field: string }) => i.field)).toEqual(['row 2: opened_at', 'row 3: birth_date', 'row 4: opened_at'])
    const skipped = await post('/v1/import/customers?skipInvalid=true', a.admin, 'text/csv', csvOf(cs))
    expect(skipped.statusCode, skipped.body).toBe(200)
    expect(skipped.json()).toMatchObject({ rows: { read: 6, rejected: 3, inserted: 3 } })
  })

  it('answers 415 for a body that is no import format, and 413 beyond the limit', async () => {
    const json = await post('/v1/import/customers', a.admin, 'application/json', '{"customer_no":"x"}')
    expect(json.statusCode).toBe(415)
    expect(json.json().error.code).toBe('UNSUPPORTED_MEDIA_TYPE')
    const unknown = await post('/v1/import/customers', a.admin, 'application/octet-stream', 'customer_no\nx\n')
    expect(unknown.statusCode).toBe(415)
    expect((await post('/v1/import/customers', a.admin, 'text/csv; charset=GBK', 'customer_no\nx\n')).statusCode).toBe(415)
    const big = await post('/v1/import/customers', a.admin, 'text/csv', csvOf(customers(1000)))
    expect(big.statusCode).toBe(413)
    expect(big.json().error.code).toBe('PAYLOAD_TOO_LARGE')
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('qianmian-import-'))).toEqual([])
  })

  it('lists the kinds and their columns', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/import/kinds', headers: { authorization: `Bearer ${a.admin}` } })
    expect(res.statusCode).toBe(200)
    const loans = res.json().kinds.find((k: { kind: string }) => k.kind === 'loan_schedules')
    expect(loans.naturalKey).toEqual(['loan_no', 'installment_no'])
    const docs = await app.inject({ method: 'GET', url: '/docs' })
    expect(docs.statusCode).toBe(200)
    expect(Object.keys(docs.json().paths)).toEqual(expect.arrayContaining(['/v1/import/{kind}', '/v1/import/kinds']))
  })

  it('serves the CLI beside a running server (--server), for the key tenant only', async () => {
    const server = await app.listen({ host: '127.0.0.1', port: 0 })
    const lines: string[] = []
    const opts = { tenant: a.tenant.slug, progress: false, server }
    const report = await runImport('customers', write('c.csv', csvOf(customers(5, 300))), opts, { server, key: a.admin, tenant: a.tenant.slug }, (l) => lines.push(l))
    expect(report).toMatchObject({ status: 'imported', rows: { inserted: 5 } })
    expect(lines[0]).toMatch(/^Imported customers from CSV in [\d.]+ s: read 5, valid 5, rejected 0, inserted 5\.$/)
    const parquet = await parquetOf(customers(2, 400))
    expect(await runImport('customers', parquet, opts, { server, key: a.admin, tenant: a.tenant.slug }, () => {})).toMatchObject({ format: 'parquet', rows: { inserted: 2 } })
    await expect(runImport('customers', write('c.csv', csvOf(customers(1))), opts, { server, key: a.admin, tenant: b.tenant.slug }, () => {})).rejects.toMatchObject({ code: 'SCOPE_FORBIDDEN' })
    await expect(runImport('customers', write('c.csv', 'customer_no\nX\n'), opts, { server, key: a.admin, tenant: a.tenant.slug }, () => {})).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      issues: [{ field: 'header: opened_at' }],
    })
  })
})

describe('the engine path', () => {
  it('writes a whole import as one block: a failure half-way leaves nothing', async () => {
    const db = t.engine.db.system
    await db.command(`CREATE TABLE one_block_test (k UInt64) ENGINE = ReplacingMergeTree ORDER BY k`)
    const insert = (settings: string) => db.command(`INSERT INTO one_block_test SELECT throwIf(number = 4999, 'boom') + number FROM numbers(5000) SETTINGS max_block_size = 100, ${settings}`)
    await expect(insert('min_insert_block_size_rows = 100, min_insert_block_size_bytes = 0')).rejects.toThrow(/boom/)
    expect(await count(`SELECT count() AS n FROM one_block_test`)).toBeGreaterThan(0) // the default risk
    await db.command(`TRUNCATE TABLE one_block_test`)
    await expect(insert(ONE_BLOCK)).rejects.toThrow(/boom/)
    expect(await count(`SELECT count() AS n FROM one_block_test`)).toBe(0)
    await db.command(`DROP TABLE one_block_test SYNC`)
  })

  it('streams the file to the engine when it cannot read it (the server path)', async () => {
    const streaming = createImportService({ db: t.engine.db, identities: t.ingest.identities, pii, log: t.engine.log, options: { landing: 'stream' } })
    const tenant = (await newTenant()).id
    const r = await streaming.importFile({ tenantId: tenant, kind: 'customers', file: write('s.csv', csvOf(customers(120))), actor: 'test' })
    expect(r).toMatchObject({ status: 'imported', rows: { read: 120, inserted: 120 } })
    const nd = await streaming.importFile({ tenantId: tenant, kind: 'customers', file: write('s.ndjson', ndjsonOf(customers(5, 500))), actor: 'test' })
    expect(nd).toMatchObject({ status: 'imported', rows: { inserted: 5 } })
  })
})
