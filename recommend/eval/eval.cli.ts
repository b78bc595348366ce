import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { isAppError } from '../../core/errors.js'
import { fitEase } from './ease.js'
import { evaluateInteractions, type AlgorithmFactory, type EvaluationReport } from './evaluate.js'
import { readInteractionsFile } from './interactions.js'
import { fitPopularity } from './popularity.js'
import { fitSar, type SarSimilarity } from './sar.js'
import { generateSyntheticInteractions } from './synthetic.js'
import type { InteractionTable } from './table.js'

/**
 * Offline evaluation from the command line:
 *
 *   tsx recommend/eval/eval.cli.ts FILE [--k 10] [--ratio 0.75] [--seed 42] [--half-life 30] [--ease 250]
 *   tsx recommend/eval/eval.cli.ts --synthetic 100000x5000 [--per-user 40]
 *
 * FILE is a `u.data`-style or headed CSV interactions file (see interactions.ts). It compares
 * SAR without decay, SAR with the given half-life (30 days by default, as in the library's
 * MovieLens example; 0 leaves it out), EASE once per λ in `--ease` (a comma-separated list, so
 * one run can sweep λ) and the popularity baseline, and prints the report as JSON. EASE runs
 * only on request: its fit grows with items³, about a minute at the 5k items of a scale run.
 */

const USAGE = 'usage: eval.cli.ts FILE | --synthetic USERSxITEMS [--per-user N] [--k 10] [--ratio 0.75] [--seed 42] [--half-life DAYS] [--similarity jaccard|lift|cooccurrence] [--ease LAMBDA[,LAMBDA...]]'

export async function runEvalCli(argv: readonly string[], write: (line: string) => void): Promise<EvaluationReport> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      k: { type: 'string', default: '10' },
      ratio: { type: 'string', default: '0.75' },
      seed: { type: 'string', default: '42' },
      'half-life': { type: 'string', default: '30' },
      similarity: { type: 'string', default: 'jaccard' },
      synthetic: { type: 'string' },
      'per-user': { type: 'string', default: '40' },
      ease: { type: 'string' },
    },
  })
  const num = (name: string, v: string) => {
    const n = Number(v)
    if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got "${v}"`)
    return n
  }
  // Every number is checked before a possibly long read.
  const similarity = values.similarity as SarSimilarity
  const halfLife = num('half-life', values['half-life'])
  const k = num('k', values.k)
  const ratio = num('ratio', values.ratio)
  const seed = num('seed', values.seed)
  const perUser = num('per-user', values['per-user'])
  const easeLambdas = values.ease === undefined ? [] : values.ease.split(',').map((v) => num('ease', v.trim()))
  for (const lambda of easeLambdas) if (!(lambda > 0)) throw new Error(`--ease takes penalties > 0, got ${lambda}`)

  const t0 = performance.now()
  let table: InteractionTable
  if (values.synthetic !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(values.synthetic)
    if (!m) throw new Error(`--synthetic takes USERSxITEMS, got "${values.synthetic}"\n${USAGE}`)
    table = generateSyntheticInteractions({ users: Number(m[1]), items: Number(m[2]), perUser })
  } else {
    const file = positionals[0]
    if (!file) throw new Error(USAGE)
    table = await readInteractionsFile(file)
  }
  const loadMs = performance.now() - t0
  write(`read ${table.length} rows, ${table.users.length} users, ${table.items.length} items in ${loadMs.toFixed(0)} ms`)

  const algorithms: Record<string, AlgorithmFactory> = { sar: (train) => fitSar(train, { similarity }) }
  if (halfLife > 0) algorithms[`sar_decay${halfLife}d`] = (train) => fitSar(train, { similarity, halfLifeDays: halfLife })
  for (const lambda of easeLambdas) algorithms[`ease_lambda${lambda}`] = (train) => fitEase(train, { lambda })
  algorithms.popularity = (train) => fitPopularity(train)

  const report = evaluateInteractions(table, { k, ratio, seed, algorithms })
  write(JSON.stringify(report, (_key, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toFixed(4)) : v), 2))
  return report
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runEvalCli(process.argv.slice(2), (line) => process.stdout.write(line + '\n')).catch((e: unknown) => {
    process.stderr.write(`${isAppError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e)}\n`)
    process.exitCode = 1
  })
}
