/**
 * The model's part of a layout score, shared by the request path (layout.rank.ts) and the
 * offline evaluation (eval/served.ts), so the figure the evaluation reports is the one of the code
 * that serves: a customer's items (their strongest affinities, as the build keeps them) times each
 * item's neighbour weights (model.fit.ts: Jaccard similarities for SAR, the item-to-item weights
 * of EASE, which may be negative).
 */

/** One item's neighbours under the build's model: the items it points to and their weights. */
export interface Neighbours {
  items: Int32Array
  sims: Float32Array
}

/**
 * What the model multiplies the weights by: the customer's time-decayed affinity (SAR scores
 * A·S), or 1 per item the customer has (EASE was fitted on a 0/1 matrix, so x_u·B scores it).
 */
export type ModelInput = 'affinity' | 'binary'

/** Per-item scratch: the score, the largest positive contribution and the item it came from. */
export interface ModelScratch {
  co: Float64Array
  best: Float64Array
  because: Int32Array
}

export function modelScratch(n: number): ModelScratch {
  return { co: new Float64Array(n), best: new Float64Array(n), because: new Int32Array(n) }
}

/**
 * Scores every item for a customer whose items are `items[lo..hi)` with `affinity[lo..hi)`:
 * co[j] = Σ x_i · w(i → j). `best` and `because` keep the largest positive term per item and its
 * source: the item a customer is told led to the pick. Negative scores stay as they are (EASE
 * counting items against a target); the blend reads only what is above zero.
 */
export function scoreByNeighbours(
  neighbours: readonly Neighbours[],
  items: ArrayLike<number>,
  affinity: ArrayLike<number>,
  lo: number,
  hi: number,
  input: ModelInput,
  out: ModelScratch,
): void {
  out.co.fill(0)
  out.best.fill(0)
  out.because.fill(-1)
  for (let j = lo; j < hi; j++) {
    const src = items[j]!
    const x = input === 'binary' ? 1 : affinity[j]!
    const nb = neighbours[src]
    if (!nb) continue
    for (let k = 0; k < nb.items.length; k++) {
      const target = nb.items[k]!
      const v = x * nb.sims[k]!
      out.co[target]! += v
      if (v > out.best[target]!) {
        out.best[target] = v
        out.because[target] = src
      }
    }
  }
}
