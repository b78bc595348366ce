import crypto from 'node:crypto'
import os from 'node:os'
import { z } from 'zod'
import type { TenantDb } from '../../core/db.js'
import { AppError } from '../../core/errors.js'
import { createPii } from '../../core/pii.js'
import { addDays, chDateTime, localDate, zonedMidnight } from '../../core/time.js'
import { generateDemo } from '../../demo/demo.generator.js'
import { newRunId } from '../../core/run-id.js'
import { runTags } from '../../tags/tag.pipeline.js'
import { createBitmapStore } from '../../segments/bitmap.store.js'
import { loadRoaring } from '../../segments/roaring.js'
import { zeroWhenAbsent } from '../../segments/segment.compile.js'
import { preview, type Preview } from '../../segments/segment.preview.js'
import { parseSegment, type Segment, type SegmentNode } from '../../segments/segment.schema.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../../tags/tag.pack.js'
import { ParamBinder } from '../../core/params.js'
import { createTagRepository } from '../../tags/tag.repository.js'
import type { LifecycleRule, StoredTag, TagDefinition, ValueType, WindowRule } from '../../tags/tag.schema.js'
import { rebuildBitmaps, writeNumericSnapshots } from '../../tags/tag.bitmaps.js'
import { createKeyService } from '../../tenants/keys.service.js'
import { createTenantService, type Tenant } from '../../tenants/tenants.service.js'
import type { BenchScenario } from '../harness.js'
import { codeVersion, propertyCondition, settle } from '../support.js'

/**
 * Segment preview from tag bitmaps (`npm run bench segments -- --set customers=N`), against what
 * one would run without bitmaps, in the same process and run:
 *
 * 1. the demo group (N customers, `days` of events), the banking pack applied to the largest
 *    member bank and one full tag run there (as the tags scenario does);
 * 2. tag-only segments of 3, 6 and 10 conditions (booleans, enums, numeric ranges, not, any):
 *    preview() p50/p99 over `runs` repetitions after one warm-up, without and with a breakdown
 *    by two tags, as the API runs it (bitmaps held in memory: the first, cold call loads them and
 *    is reported apart) and in ClickHouse (no bitmap store); beside (a) naive SQL over `tag_values FINAL` (a pivot GROUP BY customer_key,
 *    the conditions, count()) and (b) naive SQL over raw events (the per-customer aggregates that
 *    define the window tags involved, recomputed from events, joined with the profile and
 *    account balances the profile tags come from), p50 over `naive_runs`;
 * 3. one behavioural segment (an event count leaf and a two-step sequence) on every member bank
 *    (all the run's events), and once with a 1 s time limit to show the guardrail's error path;
 * 4. a SYNTHETIC tenant of `synthetic` customers (default 14M) written directly with
 *    INSERT ... SELECT FROM numbers(): customers, tag_values of the segments' twelve tags with
 *    hash-based distributions, bitmaps built by the pipeline's own rebuildBitmaps, tag_state rows
 *    pointing at that build; the same previews and the naive tag_values query there.
 */

const TIME_ZONE = 'Asia/Shanghai'
const PURPOSE = 'marketing' as const

/** The tag-only segments; every leaf is a tag of the banking pack allowed for marketing. */
const TAG_SEGMENTS: Record<'c3' | 'c6' | 'c10', SegmentNode> = {
  c3: {
    all: [
      { tag: 'aum_tier', op: 'in', value: ['affluent', 'high_net_worth'] },
      { tag: 'active_days_30d', op: 'gte', value: 5 },
      { not: { tag: 'elder', op: 'eq', value: true } },
    ],
  },
  c6: {
    all: [
      { tag: 'aum_tier', op: 'in', value: ['mass', 'affluent', 'high_net_worth'] },
      { tag: 'age', op: 'between', value: [25, 55] },
      { tag: 'txn_count_30d', op: 'gte', value: 2 },
      { not: { tag: 'lifecycle', op: 'in', value: ['dormant', 'churned'] } },
      { any: [{ tag: 'wealth_interest', op: 'eq', value: true }, { tag: 'sessions_30d', op: 'gte', value: 8 }] },
    ],
  },
  c10: {
    all: [
      { tag: 'age', op: 'between', value: [30, 65] },
      { tag: 'aum_tier', op: 'in', value: ['affluent', 'high_net_worth', 'private'] },
      { not: { tag: 'elder', op: 'eq', value: true } },
      { tag: 'active_days_30d', op: 'gte', value: 3 },
      { tag: 'txn_amount_30d', op: 'gte', value: 1000 },
      { not: { tag: 'lifecycle', op: 'in', value: ['churned'] } },
      {
        any: [
          { tag: 'wealth_interest', op: 'eq', value: true },
          { tag: 'loan_interest', op: 'eq', value: true },
          { tag: 'salary_inflow', op: 'eq', value: true },
        ],
      },
      { tag: 'features_used_30d', op: 'gte', value: 2 },
    ],
  },
}
const BREAKDOWN = ['aum_tier', 'active_days_30d']

/** An event leaf and a sequence: a pass over the resolved events of the window. */
const BEHAVIOURAL: SegmentNode = {
  all: [
    { event: { names: ['product_viewed'] }, measure: 'count', op: 'gte', value: 3, window: { lastDays: 30 } },
    { sequence: [{ event: { names: ['signed_in'] } }, { event: { names: ['transfer_completed'] } }], withinDays: 1, window: { lastDays: 30 } },
  ],
}

