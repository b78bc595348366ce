import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { LEGACY_DIGEST_PATTERN, TENANT_DIGEST_PREFIX, type Pii } from '../core/pii.js'

/**
 * Re-keying: digests made before per-bank keys (version 1, bare hex under the shared master
 * secret) link a customer across banks. The bank's digest is taken over the version-1 digest
 * (core/pii.ts), so a stored one converts without the value it was made from. Where they live:
 * customers.phone_hash and the digested traits (customer_traits, hashed = 1); nothing else held
 * version-1 digests (events, tombstones, erasure records and the audit trail only ever held the
 * bank's).
 *
 * Both tables are ReplacingMergeTree: a page of rows still in the old form gets a newer version
 * (updated_at one millisecond later, so a later import or identify still wins) with the bank's
 * digest; once a table is through, the versions replaced are deleted, so a read without FINAL
 * finds no shared digest either. Each page selects only rows in the old form, so a run that stops
 * is completed by the next (which also deletes what the stopped one replaced), a second run has
 * nothing to do, and two at once write the same versions.
 */
const counts = z.object({ customersPhone: z.number(), traits: z.number() })
export const digestStatusView = z.object({
  sharedKey: counts.describe('version-1 digests (bare hex, under the shared master secret): the re-keying job converts them'),
  bankKey: counts.describe("digests under this bank's own key"),
  unrecognized: counts.describe('digest columns holding neither form: the job leaves them as they are'),
})
export type DigestStatus = z.infer<typeof digestStatusView>
export const rekeyReportView = z.object({
  before: digestStatusView,
  after: digestStatusView,
  converted: counts.describe('row versions written with the bank digest in this run'),
  pages: z.number(),
})
export type RekeyReport = z.infer<typeof rekeyReportView>

/** Every column of customers (sql/002): names from this list only. */
export const CUSTOMER_COLUMNS = [
  'tenant_id', 'customer_key', 'customer_no', 'gender', 'birth_date', 'region_code', 'branch_code', 'occupation',
  'phone_hash', 'name_masked', 'language', 'elder_mode', 'opened_at', 'updated_at', 'deleted',
] as const
/** Every column of customer_traits (sql/005). */
export const TRAIT_COLUMNS = ['tenant_id', 'customer_key', 'trait', 'value', 'hashed', 'updated_at'] as const

interface Place {
  table: 'customers' | 'customer_traits'
  columns: readonly string[]
  /** The column holding the digest, and what else makes a row one (rows where it is a digest). */
  column: 'phone_hash' | 'value'
  digestRows: string
  counted: keyof DigestStatus['sharedKey']
}
const PLACES: readonly Place[] = [
  { table: 'customers', columns: CUSTOMER_COLUMNS, column: 'phone_hash', digestRows: `phone_hash != ''`, counted: 'customersPhone' },
  // An empty digested trait is none (an import without the national id empties it), as an empty phone_hash is.
  { table: 'customer_traits', columns: TRAIT_COLUMNS, column: 'value', digestRows: `hashed = 1 AND value != ''`, counted: 'traits' },
]
const OLD = (p: Place) => `${p.digestRows} AND match(${p.column}, {v1:String})`
const NEW = (p: Place) => `${p.digestRows} AND startsWith(${p.column}, {prefix:String})`
const page = z.object({ customer_key: z.coerce.number(), digest: z.string() })

export interface DigestMigration {
  status(tenantId: number): Promise<DigestStatus>
  /** Converts the bank's version-1 digests to its own, page by page; answers the counts before and after. */
  rekey(tenantId: number): Promise<RekeyReport>
}

export interface DigestMigrationDeps {
  db: Db
  pii: Pii
  /** Rows a page converts (the page's digests travel as bound arrays: keep them well under a server's URL limit). */
  pageRows?: number
  /** Told after every page (progress; a test stops a run here). */
  onPage?: (p: { tenantId: number; table: Place['table']; rows: number }) => void | Promise<void>
}

