import { InvalidArgumentError, type Command } from 'commander'
import { AppError } from '../core/errors.js'
import { DEFAULT_EASE_LAMBDA } from '../recommend/eval/ease.js'
import { DEFAULT_MODEL } from '../recommend/model.choice.js'
import { DEFAULT_MAX_FIT_ITEMS, modelName } from '../recommend/model.fit.js'
import { formatReport, runEvaluation, type EvaluationSource } from '../recommend/eval/evaluate.run.js'
import { createInteractionTableBuilder } from '../recommend/eval/table.js'
import { tenantInteractions } from '../recommend/model.build.js'
import type { CliHelpers } from './tags.cli.js'

/**
 * `qianmian recommend evaluate`: the ranking models offline.
 *
 * - `evaluate FILE`: a plain interactions file (`user item rating timestamp` tab-separated, or a
 *   CSV with a header) under the MS Recommenders protocol: stratified 75/25 split per user, top
 *   k (10), seen items removed; nDCG, precision, recall, MAP, coverage.
 * - `evaluate --tenant T`: the tenant's own engagements (the model's mapping: product events and
 *   layout clicks) over `--days`, split in time: the last `--test-days` are the test set.
 * - `evaluate --synthetic USERSxITEMS`: generated taste groups, for scale runs.
 *
 * Each compares SAR (item co-occurrence by Jaccard; with and without time decay), EASE, the
 * served model's code path (`--served`, by default the model a bank gets without an evaluation
 * of its own: the build's fit and the request path's scoring) and the most-popular baseline. A
 * model that cannot hold the data is skipped with a line saying why.
 */

const num = (name: string) => (v: string) => {
  const n = Number(v)
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`)
  return n
}
const list = (name: string) => (v: string) => v.split(',').map((x) => num(name)(x.trim()))

interface EvalOptions {
  tenant?: string
  synthetic?: string
  perUser: number
  days: number
  testDays: number
  k: number
  ratio: number
  seed: number
  halfLife: number
  similarity: string
  ease: number[]
  served: string
  maxItems: number
  json?: boolean
}

export function registerRecommendCommands(program: Command, h: CliHelpers) {
  const rec = program.command('recommend').description('the home-screen layout model')
  rec
    .command('evaluate [file]')
    .description('offline evaluation: an interactions file (MS Recommenders protocol), a tenant\u2019s events (time split) or synthetic data')
    .option('--tenant <slug>', 'evaluate on this tenant\u2019s events')
    .option('--synthetic <USERSxITEMS>', 'evaluate on generated taste groups')
    .option('--per-user <n>', 'synthetic rows per user', num('--per-user'), 40)
    .option('--days <n>', 'days of events read (with --tenant)', num('--days'), 90)
    .option('--test-days <n>', 'the last days held out as the test set (with --tenant)', num('--test-days'), 7)
    .option('--k <n>', 'list length scored', num('--k'), 10)
    .option('--ratio <r>', 'stratified split: share of each user\u2019s rows in train', num('--ratio'), 0.75)
    .option('--seed <n>', 'split seed', num('--seed'), 42)
    .option('--half-life <days>', 'SAR time decay (0: no decayed variant)', num('--half-life'), 30)
    .option('--similarity <s>', 'SAR similarity: jaccard, lift or cooccurrence', 'jaccard')
    .option('--ease <lambdas>', 'EASE penalties, comma-separated (0: no EASE)', list('--ease'), [DEFAULT_EASE_LAMBDA])
    .option('--served <models>', 'served models to run through the serving code, comma-separated: ease_<lambda per customer>, sar', `${modelName(DEFAULT_MODEL)}`)
    .option('--max-items <n>', 'items the served fit covers at most (the most engaged)', num('--max-items'), DEFAULT_MAX_FIT_ITEMS)
    .option('--json', 'print the whole report as JSON')
    .action(async (file: string | undefined, o: EvalOptions) => {
      const sources = [file, o.tenant, o.synthetic].filter((x) => x !== undefined)
      if (sources.length !== 1) {
        throw new AppError('VALIDATION_FAILED', 'Give one of: an interactions file, --tenant <slug>, --synthetic USERSxITEMS.', { issues: [{ field: 'file', message: 'exactly one source' }] })
      }
      const opts = { k: o.k, ratio: o.ratio, seed: o.seed, halfLife: o.halfLife, similarity: o.similarity, ease: o.ease.filter((l) => l !== 0), perUser: o.perUser, served: o.served.split(',').map((x) => x.trim()).filter(Boolean), maxItems: o.maxItems }
      const run = (source: EvaluationSource, cut?: Date) => runEvaluation(source, { ...opts, ...(cut ? { cut } : {}) }, h.out)
      const report = o.tenant
        ? await h.withRuntime(async (rt) => {
            const tenant = await rt.tenants.get(o.tenant!)
            const to = new Date()
            const rows = await tenantInteractions(rt.db.forTenant(tenant.id), { from: new Date(to.getTime() - o.days * 86_400_000), to })
            const b = createInteractionTableBuilder(rows.length)
            for (const r of rows) b.add(r.u, r.i, r.w, r.t)
            return run({ table: b.finish(), label: `${tenant.slug}, ${o.days} days of engagements, the last ${o.testDays} held out` }, new Date(to.getTime() - o.testDays * 86_400_000))
          })
        : await run(file ? { file } : { synthetic: o.synthetic! })
      if (o.json) return h.out(JSON.stringify(report, null, 2))
      for (const line of formatReport(report)) h.out(line)
    })
}