export const scenario: BenchScenario = {
  name: 'segments',
  description: 'Segment preview from tag bitmaps (3/6/10 tag conditions, a behavioural segment) vs naive SQL over tag_values and over raw events; a synthetic 14M-customer tenant',
  async run(ctx) {
    const customers = Number(ctx.args.customers ?? 1_000_000)
    const days = Number(ctx.args.days ?? 30)
    const seed = Number(ctx.args.seed ?? 42)
    const runs = Number(ctx.args.runs ?? 30)
    const naiveRuns = Number(ctx.args.naive_runs ?? 3)
    const behaviourRuns = Number(ctx.args.behaviour_runs ?? 3)
    const synthetic = Number(ctx.args.synthetic ?? 14_000_000)
    const syntheticRuns = Number(ctx.args.synthetic_runs ?? 10)
    const system = ctx.db.system
    const say = (msg: string) => console.error(`[segments ${new Date().toISOString().slice(11, 19)}] ${msg}`)
    const code = codeVersion()
    const pack = readDefinitionFiles(BANKING_PACK)
    const figures: Record<string, number> = {}
    const notes: string[] = []

    // --- demo, pack and one full tag run on the largest member bank ----------------------------
    const tenants = createTenantService({ system, defaultTimeZone: TIME_ZONE })
    const keys = createKeyService({ system, tenants, cacheTtlMs: 30_000 })
    const pii = createPii(crypto.randomBytes(32).toString('base64url'))
    const asOf = zonedMidnight(localDate(new Date(), TIME_ZONE), TIME_ZONE)
    say(`generating the demo: ${customers} customers, ${days} days, now = ${asOf.toISOString()}`)
    const summary = await generateDemo({ db: ctx.db, tenants, keys, pii, log: ctx.log }, { customers, days, seed, now: asOf, progress: false })
    const events = summary.rows.events ?? 0
    say(`demo: ${events} events in ${summary.seconds.toFixed(1)} s`)
    const members: Tenant[] = []
    for (const t of summary.tenants.filter((x) => x.kind === 'member')) members.push(await tenants.get(t.id))
    const sizes = await Promise.all(members.map((t) => liveCustomers(ctx.db.forTenant(t.id))))
    const main = members[sizes.indexOf(Math.max(...sizes))]!
    const mainDb = ctx.db.forTenant(main.id)
    const mainEvents = await countEvents(mainDb)
    const repo = createTagRepository({ db: ctx.db })
    await applyDefinitions(repo, main.id, pack, 'bench')
    const stored = await repo.list(main.id)
    const defs = new Map<string, TagDefinition>(stored.map((t) => [t.name, t]))
    let t0 = performance.now()
    const tagRun = await runTags({ db: ctx.db }, { tenantId: main.id, timeZone: main.timeZone, defs: stored, mode: 'full', asOf, runId: newRunId() })
    const tagRunSeconds = (performance.now() - t0) / 1000
    say(`tag run on ${main.slug} (${Math.max(...sizes)} customers, ${mainEvents} events): ${tagRunSeconds.toFixed(1)} s, ${tagRun.changed} values`)
    figures.generation_s = summary.seconds
    figures.events = events
    figures.main_tenant_customers = Math.max(...sizes)
    figures.main_tenant_events = mainEvents
    figures.tag_run_s = tagRunSeconds
    figures.merges_settle_after_tags_s = await settle(system)

    const opts = { defs, asOf, timeZone: main.timeZone }
    const today = localDate(asOf, main.timeZone)
    const segs = Object.fromEntries(Object.entries(TAG_SEGMENTS).map(([k, rule]) => [k, parseSegment({ purpose: PURPOSE, rule })])) as Record<keyof typeof TAG_SEGMENTS, Segment>

    // --- tag-only segments on the demo --------------------------------------------------------
    const mismatches: string[] = []
    const roaring = await loadRoaring()
    if (!roaring) throw new Error('the optional "roaring" package is not installed: the in-memory preview cannot be measured')
    // freshMs 0: every preview asks ClickHouse for the current builds (one round trip), the conservative path.
    const store = createBitmapStore({ roaring, maxBytes: 8 * 1024 ** 3, freshMs: 0 })
    const memOpts = { ...opts, store }
    for (const [name, seg] of Object.entries(segs)) {
      const leaves = countLeaves(seg.rule)
      const cold = await timeRuns(1, () => preview(mainDb, seg, { ...memOpts, breakdown: BREAKDOWN }), 0)
      const p = await timeRuns(runs, () => preview(mainDb, seg, memOpts))
      const pb = await timeRuns(runs, () => preview(mainDb, seg, { ...memOpts, breakdown: BREAKDOWN }))
      const pe = await timeRuns(runs, () => preview(mainDb, seg, opts))
      if (p.last.count !== pe.last.count) mismatches.push(`${name}: memory ${p.last.count}, clickhouse ${pe.last.count}`)
      const naiveTags = naiveTagSql(seg.rule, defs)
      const nt = await timeRuns(naiveRuns, () => countQuery(mainDb, naiveTags.sql, naiveTags.params))
      const naiveEvents = naiveEventSql(seg.rule, defs, today, main.timeZone)
      const ne = await timeRuns(naiveRuns, () => countQuery(mainDb, naiveEvents.sql, naiveEvents.params), 0)
      const count = p.last.count
      say(
        `${name} (${leaves} conditions): preview p50 ${p.p50.toFixed(1)} ms p99 ${p.p99.toFixed(1)}, with breakdown p50 ${pb.p50.toFixed(1)}, cold ${cold.p50.toFixed(0)} ms, in ClickHouse p50 ${pe.p50.toFixed(1)}; ` +
          `naive tag_values p50 ${nt.p50.toFixed(0)} ms, naive events p50 ${ne.p50.toFixed(0)} ms; counts ${count} / ${nt.last} / ${ne.last}`,
      )
      if (nt.last !== count) mismatches.push(`${name}: preview ${count}, naive tag_values ${nt.last}`)
      Object.assign(figures, {
        [`${name}_conditions`]: leaves,
        [`${name}_count`]: count,
        [`${name}_share`]: p.last.share,
        [`${name}_preview_p50_ms`]: p.p50,
        [`${name}_preview_p99_ms`]: p.p99,
        [`${name}_preview_breakdown_p50_ms`]: pb.p50,
        [`${name}_preview_breakdown_p99_ms`]: pb.p99,
        [`${name}_preview_cold_ms`]: cold.p50,
        [`${name}_preview_clickhouse_p50_ms`]: pe.p50,
        [`${name}_preview_clickhouse_p99_ms`]: pe.p99,
        [`${name}_naive_tag_values_p50_ms`]: nt.p50,
        [`${name}_naive_events_p50_ms`]: ne.p50,
        [`${name}_naive_tag_values_count`]: nt.last,
        [`${name}_naive_events_count`]: ne.last,
        [`${name}_naive_tag_values_over_preview`]: nt.p50 / p.p50,
        [`${name}_naive_events_over_preview`]: ne.p50 / p.p50,
        [`${name}_clickhouse_over_preview`]: pe.p50 / p.p50,
      })
    }
    const universe1m = await timeRuns(runs, () => countQuery(mainDb, UNIVERSE_COUNT, {}))
    figures.universe_only_p50_ms = universe1m.p50
    figures.load1_after_tag_segments = os.loadavg()[0]!

    // --- the behavioural segment over the events of every member bank --------------------------
    const behavioural = parseSegment({ purpose: PURPOSE, rule: BEHAVIOURAL })
    let behaviourTotal = 0
    let behaviourMembers = 0
    const behaviourErrors: string[] = []
    for (const t of members) {
      const db = ctx.db.forTenant(t.id)
      const o = { ...opts, timeZone: t.timeZone }
      const start = performance.now()
      try {
        const r = await preview(db, behavioural, o)
        behaviourMembers += r.count
      } catch (e) {
        behaviourErrors.push(`${t.slug}: ${e instanceof AppError ? `${e.code} ${e.message}` : String(e)}`)
      }
      behaviourTotal += performance.now() - start
    }
    figures.behavioural_all_members_ms = behaviourTotal
    figures.behavioural_all_members_count = behaviourMembers
    figures.behavioural_all_members_errors = behaviourErrors.length
    let bm: Awaited<ReturnType<typeof timeRuns<Preview>>> | undefined
    try {
      bm = await timeRuns(behaviourRuns, () => preview(mainDb, behavioural, opts), 0)
      figures.behavioural_main_p50_ms = bm.p50
      figures.behavioural_main_max_ms = bm.p99
      figures.behavioural_main_count = bm.last.count
      say(`behavioural on ${main.slug}: p50 ${bm.p50.toFixed(0)} ms, ${bm.last.count} customers; all members ${behaviourTotal.toFixed(0)} ms`)
    } catch (e) {
      behaviourErrors.push(`${main.slug} repeated: ${e instanceof AppError ? `${e.code} ${e.message}` : String(e)}`)
    }
    // The error path: the same segment with a 1 s limit.
    const g0 = performance.now()
    let guardrail = 'did not trip: the preview finished within 1 s'
    figures.guardrail_tripped = 0
    try {
      await preview(mainDb, behavioural, { ...opts, maxExecutionTime: 1 })
    } catch (e) {
      guardrail = e instanceof AppError ? `${e.code} (HTTP ${e.status}): ${e.message}` : `not an AppError: ${String(e).slice(0, 300)}`
      figures.guardrail_tripped = e instanceof AppError && e.code === 'OVERLOADED' ? 1 : 0
    }
    figures.guardrail_1s_elapsed_ms = performance.now() - g0
    say(`guardrail at 1 s: ${guardrail} after ${figures.guardrail_1s_elapsed_ms.toFixed(0)} ms`)

    // --- the synthetic tenant -------------------------------------------------------------------
    let syn: Record<string, number> = {}
    if (synthetic > 0) {
      const st = await tenants.create({ slug: 'bench-synthetic', name: 'Synthetic segments tenant', timeZone: TIME_ZONE })
      const sdb = ctx.db.forTenant(st.id)
      t0 = performance.now()
      const built = await buildSynthetic(sdb, synthetic, stored, asOf, say)
      figures.synthetic_build_s = (performance.now() - t0) / 1000
      figures.synthetic_tag_values = built.values
      figures.synthetic_bitmaps_s = built.bitmapSeconds
      figures.merges_settle_after_synthetic_s = await settle(system)
      syn = { customers: await liveCustomers(sdb) }
      for (const [name, seg] of Object.entries(segs)) {
        const cold = await timeRuns(1, () => preview(sdb, seg, { ...memOpts, breakdown: BREAKDOWN }), 0)
        const p = await timeRuns(syntheticRuns, () => preview(sdb, seg, memOpts))
        const pb = await timeRuns(syntheticRuns, () => preview(sdb, seg, { ...memOpts, breakdown: BREAKDOWN }))
        const pe = await timeRuns(Math.min(3, syntheticRuns), () => preview(sdb, seg, opts))
        if (p.last.count !== pe.last.count) mismatches.push(`synthetic ${name}: memory ${p.last.count}, clickhouse ${pe.last.count}`)
        const naiveTags = naiveTagSql(seg.rule, defs)
        const nt = await timeRuns(1, () => countQuery(sdb, naiveTags.sql, naiveTags.params), 0)
        say(`synthetic ${name}: preview p50 ${p.p50.toFixed(1)} ms p99 ${p.p99.toFixed(1)}, breakdown p50 ${pb.p50.toFixed(1)}, cold ${cold.p50.toFixed(0)} ms, in ClickHouse p50 ${pe.p50.toFixed(0)}; naive tag_values ${nt.p50.toFixed(0)} ms; counts ${p.last.count} / ${nt.last}`)
        if (nt.last !== p.last.count) mismatches.push(`synthetic ${name}: preview ${p.last.count}, naive tag_values ${nt.last}`)
        Object.assign(syn, {
          [`${name}_count`]: p.last.count,
          [`${name}_share`]: p.last.share,
          [`${name}_preview_p50_ms`]: p.p50,
          [`${name}_preview_p99_ms`]: p.p99,
          [`${name}_preview_breakdown_p50_ms`]: pb.p50,
          [`${name}_preview_breakdown_p99_ms`]: pb.p99,
          [`${name}_preview_cold_ms`]: cold.p50,
          [`${name}_preview_clickhouse_p50_ms`]: pe.p50,
          [`${name}_naive_tag_values_ms`]: nt.p50,
          [`${name}_naive_tag_values_over_preview`]: nt.p50 / p.p50,
        })
      }
      syn.universe_only_p50_ms = (await timeRuns(syntheticRuns, () => countQuery(sdb, UNIVERSE_COUNT, {}))).p50
      const held = store.stats()
      syn.bitmap_store_mb = held.bytes / 1024 ** 2
      syn.bitmap_store_entries = held.entries
      for (const [k, v] of Object.entries(syn)) figures[`synthetic_${k}`] = v
    }

    figures.max_rss_mb = process.resourceUsage().maxRSS / 1024
    figures.load1_end = os.loadavg()[0]!

    // --- ratios and notes -----------------------------------------------------------------------
    const ratios: Record<string, number> = {}
    for (const name of Object.keys(segs)) {
      ratios[`${name}_naive_tag_values_over_preview`] = figures[`${name}_naive_tag_values_over_preview`]!
      ratios[`${name}_naive_events_over_preview`] = figures[`${name}_naive_events_over_preview`]!
      ratios[`${name}_clickhouse_over_preview`] = figures[`${name}_clickhouse_over_preview`]!
      if (synthetic > 0) ratios[`synthetic_${name}_naive_tag_values_over_preview`] = syn[`${name}_naive_tag_values_over_preview`]!
    }
    const minRatio = Math.min(...Object.keys(segs).map((n) => figures[`${n}_naive_tag_values_over_preview`]!))
    const minEventRatio = Math.min(...Object.keys(segs).map((n) => figures[`${n}_naive_events_over_preview`]!))
    const worst14 = synthetic > 0 ? Math.max(...Object.keys(segs).map((n) => syn[`${n}_preview_p50_ms`]!)) : NaN
    const worst14p99 = synthetic > 0 ? Math.max(...Object.keys(segs).map((n) => syn[`${n}_preview_p99_ms`]!)) : NaN
    notes.push(
      `Goal naive >= 20x preview (p50): over tag_values ${minRatio.toFixed(1)}x at worst (${minRatio >= 20 ? 'met' : 'NOT met'}), over raw events ${minEventRatio.toFixed(1)}x at worst (${minEventRatio >= 20 ? 'met' : 'NOT met'}).`,
      synthetic > 0
        ? `Target <= 100 ms for tag-only segments at ${synthetic.toLocaleString('en-US')} customers (synthetic): worst p50 ${worst14.toFixed(1)} ms, worst p99 ${worst14p99.toFixed(1)} ms (${worst14p99 <= 100 ? 'met' : worst14 <= 100 ? 'met at p50, NOT at p99' : 'NOT met'}); ` +
            `the bitmaps held for the three segments and the breakdown take ${syn.bitmap_store_mb!.toFixed(0)} MB in ${syn.bitmap_store_entries} entries.`
        : 'Synthetic tenant skipped (synthetic=0).',
      `Demo: ${customers.toLocaleString('en-US')} customers over the group, ${events.toLocaleString('en-US')} events in ${days} days; the tag-only segments run on the largest member bank ${main.slug} ` +
        `(${figures.main_tenant_customers!.toLocaleString('en-US')} live customers, ${mainEvents.toLocaleString('en-US')} events), after one full banking-pack run there (${tagRunSeconds.toFixed(1)} s). Segments are per tenant: "1M" is the group, a preview sees one bank.`,
      `Segments (purpose marketing): c3 = aum_tier in [affluent, high_net_worth], active_days_30d >= 5, not elder; c6 = aum_tier in [mass, affluent, high_net_worth], age between [25, 55], txn_count_30d >= 2, ` +
        `not lifecycle in [dormant, churned], any(wealth_interest, sessions_30d >= 8); c10 = age between [30, 65], aum_tier in [affluent, high_net_worth, private], not elder, active_days_30d >= 3, ` +
        `txn_amount_30d >= 1000, not lifecycle in [churned], any(wealth_interest, loan_interest, salary_inflow), features_used_30d >= 2.`,
      `Preview: preview() as the API calls it, wall ms: compile, one freshness query (current builds, customers' parts), bitmap algebra on the tag bitmaps held in memory; p50/p99 over ${runs} runs after one warm-up (nearest rank: below 100 runs p99 is the slowest run). ` +
        `*_breakdown_* adds breakdown by ${BREAKDOWN.join(' and ')}. *_cold_ms: the first preview of the segment (with breakdown), which loads the bitmaps it needs not yet held (the universe on the first one). ` +
        `*_clickhouse_*: the same preview without the bitmap store, one query in the engine (the path for segments with event or attribute conditions). universe_only_p50_ms: the universe query alone (groupBitmapState over customers FINAL), paid again only when the customers table changes.`,
      `Naive (a) tag_values: SELECT count() over a pivot of tag_values FINAL (maxIf/anyIf per tag, GROUP BY customer_key) with the segment as a predicate, live customers only; one warm-up, p50 of ${naiveRuns}. ` +
        `Naive (b) raw events: customers FINAL LEFT JOIN the per-customer aggregates of the window tags involved (and the lifecycle's four activity-day counts) from events, LEFT JOIN account balances (aum), ` +
        `age, elder and aum tier recomputed from the profile; no identity resolution, no warm-up, p50 of ${naiveRuns}.`,
      mismatches.length
        ? `Counts differ: ${mismatches.join('; ')}.`
        : 'Preview counts equal the naive tag_values counts for every segment (demo and synthetic). Naive-events counts are reported beside them: they skip identity resolution and differ where the pipeline resolves anonymous events.',
      `Behavioural segment: product_viewed count >= 3 in the last 30 days AND the sequence signed_in -> transfer_completed within 1 day in the last 30 days. ` +
        `behavioural_all_members_ms: one preview per member bank (${members.length} banks, all ${events.toLocaleString('en-US')} events), summed; behavioural_main_*: ${behaviourRuns} runs on ${main.slug}, no warm-up (p99 = max). ` +
        (behaviourErrors.length ? `Errors: ${behaviourErrors.join('; ')}. ` : 'No preview hit the default guardrails (30 s, 4 GiB). ') +
        `With maxExecutionTime = 1 s: ${guardrail}, after ${figures.guardrail_1s_elapsed_ms.toFixed(0)} ms.`,
      synthetic > 0
        ? `SYNTHETIC: tenant bench-synthetic has ${synthetic.toLocaleString('en-US')} customers (keys 1..N) and ${built14(figures)} tag_values rows written by INSERT ... SELECT FROM numbers() for the twelve tags the segments read ` +
            `(hash-based: aum_tier none/mass/affluent/high_net_worth/private 10/55/25/8.5/1.5%, age 18-85 triangular for 95%, elder = age >= 60 or 3%, lifecycle new 3% then active/reactivated/dormant/churned by an activity draw, ` +
            `active_days_30d/sessions_30d/txn_count_30d/txn_amount_30d/features_used_30d for 55-70% with skewed values, wealth/loan interest 12/7% of the active, salary_inflow 20%); no events. ` +
            `Bitmaps come from the pipeline's rebuildBitmaps (value bitmaps, quantile buckets for numbers with > 64 values) and tag_state rows point at that build (${figures.synthetic_bitmaps_s!.toFixed(1)} s; whole build ${figures.synthetic_build_s!.toFixed(1)} s). ` +
            `Synthetic runs: ${syntheticRuns} per segment after one warm-up; the naive tag_values query once, no warm-up. Naive events was not run there (no events).`
        : '',
      `max_rss_mb is the process peak (Node and the embedded engine together), generation included; load1_* is the one-minute load average (${os.cpus().length} cores).`,
    )
    return {
      params: { customers, days, seed, runs, naive_runs: naiveRuns, behaviour_runs: behaviourRuns, synthetic, synthetic_runs: syntheticRuns, code, time_zone: TIME_ZONE, as_of: asOf.toISOString(), main_tenant: main.slug },
      figures,
      ratios,
      notes: notes.filter(Boolean),
    }
  },
}

