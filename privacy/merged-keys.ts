import { z } from 'zod'
import type { TenantDb } from '../core/db.js'

/**
 * The keys merged into these, through chains too (A into B, B into C), while each merge stands:
 * an undone merge's customer is someone else again. What the erasure erases and the export
 * reads of one customer. FINAL keeps each key's newest merge row. Returns `keys`, grown.
 */
export async function withMergedKeys(db: TenantDb, keys: Set<number>): Promise<Set<number>> {
  for (let frontier = [...keys]; frontier.length; ) {
    const merged = await db.query(
      `SELECT from_key AS k FROM customer_merges FINAL WHERE tenant_id = {tenant:UInt16} AND active = 1 AND into_key IN (SELECT arrayJoin({ks:Array(UInt32)}))`,
      { ks: frontier },
      z.object({ k: z.coerce.number() }),
    )
    frontier = merged.map((m) => m.k).filter((k) => !keys.has(k))
    for (const k of frontier) keys.add(k)
  }
  return keys
}
