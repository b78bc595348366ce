import { easeFromGram } from './eval/ease.js'
import type { ModelInput, Neighbours } from './model.score.js'

/**
 * The item model a build serves, fitted from the item co-occurrence: G[i][j] = customers who
 * engaged with both i and j, G[i][i] = customers who engaged with i (the model build counts it
 * inside ClickHouse from the item bitmaps; the offline evaluation from its training rows). Two
 * kinds, both kept as a short list of neighbours per item (the snapshot holds only these):
 *
 * - `sar`: Jaccard similarity G[i][j] / (G[i][i] + G[j][j] − G[i][j]), scored against the
 *   customer's time-decayed affinities (SAR);
 * - `ease`: EASE's weights B = I − P·diag(1/diag(P)), P = (G + λI)⁻¹ (eval/ease.ts), scored
 *   against a 0/1 row of the customer's items, the input it was fitted on. λ is given per
 *   customer (`lambdaPerUser` × customers in G): G's counts grow with the customers, so the same
 *   share means the same smoothing in a bank of 5,000 or of 500,000.
 *
 * EASE inverts an items × items matrix (n³/2 multiply-adds, 20 bytes per item pair): above
 * `maxItems` it is fitted on the most engaged `maxItems` items, the others keep no neighbours.
 */

export type ModelKind = 'ease' | 'sar'

export interface ModelSpec {
  kind: ModelKind
  /** EASE's λ as a share of the customers counted in G. */
  lambdaPerUser?: number
}

/** Co-occurrence counts over n items, row-major n × n, symmetric; `users` customers counted. */
export interface ItemGram {
  n: number
  co: Float64Array
  users: number
}

export interface FitOptions {
  /** Neighbours kept per item (the strongest by weight). */
  neighbours?: number
  /** Items EASE is fitted on at most: the most engaged ones. */
  maxItems?: number
}

export interface ItemModel {
  spec: ModelSpec
  /** The name the evaluation and the build's record use, e.g. `ease_0.3` or `sar`. */
  name: string
  input: ModelInput
  /** EASE's λ in counts (null for SAR). */
  lambda: number | null
  neighbours: Neighbours[]
  /** Items the fit covered; fewer than the engaged ones when EASE was restricted. */
  fitted: number
  engaged: number
}

/** λ = 0.3 × customers: on MovieLens-100k (943 users) that is λ ≈ 300, the best of eval/README.md's sweep. */
export const DEFAULT_LAMBDA_PER_USER = 0.3
/**
 * Items kept per customer, the strongest affinities first (`rec_customers`), and neighbours per
 * item: EASE scores a customer from all their items, so cutting either costs it (on
 * MovieLens-100k nDCG@10 0.482 untruncated, 0.475 at 200 and 200, 0.402 at 20 and 50); a bank
 * customer rarely engages with more than a few dozen items, so the cap costs memory only for
 * the few who do.
 */
export const DEFAULT_PER_CUSTOMER = 200
export const DEFAULT_NEIGHBOURS = 200
/**
 * EASE's fit at 2,048 items: ~100 MB of work matrices and a few seconds of one core. Catalogues
 * are far below it; a public data set above it is fitted on its most engaged items.
 */
export const DEFAULT_MAX_FIT_ITEMS = 2048

export const modelName = (s: ModelSpec): string => (s.kind === 'ease' ? `ease_${s.lambdaPerUser ?? DEFAULT_LAMBDA_PER_USER}` : 'sar')

export function parseModelName(name: string): ModelSpec | undefined {
  if (name === 'sar') return { kind: 'sar' }
  const m = /^ease_(\d+(?:\.\d+)?)$/.exec(name)
  return m && Number(m[1]) > 0 ? { kind: 'ease', lambdaPerUser: Number(m[1]) } : undefined
}

export function fitItemModel(g: ItemGram, spec: ModelSpec, o: FitOptions = {}): ItemModel {
  const { n, co } = g
  if (co.length !== n * n) throw new RangeError(`expected ${n} × ${n} co-occurrence counts, got ${co.length}`)
  const keep = o.neighbours ?? DEFAULT_NEIGHBOURS
  const engagedItems: number[] = []
  for (let i = 0; i < n; i++) if (co[i * n + i]! > 0) engagedItems.push(i)
  const empty = (): Neighbours => ({ items: new Int32Array(0), sims: new Float32Array(0) })
  const neighbours = Array.from({ length: n }, empty)
  const name = modelName(spec)

  if (spec.kind === 'sar') {
    const row = new Float64Array(n)
    for (const i of engagedItems) {
      const ci = co[i * n + i]!
      for (let j = 0; j < n; j++) {
        const c = j === i ? 0 : co[i * n + j]!
        row[j] = c > 0 ? c / (ci + co[j * n + j]! - c) : 0
      }
      neighbours[i] = strongest(row, keep)
    }
    return { spec, name, input: 'affinity', lambda: null, neighbours, fitted: engagedItems.length, engaged: engagedItems.length }
  }

  const perUser = spec.lambdaPerUser ?? DEFAULT_LAMBDA_PER_USER
  if (!(perUser > 0)) throw new RangeError(`EASE's lambda per customer must be > 0, got ${perUser}`)
  // λ at least 1: a handful of customers must still give an invertible G + λI.
  const lambda = Math.max(1, perUser * g.users)
  const maxItems = o.maxItems ?? DEFAULT_MAX_FIT_ITEMS
  const fit = engagedItems.length > maxItems ? [...engagedItems].sort((a, b) => co[b * n + b]! - co[a * n + a]! || a - b).slice(0, maxItems).sort((a, b) => a - b) : engagedItems
  const m = fit.length
  const sub = new Float64Array(m * m)
  for (let a = 0; a < m; a++) for (let b = 0; b < m; b++) sub[a * m + b] = co[fit[a]! * n + fit[b]!]!
  const w = m ? easeFromGram(sub, m, lambda) : new Float32Array(0)
  const row = new Float64Array(m)
  for (let a = 0; a < m; a++) {
    for (let b = 0; b < m; b++) row[b] = w[a * m + b]!
    const top = strongest(row, keep)
    for (let t = 0; t < top.items.length; t++) top.items[t] = fit[top.items[t]!]!
    neighbours[fit[a]!] = top
  }
  return { spec, name, input: 'binary', lambda, neighbours, fitted: m, engaged: engagedItems.length }
}

/**
 * The `keep` weights of a row largest in size, strongest first (ties to the lower index). EASE's
 * negative weights are kept: they pull down items that other items of the customer push up
 * (dropping them took MovieLens-100k's nDCG@10 from 0.482 to 0.465).
 */
function strongest(row: Float64Array, keep: number): Neighbours {
  const idx: number[] = []
  for (let j = 0; j < row.length; j++) if (row[j]! !== 0) idx.push(j)
  idx.sort((a, b) => Math.abs(row[b]!) - Math.abs(row[a]!) || a - b)
  const top = idx.slice(0, keep)
  return { items: Int32Array.from(top), sims: Float32Array.from(top.map((j) => row[j]!)) }
}