function built14(f: Record<string, number>): string {
  return (f.synthetic_tag_values ?? 0).toLocaleString('en-US')
}

// --- timing ------------------------------------------------------------------------------------

/** Runs fn `warmup` times untimed, then `n` times; p50/p99 (nearest rank) in ms and the last result. */
async function timeRuns<T>(n: number, fn: () => Promise<T>, warmup = 1): Promise<{ p50: number; p99: number; last: T }> {
  let last: T | undefined
  for (let i = 0; i < warmup; i++) last = await fn()
  const ms: number[] = []
  for (let i = 0; i < Math.max(1, n); i++) {
    const t = performance.now()
    last = await fn()
    ms.push(performance.now() - t)
  }
  ms.sort((a, b) => a - b)
  const rank = (q: number) => ms[Math.min(ms.length - 1, Math.max(0, Math.ceil(q * ms.length) - 1))]!
  return { p50: rank(0.5), p99: rank(0.99), last: last as T }
}

const countRow = z.object({ n: z.coerce.number() })
async function countQuery(db: TenantDb, sql: string, params: Record<string, unknown>): Promise<number> {
  const [r] = await db.query(sql, params, countRow)
  return r?.n ?? 0
}

const UNIVERSE_COUNT = `SELECT bitmapCardinality(groupBitmapState(customer_key)) AS n FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0`

