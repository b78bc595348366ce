import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { insertTenantsTsvEncoded } from './db.js'
import { tsvArrayString, tsvField } from './tsv.js'

describe('TenantDb on the engine', () => {
  let engine: TestEngine
  beforeAll(async () => {
    engine = await openTestEngine()
    for (const tenant of [1, 2]) {
      await engine.db.forTenant(tenant).insert(
        'products',
        [1, 2, 3].slice(0, tenant + 1).map((i) => ({
          tenant_id: 999, // ignored: the scope stamps its own tenant
          product_id: `p${i}`,
          kind: 'deposit',
          name_zh: '存款',
          name_en: 'Deposit',
          category: 'deposit',
          valid_from: '2026-01-01',
          valid_to: '2027-01-01',
          attributes: {},
          status: 'active',
          updated_at: '2026-11-01 00:00:00.000',
        })),
      )
    }
  })
  afterAll(async () => engine?.close())

  it('stamps tenant_id on insert and sees only its own rows', async () => {
    const q = 'SELECT product_id FROM products FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY product_id'
    expect((await engine.db.forTenant(1).query<{ product_id: string }>(q)).map((r) => r.product_id)).toEqual(['p1', 'p2'])
    expect((await engine.db.forTenant(2).query<{ product_id: string }>(q)).map((r) => r.product_id)).toEqual(['p1', 'p2', 'p3'])
    const all = await engine.db.system.query<{ t: number; n: string }>('SELECT tenant_id AS t, count() AS n FROM products GROUP BY t ORDER BY t')
    expect(all.map((r) => [Number(r.t), Number(r.n)])).toEqual([
      [1, 2],
      [2, 3],
    ])
  })

  it('binds values as parameters: an injection attempt is just a value', async () => {
    const rows = await engine.db
      .forTenant(1)
      .query('SELECT product_id FROM products WHERE tenant_id = {tenant:UInt16} AND product_id = {id:String}', {
        id: "p1' OR 1=1 --",
      })
    expect(rows).toEqual([])
  })

  it('refuses an unscoped query before it reaches the engine', async () => {
    await expect(engine.db.forTenant(1).query('SELECT count() FROM products')).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
    await expect(engine.db.forTenant(1).query('SELECT 1', { tenant: 2 })).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
  })

  it('inserts encoded rows of its own tenant, and refuses a row of another or a body cut short', async () => {
    const cols = ['customer_key', 'served_at', 'screen', 'experiment', 'variant', 'holdout', 'elder', 'model_build', 'modules', 'items']
    const awkward = ["it's", 'tab\there', 'back\\slash', '中文']
    const row = (tenant: number, key: number, s: string) => `${tenant}\t${key}\t1767225600.000\t${tsvField(s)}\t\t\t0\t1\t7\t[${awkward.map(tsvArrayString).join(',')}]\t[${tsvArrayString(s)}]\n`
    await engine.db.forTenant(2).insertTsvEncoded('layout_exposures', cols, Buffer.from(row(2, 41, awkward[1]!) + row(2, 42, awkward[0]!)))
    const back = await engine.db.system.query<{ t: number; k: number; screen: string; modules: string[]; items: string[]; build: string }>(
      'SELECT tenant_id AS t, customer_key AS k, screen, modules, items, toString(model_build) AS build FROM layout_exposures WHERE customer_key IN (41, 42) ORDER BY k',
    )
    expect(back).toEqual([
      { t: 2, k: 41, screen: awkward[1], modules: awkward, items: [awkward[1]], build: '7' },
      { t: 2, k: 42, screen: awkward[0], modules: awkward, items: [awkward[0]], build: '7' },
    ])
    for (const bad of [
      row(2, 43, 'home') + row(1, 44, 'home'), // a row of tenant 1 in tenant 2's body
      row(2, 43, 'home') + row(21, 44, 'home'), // 21 starts with 2, but is not 2
      row(2, 43, 'home').slice(0, -1), // no newline at the end
      row(2, 43, 'home').replace('\n', '\r\n'),
    ]) {
      await expect(engine.db.forTenant(2).insertTsvEncoded('layout_exposures', cols, Buffer.from(bad))).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
    }
    await expect(engine.db.forTenant(2).insertTsvEncoded('layout_exposures', ['tenant_id'], Buffer.from('2\n'))).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
    const stray = await engine.db.system.query<{ n: string }>('SELECT count() AS n FROM layout_exposures WHERE customer_key IN (43, 44)')
    expect(Number(stray[0]!.n)).toBe(0)
  })

  it('inserts several tenants\' encoded rows in one insert, each body checked against its own tenant', async () => {
    const cols = ['customer_key', 'served_at', 'screen', 'experiment', 'variant', 'holdout', 'elder', 'model_build', 'modules', 'items']
    const row = (tenant: number, key: number) => `${tenant}\t${key}\t1767225600.000\thome\t\t\t0\t0\t7\t['m']\t['i']\n`
    const keys = async () =>
      (await engine.db.system.query<{ t: number; k: number }>('SELECT tenant_id AS t, customer_key AS k FROM layout_exposures WHERE customer_key BETWEEN 51 AND 59 ORDER BY k')).map((r) => [r.t, r.k])
    // A body holding a row of another tenant refuses the whole insert: nothing is written.
    for (const bad of [row(3, 51) + row(2, 52), row(3, 51).slice(0, -1)]) {
      await expect(
        insertTenantsTsvEncoded(engine.db, 'layout_exposures', cols, [
          { tenantId: 2, body: Buffer.from(row(2, 53)) },
          { tenantId: 3, body: Buffer.from(bad) },
        ]),
      ).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
    }
    await expect(insertTenantsTsvEncoded(engine.db, 'layout_exposures', ['tenant_id'], [{ tenantId: 2, body: Buffer.from('2\n') }])).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
    expect(await keys()).toEqual([])
    await insertTenantsTsvEncoded(engine.db, 'layout_exposures', cols, [
      { tenantId: 2, body: Buffer.from(row(2, 54) + row(2, 55)) },
      { tenantId: 3, body: Buffer.alloc(0) },
      { tenantId: 4, body: Buffer.from(row(4, 56)) },
    ])
    expect(await keys()).toEqual([
      [2, 54],
      [2, 55],
      [4, 56],
    ])
  })
})
