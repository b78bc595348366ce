import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createPii, type Pii } from '../core/pii.js'
import { createImportService } from '../ingest/import/import.service.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { createDigestMigration } from './digest.migration.js'

/**
 * Two banks whose customers were imported before per-bank keys (the same phone and identity
 * numbers in both, stored as the shared key's bare hex), re-keyed through the route after a run
 * that stopped: afterwards the raw values find the customers through every path that digests
 * them, the banks' digests differ, and no shared digest is left.
 */

// The test app's master secret (test/app.ts): the digests the app writes are this Pii's.
const pii = createPii('test-secret-test-secret-test-secret')
/** What the importer wrote before per-bank keys: the shared key's digest. */
const sharedKeyPii: Pii = { ...pii, hash: (kind, value, tenantId) => pii.digests(kind, value, tenantId)[1] }

const PHONE = '13812345678'
const ID = '11010519491231002X'
const csv = 'customer_no,gender,opened_at,phone,national_id\n' + `R1,female,2020-01-01 09:00:00,${PHONE},${ID}\n` + 'R2,male,2020-01-01 09:00:00,13912345678,110105194912310037\n'

let t: TestApp
let a: Awaited<ReturnType<typeof tenantWithKeys>>
let b: Awaited<ReturnType<typeof tenantWithKeys>>
let dir: string

const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const one = z.object({ v: z.string() })
const q = async (tenantId: number, sql: string, params: Record<string, unknown> = {}) => (await t.engine.db.forTenant(tenantId).query(sql, params, one)).map((r) => r.v)
const byPhone = (tenantId: number, phone: string) =>
  q(tenantId, `SELECT customer_no AS v FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND phone_hash = {d:String} ORDER BY v`, { d: pii.hash('phone', phone, tenantId) })
const digestsOf = (tenantId: number) =>
  q(
    tenantId,
    `SELECT concat(customer_no, ' ', phone_hash, ' ', ifNull(tr.value, '')) AS v FROM customers AS c FINAL
     LEFT JOIN (SELECT customer_key, value FROM customer_traits FINAL WHERE tenant_id = {tenant:UInt16} AND trait = 'national_id') AS tr ON tr.customer_key = c.customer_key
     WHERE c.tenant_id = {tenant:UInt16} ORDER BY v`,
  )
// Every row version, FINAL or not: a replaced version holding the shared digest counts too.
const bareHex = (tenantId: number) =>
  q(
    tenantId,
    `SELECT toString((SELECT count() FROM customers WHERE tenant_id = {tenant:UInt16} AND match(phone_hash, {v1:String}))
                   + (SELECT count() FROM customer_traits WHERE tenant_id = {tenant:UInt16} AND hashed = 1 AND match(value, {v1:String}))) AS v`,
    { v1: '^[0-9a-f]{64}$' },
  )