async function liveCustomers(db: TenantDb): Promise<number> {
  return countQuery(db, `SELECT count() AS n FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0`, {})
}

async function countEvents(db: TenantDb): Promise<number> {
  return countQuery(db, `SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16}`, {})
}

function countLeaves(n: SegmentNode): number {
  if ('all' in n) return n.all.reduce((a, c) => a + countLeaves(c), 0)
  if ('any' in n) return n.any.reduce((a, c) => a + countLeaves(c), 0)
  if ('not' in n) return countLeaves(n.not)
  return 1
}

// --- naive SQL ---------------------------------------------------------------------------------

/** How a tag reads in a row: whether the customer has a value, the value, the number. */
interface Cols {
  present: string
  value: string
  num: string
}

/** The segment as a row predicate (the ops the segments here use), with the segments' absence semantics. */
function naivePredicate(n: SegmentNode, defs: ReadonlyMap<string, TagDefinition>, cols: (tag: string) => Cols, b: ParamBinder): string {
  if ('all' in n) return `(${n.all.map((c) => naivePredicate(c, defs, cols, b)).join(' AND ')})`
  if ('any' in n) return `(${n.any.map((c) => naivePredicate(c, defs, cols, b)).join(' OR ')})`
  if ('not' in n) return `NOT ${naivePredicate(n.not, defs, cols, b)}`
  if (!('tag' in n)) throw new Error('naive SQL covers tag leaves only')
  const d = defs.get(n.tag)!
  const c = cols(n.tag)
  const vs = n.value === undefined ? [] : Array.isArray(n.value) ? n.value : [n.value]
  if (d.type === 'boolean') {
    if (n.op !== 'eq') throw new Error(`naive: ${n.op} on a boolean`)
    return vs[0] === true ? `(${c.present})` : `NOT (${c.present})`
  }
  if (d.type === 'enum') {
    if (n.op !== 'in' && n.op !== 'eq') throw new Error(`naive: ${n.op} on an enum`)
    return `(${c.present} AND has(${b.strs(vs as string[])}, ${c.value}))`
  }
  const x = zeroWhenAbsent(d) ? `if(${c.present}, ${c.num}, 0)` : c.num
  const guard = zeroWhenAbsent(d) ? '1' : c.present
  const p = (vs as number[]).map((v) => b.num(v))
  const sym = { gt: '>', gte: '>=', lt: '<', lte: '<=', eq: '=' }[n.op as string]
  if (n.op === 'between') return `(${guard} AND ${x} BETWEEN ${p[0]} AND ${p[1]})`
  if (!sym) throw new Error(`naive: ${n.op} on a number`)
  return `(${guard} AND ${x} ${sym} ${p[0]})`
}

