import { z } from 'zod'
import type { Db } from '../core/db.js'
import { TENANT_DIGEST_PREFIX } from '../core/pii.js'

/**
 * Digests made before per-bank keys (bare hex, under the shared master secret) link a customer
 * across banks. An HMAC cannot be re-keyed without the value it was made from, so this cannot
 * convert them: a re-import of the customers file (or an identify with the trait) writes the
 * bank's own digest over the old one. What remains after that can be forgotten: phone digests
 * blanked (a newer row version), digested traits under the shared key deleted. Both statements
 * select only shared-key digests, so a run that stops half-way is completed by the next.
 */
export const digestStatusView = z.object({
  sharedKey: z.object({ customersPhone: z.number(), traits: z.number() }).describe('digests still under the shared key (before per-bank keys)'),
  bankKey: z.object({ customersPhone: z.number(), traits: z.number() }).describe("digests under this bank's own key"),
})
export type DigestStatus = z.infer<typeof digestStatusView>

/** Every column of customers (sql/002): names from this list only. */
export const CUSTOMER_COLUMNS = [
  'tenant_id', 'customer_key', 'customer_no', 'gender', 'birth_date', 'region_code', 'branch_code', 'occupation',
  'phone_hash', 'name_masked', 'language', 'elder_mode', 'opened_at', 'updated_at', 'deleted',
] as const
const OLD_PHONE = `phone_hash != '' AND NOT startsWith(phone_hash, {prefix:String})`
const OLD_TRAIT = `hashed = 1 AND NOT startsWith(value, {prefix:String})`

export interface DigestMigration {
  status(tenantId: number): Promise<DigestStatus>
  /** Blanks and deletes what is left under the shared key; returns the status before. */
  forgetShared(tenantId: number): Promise<DigestStatus>
}

export function createDigestMigration(deps: { db: Db }): DigestMigration {
  const prefix = TENANT_DIGEST_PREFIX
  async function status(tenantId: number): Promise<DigestStatus> {
    const db = deps.db.forTenant(tenantId)
    const n = async (sql: string) => Number((await db.query<{ n: string }>(`SELECT toString(count()) AS n FROM ${sql}`, { prefix }))[0]?.n ?? 0)
    return {
      sharedKey: {
        customersPhone: await n(`customers FINAL WHERE tenant_id = {tenant:UInt16} AND ${OLD_PHONE}`),
        traits: await n(`customer_traits FINAL WHERE tenant_id = {tenant:UInt16} AND ${OLD_TRAIT}`),
      },
      bankKey: {
        customersPhone: await n(`customers FINAL WHERE tenant_id = {tenant:UInt16} AND startsWith(phone_hash, {prefix:String})`),
        traits: await n(`customer_traits FINAL WHERE tenant_id = {tenant:UInt16} AND hashed = 1 AND startsWith(value, {prefix:String})`),
      },
    }
  }
  return {
    status,
    async forgetShared(tenantId) {
      const before = await status(tenantId)
      const db = deps.db.forTenant(tenantId)
      if (before.sharedKey.customersPhone) {
        // A newer version of each row without the digest: the ReplacingMergeTree keeps it. No
        // aliases: one named phone_hash would be what the WHERE reads.
        await db.command(
          `INSERT INTO customers (${CUSTOMER_COLUMNS.join(', ')})
           SELECT ${CUSTOMER_COLUMNS.map((c) => (c === 'phone_hash' ? "''" : c === 'updated_at' ? 'greatest(now64(3), updated_at + toIntervalMillisecond(1))' : c)).join(', ')}
           FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND ${OLD_PHONE}`,
          { prefix },
        )
      }
      if (before.sharedKey.traits) await db.command(`DELETE FROM customer_traits WHERE tenant_id = {tenant:UInt16} AND ${OLD_TRAIT}`, { prefix })
      return before
    },
  }
}
