import crypto from 'node:crypto'
import type { Experiment } from './catalog.schema.js'

/**
 * Deterministic assignment, the same in every process and every run: a customer's bucket is a
 * hash of the tenant, a salt and the customer number, so no assignment table is needed and a
 * customer never flips between variants while the experiment's weights stay unchanged.
 *
 * The global holdout is shared with the push scheduler: a customer in it gets the tenant's
 * non-personalized layout (service reminders and safety tips still show: they are service, not
 * marketing) and no marketing push, so uplift can be measured against it.
 */

function bucket(salt: string, tenantId: number, customerNo: string, modulo: number): number {
  const h = crypto.createHash('md5').update(`${salt}\u0000${tenantId}\u0000${customerNo}`).digest()
  return h.readUInt32LE(0) % modulo
}

/** True when the customer is in the tenant's holdout of `perMille` per mille. */
export function inHoldout(tenantId: number, customerNo: string, perMille: number): boolean {
  return perMille > 0 && bucket('holdout', tenantId, customerNo, 1000) < perMille
}

export interface Assignment {
  experiment: string
  variant: Experiment['variants'][number]
}

/** The variant of an experiment a customer sees, by weight. */
export function assignVariant(tenantId: number, customerNo: string, exp: Experiment): Assignment {
  const total = exp.variants.reduce((s, v) => s + v.weight, 0)
  let b = bucket(`experiment:${exp.id}`, tenantId, customerNo, total)
  for (const v of exp.variants) {
    if (b < v.weight) return { experiment: exp.id, variant: v }
    b -= v.weight
  }
  return { experiment: exp.id, variant: exp.variants[exp.variants.length - 1]! }
}

/** A stable number in [0, 1) for a customer on a day (the exploration slot's pick). */
export function dailyDraw(tenantId: number, customerNo: string, day: string): number {
  return bucket(`explore:${day}`, tenantId, customerNo, 1_000_000) / 1_000_000
}

/** The key the customer index is built on: the first 8 bytes of MD5(customer number), as ClickHouse computes them. */
export function customerHash(customerNo: string): bigint {
  return crypto.createHash('md5').update(customerNo).digest().readBigUInt64LE(0)
}
