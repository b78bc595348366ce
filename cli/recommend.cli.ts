import { InvalidArgumentError, type Command } from 'commander'
import { AppError } from '../core/errors.js'
import { evaluateInteractions, type AlgorithmFactory, type EvaluationReport } from '../recommend/eval/evaluate.js'
import { readInteractionsFile } from '../recommend/eval/interactions.js'
import { fitPopularity } from '../recommend/eval/popularity.js'
import { fitSar, type SarSimilarity } from '../recommend/eval/sar.js'
import { createInteractionTableBuilder } from '../recommend/eval/table.js'
import { tenantInteractions } from '../recommend/model.build.js'
import type { CliHelpers } from './tags.cli.js'

/**
 * `qianmian recommend evaluate`: the ranking model offline.
 *
 * - `evaluate FILE`: a plain interactions file (`user item rating timestamp` tab-separated, or a
 *   CSV with a header) under the MS Recommenders protocol: stratified 75/25 split per user, top
 *   k (10), seen items removed; nDCG, precision, recall, MAP, coverage.
 * - `evaluate --tenant T`: the tenant's own engagements (the model's mapping: product events and
 *   layout clicks) over `--days`, split in time: the last `--test-days` are the test set.
 *
 * Both compare SAR (item co-occurrence by Jaccard, as the layout model ranks; with and without
 * time decay) against the most-popular baseline.
 */

const num = (name: string) => (v: string) => {
  const n = Number(v)
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`)
  return n
}

interface EvalOptions {
  tenant?: string
  days: number
  testDays: number
  k: number
  ratio: number
  seed: number
  halfLife: number
  similarity: string
  json?: boolean
}

export function registerRecommendCommands(program: Command, h: CliHelpers) {
  const rec = program.command('recommend').description('the home-screen layout model')
  rec
    .command('evaluate [file]')
    .description('offline evaluation: an interactions file (MS Recommenders protocol) or a tenant\u2019s events (time split)')
    .option('--tenant <slug>', 'evaluate on this tenant\u2019s events instead of a file')
    .option('--days <n>', 'days of events read (with --tenant)', num('--days'), 90)
    .option('--test-days <n>', 'the last days held out as the test set (with --tenant)', num('--test-days'), 7)
    .option('--k <n>', 'list length scored', num('--k'), 10)
    .option('--ratio <r>', 'stratified split: share of each user\u2019s rows in train', num('--ratio'), 0.75)
    .option('--seed <n>', 'split seed', num('--seed'), 42)
    .option('--half-life <days>', 'SAR time decay (0: no decayed variant)', num('--half-life'), 30)
    .option('--similarity <s>', 'jaccard, lift or cooccurrence', 'jaccard')
    .option('--json', 'print the whole report as JSON')
    .action(async (file: string | undefined, o: EvalOptions) => {
      if (!['jaccard', 'lift', 'cooccurrence'].includes(o.similarity)) {
        throw new AppError('VALIDATION_FAILED', '--similarity takes jaccard, lift or cooccurrence.', { issues: [{ field: '--similarity', message: 'unknown' }] })
      }
      if (!file === !o.tenant) throw new AppError('VALIDATION_FAILED', 'Give an interactions file or --tenant <slug>, not both.', { issues: [{ field: file ? '--tenant' : 'file', message: 'one of file, --tenant' }] })
      const similarity = o.similarity as SarSimilarity
      const algorithms: Record<string, AlgorithmFactory> = { sar: (train) => fitSar(train, { similarity }) }
      if (o.halfLife > 0) algorithms[`sar_decay_${o.halfLife}d`] = (train) => fitSar(train, { similarity, halfLifeDays: o.halfLife })
      algorithms.popularity = (train) => fitPopularity(train)
      let report: EvaluationReport
      if (file) {
        const table = await readInteractionsFile(file)
        h.out(`${file}: ${table.length} interactions, ${table.users.length} users, ${table.items.length} items; stratified ${o.ratio} split per user, seed ${o.seed}, top ${o.k}`)
        report = evaluateInteractions(table, { k: o.k, ratio: o.ratio, seed: o.seed, algorithms })
      } else {
        report = await h.withRuntime(async (rt) => {
          const tenant = await rt.tenants.get(o.tenant!)
          const to = new Date()
          const cut = new Date(to.getTime() - o.testDays * 86_400_000)
          const rows = await tenantInteractions(rt.db.forTenant(tenant.id), { from: new Date(to.getTime() - o.days * 86_400_000), to })
          const b = createInteractionTableBuilder(rows.length)
          for (const r of rows) b.add(r.u, r.i, r.w, r.t)
          const table = b.finish()
          h.out(`${tenant.slug}: ${table.length} engagements, ${table.users.length} customers, ${table.items.length} items over ${o.days} days; test = the last ${o.testDays} days, top ${o.k}`)
          return evaluateInteractions(table, { k: o.k, cut, algorithms })
        })
      }
      if (o.json) return h.out(JSON.stringify(report, null, 2))
      const s = report.split
      h.out(`train ${s.trainRows} rows (${s.trainUsers} users, ${s.trainItems} items), test ${s.testRows} rows (${s.testUsers} users, ${s.coldTestUsers} without history, not scored)`)
      h.out(['model'.padEnd(18), 'nDCG@k', 'prec@k', 'recall@k', 'MAP', 'coverage', 'users'].join('  '))
      for (const [name, r] of Object.entries(report.algorithms)) {
        h.out([name.padEnd(18), ...[r.ndcg, r.precision, r.recall, r.map, r.coverage].map((x) => x.toFixed(4).padStart(8)), String(r.users).padStart(6)].join('  '))
      }
    })
}
