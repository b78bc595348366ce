import fs from 'node:fs'
import crypto from 'node:crypto'
import { createMetrics } from '../../core/metrics.js'
import { createPii } from '../../core/pii.js'
import { DAY_MS, localDate, zonedMidnight } from '../../core/time.js'
import { DEMO_BANKS } from '../../demo/demo.banks.js'
import { generateDemo } from '../../demo/demo.generator.js'
import { newRunId } from '../../core/run-id.js'
import { runTags, type TagRunResult } from '../../tags/tag.pipeline.js'
import { createCatalogRepository } from '../../recommend/catalog.repository.js'
import { createLayoutService } from '../../recommend/layout.service.js'
import { buildModel } from '../../recommend/model.build.js'
import { createBitmapStore } from '../../segments/bitmap.store.js'
import { loadRoaring } from '../../segments/roaring.js'
import { preview } from '../../segments/segment.preview.js'
import { parseSegment, type SegmentNode } from '../../segments/segment.schema.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../../tags/tag.pack.js'
import { createTagRepository } from '../../tags/tag.repository.js'
import type { StoredTag } from '../../tags/tag.schema.js'
import { createKeyService } from '../../tenants/keys.service.js'
import { createTenantService, type Tenant } from '../../tenants/tenants.service.js'
import { diskSizes, diskTable, ENGINE_MEMORY, engineMemory, eraseOne, layoutLoop, loadavg, measure, pushTargeting, settleCapped, stepTotals, timeRuns } from '../bank.parts.js'
import { monitorSection, openEngineMonitor } from '../engine-monitor.js'
import { writeResult, type BenchResult, type BenchScenario } from '../harness.js'
import { createMemorySampler } from '../memory.js'
import { appendDay, codeVersion } from '../support.js'

/**
 * The whole product at the bank's size (`npm run bench bank`; opt-in, about an hour): the demo
 * group at 14M customers of whom 4M use the app, 30 days of their events, then in this one
 * process on the embedded engine: disk per table, the banking tag pack's full run and a one-day
 * incremental run, segment previews (tag-only from bitmaps, and behavioural over events), the
 * layout model and snapshot (load time, memory, layouts/s in process), push targeting of a
 * marketing campaign over every customer with every policy, and the erasure of one customer.
 *
 * Memory is sampled all along (bench/memory.ts): the peak resident set per phase, and how much
 * of it JavaScript holds. `--set budget_min=M` (default 60) bounds the run: a phase that would
 * not fit in what is left is skipped and the notes say so; when the budget runs out inside a
 * phase, the figures so far are written with a note naming the phase and the process exits.
 * Develop at small scale: `npm run bench bank -- --set customers=200000 active=60000`.
 */

const TIME_ZONE = 'Asia/Shanghai'

const TAG_SEGMENTS: Record<string, SegmentNode> = {
  c3: { all: [{ tag: 'aum_tier', op: 'in', value: ['affluent', 'high_net_worth'] }, { tag: 'active_days_30d', op: 'gte', value: 5 }, { not: { tag: 'elder', op: 'eq', value: true } }] },
  c6: {
    all: [
      { tag: 'aum_tier', op: 'in', value: ['mass', 'affluent', 'high_net_worth'] },
      { tag: 'age', op: 'between', value: [25, 55] },
      { tag: 'txn_count_30d', op: 'gte', value: 2 },
      { not: { tag: 'lifecycle', op: 'in', value: ['dormant', 'churned'] } },
      { any: [{ tag: 'wealth_interest', op: 'eq', value: true }, { tag: 'sessions_30d', op: 'gte', value: 8 }] },
    ],
  },
}
const BEHAVIOURAL: SegmentNode = {
  all: [
    { event: { names: ['product_viewed'] }, measure: 'count', op: 'gte', value: 3, window: { lastDays: 30 } },
    { sequence: [{ event: { names: ['signed_in'] } }, { event: { names: ['transfer_completed'] } }], withinDays: 1, window: { lastDays: 30 } },
  ],
}

