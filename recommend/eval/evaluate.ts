import { AppError } from '../../core/errors.js'
import { buildUserItemMatrix, type Recommender } from './matrix.js'
import { catalogueCoverage, rankingMetrics, type RankingCase } from './metrics.js'
import { fitPopularity } from './popularity.js'
import { fitSar } from './sar.js'
import { stratifiedSplit, timeSplit, type TrainTestSplit } from './split.js'
import { tableFromInteractions, type Interaction, type InteractionTable } from './table.js'

/** Fits a model on the training rows; indices in `train` are shared with the test rows. */
export type AlgorithmFactory = (train: InteractionTable) => Recommender

export interface EvaluateOptions {
  /** List length scored per user. */
  k?: number
  /** Stratified split: share of each user's rows used for training. */
  ratio?: number
  seed?: number
  /** Users with fewer rows are dropped before the stratified split. */
  minRating?: number
  /** When given, a time split at this instant (seconds or Date) replaces the stratified one. */
  cut?: number | Date
  /** Models to compare, by name; SAR (jaccard, no decay) and popularity when absent. */
  algorithms?: Readonly<Record<string, AlgorithmFactory>>
}

export interface AlgorithmResult {
  ndcg: number
  precision: number
  recall: number
  /** Mean average precision normalised by |test items| (the library's `map`). */
  map: number
  /** Mean average precision normalised by min(k, |test items|) (the library's `map_at_k`). */
  mapAtK: number
  /** Distinct items recommended ÷ distinct items in train. */
  coverage: number
  /** Users the means are over. */
  users: number
  fitMs: number
  recommendMs: number
}

export interface SplitSummary {
  method: 'stratified' | 'time'
  trainRows: number
  testRows: number
  trainUsers: number
  trainItems: number
  /** Users with at least one test row. */
  testUsers: number
  /** Test users without training rows: no model here can score them, so they are not counted. */
  coldTestUsers: number
}

export interface EvaluationReport {
  k: number
  split: SplitSummary
  algorithms: Record<string, AlgorithmResult>
  /** Models that refused to fit these data (too many items for their memory), and why. */
  skipped: Record<string, string>
}

/** A model's refusal of a catalogue too large to fit (its `items` limit), as opposed to a fault. */
function isSizeRefusal(e: unknown): e is AppError {
  return e instanceof AppError && e.code === 'VALIDATION_FAILED' && (e.issues ?? []).some((i) => i.field === 'items')
}

export function defaultAlgorithms(): Record<string, AlgorithmFactory> {
  return {
    sar: (train) => fitSar(train),
    popularity: (train) => fitPopularity(train),
  }
}

/**
 * Splits the rows, fits each algorithm on train, asks it for the top k of every test user that
 * has training history (seen items are removed by the models) and scores the lists against that
 * user's test items with the definitions in metrics.ts.
 */
export function evaluateInteractions(
  rows: InteractionTable | readonly Interaction[],
  options: EvaluateOptions = {},
): EvaluationReport {
  const k = options.k ?? 10
  if (!(Number.isInteger(k) && k > 0)) throw new RangeError(`k must be a positive integer, got ${k}`)
  const table = isTable(rows) ? rows : tableFromInteractions(rows)
  const split: TrainTestSplit =
    options.cut === undefined
      ? stratifiedSplit(table, { ratio: options.ratio ?? 0.75, seed: options.seed ?? 42, minRating: options.minRating ?? 1 })
      : timeSplit(table, { cut: options.cut })
  const { train, test } = split

  const trainRowsOf = new Int32Array(table.users.length)
  for (let r = 0; r < train.length; r++) trainRowsOf[train.user[r]!]!++
  const itemInTrain = new Uint8Array(table.items.length)
  for (let r = 0; r < train.length; r++) itemInTrain[train.item[r]!] = 1
  let trainItems = 0
  for (const x of itemInTrain) trainItems += x
  let trainUsers = 0
  for (const x of trainRowsOf) if (x > 0) trainUsers++

  const truth = buildUserItemMatrix(test)
  const evaluated: number[] = []
  let testUsers = 0
  for (let u = 0; u < truth.nUsers; u++) {
    if (truth.rowPtr[u + 1]! === truth.rowPtr[u]!) continue
    testUsers++
    if (trainRowsOf[u]! > 0) evaluated.push(u)
  }

  const algorithms: Record<string, AlgorithmResult> = {}
  const skipped: Record<string, string> = {}
  for (const [name, factory] of Object.entries(options.algorithms ?? defaultAlgorithms())) {
    const t0 = performance.now()
    let model: Recommender
    try {
      model = factory(train)
    } catch (e) {
      // One model that cannot hold these data must not cost the others their figures.
      if (!isSizeRefusal(e)) throw e
      skipped[name] = e.message
      continue
    }
    const t1 = performance.now()
    const lists = evaluated.map((u) => model.recommend(u, k))
    const t2 = performance.now()
    const cases: RankingCase[] = evaluated.map((u, x) => ({
      relevant: truth.cols.subarray(truth.rowPtr[u]!, truth.rowPtr[u + 1]!),
      recommended: lists[x]!,
    }))
    const m = rankingMetrics(cases, k)
    algorithms[name] = {
      ndcg: m.ndcg,
      precision: m.precision,
      recall: m.recall,
      map: m.map,
      mapAtK: m.mapAtK,
      coverage: catalogueCoverage(lists, trainItems),
      users: m.users,
      fitMs: t1 - t0,
      recommendMs: t2 - t1,
    }
  }

  return {
    k,
    split: {
      method: options.cut === undefined ? 'stratified' : 'time',
      trainRows: train.length,
      testRows: test.length,
      trainUsers,
      trainItems,
      testUsers,
      coldTestUsers: testUsers - evaluated.length,
    },
    algorithms,
    skipped,
  }
}

function isTable(rows: InteractionTable | readonly Interaction[]): rows is InteractionTable {
  return !Array.isArray(rows)
}
