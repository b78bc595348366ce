import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPii } from '../core/pii.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createDigestMigration, CUSTOMER_COLUMNS } from './digest.migration.js'

let engine: TestEngine
beforeAll(async () => {
  engine = await openTestEngine()
})
afterAll(async () => engine?.close())

describe('digests under the shared key', () => {
  it('copies every column of customers (a column added later must be added to the list)', async () => {
    const cols = await engine.db.system.query<{ name: string }>(`SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'customers' ORDER BY position`)
    expect(cols.map((c) => c.name)).toEqual([...CUSTOMER_COLUMNS])
  })

  it('are counted, and forgotten bank by bank while the bank-key ones stay; a second run has nothing to do', async () => {
    const pii = createPii('m'.repeat(40))
    const at = '2026-11-01 00:00:00.000'
    for (const t of [1, 2]) {
      const db = engine.db.forTenant(t)
      const base = { gender: 'unknown', region_code: 'r', branch_code: 'b', occupation: 'o', name_masked: '', opened_at: at, updated_at: at }
      await db.insert('customers', [
        { ...base, customer_key: 1, customer_no: 'A', phone_hash: pii.digests('phone', '13812345678', t)[1] },
        { ...base, customer_key: 2, customer_no: 'B', phone_hash: pii.hash('phone', '13912345678', t) },
      ])
      await db.insert('customer_traits', [
        { customer_key: 1, trait: 'national_id', value: pii.digests('national_id', '11010519491231002X', t)[1], hashed: 1, updated_at: at },
        { customer_key: 2, trait: 'national_id', value: pii.hash('national_id', '11010519491231002X', t), hashed: 1, updated_at: at },
        { customer_key: 2, trait: 'nickname', value: 'x', hashed: 0, updated_at: at },
      ])
    }
    const m = createDigestMigration({ db: engine.db })
    expect(await m.status(1)).toEqual({ sharedKey: { customersPhone: 1, traits: 1 }, bankKey: { customersPhone: 1, traits: 1 } })
    expect((await m.forgetShared(1)).sharedKey).toEqual({ customersPhone: 1, traits: 1 })
    expect(await m.status(1)).toEqual({ sharedKey: { customersPhone: 0, traits: 0 }, bankKey: { customersPhone: 1, traits: 1 } })
    const rows = await engine.db.forTenant(1).query<{ no: string; h: string }>(`SELECT customer_no AS no, phone_hash AS h FROM customers FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY no`)
    expect(rows.map((r) => [r.no, r.h.slice(0, 3)])).toEqual([['A', ''], ['B', 'k2:']])
    // The other bank is untouched.
    expect((await m.status(2)).sharedKey).toEqual({ customersPhone: 1, traits: 1 })
    expect((await m.forgetShared(1)).sharedKey).toEqual({ customersPhone: 0, traits: 0 })
  })
})
