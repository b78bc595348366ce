import { z } from 'zod'
import type { TenantDb } from '../core/db.js'

/**
 * Customer-key ranges of a tag run. The statements whose memory grows with the bank's customers
 * (window and rule staging, the diff against current values) run once per range, so their
 * memory is bounded by the range size instead of the bank size, as the demo generator's event
 * inserts are bounded per key slice. Customer keys are dense per tenant (1, 2, 3 ...), so equal
 * key ranges hold about equal numbers of customers.
 */

export interface KeyRange {
  lo: number
  hi: number
}

/** Keys per range when the configuration leaves it to the run (TAG_RUN_KEY_RANGE=0). */
export const DEFAULT_KEYS_PER_RANGE = 1_000_000
const MAX_KEY = 2 ** 32 - 1
/** Every key: the range of an unsplit statement. */
export const ALL_KEYS: KeyRange = Object.freeze({ lo: 0, hi: MAX_KEY })

/** The filter a ranged statement carries on a key column; bound per range by the run. */
export function keyInRange(column: string): string {
  return `${column} BETWEEN {klo:UInt32} AND {khi:UInt32}`
}

/** The parameters of one range, and of the whole key space (an unsplit statement). */
export function rangeParams(r: KeyRange = ALL_KEYS): { klo: number; khi: number } {
  return { klo: r.lo, khi: r.hi }
}

/**
 * Splits keys 0..maxKey into ranges of about `size` keys (0: derived from maxKey, equal ranges
 * of at most DEFAULT_KEYS_PER_RANGE). The first starts at 0 and the last is open-ended, so
 * every key, including one allocated after maxKey was read, falls in exactly one range.
 */
export function splitKeys(maxKey: number, size: number): KeyRange[] {
  const per = size > 0 ? size : Math.ceil(Math.max(maxKey, 1) / Math.ceil(Math.max(maxKey, 1) / DEFAULT_KEYS_PER_RANGE))
  const n = Math.max(1, Math.ceil(maxKey / per))
  return Array.from({ length: n }, (_, i) => ({ lo: i === 0 ? 0 : i * per + 1, hi: i === n - 1 ? MAX_KEY : (i + 1) * per }))
}

/** The highest customer key a run may meet: in the profile or in the daily event aggregates. */
export async function maxCustomerKey(db: TenantDb): Promise<number> {
  const [r] = await db.query(
    `SELECT greatest((SELECT max(customer_key) FROM customers WHERE tenant_id = {tenant:UInt16}),
                     (SELECT max(customer_key) FROM tag_event_daily WHERE tenant_id = {tenant:UInt16})) AS k`,
    {},
    z.object({ k: z.coerce.number() }),
  )
  return r?.k ?? 0
}
