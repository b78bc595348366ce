import { bucket, customerDigest } from '../core/holdout.js'
import type { Experiment } from './catalog.schema.js'

/**
 * Deterministic assignment, the same in every process and every run: a customer's bucket is a
 * hash of the tenant, a salt and the customer number, so no assignment table is needed and a
 * customer never flips between variants while the experiment's weights stay unchanged.
 *
 * The buckets and the global holdout are in core/holdout.ts, shared with push.
 */

export interface Assignment {
  experiment: string
  variant: Experiment['variants'][number]
}

/** The variant of an experiment a customer sees, by weight. */
export function assignVariant(tenantId: number, customerNo: string | Buffer, exp: Experiment): Assignment {
  const total = exp.variants.reduce((s, v) => s + v.weight, 0)
  let b = bucket(`experiment:${exp.id}`, tenantId, customerNo, total)
  for (const v of exp.variants) {
    if (b < v.weight) return { experiment: exp.id, variant: v }
    b -= v.weight
  }
  return { experiment: exp.id, variant: exp.variants[exp.variants.length - 1]! }
}

/** A stable number in [0, 1) for a customer on a day (the exploration slot's pick). */
export function dailyDraw(tenantId: number, customerNo: string | Buffer, day: string): number {
  return bucket(`explore:${day}`, tenantId, customerNo, 1_000_000) / 1_000_000
}

/** The key the customer index is built on: the first 8 bytes of MD5(customer number), as ClickHouse computes them. */
export function customerHash(customerNo: string | Buffer): bigint {
  return (typeof customerNo === 'string' ? customerDigest(customerNo) : customerNo).readBigUInt64LE(0)
}