export function createDigestMigration(deps: DigestMigrationDeps): DigestMigration {
  const pageRows = deps.pageRows ?? 2000
  const fixed = { prefix: TENANT_DIGEST_PREFIX, v1: LEGACY_DIGEST_PATTERN }

  async function status(tenantId: number): Promise<DigestStatus> {
    const db = deps.db.forTenant(tenantId)
    const out: DigestStatus = { sharedKey: { customersPhone: 0, traits: 0 }, bankKey: { customersPhone: 0, traits: 0 }, unrecognized: { customersPhone: 0, traits: 0 } }
    for (const p of PLACES) {
      const [r] = await db.query(
        `SELECT toString(countIf(${OLD(p)})) AS shared, toString(countIf(${NEW(p)})) AS bank, toString(countIf(${p.digestRows})) AS all
         FROM ${p.table} FINAL WHERE tenant_id = {tenant:UInt16}`,
        fixed,
        z.object({ shared: z.coerce.number(), bank: z.coerce.number(), all: z.coerce.number() }),
      )
      out.sharedKey[p.counted] = r?.shared ?? 0
      out.bankKey[p.counted] = r?.bank ?? 0
      out.unrecognized[p.counted] = (r?.all ?? 0) - (r?.shared ?? 0) - (r?.bank ?? 0)
    }
    return out
  }

  /** One place, page by page in key order; answers the row versions written and the pages. */
  async function convert(db: TenantDb, p: Place): Promise<{ rows: number; pages: number }> {
    let written = 0
    let pages = 0
    let after = -1
    for (;;) {
      const rows = await db.query(
        `SELECT customer_key, ${p.column} AS digest FROM ${p.table} FINAL
         WHERE tenant_id = {tenant:UInt16} AND customer_key > {after:Int64} AND ${OLD(p)}
         ORDER BY customer_key LIMIT {n:UInt32}`,
        { ...fixed, after, n: pageRows },
        page,
      )
      if (!rows.length) break
      // A full page may end inside its last customer: that customer waits for the next page, so
      // the range converted below holds every old row of its customers. A page that is all one
      // customer's converts those rows and reads that customer again.
      const first = rows[0]!.customer_key
      const last = rows[rows.length - 1]!.customer_key
      const full = rows.length === pageRows
      const whole = full && first !== last ? rows.filter((r) => r.customer_key < last) : rows
      const hi = whole[whole.length - 1]!.customer_key
      const from = [...new Set(whole.map((r) => r.digest))]
      const params = { ...fixed, lo: first, hi, from, to: from.map((d) => deps.pii.rekey(d, db.tenantId)) }
      // No aliases in the SELECT: one named like the column would be what the WHERE reads. The
      // digest is mapped by itself (re-keying is a function of the old digest alone).
      const select = p.columns.map((c) =>
        c === p.column ? `transform(${c}, {from:Array(String)}, {to:Array(String)}, ${c})` : c === 'updated_at' ? 'updated_at + toIntervalMillisecond(1)' : c,
      )
      await db.command(
        `INSERT INTO ${p.table} (${p.columns.join(', ')}) SELECT ${select.join(', ')} FROM ${p.table} FINAL
         WHERE tenant_id = {tenant:UInt16} AND customer_key BETWEEN {lo:UInt32} AND {hi:UInt32} AND ${p.digestRows} AND ${p.column} IN {from:Array(String)}`,
        params,
      )
      written += whole.length
      pages++
      after = full && first === last ? first - 1 : hi
      await deps.onPage?.({ tenantId: db.tenantId, table: p.table, rows: whole.length })
    }
    await dropReplaced(db, p)
    return { rows: written, pages }
  }

  /**
   * The versions a conversion replaced still hold the shared digest (a read without FINAL, or
   * until a merge, would find them): deleted once a pass is through, in one statement (a delete
   * a page cost more than the page). Only versions whose row's current version is no longer in
   * the old form go, so a version-1 row that arrived meanwhile waits for the next run.
   */
  async function dropReplaced(db: TenantDb, p: Place) {
    const rowKey = p.table === 'customers' ? 'customer_key' : '(customer_key, trait)'
    const where = `tenant_id = {tenant:UInt16} AND ${OLD(p)} AND ${rowKey} IN (SELECT ${rowKey} FROM ${p.table} FINAL WHERE tenant_id = {tenant:UInt16} AND NOT (${OLD(p)}))`
    const [r] = await db.query(`SELECT toString(count()) AS n FROM ${p.table} WHERE ${where}`, fixed, z.object({ n: z.coerce.number() }))
    if (r?.n) await db.command(`DELETE FROM ${p.table} WHERE ${where}`, fixed)
  }

  return {
    status,
    async rekey(tenantId) {
      const before = await status(tenantId)
      const db = deps.db.forTenant(tenantId)
      const converted = { customersPhone: 0, traits: 0 }
      let pages = 0
      for (const p of PLACES) {
        const done = await convert(db, p)
        converted[p.counted] = done.rows
        pages += done.pages
      }
      return { before, after: await status(tenantId), converted, pages }
    },
  }
}
