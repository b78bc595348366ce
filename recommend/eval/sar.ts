import { AppError } from '../../core/errors.js'
import { addDenseRows, buildUserItemMatrix, topK, type Recommender, type UserItemMatrix } from './matrix.js'
import type { InteractionTable } from './table.js'

/**
 * SAR (Smart Adaptive Recommendations), following Microsoft Recommenders' `SARSingleNode`:
 *
 * - Affinity A (users × items, sparse): the sum of the user's ratings of the item, each weighted
 *   by 0.5^((now − t) / halfLife) when a half-life is given (capped at 1 for events after `now`;
 *   `now` defaults to the latest training timestamp).
 * - Co-occurrence C = Bᵀ·B with B the binary user × item matrix: C[i][j] users who had both i and
 *   j, C[i][i] users who had i. Counts below `threshold` are set to 0 (diagonal included).
 * - Similarity S from C: jaccard C[i][j] / (C[i][i] + C[j][j] − C[i][j]); lift
 *   C[i][j] / (C[i][i] · C[j][j]); or the counts themselves.
 * - Scores A[u]·S; items the user had in training are removed, and the top k are returned
 *   (including items scored 0 when fewer than k score above 0, as the library does).
 *
 * Storage: S is a dense Float32Array of items² (100 MB at 5k items, 400 MB at 10k); A stays
 * sparse, so users can run to the millions. Rows of S with few non-zeros (long-tail items) are
 * also kept as sparse lists, since scoring a user costs Σ over their items of the row length.
 */

export type SarSimilarity = 'jaccard' | 'lift' | 'cooccurrence'

export interface SarOptions {
  similarity?: SarSimilarity
  /** Half-life of the time decay of affinities, in days; absent or 0 means no decay. */
  halfLifeDays?: number
  /** The instant affinities are decayed to, in seconds since the epoch. */
  now?: number
  /** Co-occurrence counts below this are dropped; the library's default is 1. */
  threshold?: number
  /** Refuses catalogues whose dense similarity would outgrow memory (items² × 4 bytes). */
  maxItems?: number
}

export interface SarModel extends Recommender {
  readonly nItems: number
  readonly affinity: UserItemMatrix
  similarity(i: number, j: number): number
  /** All item scores of a user into `out` (length nItems), seen items not yet removed. */
  scoreUser(user: number, out: Float64Array): void
}

const DAY_S = 86_400
/** Below this share of non-zeros a similarity row is scored as a sparse list. */
const SPARSE_ROW_SHARE = 1 / 3

function invalid(field: string, message: string): never {
  throw new AppError('VALIDATION_FAILED', `SAR ${field}: ${message}`, { issues: [{ field, message }] })
}

export function fitSar(train: InteractionTable, options: SarOptions = {}): SarModel {
  const kind = options.similarity ?? 'jaccard'
  const threshold = options.threshold ?? 1
  const halfLifeDays = options.halfLifeDays ?? 0
  const maxItems = options.maxItems ?? 16_384
  const n = train.items.length
  if (!['jaccard', 'lift', 'cooccurrence'].includes(kind)) invalid('similarity', `unknown kind "${kind}"`)
  if (!(threshold >= 1)) invalid('threshold', `must be >= 1, got ${threshold}`)
  if (!(halfLifeDays >= 0)) invalid('halfLifeDays', `must be >= 0, got ${halfLifeDays}`)
  if (n > maxItems) invalid('items', `${n} items need a ${((n * n * 4) / 2 ** 30).toFixed(1)} GiB similarity matrix; the limit is ${maxItems} items`)

  const affinity = buildUserItemMatrix(train, affinityWeight(train, halfLifeDays, options.now))
  const sim = cooccurrence(affinity)
  // Items only in the shared dictionary (in test, never in train) are not candidates: the
  // library fits its index on training data alone and cannot recommend them.
  const absent: number[] = []
  for (let i = 0; i < n; i++) if (sim[i * n + i] === 0) absent.push(i)
  toSimilarity(sim, n, kind, threshold)
  const sparse = sparseRows(sim, n)
  let maxRow = 0
  for (let u = 0; u < affinity.nUsers; u++) maxRow = Math.max(maxRow, affinity.rowPtr[u + 1]! - affinity.rowPtr[u]!)
  const denseOff = new Int32Array(maxRow)
  const denseA = new Float64Array(maxRow)

  const scoreUser = (user: number, out: Float64Array) => {
    out.fill(0)
    if (user < 0 || user >= affinity.nUsers) return
    let dense = 0
    for (let p = affinity.rowPtr[user]!; p < affinity.rowPtr[user + 1]!; p++) {
      const j = affinity.cols[p]!
      const a = affinity.vals[p]!
      const start = sparse.start[j]!
      if (start < 0) {
        denseOff[dense] = j * n
        denseA[dense++] = a
        continue
      }
      const end = sparse.end[j]!
      for (let q = start; q < end; q++) out[sparse.idx[q]!]! += a * sparse.val[q]!
    }
    addDenseRows(sim, n, denseOff, denseA, dense, out)
  }

  let scratch: Float64Array | undefined
  return {
    nItems: n,
    affinity,
    similarity: (i, j) => sim[i * n + j]!,
    scoreUser,
    recommend(user, k) {
      if (user < 0 || user >= affinity.nUsers) return new Int32Array(0)
      const lo = affinity.rowPtr[user]!
      const hi = affinity.rowPtr[user + 1]!
      if (lo === hi) return new Int32Array(0)
      scratch ??= new Float64Array(n)
      scoreUser(user, scratch)
      for (let p = lo; p < hi; p++) scratch[affinity.cols[p]!] = -Infinity
      for (const i of absent) scratch[i] = -Infinity
      return topK(scratch, k)
    },
  }
}


