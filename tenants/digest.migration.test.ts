import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPii } from '../core/pii.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createDigestMigration, CUSTOMER_COLUMNS, TRAIT_COLUMNS } from './digest.migration.js'

let engine: TestEngine
beforeAll(async () => {
  engine = await openTestEngine()
})
afterAll(async () => engine?.close())

describe('re-keying digests made under the shared key', () => {
  it('copies every column of customers (a column added later must be added to the list)', async () => {
    const cols = await engine.db.system.query<{ name: string }>(`SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'customers' ORDER BY position`)
    expect(cols.map((c) => c.name)).toEqual([...CUSTOMER_COLUMNS])
  })

  it('copies every column of customer_traits', async () => {
    const cols = await engine.db.system.query<{ name: string }>(`SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'customer_traits' ORDER BY position`)
    expect(cols.map((c) => c.name)).toEqual([...TRAIT_COLUMNS])
  })

  it('are re-keyed bank by bank, resumably: a stopped run is completed by the next, a second one changes nothing', async () => {
    const pii = createPii('m'.repeat(40))
    const PHONE = '13812345678'
    const ID = '11010519491231002X'
    const at = '2026-11-01 00:00:00.000'
    const older = '2026-10-01 00:00:00.000'
    const v1 = (kind: 'phone' | 'national_id', value: string) => pii.digests(kind, value, 1)[1]
    for (const t of [1, 2]) {
      const db = engine.db.forTenant(t)
      const base = { gender: 'unknown', region_code: 'r', branch_code: 'b', occupation: 'o', name_masked: '张*', opened_at: at, updated_at: at }
      // Customers 1..7 share the raw phone across both banks; customer 1 also has an older
      // version under another number; 8 is already re-keyed, 9 has no phone, 10 holds neither form.
      // Separate inserts: one insert's versions of a row would be collapsed as it is written.
      await db.insert('customers', [{ ...base, customer_key: 1, customer_no: 'C1', phone_hash: v1('phone', '13900000000'), updated_at: older }])
      await db.insert('customers', [
        ...[1, 2, 3, 4, 5, 6, 7].map((k) => ({ ...base, customer_key: k, customer_no: `C${k}`, branch_code: `b${k}`, phone_hash: v1('phone', k === 1 ? PHONE : `1380000000${k}`) })),
        { ...base, customer_key: 8, customer_no: 'C8', phone_hash: pii.hash('phone', '13700000008', t) },
        { ...base, customer_key: 9, customer_no: 'C9', phone_hash: '' },
        { ...base, customer_key: 10, customer_no: 'C10', phone_hash: 'not-a-digest' },
      ])
      // Customer 2 has more digested traits than a page holds (the page that is one customer's).
      await db.insert('customer_traits', [
        { customer_key: 1, trait: 'national_id', value: v1('national_id', ID), hashed: 1, updated_at: at },
        { customer_key: 1, trait: 'nickname', value: 'x', hashed: 0, updated_at: at },
        ...['a', 'b', 'c', 'd', 'e'].map((x, i) => ({ customer_key: 2, trait: `tel_${x}`, value: v1('phone', `1360000000${i}`), hashed: 1, updated_at: at })),
        { customer_key: 3, trait: 'phone', value: v1('phone', PHONE), hashed: 1, updated_at: at },
        { customer_key: 4, trait: 'national_id', value: pii.hash('national_id', ID, t), hashed: 1, updated_at: at },
      ])
    }
    const rowsOf = async (t: number, table: string, cols: string) =>
      engine.db.forTenant(t).query<Record<string, string | number>>(`SELECT ${cols} FROM ${table} FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY customer_key, ${table === 'customers' ? 'customer_no' : 'trait'}`)
    const profileBefore = await rowsOf(1, 'customers', 'customer_key, customer_no, branch_code, name_masked, opened_at, deleted')

    let pages = 0
    const stopping = createDigestMigration({
      db: engine.db,
      pii,
      pageRows: 3,
      onPage: () => {
        if (++pages === 1) throw new Error('stopped after the first page')
      },
    })
    const m = createDigestMigration({ db: engine.db, pii, pageRows: 3 })
    const start = await m.status(1)
    expect(start).toEqual({ sharedKey: { customersPhone: 7, traits: 7 }, bankKey: { customersPhone: 1, traits: 1 }, unrecognized: { customersPhone: 1, traits: 0 } })
    await expect(stopping.rekey(1)).rejects.toThrow('stopped after the first page')
    const half = await m.status(1)
    // The first page (customers 1 to 3) was full, so its last customer waited: 1 and 2 are done.
    expect(half.sharedKey).toEqual({ customersPhone: 5, traits: 7 })
    expect(half.bankKey).toEqual({ customersPhone: 3, traits: 1 })

    const run = await m.rekey(1)
    expect(run.before).toEqual(half)
    expect(run.converted).toEqual({ customersPhone: 5, traits: 7 })
    expect(run.after).toEqual({ sharedKey: { customersPhone: 0, traits: 0 }, bankKey: { customersPhone: 8, traits: 8 }, unrecognized: { customersPhone: 1, traits: 0 } })
    expect(run.pages).toBeGreaterThanOrEqual(4)

    // Each digest is what the bank's key gives the raw value now; nothing else in the rows moved.
    const phones = await rowsOf(1, 'customers', 'customer_key, phone_hash')
    expect(phones.find((r) => r.customer_key === 1)!.phone_hash).toBe(pii.hash('phone', PHONE, 1))
    expect(phones.find((r) => r.customer_key === 5)!.phone_hash).toBe(pii.hash('phone', '13800000005', 1))
    expect(await rowsOf(1, 'customers', 'customer_key, customer_no, branch_code, name_masked, opened_at, deleted')).toEqual(profileBefore)
    const traits = await rowsOf(1, 'customer_traits', 'customer_key, trait, value, hashed')
    expect(traits.filter((r) => r.customer_key === 2).map((r) => r.value)).toEqual([0, 1, 2, 3, 4].map((i) => pii.hash('phone', `1360000000${i}`, 1)))
    expect(traits.find((r) => r.trait === 'national_id' && r.customer_key === 1)!.value).toBe(pii.hash('national_id', ID, 1))
    expect(traits.find((r) => r.trait === 'nickname')).toMatchObject({ value: 'x', hashed: 0 })
    // The phone trait of customer 3 and the profile of customer 1 hold the same number: still equal.
    expect(traits.find((r) => r.trait === 'phone')!.value).toBe(phones.find((r) => r.customer_key === 1)!.phone_hash)

    // No version-1 digest is left, not even in a replaced row version (the stopped run left its
    // own, and customer 1's older version was never current) read without FINAL.
    const bare = async (t: number) =>
      engine.db.forTenant(t).query<{ n: string }>(
        `SELECT toString((SELECT count() FROM customers WHERE tenant_id = {tenant:UInt16} AND match(phone_hash, {v1:String}))
                       + (SELECT count() FROM customer_traits WHERE tenant_id = {tenant:UInt16} AND hashed = 1 AND match(value, {v1:String}))) AS n`,
        { v1: '^[0-9a-f]{64}$' },
      )
    expect((await bare(1))[0]!.n).toBe('0')
    expect(Number((await bare(2))[0]!.n)).toBeGreaterThan(0)

    // The other bank is untouched until it runs; then equal numbers have unrelated digests.
    expect((await m.status(2)).sharedKey).toEqual({ customersPhone: 7, traits: 7 })
    expect((await m.rekey(2)).after.sharedKey).toEqual({ customersPhone: 0, traits: 0 })
    const phones2 = await rowsOf(2, 'customers', 'customer_key, phone_hash')
    expect(phones2.find((r) => r.customer_key === 1)!.phone_hash).toBe(pii.hash('phone', PHONE, 2))
    expect(phones2.find((r) => r.customer_key === 1)!.phone_hash).not.toBe(phones.find((r) => r.customer_key === 1)!.phone_hash)

    // A second run finds nothing and writes nothing.
    const stored = async () => (await engine.db.system.query<{ n: string }>(`SELECT toString((SELECT count() FROM customers) + (SELECT count() FROM customer_traits)) AS n`))[0]!.n
    const n = await stored()
    expect(await m.rekey(1)).toMatchObject({ converted: { customersPhone: 0, traits: 0 }, pages: 0 })
    expect(await stored()).toBe(n)

    // The converted row is one millisecond newer than the one it replaced: a later import still wins.
    await engine.db.forTenant(1).insert('customers', [
      { customer_key: 5, customer_no: 'C5', gender: 'male', region_code: 'r', branch_code: 'new', occupation: 'o', phone_hash: pii.hash('phone', '13811111111', 1), name_masked: '', opened_at: at, updated_at: '2026-11-01 00:00:01.000' },
    ])
    expect((await rowsOf(1, 'customers', 'customer_key, branch_code')).find((r) => r.customer_key === 5)!.branch_code).toBe('new')
  })

  it('counts an emptied digested trait (a re-import without the national id) as none, not as an unrecognized value', async () => {
    const pii = createPii('m'.repeat(40))
    const db = engine.db.forTenant(3)
    await db.insert('customer_traits', [{ customer_key: 1, trait: 'national_id', value: pii.hash('national_id', '11010519491231002X', 3), hashed: 1, updated_at: '2026-01-01 00:00:00.000' }])
    await db.insert('customer_traits', [{ customer_key: 1, trait: 'national_id', value: '', hashed: 1, updated_at: '2026-02-01 00:00:00.000' }])
    await db.insert('customer_traits', [{ customer_key: 2, trait: 'phone', value: 'not-a-digest', hashed: 1, updated_at: '2026-02-01 00:00:00.000' }])
    const m = createDigestMigration({ db: engine.db, pii })
    expect(await m.status(3)).toEqual({ sharedKey: { customersPhone: 0, traits: 0 }, bankKey: { customersPhone: 0, traits: 0 }, unrecognized: { customersPhone: 0, traits: 1 } })
    expect((await m.rekey(3)).converted).toEqual({ customersPhone: 0, traits: 0 })
  })
})
