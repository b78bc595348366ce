import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { TENANT_TABLES } from '../core/db.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { predicate } from './erasure.job.js'
import { PLACES, REGISTRY_TABLES, placeOrder } from './erasure.places.js'

/**
 * The erasure's list of places cannot fall behind the schema: every tenant table of the query
 * layer, and every table the migrations made with a tenant_id, has an entry; and every entry
 * names columns its table has.
 */

let e: TestEngine
beforeAll(async () => {
  e = await openTestEngine()
}, 60_000)
afterAll(async () => e?.close())

const columnsOf = async (table: string) =>
  (await e.db.system.query('SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}', { t: table }, z.object({ name: z.string() }))).map((r) => r.name)

describe('erasure places', () => {
  it('finds a customer in the dedup key index by key, not by reading it whole (62 s at 26M ids by message id)', async () => {
    const where = `tenant_id = {tenant:UInt16} AND ${predicate('ingest_dedup_digests', PLACES.ingest_dedup_digests)}`
    const plan = await e.db.system.query<{ explain: string }>(`EXPLAIN actions = 1 SELECT digest FROM ingest_dedup_digests WHERE ${where}`, {
      tenant: 1,
      ks: [7],
      nos: ['C7'],
      anons: ['a7'],
    })
    expect(plan.map((r) => r.explain).join('\n')).toMatch(/ReadType: GetKeys/)
  })

  it('maps every tenant table of the query layer, and nothing else', () => {
    expect(Object.keys(PLACES).sort()).toEqual([...TENANT_TABLES].sort())
  })

  it('maps every table of the migrated schema that holds a tenant_id (the registry tables aside)', async () => {
    const rows = await e.db.system.query(
      `SELECT DISTINCT table FROM system.columns WHERE database = currentDatabase() AND name = 'tenant_id'
       AND table IN (SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT IN ('MaterializedView', 'View'))`,
      {},
      z.object({ table: z.string() }),
    )
    const missing = rows.map((r) => r.table).filter((t) => !(t in REGISTRY_TABLES) && !(t in PLACES))
    expect(missing).toEqual([])
  })

  it('names only columns the tables have', async () => {
    for (const table of placeOrder()) {
      const cols = await columnsOf(table)
      const p = PLACES[table]
      if (p.by === 'key') expect(cols, table).toContain('customer_key')
      if (p.by === 'keyAndRef') expect(cols, table).toEqual(expect.arrayContaining(['customer_key', p.ref]))
      if (p.by === 'keyPair') for (const c of p.columns) expect(cols, table).toContain(c)
      if (p.by === 'bitmap') expect(cols, table).toContain('keys')
      if (p.by === 'dedupKeys') expect(cols, table).toEqual(expect.arrayContaining(['digest', 'message_id']))
      if (p.by === 'digest') expect(cols, table).toEqual(expect.arrayContaining(['customer_no', 'object_id', 'object_kind']))
    }
  })

  it('runs the dedup index before the events it is found from, and the audit trail last', () => {
    const order = placeOrder()
    expect(order.indexOf('ingest_dedup')).toBeLessThan(order.indexOf('events'))
    expect(order.indexOf('ingest_dedup_digests')).toBeLessThan(order.indexOf('events'))
    expect(order[order.length - 1]).toBe('audit_log')
  })
})