function tagsOf(n: SegmentNode): string[] {
  if ('all' in n) return [...new Set(n.all.flatMap(tagsOf))]
  if ('any' in n) return [...new Set(n.any.flatMap(tagsOf))]
  if ('not' in n) return tagsOf(n.not)
  return 'tag' in n ? [n.tag] : []
}

/** (a) Without bitmaps: a pivot of the current values, the conditions, count(). */
function naiveTagSql(rule: SegmentNode, defs: ReadonlyMap<string, TagDefinition>): { sql: string; params: Record<string, unknown> } {
  const b = new ParamBinder('n')
  const names = tagsOf(rule)
  const idx = new Map(names.map((t, i) => [t, i]))
  const pivot = names
    .map((t, i) => {
      const p = b.str(t)
      return `maxIf(toUInt8(1), tag = ${p}) AS p${i}, anyIf(value, tag = ${p}) AS v${i}, anyIf(num, tag = ${p}) AS n${i}`
    })
    .join(', ')
  const pred = naivePredicate(rule, defs, (t) => ({ present: `p${idx.get(t)} = 1`, value: `v${idx.get(t)}`, num: `n${idx.get(t)}` }), b)
  const sql = `SELECT count() AS n FROM (
      SELECT customer_key, ${pivot} FROM tag_values FINAL
      WHERE tenant_id = {tenant:UInt16} AND tag IN ${b.strs(names)} AND is_deleted = 0
      GROUP BY customer_key)
    WHERE ${pred} AND customer_key IN (SELECT customer_key FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0)`
  return { sql, params: b.params }
}

