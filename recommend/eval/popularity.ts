import { buildUserItemMatrix, type Recommender, type UserItemMatrix } from './matrix.js'
import type { InteractionTable } from './table.js'

/**
 * The most-popular baseline: items ranked by their number of training interactions (rows, so a
 * repeated event counts each time), ties to the lower item index; each user gets the first k
 * items of that ranking they did not have in training. Any model worth shipping must beat it.
 */
export interface PopularityModel extends Recommender {
  /** Training interactions per item index. */
  readonly counts: Float64Array
  /** Item indices, most popular first. */
  readonly ranking: Int32Array
}

export function fitPopularity(train: InteractionTable): PopularityModel {
  const n = train.items.length
  const counts = new Float64Array(n)
  for (let r = 0; r < train.length; r++) counts[train.item[r]!]!++
  const ranking = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => counts[b]! - counts[a]! || a - b)
  const seenBy: UserItemMatrix = buildUserItemMatrix(train)
  const mark = new Uint8Array(n)

  return {
    counts,
    ranking,
    recommend(user, k) {
      const known = user >= 0 && user < seenBy.nUsers
      const lo = known ? seenBy.rowPtr[user]! : 0
      const hi = known ? seenBy.rowPtr[user + 1]! : 0
      for (let p = lo; p < hi; p++) mark[seenBy.cols[p]!] = 1
      const out: number[] = []
      for (let r = 0; r < n && out.length < k; r++) {
        const item = ranking[r]!
        // Items only in the shared dictionary (seen in test, never in train) have no popularity.
        if (counts[item] === 0) break
        if (!mark[item]) out.push(item)
      }
      for (let p = lo; p < hi; p++) mark[seenBy.cols[p]!] = 0
      return Int32Array.from(out)
    },
  }
}
