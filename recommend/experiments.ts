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

/**
 * One MD5 per customer number, then a cheap integer mix per salt: a layout request draws three
 * buckets (holdout, variant, exploration) and looks the customer up, so hashing once matters.
 */
export function customerDigest(customerNo: string): Buffer {
  return crypto.createHash('md5').update(customerNo).digest()
}

/** FNV-1a of a salt, then murmur3's finaliser over it and the digest's words: uniform, stable. */
function mix(digest: Buffer, salt: string, tenantId: number): number {
  let h = 0x811c9dc5 ^ tenantId
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193)
  for (let i = 0; i < 16; i += 4) {
    h = Math.imul(h ^ digest.readUInt32LE(i), 0xcc9e2d51)
    h = (h << 15) | (h >>> 17)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function bucket(salt: string, tenantId: number, customer: string | Buffer, modulo: number): number {
  return mix(typeof customer === 'string' ? customerDigest(customer) : customer, salt, tenantId) % modulo
}

/** True when the customer is in the tenant's holdout of `perMille` per mille. */
export function inHoldout(tenantId: number, customerNo: string | Buffer, perMille: number): boolean {
  return perMille > 0 && bucket('holdout', tenantId, customerNo, 1000) < perMille
}

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