/**
 * (b) Without tags at all: live customers LEFT JOIN the per-customer aggregates of the window tags
 * the segment reads (and the lifecycle's activity-day counts) from raw events, LEFT JOIN account
 * balances; age, elder and the aum tier recomputed from the profile. count().
 */
function naiveEventSql(rule: SegmentNode, defs: ReadonlyMap<string, TagDefinition>, today: string, tz: string): { sql: string; params: Record<string, unknown> } {
  const b = new ParamBinder('e')
  const day = (d: string) => b.bind('Date', d)
  const within = (days: number, offset: number) => `day BETWEEN ${day(addDays(today, -(offset + days - 1)))} AND ${day(addDays(today, -offset))}`
  const aggs: string[] = []
  const cols = new Map<string, Cols>()
  let span = 1
  const age = `(toYear(${day(today)}) - toYear(assumeNotNull(c.birth_date)) - if(toMonth(${day(today)}) * 100 + toDayOfMonth(${day(today)}) < toMonth(assumeNotNull(c.birth_date)) * 100 + toDayOfMonth(assumeNotNull(c.birth_date)), 1, 0))`
  for (const t of tagsOf(rule)) {
    const d = defs.get(t)!
    const r = d.rule
    if (t === 'age') cols.set(t, { present: 'isNotNull(c.birth_date)', value: '', num: age })
    else if (t === 'elder') cols.set(t, { present: `((isNotNull(c.birth_date) AND ${age} >= 60) OR c.elder_mode = 1)`, value: '', num: '' })
    else if (t === 'aum_tier') {
      const aum = 'a.aum'
      const v = `multiIf(${aum} >= 6000000, 'private', ${aum} >= 500000, 'high_net_worth', ${aum} >= 50000, 'affluent', ${aum} > 0, 'mass', 'none')`
      cols.set(t, { present: '1', value: v, num: '' })
    } else if (r.kind === 'lifecycle') {
      const lr = r as LifecycleRule
      span = Math.max(span, lr.churnDays)
      const active = `toString(type) IN ('track', 'screen', 'page')`
      const prior = Math.max(1, lr.churnDays - lr.activeDays - lr.dormantDays)
      const ranges = [
        [lr.activeDays, 0],
        [lr.dormantDays, lr.activeDays],
        [prior, lr.activeDays + lr.dormantDays],
        [lr.churnDays, 0],
      ] as const
      ranges.forEach(([n, off], i) => aggs.push(`uniqExactIf(day, ${active} AND ${within(n, off)}) AS lc${i}`))
      const tenure = `dateDiff('day', toDate32(c.opened_at, ${b.str(tz)}), toDate32(${day(today)}))`
      const v = `multiIf(${tenure} < ${lr.newDays}, 'new', e.lc0 > 0 AND e.lc1 = 0 AND e.lc2 > 0, 'reactivated', e.lc0 > 0, 'active', e.lc3 > 0, 'dormant', 'churned')`
      cols.set(t, { present: '1', value: v, num: '' })
    } else if (r.kind === 'window') {
      const w = r as WindowRule
      span = Math.max(span, w.days + w.offsetDays)
      const conds = [within(w.days, w.offsetDays)]
      if (w.events.length) conds.push(`event IN ${b.strs(w.events)}`)
      if (w.eventTypes?.length) conds.push(`toString(type) IN ${b.strs(w.eventTypes)}`)
      for (const f of w.where) conds.push(propertyCondition(f, b))
      const cond = conds.join(' AND ')
      const measure: string = w.measure
      const agg = {
        count: `toFloat64(countIf(${cond}))`,
        sum: `round(sumIf(${w.property === 'amount' ? 'amount' : `JSONExtractFloat(properties, ${b.str(w.property ?? '')})`}, ${cond}), 2)`,
        days: `toFloat64(uniqExactIf(day, ${cond}))`,
        distinct_events: `toFloat64(uniqExactIf(toString(event), ${cond}))`,
      }[measure]
      if (!agg) throw new Error(`naive: no aggregate for ${t} (${measure})`)
      const alias = `w_${t}`
      aggs.push(`${agg} AS ${alias}`)
      if (w.threshold) {
        const sym = { gt: '>', gte: '>=', lt: '<', lte: '<=', eq: '=', ne: '!=' }[w.threshold.op]
        cols.set(t, { present: `(e.${alias} ${sym} ${b.num(w.threshold.value)})`, value: '', num: '' })
      } else cols.set(t, { present: `(e.${alias} != 0)`, value: '', num: `e.${alias}` })
    } else throw new Error(`naive events: ${t} is a ${r.kind} tag`)
  }
  const ts = (d: string) => b.bind(`DateTime64(3, 'UTC')`, chDateTime(zonedMidnight(d, tz)))
  const pred = naivePredicate(rule, defs, (t) => cols.get(t)!, b)
  const ev = aggs.length
    ? `LEFT JOIN (
        SELECT customer_key, ${aggs.join(', ')} FROM (
          SELECT customer_key, timestamp, type, event, properties, amount, toDate(timestamp, ${b.str(tz)}) AS day FROM events
          WHERE tenant_id = {tenant:UInt16} AND customer_key != 0 AND timestamp >= ${ts(addDays(today, -(span - 1)))} AND timestamp < ${ts(addDays(today, 1))})
        GROUP BY customer_key) AS e ON e.customer_key = c.customer_key`
    : ''
  const sql = `SELECT count() AS n
    FROM (SELECT customer_key, birth_date, elder_mode, opened_at FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0) AS c
    ${ev}
    LEFT JOIN (SELECT customer_key, toFloat64(sumIf(balance, status != 'closed')) AS aum FROM accounts FINAL WHERE tenant_id = {tenant:UInt16} GROUP BY customer_key) AS a
      ON a.customer_key = c.customer_key
    WHERE ${pred}
    SETTINGS join_use_nulls = 0`
  return { sql, params: b.params }
}