export const scenario: BenchScenario = {
  name: 'bank',
  description:
    'The whole product at the bank scale on one machine: demo of 14M customers (4M active, 30 days of events), disk, tag runs, segment previews, layout snapshot and layouts, push targeting, erasure',
  async run(ctx): Promise<BenchResult> {
    const customers = Number(ctx.args.customers ?? 14_000_000)
    const active = Number(ctx.args.active ?? 4_000_000)
    const days = Number(ctx.args.days ?? 30)
    const seed = Number(ctx.args.seed ?? 42)
    const budgetS = Number(ctx.args.budget_min ?? 60) * 60
    const layoutSeconds = Number(ctx.args.layout_s ?? 20)
    const runs = Number(ctx.args.runs ?? 20)
    const started = performance.now()
    const left = () => budgetS - (performance.now() - started) / 1000
    const system = ctx.db.system
    // Generation, tag runs, model builds are pipeline work: on the pipeline lane, as the server runs them.
    const pdb = ctx.db.lane('pipeline')
    const eventSeconds = ctx.args.events_min === undefined ? undefined : Number(ctx.args.events_min) * 60
    const say = (msg: string) => console.error(`[bank ${new Date().toISOString().slice(11, 19)}] ${msg}`)
    const code = codeVersion()
    const pack = readDefinitionFiles(BANKING_PACK)
    const mem = createMemorySampler()
    const monitor = await openEngineMonitor(ctx.dataDir)
    const figures: Record<string, number> = {}
    const notes: string[] = []
    const sections: string[] = []
    const skipped: string[] = []
    const engineMem: Record<string, Record<string, number>> = {}
    let phaseName = 'generation'
    const startPhase = (name: string) => {
      phaseName = name
      mem.phase(name)
      monitor.phase(name)
      say(`phase ${name}`)
    }
    const params: Record<string, number | string> = { customers, active, days, seed, code, time_zone: TIME_ZONE, budget_min: budgetS / 60 }
    const result = (): BenchResult => ({ params, figures, notes, sections: [...sections, monitorSection(monitor.peaks())] })
    // The time box: past the budget, what was measured is written with where it stopped.
    const startedAt = new Date()
    const watchdog = setTimeout(() => {
      const r = result()
      figures.max_rss_mb = process.resourceUsage().maxRSS / 1024
      r.notes = [...notes, `STOPPED by the time budget (${(budgetS / 60).toFixed(0)} min) during phase "${phaseName}", ${mem.now().rssMb.toFixed(0)} MB resident at that moment; the phases after it did not run.`]
      writeResult(scenario, r, startedAt, (Date.now() - startedAt.getTime()) / 1000)
      say(`stopped by the time budget during ${phaseName}; partial results written`)
      // Exiting skips the harness's close, which removes the engine's temporary directory (13 GB at 14M).
      fs.rmSync(ctx.dataDir, { recursive: true, force: true })
      process.exit(3)
    }, budgetS * 1000)
    watchdog.unref()
    const endPhase = async (name: string) => {
      monitor.phase('between')
      const peak = mem.phase('between')
      figures[`${name}_peak_rss_mb`] = peak.rssMb
      figures[`${name}_peak_js_mb`] = peak.jsMb
      engineMem[name] = await engineMemory(system)
    }
    figures.base_rss_mb = mem.base.rssMb

    // --- generation ----------------------------------------------------------------------------
    const tenants = createTenantService({ system, defaultTimeZone: TIME_ZONE })
    const keys = createKeyService({ system, tenants, cacheTtlMs: 30_000 })
    const pii = createPii(crypto.randomBytes(32).toString('base64url'))
    const asOf = zonedMidnight(localDate(new Date(), TIME_ZONE), TIME_ZONE)
    params.as_of = asOf.toISOString()
    say(`generating: ${customers} customers, ${active} active, ${days} days, now = ${asOf.toISOString()}`)
    startPhase('generation')
    const onStep = (st: { bank: string; table: string; seconds: number; toKey?: number }) => {
      const k = `gen_${st.bank.replace('demo-', '')}_${st.table}`
      figures[`${k}_s`] = (figures[`${k}_s`] ?? 0) + st.seconds
      if (st.toKey !== undefined) figures[`${k}_to_key`] = st.toKey
      else say(`generated ${st.bank} ${st.table} in ${st.seconds.toFixed(1)} s (RSS ${mem.now().rssMb.toFixed(0)} MB)`)
    }
    const gen = await measure(() =>
      generateDemo({ db: pdb, tenants, keys, pii, log: ctx.log }, { customers, active, days, seed, now: asOf, progress: false, onStep, ...(eventSeconds === undefined ? {} : { eventSeconds }) }),
    )
    await endPhase('generation')
    const summary = gen.value
    const events = summary.rows.events ?? 0
    say(`generated ${events} events in ${gen.seconds.toFixed(0)} s (peak RSS ${figures.generation_peak_rss_mb!.toFixed(0)} MB, JS ${figures.generation_peak_js_mb!.toFixed(0)} MB)`)
    Object.assign(figures, { generation_s: gen.seconds, generation_cpu_s: gen.cpuSeconds, events, events_per_active_month: (events / active) * (30 / days) })
    for (const [phase, s] of Object.entries(summary.phases)) figures[`generation_${phase}_s`] = s
    const rowsPerS: string[] = ['| table | rows | seconds | rows/s |', '| --- | --- | --- | --- |']
    for (const [table, s] of Object.entries(summary.tables)) {
      const n = summary.rows[table] ?? 0
      if (n) rowsPerS.push(`| ${table} | ${n.toLocaleString('en-US')} | ${s.toFixed(1)} | ${Math.round(n / s).toLocaleString('en-US')} |`)
    }
    sections.push('## Generation, per table\n', rowsPerS.join('\n'), '')
    for (const c of summary.eventsCut) {
      notes.push(`Events time box (events_min=${ctx.args.events_min}): ${c.bank} has events for keys 1..${c.toKey} of ${c.customers} only (its active customers among them); the rest of its customers have stock data and no events.`)
    }
    const merges = await settleCapped(system, Math.min(300, Math.max(0, left() * 0.05)))
    figures.merges_after_generation_s = merges.seconds
    if (!merges.settled) notes.push(`Background merges were still running ${merges.seconds.toFixed(0)} s after generation; the next phases ran beside them.`)
    const diskGen = await diskSizes(system)
    figures.disk_after_generation_mb = diskGen.reduce((a, s) => a + s.bytesOnDisk, 0) / 1024 ** 2
    sections.push('## Disk after generation (system.parts, active parts)\n', diskTable(diskGen), '')

    const members: Tenant[] = []
    for (const t of summary.tenants.filter((x) => x.kind === 'member')) members.push(await tenants.get(t.id))
    const sizes = DEMO_BANKS.map((b) => ({ bank: b, tenant: members.find((m) => m.slug === b.slug)! }))
    const main = members[0]!
    const mainCustomers = summary.rows.customers ? Math.round(customers * DEMO_BANKS[0]!.share) : 0

    // --- erasure of one customer (before the tag runs: it needs none of them, and fits a time box) ------------------------------------------------------------------
    if (left() > 900) {
      startPhase('erasure')
      const er = await eraseOne({ db: ctx.db, tenants, log: ctx.log }, main, mainCustomers)
      await endPhase('erasure')
      Object.assign(figures, { erasure_one_s: er.seconds, erasure_one_cpu_s: er.cpuSeconds, erasure_verified: er.verified ? 1 : 0, erasure_places: er.places })
      notes.push(`Erasure of one customer of ${main.slug}: ${er.status}, proof verified ${er.verified}; the places with most rows: ${er.slowest}.`)
      say(`erasure: ${er.seconds.toFixed(1)} s, ${er.status}`)
    } else skipped.push(`the erasure (${left().toFixed(0)} s left of the budget)`)


    // --- full tag run ----------------------------------------------------------------------------
    const repo = createTagRepository({ db: ctx.db })
    for (const t of members) await applyDefinitions(repo, t.id, pack, 'bench')
    const defsOf = new Map<number, StoredTag[]>()
    for (const t of members) defsOf.set(t.id, await repo.list(t.id))
    const tagRun = async (mode: 'full' | 'incremental', at: Date) => {
      const results: TagRunResult[] = []
      const r = await measure(async () => {
        for (const t of members) {
          const one = await runTags(
            { db: pdb },
            { tenantId: t.id, timeZone: t.timeZone, defs: defsOf.get(t.id)!, mode, asOf: at, runId: newRunId(), ...(mode === 'incremental' ? { watermarkSlackMs: 0 } : {}) },
          )
          results.push(one)
          // Per bank as it ends, so a run stopped by the time box keeps the banks done.
          figures[`${mode}_tags_${t.slug.replace('demo-', '')}_s`] = one.steps.reduce((a, x) => a + x.ms, 0) / 1000
          say(`${mode} tag run ${t.slug}: ${one.changed} values changed, mode ${one.mode}, failures ${one.failures.length}`)
        }
      })
      return { ...r, results, steps: stepTotals(results, r.seconds) }
    }
    startPhase('full_tags')
    const full = await tagRun('full', asOf)
    await endPhase('full_tags')
    say(`full tag run: ${full.seconds.toFixed(0)} s, ${full.cpuSeconds.toFixed(0)} CPU s, peak RSS ${figures.full_tags_peak_rss_mb!.toFixed(0)} MB`)
    Object.assign(figures, { full_tags_s: full.seconds, full_tags_cpu_s: full.cpuSeconds, full_tags_failures: full.results.reduce((a, r) => a + r.failures.length, 0) })
    for (const [k, v] of Object.entries(full.steps)) figures[`full_tags_${k}_s`] = v
    figures.load1_after_full_tags = loadavg()

    // --- segment previews --------------------------------------------------------------------
    const roaring = await loadRoaring()
    if (!roaring) throw new Error('the optional "roaring" package is not installed: previews and layouts cannot be measured')
    const store = createBitmapStore({ roaring, maxBytes: 8 * 1024 ** 3, freshMs: 0 })
    const mainDb = ctx.db.forTenant(main.id)
    const defs = new Map(defsOf.get(main.id)!.map((d) => [d.name, d]))
    const opts = { defs, asOf, timeZone: main.timeZone }
    startPhase('previews')
    for (const [name, rule] of Object.entries(TAG_SEGMENTS)) {
      const seg = parseSegment({ purpose: 'marketing', rule })
      const cold = await measure(() => preview(mainDb, seg, { ...opts, store }))
      const p = await timeRuns(runs, () => preview(mainDb, seg, { ...opts, store }))
      Object.assign(figures, { [`${name}_preview_cold_ms`]: cold.seconds * 1000, [`${name}_preview_p50_ms`]: p.p50, [`${name}_preview_p99_ms`]: p.p99, [`${name}_count`]: p.last.count })
      say(`${name}: cold ${(cold.seconds * 1000).toFixed(0)} ms, p50 ${p.p50.toFixed(1)} ms, p99 ${p.p99.toFixed(1)} ms, ${p.last.count} customers`)
    }
    const behavioural = parseSegment({ purpose: 'marketing', rule: BEHAVIOURAL })
    const behaviourRuns = Number(ctx.args.behaviour_runs ?? 3)
    const bt: number[] = []
    for (let i = 0; i < behaviourRuns; i++) {
      const t0 = performance.now()
      try {
        const r = await preview(mainDb, behavioural, opts)
        bt.push(performance.now() - t0)
        figures.behavioural_count = r.count
      } catch (e) {
        const ms = performance.now() - t0
        notes.push(`The behavioural preview failed after ${(ms / 1000).toFixed(1)} s with the API's limits: ${String((e as Error).message).slice(0, 300)}`)
        figures.behavioural_failed_after_ms = ms
        break
      }
    }
    if (bt.length) {
      bt.sort((a, b) => a - b)
      Object.assign(figures, { behavioural_p50_ms: bt[Math.floor((bt.length - 1) / 2)]!, behavioural_max_ms: bt[bt.length - 1]!, behavioural_runs: bt.length })
      say(`behavioural: p50 ${bt[Math.floor((bt.length - 1) / 2)]!.toFixed(0)} ms over ${bt.length}`)
    }
    await endPhase('previews')

    // --- layout model, snapshot and layouts --------------------------------------------------------
    const catalogs = createCatalogRepository({ db: ctx.db, tags: repo, tenants })
    startPhase('model_build')
    const model = await measure(async () => {
      for (const t of members) await buildModel({ db: pdb, catalogs }, { tenant: t, asOf, build: newRunId() })
    })
    await endPhase('model_build')
    Object.assign(figures, { model_build_s: model.seconds, model_build_cpu_s: model.cpuSeconds })
    say(`layout models built in ${model.seconds.toFixed(0)} s`)
    const layouts = createLayoutService({ db: ctx.db, tenants, tags: repo, catalogs, bitmaps: store, log: ctx.log, metrics: createMetrics({ collectDefault: false }) })
    startPhase('snapshot_load')
    const before = mem.now()
    let snapshotBytes = 0
    let indexed = 0
    const load = await measure(async () => {
      for (const t of members) {
        const s = await layouts.reload(t.id)
        snapshotBytes += s.bytes
        indexed += s.index.keys.length
        figures[`snapshot_load_${t.slug}_ms`] = s.loadedMs
      }
    })
    const after = mem.now()
    await endPhase('snapshot_load')
    Object.assign(figures, {
      snapshot_load_s: load.seconds,
      snapshot_mb: snapshotBytes / 1024 ** 2,
      snapshot_customers_indexed: indexed,
      snapshot_rss_growth_mb: after.rssMb - before.rssMb,
      snapshot_js_growth_mb: after.jsMb - before.jsMb,
    })
    say(`snapshots: ${(snapshotBytes / 1024 ** 2).toFixed(0)} MB for ${indexed} customers in ${load.seconds.toFixed(1)} s; RSS +${(after.rssMb - before.rssMb).toFixed(0)} MB`)
    startPhase('layouts')
    const banks = sizes.map((s) => ({ tenantId: s.tenant.id, prefix: s.bank.customerPrefix, customers: summary.rows.customers ? Math.max(1, Math.floor(customers * s.bank.share)) : 1 }))
    const lay = await layoutLoop(layouts, banks, layoutSeconds)
    await endPhase('layouts')
    await layouts.close()
    Object.assign(figures, { layouts_per_s_one_at_a_time: lay.perSecond, layout_p50_ms: lay.p50, layout_p99_ms: lay.p99, layout_bytes: lay.bytesPerLayout })
    say(`layouts: ${lay.perSecond.toFixed(0)}/s, p50 ${lay.p50.toFixed(2)} ms, p99 ${lay.p99.toFixed(2)} ms`)

    // --- push targeting --------------------------------------------------------------------------
    startPhase('push')
    const push = await measure(() => pushTargeting({ db: ctx.db, tenants, log: ctx.log, tags: repo }, members, say))
    await endPhase('push')
    Object.assign(figures, {
      push_s: push.seconds,
      push_cpu_s: push.cpuSeconds,
      push_loan_due_s: push.value.loanSeconds,
      push_loan_due_targets: push.value.loanTargets,
      push_marketing_s: push.value.marketingSeconds,
      push_marketing_cpu_s: push.value.marketingCpuSeconds,
      push_marketing_targets: push.value.marketingTargets,
      push_marketing_queued: push.value.queued,
      push_marketing_customers_per_s: customers / push.value.marketingSeconds,
    })
    notes.push(`Push: the marketing campaign over all ${customers.toLocaleString('en-US')} customers; suppressed by reason ${JSON.stringify(push.value.suppressed)}; errors ${push.value.errors.length ? push.value.errors.join('; ') : 'none'}.`)

    // --- one new day and the incremental tag run -----------------------------------------------------
    if (left() > full.seconds * 0.8 + 120) {
      const asOf2 = new Date(asOf.getTime() + DAY_MS)
      const add = await measure(async () => {
        let n = 0
        for (const t of members) n += await appendDay(pdb.forTenant(t.id), t.timeZone, localDate(asOf, t.timeZone))
        return n
      })
      Object.assign(figures, { new_day_events: add.value, new_day_insert_s: add.seconds })
      startPhase('incremental_tags')
      const incr = await tagRun('incremental', asOf2)
      await endPhase('incremental_tags')
      Object.assign(figures, { incremental_tags_s: incr.seconds, incremental_tags_cpu_s: incr.cpuSeconds, incremental_scoped: incr.results.reduce((a, r) => a + (r.scoped ?? 0), 0) })
      for (const [k, v] of Object.entries(incr.steps)) figures[`incremental_tags_${k}_s`] = v
      const modes = incr.results.map((r) => r.mode).join('/')
      say(`incremental tag run: ${incr.seconds.toFixed(0)} s (${modes})`)
      notes.push(`Incremental run: one new day (${add.value.toLocaleString('en-US')} events, a copy of the last day) then runs in mode ${modes}, ${figures.incremental_scoped} customers in scope.`)
    } else skipped.push(`the one-day incremental tag run (${left().toFixed(0)} s left of the budget, the full run took ${full.seconds.toFixed(0)} s)`)

    // --- disk and memory at the end -------------------------------------------------------------------
    const diskEnd = await diskSizes(system)
    figures.disk_end_mb = diskEnd.reduce((a, s) => a + s.bytesOnDisk, 0) / 1024 ** 2
    sections.push('## Disk at the end (tags, segments, push targets included)\n', diskTable(diskEnd), '')
    figures.max_rss_mb = process.resourceUsage().maxRSS / 1024
    clearTimeout(watchdog)
    mem.stop()
    await monitor.close()
    sections.push(
      '## Engine memory after each phase (MB)\n',
      `| phase | ${ENGINE_MEMORY.join(' | ')} |`,
      `| --- | ${ENGINE_MEMORY.map(() => '---').join(' | ')} |`,
      ...Object.entries(engineMem).map(([p, m]) => `| ${p} | ${ENGINE_MEMORY.map((k) => (m[k] ?? NaN).toFixed(0)).join(' | ')} |`),
      '',
    )
    if (skipped.length) notes.push(`Not run, the time budget (${(budgetS / 60).toFixed(0)} min) was spent: ${skipped.join('; ')}.`)
    notes.push(
      'Every figure comes from this one process (Node and the embedded engine) on the machine named above; *_cpu_s is its CPU time (Node and engine threads). *_peak_rss_mb is the resident set sampled every 250 ms during the phase, *_peak_js_mb what JavaScript held (V8 heap used plus external buffers).',
      'Layouts are served in this process, one at a time (layoutJson, the HTTP route\'s path), without HTTP: recommend.bench.ts measures the route under load at 1M.',
    )
    return result()
  },
}
