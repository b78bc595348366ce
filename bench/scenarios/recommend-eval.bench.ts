import crypto from 'node:crypto'
import { z } from 'zod'
import { createPii } from '../../core/pii.js'
import { DEMO_BANKS } from '../../demo/demo.banks.js'
import { generateDemo } from '../../demo/demo.generator.js'
import { createCatalogRepository } from '../../recommend/catalog.repository.js'
import { formatReport, runEvaluation } from '../../recommend/eval/evaluate.run.js'
import { buildModel } from '../../recommend/model.build.js'
import { createTagRepository } from '../../tags/tag.repository.js'
import { createKeyService } from '../../tenants/keys.service.js'
import { createTenantService } from '../../tenants/tenants.service.js'
import type { BenchResult, BenchScenario } from '../harness.js'
import { codeVersion } from '../support.js'

/**
 * The quality of the served layout model (`npm run bench recommend-eval -- --set file=PATH`):
 *
 * - on an interactions file (MovieLens-100k's `u.data` or `ml-100k.inter`, recommend/eval/README.md
 *   says where to get it) under the MS Recommenders protocol: the served model's code path
 *   (`served_ease_0.3`, `served_sar`: the build's fit and the request path's scoring, with their
 *   truncations) against the reference SAR and EASE of the evaluation, in the same run;
 * - on a demo bank group (`customers`, `days`): each member bank's model build, with the
 *   time-split evaluation that chooses its model, and what the choice costs the build.
 */
export const scenario: BenchScenario = {
  name: 'recommend-eval',
  description: 'Offline quality of the served layout model: its code path on MovieLens-100k against the reference models, and the per-bank choice on demo banks',
  async run(ctx): Promise<BenchResult> {
    const file = ctx.args.file
    const customers = Number(ctx.args.customers ?? 20_000)
    const days = Number(ctx.args.days ?? 30)
    const figures: BenchResult['figures'] = {}
    const ratios: Record<string, number> = {}
    const notes: string[] = []
    const sections: string[] = []

    if (file) {
      const lines: string[] = []
      const report = await runEvaluation({ file }, { halfLife: 30, ease: [300], served: ['ease_0.3', 'sar'] }, (l) => lines.push(l))
      for (const [name, r] of Object.entries(report.algorithms)) {
        figures[`file_${name}_ndcg10`] = r.ndcg
        figures[`file_${name}_precision10`] = r.precision
        figures[`file_${name}_fit_ms`] = r.fitMs
      }
      const a = report.algorithms
      ratios.served_ease_ndcg_over_reference_ease = a['served_ease_0.3']!.ndcg / a.ease_lambda300!.ndcg
      ratios.served_ease_ndcg_over_sar = a['served_ease_0.3']!.ndcg / a.sar!.ndcg
      ratios.served_sar_ndcg_over_reference_sar_decay = a.served_sar!.ndcg / a.sar_decay_30d!.ndcg
      notes.push(`File: ${lines[0]!.replace(file, file.split('/').at(-1)!)}. Goal for the served model's code path: nDCG@10 >= 0.47; served_ease_0.3 reached ${a['served_ease_0.3']!.ndcg.toFixed(4)}.`)
      sections.push('```', ...formatReport(report), ...lines.slice(1).map((l) => l.replace(file, file.split('/').at(-1)!)), '```', '')
    } else {
      notes.push('No interactions file given (--set file=PATH): the MovieLens part did not run.')
    }

    if (customers > 0) {
      const system = ctx.db.system
      const tenants = createTenantService({ system, defaultTimeZone: 'Asia/Shanghai' })
      const keys = createKeyService({ system, tenants, cacheTtlMs: 30_000 })
      const catalogs = createCatalogRepository({ db: ctx.db, tags: createTagRepository({ db: ctx.db }), tenants })
      const now = new Date()
      const demo = await generateDemo({ db: ctx.db, tenants, keys, pii: createPii(crypto.randomBytes(32).toString('base64url')), log: ctx.log }, { customers, days, seed: 42, now, progress: false })
      figures.demo_seconds = demo.seconds
      const rows = ['| bank | customers with history | test customers | served | chosen by | ' + 'ease_0.3 | ease_0.1 | ease_1 | ease_3 | sar | popularity | build ms | choice ms | fit ms | items per customer (mean / max) | customers over 20 items |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
      for (const bank of DEMO_BANKS) {
        const tenant = await tenants.get(bank.slug)
        const built = await buildModel({ db: ctx.db, catalogs }, { tenant, asOf: now, build: String(Date.now() * 1000 + tenant.id) })
        const c = built.choice!
        const total = Object.values(built.ms).reduce((s, v) => s + v, 0)
        figures[`${bank.slug}_test_customers`] = c.testCustomers
        for (const [m, v] of Object.entries(c.ndcg)) figures[`${bank.slug}_${m}_ndcg10`] = v
        figures[`${bank.slug}_build_ms`] = total
        figures[`${bank.slug}_choice_ms`] = built.ms.choice ?? 0
        ratios[`${bank.slug}_choice_share_of_build`] = (built.ms.choice ?? 0) / total
        ratios[`${bank.slug}_served_ndcg_over_popularity`] = c.ndcg[built.model]! / c.ndcg.popularity!
        const f = (m: string) => (c.ndcg[m] ?? NaN).toFixed(4)
        // What the snapshot holds per customer now that 200 items are kept (the old cap was 20).
        const [sz] = await ctx.db.forTenant(tenant.id).query(
          `SELECT avg(length(items)) AS mean, max(length(items)) AS max, countIf(length(items) > 20) AS over FROM rec_customers WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64}`,
          { build: built.build },
          z.object({ mean: z.number(), max: z.coerce.number(), over: z.coerce.number() }),
        )
        figures[`${bank.slug}_items_per_customer_mean`] = sz!.mean
        figures[`${bank.slug}_customers_over_20_items`] = sz!.over
        rows.push(`| ${bank.slug} | ${built.customers} | ${c.testCustomers} | ${built.model} | ${c.chosenBy} | ${f('ease_0.3')} | ${f('ease_0.1')} | ${f('ease_1')} | ${f('ease_3')} | ${f('sar')} | ${f('popularity')} | ${total} | ${built.ms.choice ?? 0} | ${built.ms.fit ?? 0} | ${sz!.mean.toFixed(1)} / ${sz!.max} | ${sz!.over} |`)
      }
      sections.push(`Per bank (demo group of ${customers} customers, ${days} days; the last 7 days are the test side of each bank's split, nDCG@10):`, '', ...rows, '')
      notes.push('The demo generator draws engagements per customer from screen weights, with little item-to-item structure: the banks\u2019 figures say which model that data favours, not how real customers behave.')
    }
    notes.push('Ratios compare models of the same run on the same split; the machine is shared, so the fit and build times are rough.')
    return { params: { file: file ? file.split('/').at(-1)! : 'none', customers, days, code: codeVersion() }, figures, ratios, notes, sections }
  },
}