// --- the synthetic tenant -------------------------------------------------------------------------

/** A uniform draw in [0, 1) per customer (`number`) and salt. */
const U = (salt: number) => `(cityHash64(number, ${salt}) % 1000000 / 1000000.)`
const ACT = U(1)
const AGE = `floor(18 + 67 * (${U(3)} + ${U(4)}) / 2)`

/** The twelve tags the segments read: when a customer has a value, the value and the number. */
const SYNTHETIC_TAGS: { name: string; type: ValueType; present: string; value?: string; num?: string }[] = [
  { name: 'age', type: 'number', present: `${U(2)} < 0.95`, num: AGE },
  { name: 'elder', type: 'boolean', present: `(${U(2)} < 0.95 AND ${AGE} >= 60) OR ${U(5)} < 0.03` },
  {
    name: 'aum_tier',
    type: 'enum',
    present: '1',
    value: `multiIf(${U(6)} < 0.10, 'none', ${U(6)} < 0.65, 'mass', ${U(6)} < 0.90, 'affluent', ${U(6)} < 0.985, 'high_net_worth', 'private')`,
  },
  {
    name: 'lifecycle',
    type: 'enum',
    present: '1',
    value: `multiIf(${U(7)} < 0.03, 'new', ${ACT} < 0.62, 'active', ${ACT} < 0.70, 'reactivated', ${ACT} < 0.85, 'dormant', 'churned')`,
  },
  { name: 'active_days_30d', type: 'number', present: `${ACT} < 0.70`, num: `1 + floor(29 * pow(${U(8)}, 2))` },
  { name: 'sessions_30d', type: 'number', present: `${ACT} < 0.65`, num: `1 + floor(119 * pow(${U(9)}, 3))` },
  { name: 'txn_count_30d', type: 'number', present: `${ACT} < 0.55`, num: `1 + floor(59 * pow(${U(10)}, 3))` },
  { name: 'txn_amount_30d', type: 'number', present: `${ACT} < 0.55`, num: `round(exp(4 + 8 * ${U(11)}), 2)` },
  { name: 'features_used_30d', type: 'number', present: `${ACT} < 0.60`, num: `1 + floor(11 * ${U(12)})` },
  { name: 'wealth_interest', type: 'boolean', present: `${ACT} < 0.70 AND ${U(13)} < 0.12` },
  { name: 'loan_interest', type: 'boolean', present: `${ACT} < 0.70 AND ${U(14)} < 0.07` },
  { name: 'salary_inflow', type: 'boolean', present: `${U(15)} < 0.20` },
]

