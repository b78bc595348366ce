import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { STANDING_MERGES_SQL } from '../core/identity.sql.js'
import { ageSql } from './tag.features.js'

/**
 * Between the bank's customer numbers (what APIs take and show) and the dense keys (what tags
 * and segments store): one place for both directions; and a customer's profile row.
 */

/** The current key of a customer number, following merges. */
export async function customerKeyOf(db: Db, tenantId: number, customerNo: string): Promise<number | undefined> {
  const rows = await db.forTenant(tenantId).query(
    `SELECT if(m.into_key != 0, m.into_key, i.k) AS key FROM (
       SELECT argMax(customer_key, updated_at) AS k FROM identities
       WHERE tenant_id = {tenant:UInt16} AND id_kind IN ('customer_no', 'user_id') AND id_value = {id:String}
       GROUP BY id_kind ORDER BY id_kind LIMIT 1) AS i
     LEFT JOIN ${STANDING_MERGES_SQL} AS m ON m.from_key = i.k`,
    { id: customerNo },
    z.object({ key: z.coerce.number() }),
  )
  const k = rows[0]?.key
  return k ? k : undefined
}

/** The key of a customer number, or NOT_FOUND. */
export async function requireCustomerKey(db: Db, tenantId: number, customerNo: string): Promise<number> {
  const key = await customerKeyOf(db, tenantId, customerNo)
  if (!key) throw new AppError('NOT_FOUND', `No customer ${customerNo}.`)
  return key
}

/** Customer numbers for keys, in the same order (`key:N` for a key without a profile). */
export async function customerNumbers(db: Db, tenantId: number, keys: readonly number[]): Promise<string[]> {
  if (!keys.length) return []
  const rows = await db
    .forTenant(tenantId)
    .query(
      `SELECT customer_key, customer_no FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key IN {keys:Array(UInt32)}`,
      { keys },
      z.object({ customer_key: z.coerce.number(), customer_no: z.string() }),
    )
  const byKey = new Map(rows.map((x) => [x.customer_key, x.customer_no]))
  return keys.map((k) => byKey.get(k) ?? `key:${k}`)
}

const profileRow = z.object({
  customer_key: z.coerce.number(),
  customer_no: z.string(),
  name_masked: z.string(),
  gender: z.string(),
  age: z.coerce.number().nullable(),
  region_code: z.string(),
  branch_code: z.string(),
  occupation: z.string(),
  language: z.string(),
  elder_mode: z.coerce.number(),
  since: z.string(),
})

export type ProfileRow = z.infer<typeof profileRow>

/** A customer's profile as the customer API shows it (the age, never the birth date), or undefined once erased or deleted. */
export async function customerProfile(db: Db, tenantId: number, key: number): Promise<ProfileRow | undefined> {
  const [row] = await db.forTenant(tenantId).query(
    `SELECT customer_key, customer_no, name_masked, toString(gender) AS gender,
            ${ageSql('birth_date', 'today()')} AS age,
            region_code, branch_code, occupation, language, elder_mode, toString(toDate(opened_at)) AS since
     FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key = {key:UInt32} AND deleted = 0`,
    { key },
    profileRow,
  )
  return row
}
