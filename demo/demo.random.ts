import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus'

/**
 * Two kinds of deterministic randomness, one per side of the engine boundary:
 *
 * - JavaScript (customers, catalogue): a seeded pure-rand xoroshiro128+ stream. Rows are made in
 *   a fixed order (bank by bank, key 1..n), so a sequential stream is reproducible.
 * - SQL (everything derived engine-side): there is no sequential stream in a parallel
 *   `INSERT ... SELECT`, so each random draw is a hash of (seed, bank, entity, salt). The value
 *   never depends on block boundaries, thread count or insert chunking.
 */

export interface Rng {
  /** Uniform in [0, 1). */
  float(): number
  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number
  chance(p: number): boolean
  pick<T>(items: readonly T[]): T
  /** Picks by weight; the weights need not sum to 1. */
  weighted<T>(items: readonly (readonly [T, number])[]): T
  /** Standard normal (Box-Muller). */
  normal(): number
}

/**
 * A stream for one purpose: `stream` jumps 2^64 steps per unit, so the catalogue and the
 * customers of each bank draw from disjoint sequences and adding draws to one never shifts another.
 */
export function createRng(seed: number, stream: number): Rng {
  const g = xoroshiro128plus(seed)
  for (let i = 0; i < stream; i++) g.jump()
  const float = () => uniformFloat64(g)
  return {
    float,
    int: (min, max) => min + Math.floor(float() * (max - min + 1)),
    chance: (p) => float() < p,
    pick(items) {
      if (items.length === 0) throw new Error('pick from an empty list')
      return items[Math.floor(float() * items.length)]!
    },
    weighted(items) {
      let total = 0
      for (const [, w] of items) total += w
      let x = float() * total
      for (const [v, w] of items) {
        x -= w
        if (x < 0) return v
      }
      return items[items.length - 1]![0]
    },
    normal() {
      const u1 = 1 - float()
      const u2 = float()
      return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
    },
  }
}

/** Stream numbers, so that two purposes never share a sequence. */
export const STREAM = {
  catalogue: (bank: number) => 1 + bank * 8,
  customers: (bank: number) => 2 + bank * 8,
} as const

// ---------------------------------------------------------------------------------------------
// SQL fragments. Arguments are SQL expressions and salts written in this folder's code, never
// user input; values (seed, dates, lists) travel as bound parameters.

/**
 * Uniform in [0, 1) from a UInt64 hash expression and a salt: the top 53 bits of a second hash,
 * so the result is exactly representable and never reaches 1 (a plain h / 2^64 can round to 1.0).
 */
export function sqlU(hash: string, salt: number): string {
  return `(bitShiftRight(cityHash64(${hash}, ${salt}), 11) / 9007199254740992.0)`
}

/** Standard normal from two uniforms (Box-Muller); 1 - u keeps log() away from 0. */
export function sqlNormal(hash: string, salt: number): string {
  return `(sqrt(-2 * log(1 - ${sqlU(hash, salt)})) * cos(2 * pi() * ${sqlU(hash, salt + 1)}))`
}

/** Integer in [0, n) where n is an SQL expression. */
export function sqlIndex(hash: string, salt: number, n: string): string {
  return `toUInt32(floor(${sqlU(hash, salt)} * (${n})))`
}

/**
 * Uniform in [0, 1) with 16-bit resolution from slot 0..3 of a 64-bit hash: four draws for one
 * hash call. Enough for picks and probabilities; the per-event generator would otherwise spend
 * most of its time hashing.
 */
export function sqlU16(hash: string, slot: 0 | 1 | 2 | 3): string {
  return `(bitAnd(bitShiftRight(${hash}, ${16 * slot}), 65535) / 65536.0)`
}

/**
 * A UUID-shaped id from two UInt64 expressions. (sipHash128 over several arguments costs about
 * seven times as much, which matters at tens of millions of rows.)
 */
export function sqlUuid(hi: string, lo: string): string {
  return `toString(reinterpretAsUUID(concat(reinterpretAsFixedString(${hi}), reinterpretAsFixedString(${lo}))))`
}

/**
 * A weight table flattened to `slots` cells so SQL can pick by weight with one array lookup
 * (`table[1 + floor(u * slots)]`) instead of a chain of comparisons per row.
 */
export function weightTable(weights: readonly number[], slots = 200): number[] {
  const total = weights.reduce((a, b) => a + b, 0)
  const out: number[] = []
  let acc = 0
  let i = 0
  for (let s = 0; s < slots; s++) {
    const x = ((s + 0.5) / slots) * total
    while (i < weights.length - 1 && acc + weights[i]! <= x) {
      acc += weights[i]!
      i++
    }
    out.push(i)
  }
  return out
}