beforeAll(async () => {
  t = await openTestApp()
  a = await tenantWithKeys(t, 'rekey-bank-a')
  b = await tenantWithKeys(t, 'rekey-bank-b')
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-rekey-'))
  fs.writeFileSync(path.join(dir, 'customers.csv'), csv)
  const before = createImportService({ db: t.engine.db, identities: t.ingest.identities, pii: sharedKeyPii, log: t.engine.log })
  for (const bank of [a, b]) {
    const r = await before.importFile({ tenantId: bank.tenant.id, kind: 'customers', file: path.join(dir, 'customers.csv'), actor: 'test' })
    expect(r.rows.inserted).toBe(2)
  }
}, 120_000)
afterAll(async () => {
  await t?.close()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

describe('re-keying the digests of two banks imported before per-bank keys', () => {
  it('before: the banks share digests and the raw number finds nobody', async () => {
    const [da, db] = [await digestsOf(a.tenant.id), await digestsOf(b.tenant.id)]
    expect(da).toEqual(db)
    expect(da[0]).toBe(`R1 ${pii.digests('phone', PHONE, 1)[1]} ${pii.digests('national_id', ID, 1)[1]}`)
    expect(await byPhone(a.tenant.id, PHONE)).toEqual([])
  })

  it('a run stopped after its first page is completed through the route; the banks are re-keyed apart', async () => {
    let pages = 0
    const stopping = createDigestMigration({ db: t.engine.db, pii, pageRows: 1, onPage: () => { if (++pages === 1) throw new Error('stopped') } })
    await expect(stopping.rekey(a.tenant.id)).rejects.toThrow('stopped')
    const half = await t.app.inject({ url: '/v1/tenant/digests', headers: auth(a.admin) })
    expect(half.json()).toMatchObject({ sharedKey: { customersPhone: 1, traits: 2 }, bankKey: { customersPhone: 1, traits: 0 } })

    const run = await t.app.inject({ method: 'POST', url: '/v1/tenant/digests/rekey', headers: auth(a.admin) })
    expect(run.statusCode, run.body).toBe(200)
    expect(run.json()).toMatchObject({ converted: { customersPhone: 1, traits: 2 }, after: { sharedKey: { customersPhone: 0, traits: 0 }, bankKey: { customersPhone: 2, traits: 2 } } })
    expect((await t.app.inject({ method: 'POST', url: '/v1/tenant/digests/rekey', headers: auth(b.admin) })).json()).toMatchObject({ converted: { customersPhone: 2, traits: 2 } })

    expect(await bareHex(a.tenant.id)).toEqual(['0'])
    expect(await bareHex(b.tenant.id)).toEqual(['0'])
    for (const bank of [a, b]) {
      const id = bank.tenant.id
      expect((await digestsOf(id))[0]).toBe(`R1 ${pii.hash('phone', PHONE, id)} ${pii.hash('national_id', ID, id)}`)
    }
    expect(pii.hash('phone', PHONE, a.tenant.id)).not.toBe(pii.hash('phone', PHONE, b.tenant.id))
  })

  it('afterwards the raw values find the customers: a lookup, an identify, a re-import, an erasure', async () => {
    const id = a.tenant.id
    expect(await byPhone(id, PHONE)).toEqual(['R1'])
    expect(await byPhone(b.tenant.id, PHONE)).toEqual(['R1'])

    // The app identifies another customer with the same number: its digest is R1's.
    const ident = await t.app.inject({ method: 'POST', url: '/v1/identify', headers: auth(a.write), payload: { userId: 'R9', traits: { tel: PHONE }, messageId: 'rekey-identify' } })
    expect(ident.statusCode, ident.body).toBe(200)
    const sharing = await q(
      id,
      `SELECT c.customer_no AS v FROM customers AS c FINAL
       WHERE c.tenant_id = {tenant:UInt16} AND c.phone_hash IN (
         SELECT value FROM customer_traits FINAL WHERE tenant_id = {tenant:UInt16} AND trait = 'tel' AND hashed = 1
           AND customer_key IN (SELECT customer_key FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = 'R9'))`,
    )
    expect(sharing).toEqual(['R1'])

    // The bank re-imports the same file: every digest it writes is the one the job left.
    const converted = await digestsOf(id)
    const again = await t.app.inject({ method: 'POST', url: '/v1/import/customers', headers: { ...auth(a.admin), 'content-type': 'text/csv' }, payload: csv })
    expect(again.statusCode, again.body).toBe(200)
    expect(await digestsOf(id)).toEqual(converted)

    // An erasure of R2 drops its late events (the tombstones' digests are under the bank key too).
    const erased = await t.app.inject({ method: 'POST', url: '/v1/customers/R2/erasure', headers: auth(a.admin), payload: { reason: 'PIPL art. 47 request' } })
    expect(erased.statusCode, erased.body).toBe(202)
    await t.privacy.erasure.idle()
    const late = await t.app.inject({ method: 'POST', url: '/v1/track', headers: auth(a.write), payload: { userId: 'R2', event: 'late', messageId: 'rekey-late' } })
    expect(late.statusCode, late.body).toBe(200)
    expect(await q(id, `SELECT message_id AS v FROM events WHERE tenant_id = {tenant:UInt16} AND message_id = 'rekey-late'`)).toEqual([])
    expect(await byPhone(id, '13912345678')).toEqual([])
  }, 120_000)

  it('a second run changes nothing', async () => {
    const stored = async () => (await t.engine.db.system.query(`SELECT toString((SELECT count() FROM customers) + (SELECT count() FROM customer_traits)) AS v`, {}, one))[0]!.v
    const n = await stored()
    const run = await t.app.inject({ method: 'POST', url: '/v1/tenant/digests/rekey', headers: auth(a.admin) })
    expect(run.json()).toMatchObject({ converted: { customersPhone: 0, traits: 0 }, pages: 0, before: { sharedKey: { customersPhone: 0, traits: 0 } } })
    expect(await stored()).toBe(n)
  })
})