function affinityWeight(train: InteractionTable, halfLifeDays: number, now: number | undefined): (row: number) => number {
  if (halfLifeDays === 0) return (r) => train.rating[r]!
  let latest = -Infinity
  for (let r = 0; r < train.length; r++) latest = Math.max(latest, train.timestamp[r]!)
  const t0 = now ?? latest
  const halfLife = halfLifeDays * DAY_S
  return (r) => train.rating[r]! * Math.min(1, Math.pow(0.5, (t0 - train.timestamp[r]!) / halfLife))
}

/**
 * C = Bᵀ·B accumulated user by user over the upper triangle, then mirrored: each user with d
 * items adds d(d+1)/2 counts. Float32 holds counts exactly up to 2^24 users per pair.
 */
function cooccurrence(m: UserItemMatrix): Float32Array {
  const n = m.nItems
  const c = new Float32Array(n * n)
  for (let u = 0; u < m.nUsers; u++) {
    const lo = m.rowPtr[u]!
    const hi = m.rowPtr[u + 1]!
    for (let a = lo; a < hi; a++) {
      const off = m.cols[a]! * n
      // Columns are ascending, so cols[b] >= cols[a]: only the upper triangle is touched.
      for (let b = a; b < hi; b++) c[off + m.cols[b]!]!++
    }
  }
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) c[j * n + i] = c[i * n + j]!
  return c
}

function toSimilarity(c: Float32Array, n: number, kind: SarSimilarity, threshold: number): void {
  if (threshold > 1) for (let x = 0; x < c.length; x++) if (c[x]! < threshold) c[x] = 0
  if (kind === 'cooccurrence') return
  const diag = new Float64Array(n)
  for (let i = 0; i < n; i++) diag[i] = c[i * n + i]!
  for (let i = 0; i < n; i++) {
    const off = i * n
    for (let j = 0; j < n; j++) {
      const v = c[off + j]!
      if (v === 0) continue
      c[off + j] = kind === 'jaccard' ? v / (diag[i]! + diag[j]! - v) : v / (diag[i]! * diag[j]!)
    }
  }
}

/** Sparse copies of the rows with few non-zeros; `start[j]` is -1 when row j is scored densely. */
function sparseRows(s: Float32Array, n: number): { start: Int32Array; end: Int32Array; idx: Int32Array; val: Float32Array } {
  const start = new Int32Array(n).fill(-1)
  const end = new Int32Array(n)
  const counts = new Int32Array(n)
  let total = 0
  for (let j = 0; j < n; j++) {
    let nz = 0
    const off = j * n
    for (let i = 0; i < n; i++) if (s[off + i] !== 0) nz++
    counts[j] = nz < n * SPARSE_ROW_SHARE ? nz : -1
    if (nz < n * SPARSE_ROW_SHARE) total += nz
  }
  const idx = new Int32Array(total)
  const val = new Float32Array(total)
  let q = 0
  for (let j = 0; j < n; j++) {
    if (counts[j]! < 0) continue
    start[j] = q
    const off = j * n
    for (let i = 0; i < n; i++) {
      const v = s[off + i]!
      if (v === 0) continue
      idx[q] = i
      val[q++] = v
    }
    end[j] = q
  }
  return { start, end, idx, val }
}
