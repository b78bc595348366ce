import { DEFAULT_MAX_FIT_ITEMS, DEFAULT_NEIGHBOURS, DEFAULT_PER_CUSTOMER, fitItemModel, type ItemModel, type ModelSpec } from '../model.fit.js'
import { modelScratch, scoreByNeighbours } from '../model.score.js'
import { buildUserItemMatrix, topK, type Recommender } from './matrix.js'
import type { InteractionTable } from './table.js'

/**
 * The served model on an interactions table: what the `recommend` build and the request path do
 * with a bank's events, done on the training rows of an evaluation.
 *
 * - Affinity per (user, item): Σ weight × 0.5^(age / half-life), age from the latest training
 *   instant (the build's `asOf`), as the build computes it in ClickHouse; the `perCustomer`
 *   strongest are kept, as in `rec_customers`.
 * - Co-occurrence G over the training users (the build counts it from the item bitmaps), fitted
 *   by `fitItemModel` (model.fit.ts) into the neighbour lists a snapshot holds.
 * - Scores by `scoreByNeighbours` (model.score.ts), the function the request path calls; items
 *   the user had in training removed, as the evaluation protocol asks.
 *
 * A catalogue larger than `maxItems` is counted over its `maxItems` most engaged items only
 * (their G would not fit otherwise: 8 bytes per item pair); the others are not recommended.
 */

export interface ServedOptions {
  spec: ModelSpec
  /** Affinity half-life in days (0: none). */
  halfLifeDays?: number
  perCustomer?: number
  neighbours?: number
  maxItems?: number
}

export interface ServedModel extends Recommender {
  model: ItemModel
  /** Training items left out of the fit (beyond `maxItems`). */
  leftOut: number
}

export function fitServed(train: InteractionTable, o: ServedOptions): ServedModel {
  const nItems = train.items.length
  const perCustomer = o.perCustomer ?? DEFAULT_PER_CUSTOMER
  const maxItems = o.maxItems ?? DEFAULT_MAX_FIT_ITEMS
  const halfLife = (o.halfLifeDays ?? 0) * 86_400
  let latest = -Infinity
  for (let r = 0; r < train.length; r++) latest = Math.max(latest, train.timestamp[r]!)
  const x = buildUserItemMatrix(train, halfLife > 0 ? (r) => train.rating[r]! * Math.min(1, 0.5 ** ((latest - train.timestamp[r]!) / halfLife)) : (r) => train.rating[r]!)

  // The items counted: every engaged one, or the most engaged maxItems.
  const users = new Float64Array(nItems)
  for (let q = 0; q < x.cols.length; q++) users[x.cols[q]!]!++
  let engaged = 0
  for (let i = 0; i < nItems; i++) if (users[i]! > 0) engaged++
  const byUsers = Int32Array.from({ length: nItems }, (_, i) => i).filter((i) => users[i]! > 0)
  const kept = engaged > maxItems ? byUsers.sort((a, b) => users[b]! - users[a]! || a - b).slice(0, maxItems).sort() : byUsers
  const m = kept.length
  const local = new Int32Array(nItems).fill(-1)
  kept.forEach((item, a) => (local[item] = a))

  // G over the kept items, and each user's strongest affinities among them.
  const co = new Float64Array(m * m)
  let trainUsers = 0
  const rowPtr = new Int32Array(x.nUsers + 1)
  const rowItems: number[] = []
  const rowAff: number[] = []
  const mine: number[] = []
  for (let u = 0; u < x.nUsers; u++) {
    mine.length = 0
    for (let p = x.rowPtr[u]!; p < x.rowPtr[u + 1]!; p++) if (local[x.cols[p]!]! >= 0) mine.push(p)
    if (x.rowPtr[u + 1]! > x.rowPtr[u]!) trainUsers++
    for (let a = 0; a < mine.length; a++) {
      const ia = local[x.cols[mine[a]!]!]! * m
      for (let b = 0; b < mine.length; b++) co[ia + local[x.cols[mine[b]!]!]!]!++
    }
    mine.sort((p, q) => x.vals[q]! - x.vals[p]! || x.cols[p]! - x.cols[q]!)
    for (const p of mine.slice(0, perCustomer)) {
      rowItems.push(local[x.cols[p]!]!)
      rowAff.push(x.vals[p]!)
    }
    rowPtr[u + 1] = rowItems.length
  }
  const model = fitItemModel({ n: m, co, users: trainUsers }, o.spec, { neighbours: o.neighbours ?? DEFAULT_NEIGHBOURS, maxItems })
  const items = Int32Array.from(rowItems)
  const affinity = Float32Array.from(rowAff)
  const scratch = modelScratch(m)

  return {
    model,
    leftOut: engaged - m,
    recommend(user, k) {
      if (user < 0 || user >= x.nUsers || x.rowPtr[user + 1]! === x.rowPtr[user]!) return new Int32Array(0)
      scoreByNeighbours(model.neighbours, items, affinity, rowPtr[user]!, rowPtr[user + 1]!, model.input, scratch)
      for (let p = x.rowPtr[user]!; p < x.rowPtr[user + 1]!; p++) {
        const a = local[x.cols[p]!]!
        if (a >= 0) scratch.co[a] = -Infinity
      }
      const best = topK(scratch.co, k)
      for (let t = 0; t < best.length; t++) best[t] = kept[best[t]!]!
      return best
    },
  }
}
