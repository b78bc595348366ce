import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus'
import { AppError } from '../../core/errors.js'
import { selectRows, type InteractionTable } from './table.js'

export interface TrainTestSplit {
  train: InteractionTable
  test: InteractionTable
}

export interface StratifiedSplitOptions {
  /** Share of each user's (or item's) rows that goes to train; strictly between 0 and 1. */
  ratio?: number
  seed?: number
  /** Groups with fewer rows than this are dropped before splitting. */
  minRating?: number
  filterBy?: 'user' | 'item'
}

function invalid(field: string, message: string): never {
  throw new AppError('VALIDATION_FAILED', `${field}: ${message}`, { issues: [{ field, message }] })
}

/**
 * The stratified random split of Microsoft Recommenders' `python_stratified_split`:
 *
 * 1. Optionally drop users (or items, with `filterBy: 'item'`) with fewer than `minRating` rows.
 * 2. Draw one uniform number per row, in row order, from a seeded generator.
 * 3. Within each group, order the rows by that number and give them ranks 1..count.
 * 4. A row goes to train when rank / count <= ratio, else to test.
 *
 * So a group of n rows puts floor(n·ratio) rows in train (up to floating-point rounding of the
 * comparison, which is reproduced as the library computes it) and the rest in test: with 0.75, a
 * user with 1 row is test-only, 2 rows split 1/1, 3 rows 2/1, 4 rows 3/1. The numbers come from
 * xoroshiro128+ rather than NumPy's Mersenne Twister, so the protocol is the same but the exact
 * rows drawn for a given seed are not. Row order within train and test follows the input.
 */
export function stratifiedSplit(table: InteractionTable, options: StratifiedSplitOptions = {}): TrainTestSplit {
  const ratio = options.ratio ?? 0.75
  const seed = options.seed ?? 42
  const minRating = options.minRating ?? 1
  const by = options.filterBy ?? 'user'
  if (!(ratio > 0 && ratio < 1)) invalid('ratio', `must be between 0 and 1 (exclusive), got ${ratio}`)
  if (!Number.isInteger(minRating) || minRating < 1) invalid('minRating', `must be an integer >= 1, got ${minRating}`)
  if (!Number.isSafeInteger(seed)) invalid('seed', `must be an integer, got ${seed}`)

  const key = by === 'user' ? table.user : table.item
  const groups = by === 'user' ? table.users.length : table.items.length
  const n = table.length

  const rng = xoroshiro128plus(seed)
  const draw = new Float64Array(n)
  for (let r = 0; r < n; r++) draw[r] = uniformFloat64(rng)

  // Rows grouped by key (counting sort), then each group ordered by its draws.
  const start = new Int32Array(groups + 1)
  for (let r = 0; r < n; r++) start[key[r]! + 1]!++
  for (let g = 0; g < groups; g++) start[g + 1]! += start[g]!
  const fill = start.slice(0, groups)
  const grouped = new Int32Array(n)
  for (let r = 0; r < n; r++) grouped[fill[key[r]!]!++] = r

  const toTrain = new Uint8Array(n)
  const dropped = new Uint8Array(n)
  for (let g = 0; g < groups; g++) {
    const lo = start[g]!
    const hi = start[g + 1]!
    const count = hi - lo
    if (count === 0) continue
    const rows = grouped.subarray(lo, hi)
    if (count < minRating) {
      for (const r of rows) dropped[r] = 1
      continue
    }
    rows.sort((a, b) => draw[a]! - draw[b]! || a - b)
    for (let k = 0; k < count; k++) if ((k + 1) / count <= ratio) toTrain[rows[k]!] = 1
  }
  return partition(table, (r) => (dropped[r] ? -1 : toTrain[r] ? 0 : 1))
}

export interface TimeSplitOptions {
  /** The cut instant: seconds since the epoch, or a Date. */
  cut: number | Date
}

/**
 * Every row strictly before the cut goes to train, every row at or after it to test: the split
 * for the bank's own events, where the model must predict what happens after it was built.
 */
export function timeSplit(table: InteractionTable, options: TimeSplitOptions): TrainTestSplit {
  const cut = options.cut instanceof Date ? options.cut.getTime() / 1000 : options.cut
  if (!Number.isFinite(cut)) invalid('cut', 'must be a finite instant')
  return partition(table, (r) => (table.timestamp[r]! < cut ? 0 : 1))
}

/** Rows by side: 0 train, 1 test, -1 neither. */
function partition(table: InteractionTable, side: (row: number) => number): TrainTestSplit {
  const train: number[] = []
  const test: number[] = []
  for (let r = 0; r < table.length; r++) {
    const s = side(r)
    if (s === 0) train.push(r)
    else if (s === 1) test.push(r)
  }
  return { train: selectRows(table, train), test: selectRows(table, test) }
}