async function buildSynthetic(
  db: TenantDb,
  n: number,
  defs: readonly StoredTag[],
  asOf: Date,
  say: (m: string) => void,
): Promise<{ values: number; bitmapSeconds: number }> {
  const count = Math.trunc(n)
  const old = `toDateTime64('2020-01-01 00:00:00', 3, 'UTC')`
  let t0 = performance.now()
  await db.command(
    `INSERT INTO customers (tenant_id, customer_key, customer_no, gender, birth_date, opened_at, updated_at)
     SELECT {tenant:UInt16}, toUInt32(number), concat('S', toString(number)), 'unknown', NULL, ${old}, ${old} FROM numbers(1, ${count})`,
  )
  say(`synthetic: ${count} customers in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  const runId = newRunId()
  t0 = performance.now()
  for (const t of SYNTHETIC_TAGS) {
    const def = defs.find((d) => d.name === t.name)
    if (!def || def.type !== t.type) throw new Error(`synthetic: ${t.name} is not a ${t.type} tag of the pack`)
    const b = new ParamBinder('y')
    const [value, num] =
      t.type === 'boolean'
        ? [`'true'`, '1.']
        : t.type === 'enum'
          ? [`${t.value!}`, `toFloat64(indexOf(${b.strs(def.values ?? [])}, ${t.value!}))`]
          : [`toString(toFloat64(${t.num!}))`, `toFloat64(${t.num!})`]
    await db.command(
      `INSERT INTO tag_values (tenant_id, tag, customer_key, value, num, list, run_id, is_deleted)
       SELECT {tenant:UInt16}, ${b.str(t.name)}, toUInt32(number), ${value}, ${num}, [], ${b.bind('UInt64', runId)}, 0
       FROM numbers(1, ${count}) WHERE ${t.present}`,
      b.params,
    )
  }
  const values = await countQuery(db, `SELECT count() AS n FROM tag_values WHERE tenant_id = {tenant:UInt16}`, {})
  say(`synthetic: ${values} tag values in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  t0 = performance.now()
  const covered = await rebuildBitmaps(
    db,
    SYNTHETIC_TAGS.map((t) => ({ name: t.name, type: t.type })),
    runId,
  )
  // As the pipeline does: bucketed numbers get their value-ordered snapshot with the build.
  await writeNumericSnapshots(db, SYNTHETIC_TAGS.filter((t) => t.type === 'number' || t.type === 'date').map((t) => t.name), runId)
  const bitmapSeconds = (performance.now() - t0) / 1000
  say(`synthetic: bitmaps in ${bitmapSeconds.toFixed(1)} s`)
  const now = chDateTime(new Date())
  await db.insert(
    'tag_state',
    SYNTHETIC_TAGS.map((t) => ({
      tag: t.name,
      version: defs.find((d) => d.name === t.name)!.version,
      build: runId,
      covered: covered.get(t.name) ?? 0,
      changed: covered.get(t.name) ?? 0,
      run_id: runId,
      computed_at: now,
      as_of: chDateTime(asOf),
      today: localDate(asOf, TIME_ZONE),
      watermark: now,
      measures: '',
      span: 0,
      changed_at: now,
    })),
  )
  return { values, bitmapSeconds }
}

// --- helpers (as in the tags scenario) -----------------------------------------------------------

