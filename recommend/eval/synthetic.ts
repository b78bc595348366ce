import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus'
import { createInteractionTableBuilder, type InteractionTable } from './table.js'

/**
 * Seeded interactions with a structure a recommender can learn: items fall into `clusters`
 * taste groups, each user belongs to one group and draws most of their items from it, and item
 * popularity follows a Zipf-like curve inside each group and overall. A co-occurrence model
 * (SAR) should find the groups and beat the popularity baseline clearly; a broken one will not.
 */
export interface SyntheticOptions {
  users: number
  items: number
  /** Mean interactions per user; each user gets between half and 1.5 times this (at least 4). */
  perUser?: number
  clusters?: number
  /** Share of a user's draws taken from their own group; the rest follow overall popularity. */
  focus?: number
  /** Zipf exponent of item popularity. */
  skew?: number
  seed?: number
  /** First instant (seconds since the epoch) and span in days of the timestamps. */
  start?: number
  days?: number
}

export function generateSyntheticInteractions(options: SyntheticOptions): InteractionTable {
  const { users, items } = options
  const perUser = options.perUser ?? 20
  const clusters = Math.max(1, Math.min(options.clusters ?? 10, items))
  const focus = options.focus ?? 0.8
  const skew = options.skew ?? 0.9
  const start = options.start ?? 1_700_000_000
  const span = (options.days ?? 180) * 86_400
  const rng = xoroshiro128plus(options.seed ?? 7)
  const rand = () => uniformFloat64(rng)

  // Item i is in group i % clusters and is the (i / clusters)-th most popular of its group.
  const groupCum: Float64Array[] = []
  const groupItems: Int32Array[] = []
  for (let g = 0; g < clusters; g++) {
    const members = Int32Array.from({ length: Math.ceil((items - g) / clusters) }, (_, r) => g + r * clusters)
    groupItems.push(members)
    groupCum.push(cumulative(members.length, (r) => 1 / Math.pow(r + 1, skew)))
  }
  const globalCum = cumulative(items, (i) => 1 / Math.pow(i + 1, skew))

  const builder = createInteractionTableBuilder(users * perUser)
  const taken = new Uint8Array(items)
  const mine: number[] = []
  for (let u = 0; u < users; u++) {
    const g = u % clusters
    const want = Math.min(Math.max(4, Math.round(perUser * (0.5 + rand()))), Math.floor(items / 2))
    // Rejection of repeats is bounded so a tiny catalogue cannot loop forever.
    for (let tries = 0; mine.length < want && tries < want * 20; tries++) {
      const item = rand() < focus ? groupItems[g]![pick(groupCum[g]!, rand())]! : pick(globalCum, rand())
      if (taken[item]) continue
      taken[item] = 1
      mine.push(item)
    }
    for (const item of mine) {
      builder.add(`u${u}`, `i${item}`, 1 + Math.floor(rand() * 5), Math.floor(start + rand() * span))
      taken[item] = 0
    }
    mine.length = 0
  }
  return builder.finish()
}

function cumulative(n: number, weight: (i: number) => number): Float64Array {
  const c = new Float64Array(n)
  let total = 0
  for (let i = 0; i < n; i++) c[i] = total += weight(i)
  for (let i = 0; i < n; i++) c[i]! /= total
  return c
}

/** The first index whose cumulative share exceeds `x`, by binary search. */
function pick(cum: Float64Array, x: number): number {
  let lo = 0
  let hi = cum.length - 1
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (cum[mid]! > x) hi = mid
    else lo = mid + 1
  }
  return lo
}
