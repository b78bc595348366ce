import { z } from 'zod'
import type { TenantDb } from '../core/db.js'

/**
 * The customers a tag run computes for, as a print (tag_state.base) and, for event tags, as rows
 * (tag_customer_prints, sql/027): what lets an incremental run take in the customers the bank's
 * imports added, re-dated or deleted since its event tags were computed, instead of leaving them
 * to the next full run.
 */

/** Per customer row: what window staging reads of it (tag.queries.ts `windowStage`: the row, its opening date for tenure, its deletion flag). */
const CUSTOMER_HASH = 'cityHash64(customer_key, opened_at, deleted)'

/** The print of a tenant without customers: no rows to keep. */
const NO_CUSTOMERS = '0:0'

/**
 * The customers as a count and a sum of a hash of each row: an import, an update of the columns
 * window staging reads or a deletion changes it.
 */
export async function customersPrint(db: TenantDb): Promise<string> {
  const [r] = await db.query(
    `SELECT count() AS n, toString(sum(${CUSTOMER_HASH})) AS h FROM customers FINAL WHERE tenant_id = {tenant:UInt16}`,
    {},
    z.object({ n: z.coerce.number(), h: z.string() }),
  )
  return `${r?.n ?? 0}:${r?.h ?? '0'}`
}

/** Whether the rows of `print` are kept (a print of no customers has none to keep). */
export async function printKept(db: TenantDb, print: string): Promise<boolean> {
  if (print === NO_CUSTOMERS) return true
  const rows = await db.query(
    `SELECT 1 AS x FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16} AND print = {print:String} LIMIT 1`,
    { print },
    z.object({ x: z.coerce.number() }),
  )
  return rows.length > 0
}

/**
 * Keeps the customers' rows under their print unless rows of `print` (read just before) are
 * kept already, and returns the print of the rows kept. The rows and their print come from one
 * read of the table (the print is a window over the rows written), so they agree even when an
 * import landed since `print` was read; the run then uses the returned print.
 */
export async function keepCustomers(db: TenantDb, print: string): Promise<string> {
  if (await printKept(db, print)) return print
  const before = await keptPrints(db)
  await db.command(
    `INSERT INTO tag_customer_prints (tenant_id, print, customer_key, h)
     SELECT {tenant:UInt16}, concat(toString(count() OVER ()), ':', toString(sum(h) OVER ())), customer_key, h
     FROM (SELECT customer_key, ${CUSTOMER_HASH} AS h FROM customers FINAL WHERE tenant_id = {tenant:UInt16})`,
  )
  // Runs of one tenant do not overlap (pipeline leases): the print that was not there is this one.
  // None is new when an import since `print` brought the customers back to a state kept before:
  // the run then records no print (''), and the next run recomputes every customer's tags.
  const added = (await keptPrints(db)).filter((p) => !before.includes(p))
  return added[0] ?? ''
}

async function keptPrints(db: TenantDb): Promise<string[]> {
  const rows = await db.query(`SELECT DISTINCT toString(print) AS p FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ p: z.string() }))
  return rows.map((r) => r.p)
}

/**
 * Adds to the run's scope the customers whose row differs between two kept prints: added,
 * removed, re-dated or deleted (a side without the customer reads as hash 0), marked as such
 * (`customers`: rules whose only other moved inputs are tags are recomputed for them).
 */
export async function addScopeFromCustomers(db: TenantDb, runId: string, from: string, to: string): Promise<void> {
  await db.command(
    `INSERT INTO tag_scope (tenant_id, run_id, customer_key, customers)
     SELECT {tenant:UInt16}, {run:UInt64}, customer_key, 1
     FROM (SELECT customer_key, h FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16} AND print = {from:String}) AS a
     FULL OUTER JOIN (SELECT customer_key, h FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16} AND print = {to:String}) AS b
     USING (customer_key)
     WHERE a.h != b.h
     SETTINGS join_algorithm = 'full_sorting_merge', join_use_nulls = 0`,
    { run: runId, from, to },
  )
}

/** Drops the kept rows of every print but `keep` (the ones tag states still name). */
export async function pruneCustomerPrints(db: TenantDb, keep: readonly string[]): Promise<void> {
  const stale = (await keptPrints(db)).filter((p) => !keep.includes(p))
  if (stale.length) await db.command(`DELETE FROM tag_customer_prints WHERE tenant_id = {tenant:UInt16} AND print IN {stale:Array(String)}`, { stale })
}
