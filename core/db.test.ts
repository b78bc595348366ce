import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'

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
})
