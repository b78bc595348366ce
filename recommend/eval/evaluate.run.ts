import { AppError } from '../../core/errors.js'
import { fitEase } from './ease.js'
import { evaluateInteractions, type AlgorithmFactory, type EvaluationReport } from './evaluate.js'
import { readInteractionsFile } from './interactions.js'
import { DEFAULT_MODEL } from '../model.choice.js'
import { DEFAULT_MAX_FIT_ITEMS, modelName, parseModelName } from '../model.fit.js'
import { fitPopularity } from './popularity.js'
import { fitSar, type SarSimilarity } from './sar.js'
import { fitServed } from './served.js'
import { generateSyntheticInteractions } from './synthetic.js'
import type { InteractionTable } from './table.js'

/**
 * One evaluation as `qianmian recommend evaluate` runs it: where the interactions come from (a
 * file, a synthetic set, or a table the caller built from a tenant's events), which models, and
 * how the rows are split (stratified per user by default, in time with `cut`). Compares SAR
 * (without and with time decay), EASE at each λ, the served model's code path (`served_<model>`:
 * eval/served.ts, the fit and scoring that layouts use, with their truncations) and the
 * most-popular baseline. A model that cannot hold the data is skipped with a line saying why.
 */

export interface EvaluationRunOptions {
  k?: number
  ratio?: number
  seed?: number
  /** Split in time at this instant instead of per user. */
  cut?: Date
  /** SAR time decay in days (0: no decayed variant). */
  halfLife?: number
  similarity?: string
  /** EASE penalties (empty: no EASE). */
  ease?: number[]
  /** Synthetic rows per user. */
  perUser?: number
  /** Served models to run through the serving code (`ease_0.3`, `sar`); default the build's default. */
  served?: string[]
  /** Items the served fit covers at most (the most engaged). */
  maxItems?: number
}

export type EvaluationSource = { file: string } | { synthetic: string } | { table: InteractionTable; label: string }

const bad = (field: string, message: string) => new AppError('VALIDATION_FAILED', `${field}: ${message}`, { issues: [{ field, message }] })

export async function runEvaluation(source: EvaluationSource, o: EvaluationRunOptions, out: (line: string) => void): Promise<EvaluationReport> {
  const similarity = (o.similarity ?? 'jaccard') as SarSimilarity
  if (!['jaccard', 'lift', 'cooccurrence'].includes(similarity)) throw bad('--similarity', 'jaccard, lift or cooccurrence')
  const k = o.k ?? 10
  if (!(Number.isInteger(k) && k > 0 && k <= 1000)) throw bad('--k', 'an integer from 1 to 1000')
  const ratio = o.ratio ?? 0.75
  if (!(ratio > 0 && ratio < 1)) throw bad('--ratio', 'between 0 and 1')
  const halfLife = o.halfLife ?? 30
  if (!(halfLife >= 0)) throw bad('--half-life', 'days, 0 or more')
  const ease = o.ease ?? []
  for (const l of ease) if (!(l > 0)) throw bad('--ease', 'penalties greater than 0')
  const served = o.served ?? [modelName(DEFAULT_MODEL)]
  for (const name of served) if (!parseModelName(name)) throw bad('--served', `unknown model "${name}": ease_<lambda per customer> or sar`)
  const maxItems = o.maxItems ?? DEFAULT_MAX_FIT_ITEMS
  if (!(Number.isInteger(maxItems) && maxItems > 0)) throw bad('--max-items', 'a positive integer')

  let table: InteractionTable
  let label: string
  if ('file' in source) {
    table = await readInteractionsFile(source.file)
    label = source.file
  } else if ('synthetic' in source) {
    const m = /^(\d+)x(\d+)$/.exec(source.synthetic)
    if (!m) throw bad('--synthetic', 'USERSxITEMS, e.g. 1000x200')
    table = generateSyntheticInteractions({ users: Number(m[1]), items: Number(m[2]), perUser: o.perUser ?? 40 })
    label = `synthetic ${source.synthetic}`
  } else {
    table = source.table
    label = source.label
  }
  out(`${label}: ${table.length} interactions, ${table.users.length} users, ${table.items.length} items; ${o.cut ? `time split at ${o.cut.toISOString()}` : `stratified ${ratio} split per user, seed ${o.seed ?? 42}`}, top ${k}`)
  const algorithms: Record<string, AlgorithmFactory> = { sar: (train) => fitSar(train, { similarity }) }
  if (halfLife > 0) algorithms[`sar_decay_${halfLife}d`] = (train) => fitSar(train, { similarity, halfLifeDays: halfLife })
  for (const lambda of ease) algorithms[`ease_lambda${lambda}`] = (train) => fitEase(train, { lambda })
  const notes: string[] = []
  for (const name of served) {
    algorithms[`served_${name}`] = (train) => {
      const m = fitServed(train, { spec: parseModelName(name)!, halfLifeDays: halfLife, maxItems })
      if (m.leftOut > 0) notes.push(`served_${name}: fitted on the ${m.model.fitted} most engaged of ${m.model.fitted + m.leftOut} training items (the limit, --max-items ${maxItems}); the other ${m.leftOut} are not recommended`)
      return m
    }
  }
  algorithms.popularity = (train) => fitPopularity(train)
  const report = evaluateInteractions(table, { k, ratio, seed: o.seed ?? 42, algorithms, ...(o.cut ? { cut: o.cut } : {}) })
  for (const n of notes) out(n)
  return report
}

/** The report as a table, one model per line. */
export function formatReport(report: EvaluationReport): string[] {
  const s = report.split
  const lines = [`train ${s.trainRows} rows (${s.trainUsers} users, ${s.trainItems} items), test ${s.testRows} rows (${s.testUsers} users, ${s.coldTestUsers} without history, not scored)`]
  lines.push(['model'.padEnd(18), 'nDCG@k', 'prec@k', 'recall@k', 'MAP', 'coverage', 'users', 'fit ms'].join('  '))
  for (const [name, r] of Object.entries(report.algorithms)) {
    lines.push([name.padEnd(18), ...[r.ndcg, r.precision, r.recall, r.map, r.coverage].map((x) => x.toFixed(4).padStart(8)), String(r.users).padStart(6), r.fitMs.toFixed(0).padStart(7)].join('  '))
  }
  for (const [name, why] of Object.entries(report.skipped ?? {})) lines.push(`${name} skipped: ${why}`)
  return lines
}
