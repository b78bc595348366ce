import crypto from 'node:crypto'
import os from 'node:os'
import { z } from 'zod'
import { createPii } from '../../core/pii.js'
import type { TenantDb } from '../../core/db.js'
import { addDays, chDateTime, DAY_MS, localDate, zonedMidnight } from '../../core/time.js'
import { generateDemo } from '../../demo/demo.generator.js'
import { newRunId } from '../../core/run-id.js'
import { runTags, type TagRunResult } from '../../tags/tag.pipeline.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../../tags/tag.pack.js'
import { ParamBinder } from '../../core/params.js'
import { createTagRepository } from '../../tags/tag.repository.js'
import type { StoredTag, TagDefinition } from '../../tags/tag.schema.js'
import { createKeyService } from '../../tenants/keys.service.js'
import { createTenantService, type Tenant } from '../../tenants/tenants.service.js'
import type { BenchScenario } from '../harness.js'
import { monitorSection, openEngineMonitor } from '../engine-monitor.js'
import { appendDay, codeVersion, propertyCondition, settle } from '../support.js'
import { DIRECTION_NOTES, directionFigures, measureIncrementalFloors, measureStepFloors } from './tags.floors.js'

/**
 * The banking tag pack over the demo group (`--set customers=N days=D seed=S key_range=K`; K is the
 * customer keys per range of the runs' staging and diff, 0 = derived from the bank), against the floor
 * of the same run: the aggregates the pack's event tags compute, as one bare GROUP BY scan of the
 * raw events per tenant (no identity resolution, daily states, diffs, history or bitmaps).
 *
 * Sequence: demo (generated with `now` at the last local midnight, so "the last local day" is a
 * whole day), pack applied to the three member banks, floor (twice, the faster pass counts),
 * full run, one new day of events (a copy of the last day shifted by a day), incremental run at
 * asOf + 1 day, then a full run at the same asOf whose result must equal the incremental one.
 */

const TIME_ZONE = 'Asia/Shanghai'

export const scenario: BenchScenario = {
  name: 'tags',
  description: 'Banking tag pack over the demo group: full and one-day incremental runs vs one bare GROUP BY scan of the same aggregates (the floor)',
  async run(ctx) {
    const customers = Number(ctx.args.customers ?? 1_000_000)
    const days = Number(ctx.args.days ?? 30)
    const seed = Number(ctx.args.seed ?? 42)
    const keyRange = Number(ctx.args.key_range ?? 0)
    const system = ctx.db.system
    const say = (msg: string) => console.error(`[tags ${new Date().toISOString().slice(11, 19)}] ${msg}`)
    // The code is loaded by now: the commit measured is the one checked out at the start.
    const code = codeVersion()
    // Read before the long generation: a bad pack fails at once.
    const pack = readDefinitionFiles(BANKING_PACK)

    // --- demo --------------------------------------------------------------------------------
    const tenants = createTenantService({ system, defaultTimeZone: TIME_ZONE })
    const keys = createKeyService({ system, tenants, cacheTtlMs: 30_000 })
    const pii = createPii(crypto.randomBytes(32).toString('base64url'))
    const asOf = zonedMidnight(localDate(new Date(), TIME_ZONE), TIME_ZONE)
    say(`generating the demo: ${customers} customers, ${days} days, now = ${asOf.toISOString()}`)
    // Each phase's peak engine memory and its largest statements, from a second connection.
    const monitor = await openEngineMonitor(ctx.dataDir)
    monitor.phase('generation')
    const summary = await generateDemo({ db: ctx.db, tenants, keys, pii, log: ctx.log }, { customers, days, seed, now: asOf, progress: false })
    const events = summary.rows.events ?? 0
    say(`demo: ${events} events in ${summary.seconds.toFixed(1)} s`)
    const members: Tenant[] = []
    for (const t of summary.tenants.filter((x) => x.kind === 'member')) members.push(await tenants.get(t.id))

    // --- pack --------------------------------------------------------------------------------
    const repo = createTagRepository({ db: ctx.db })
    for (const t of members) await applyDefinitions(repo, t.id, pack, 'bench')
    const defsOf = new Map<number, StoredTag[]>()
    for (const t of members) defsOf.set(t.id, await repo.list(t.id))
    const eventTags = pack.filter((d) => d.rule.kind === 'window' || d.rule.kind === 'lifecycle')
    const settleSeconds: Record<string, number> = {}
    settleSeconds.after_demo = await settle(system)

    // --- floor -------------------------------------------------------------------------------
    // Process CPU seconds (Node and the engine's threads) beside wall seconds: the machine is shared,
    // and CPU time moves less than wall time when other processes compete for the cores.
    const cpuSince = (c: NodeJS.CpuUsage) => {
      const d = process.cpuUsage(c)
      return (d.user + d.system) / 1e6
    }
    const load: Record<string, number> = {}
    const floorPasses: number[] = []
    const floorCpu: number[] = []
    let floorCustomers = 0
    let floorAggregates = 0
    let floorSpan = 0
    monitor.phase('floor')
    for (let pass = 0; pass < 2; pass++) {
      let total = 0
      floorCustomers = 0
      const cpu0 = process.cpuUsage()
      for (const t of members) {
        const q = floorQuery(pack, localDate(asOf, t.timeZone), t.timeZone)
        floorAggregates = q.aggregates
        floorSpan = q.span
        const t0 = performance.now()
        const [r] = await ctx.db.forTenant(t.id).query(q.sql, q.params, z.object({ n: z.coerce.number() }))
        total += (performance.now() - t0) / 1000
        floorCustomers += r?.n ?? 0
      }
      floorPasses.push(total)
      floorCpu.push(cpuSince(cpu0))
      say(`floor pass ${pass + 1}: ${total.toFixed(2)} s (${floorCustomers} customers)`)
    }
    const floorSeconds = Math.min(...floorPasses)
    const floorCpuSeconds = floorCpu[floorPasses.indexOf(floorSeconds)]!
    load.floor = os.loadavg()[0]!

    // --- full --------------------------------------------------------------------------------
    const runAll = async (mode: 'full' | 'incremental', at: Date, label: string, o: { recompute?: boolean } = {}) => {
      const results: TagRunResult[] = []
      const runIds = new Map<number, string>()
      monitor.phase(label)
      const t0 = performance.now()
      const cpu0 = process.cpuUsage()
      for (const t of members) {
        const runId = newRunId()
        runIds.set(t.id, runId)
        results.push(
          await runTags(
            { db: ctx.db },
            { tenantId: t.id, timeZone: t.timeZone, defs: defsOf.get(t.id)!, mode, asOf: at, runId, keyRange, ...o, ...(mode === 'incremental' ? { watermarkSlackMs: 0 } : {}) },
          ),
        )
      }
      const seconds = (performance.now() - t0) / 1000
      const cpu = cpuSince(cpu0)
      monitor.phase('between')
      load[label.replace(' run', '').replace(' ', '_')] = os.loadavg()[0]!
      say(`${label}: ${seconds.toFixed(2)} s (${cpu.toFixed(1)} CPU s), modes ${results.map((r) => r.mode).join('/')}, changed ${results.reduce((a, r) => a + r.changed, 0)}`)
      return { seconds, cpu, results, runIds, steps: stepTotals(results, seconds) }
    }
    const full = await runAll('full', asOf, 'full run')
    settleSeconds.after_full = await settle(system)

    // --- floors of each step ------------------------------------------------------------------
    monitor.phase('step floors')
    const stepFloor = await measureStepFloors(ctx.db, members, defsOf, asOf)
    monitor.phase('between')
    const floorSteps = stepFloor.rebuild + stepFloor.valuesWrite + stepFloor.stageEvents + stepFloor.rules + stepFloor.scores + stepFloor.sql + stepFloor.bitmaps
    say(`step floors: ${Object.entries(stepFloor).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')}; their sum ${floorSteps.toFixed(2)} s`)

    // --- one new day -------------------------------------------------------------------------
    const asOf2 = new Date(asOf.getTime() + DAY_MS)
    const t1 = performance.now()
    let newDayEvents = 0
    for (const t of members) newDayEvents += await appendDay(ctx.db.forTenant(t.id), t.timeZone, localDate(asOf, t.timeZone))
    const appendSeconds = (performance.now() - t1) / 1000
    say(`new day: ${newDayEvents} events in ${appendSeconds.toFixed(1)} s`)
    settleSeconds.after_new_day = await settle(system)

    const incr = await runAll('incremental', asOf2, 'incremental run')
    settleSeconds.before_incremental_floors = await settle(system)
    monitor.phase('incremental floors')
    const { floors: incrFloor, parts: incrParts } = await measureIncrementalFloors(ctx.db, members, defsOf, {
      asOf: asOf2,
      newDay: asOf,
      runIds: incr.runIds,
      results: new Map(members.map((t, i) => [t.id, incr.results[i]!])),
    })
    monitor.phase('between')
    const incrFloorSum = Object.values(incrFloor).reduce((a, v) => a + v, 0)
    say(`incremental floors: ${Object.entries(incrFloor).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')}; their sum ${incrFloorSum.toFixed(2)} s`)
    say(`their parts: ${Object.entries(incrParts).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')}`)
    const incrementalOk = incr.results.every((r) => r.mode === 'incremental')
    const scoped = incr.results.reduce((a, r) => a + (r.scoped ?? 0), 0)
    const rebuiltDays = incr.results.map((r) => r.rebuiltDays)
    const afterIncremental = await Promise.all(members.map((t) => valuesChecksum(ctx.db.forTenant(t.id))))
    settleSeconds.after_incremental = await settle(system)

    // --- full rerun at the same asOf, as the pipeline runs it: must change nothing ---------------
    const rerun = await runAll('full', asOf2, 'full rerun')
    const afterRerun = await Promise.all(members.map((t) => valuesChecksum(ctx.db.forTenant(t.id))))
    const rerunChanged = rerun.results.reduce((a, r) => a + r.changed, 0)
    // Tags the rerun kept as they were, what they read found unchanged (summed over tenants).
    const rerunDerived = rerun.results.reduce((a, r) => a + Object.values(r.tags).filter((t) => t.skipped && !t.reason).length, 0)
    settleSeconds.after_rerun = await settle(system)
    // --- and one that recomputes every tag: incremental == full is checked against this one ------
    const recomputed = await runAll('full', asOf2, 'full recompute', { recompute: true })
    const afterRecompute = await Promise.all(members.map((t) => valuesChecksum(ctx.db.forTenant(t.id))))
    const recomputeChanged = recomputed.results.reduce((a, r) => a + r.changed, 0)
    const same = (a: typeof afterIncremental, b: typeof afterIncremental) => a.every((c, i) => c.n === b[i]!.n && c.x === b[i]!.x)
    const equal = rerunChanged === 0 && recomputeChanged === 0 && same(afterIncremental, afterRerun) && same(afterIncremental, afterRecompute)
    const perTagRerun = new Map<string, number>()
    for (const r of [...rerun.results, ...recomputed.results]) for (const [tag, v] of Object.entries(r.tags)) perTagRerun.set(tag, (perTagRerun.get(tag) ?? 0) + v.changed)
    const differing = [...perTagRerun].filter(([, n]) => n > 0).map(([tag, n]) => `${tag} ${n}`)

    const maxRssMb = process.resourceUsage().maxRSS / 1024
    await monitor.close()
    const peaks = monitor.peaks()
    const peakMb = (phase: string) => peaks[phase]?.trackedMb ?? 0
    const statementMb = (phase: string) => peaks[phase]?.queries[0]?.mb ?? 0
    const perMillion = events ? 14_000_000 / customers : 0
    const ratios = { full_over_floor: full.seconds / floorSeconds, incremental_over_full: incr.seconds / full.seconds }
    const fallbacks = incr.results.filter((r) => r.mode !== 'incremental').length
    return {
      params: { customers, days, seed, key_range: keyRange, key_ranges: full.results[0]?.keyRanges ?? 0, code, tags: pack.length, event_tags: eventTags.length, tenants: members.length, time_zone: TIME_ZONE, as_of: asOf.toISOString() },
      figures: {
        generation_s: summary.seconds,
        events,
        customers,
        valued_customers_floor: floorCustomers,
        floor_aggregates: floorAggregates,
        floor_s: floorSeconds,
        floor_pass1_s: floorPasses[0]!,
        floor_pass2_s: floorPasses[1]!,
        floor_cpu_s: floorCpuSeconds,
        full_s: full.seconds,
        floor_rebuild_days_s: stepFloor.rebuild,
        floor_values_read_s: stepFloor.valuesRead,
        floor_values_write_s: stepFloor.valuesWrite,
        floor_stage_events_s: stepFloor.stageEvents,
        floor_rules_s: stepFloor.rules,
        floor_scores_s: stepFloor.scores,
        floor_sql_s: stepFloor.sql,
        floor_bitmaps_s: stepFloor.bitmaps,
        floor_steps_sum_s: floorSteps,
        floor_steps_sum_over_floor: floorSteps / floorSeconds,
        floor_incremental_scope_s: incrFloor.scope,
        floor_incremental_new_day_s: incrFloor.newDay,
        floor_incremental_stage_events_s: incrFloor.stageEvents,
        floor_incremental_rules_s: incrFloor.rules,
        floor_incremental_scores_s: incrFloor.scores,
        floor_incremental_sql_s: incrFloor.sql,
        floor_incremental_diff_read_s: incrFloor.diffRead,
        floor_incremental_changes_write_s: incrFloor.changesWrite,
        floor_incremental_bitmaps_s: incrFloor.bitmaps,
        floor_incremental_sum_s: incrFloorSum,
        floor_incremental_sum_over_full: incrFloorSum / full.seconds,
        ...directionFigures(stepFloor, incrFloor, incrParts, floorSeconds, full.seconds),
        full_cpu_s: full.cpu,
        ...prefixed('full', full.steps),
        new_day_events: newDayEvents,
        new_day_insert_s: appendSeconds,
        incremental_s: incr.seconds,
        incremental_cpu_s: incr.cpu,
        ...prefixed('incremental', incr.steps),
        scoped_customers: scoped,
        scoped_share: scoped / customers,
        rebuilt_days: Math.max(0, ...rebuiltDays.map((d) => d.length)),
        incremental_mode_ok: incrementalOk ? 1 : 0,
        full_rerun_s: rerun.seconds,
        full_rerun_cpu_s: rerun.cpu,
        ...prefixed('rerun', rerun.steps),
        full_rerun_changed: rerunChanged,
        rerun_reused_days: rerun.results.reduce((a, r) => a + (r.reusedDays ?? 0), 0),
        rerun_rebuilt_days: rerun.results.reduce((a, r) => a + r.rebuiltDays.length, 0),
        rerun_over_floor: rerun.seconds / floorSeconds,
        rerun_derived_tags: rerunDerived,
        full_recompute_s: recomputed.seconds,
        full_recompute_cpu_s: recomputed.cpu,
        ...prefixed('recompute', recomputed.steps),
        full_recompute_changed: recomputeChanged,
        recompute_over_floor: recomputed.seconds / floorSeconds,
        incremental_equals_full: equal ? 1 : 0,
        values_after_incremental: afterIncremental.reduce((a, c) => a + c.n, 0),
        full_over_floor: ratios.full_over_floor,
        incremental_over_full: ratios.incremental_over_full,
        incremental_over_floor: incr.seconds / floorSeconds,
        full_over_floor_cpu: full.cpu / floorCpuSeconds,
        incremental_over_full_cpu: incr.cpu / full.cpu,
        ...Object.fromEntries(Object.entries(load).map(([k, v]) => [`load1_after_${k}`, v])),
        max_rss_mb: maxRssMb,
        engine_peak_full_mb: peakMb('full run'),
        engine_peak_incremental_mb: peakMb('incremental run'),
        engine_peak_rerun_mb: peakMb('full rerun'),
        engine_peak_recompute_mb: peakMb('full recompute'),
        largest_statement_full_mb: statementMb('full run'),
        largest_statement_incremental_mb: statementMb('incremental run'),
        ...Object.fromEntries(Object.entries(settleSeconds).map(([k, v]) => [`merges_settle_${k}_s`, v])),
        extrapolated_14m_full_s: full.seconds * perMillion,
        extrapolated_14m_incremental_s: incr.seconds * perMillion,
        extrapolated_14m_floor_s: floorSeconds * perMillion,
      },
      ratios,
      notes: [
        `Goal full <= 3x floor: ${ratios.full_over_floor.toFixed(2)}x (${ratios.full_over_floor <= 3 ? 'met' : 'NOT met'}). ` +
          `Goal incremental <= 10% of full: ${(100 * ratios.incremental_over_full).toFixed(1)}% (${ratios.incremental_over_full <= 0.1 ? 'met' : 'NOT met'}).`,
        `Floor: per member tenant one SELECT over raw events (timestamp from the start of the longest window, ${floorSpan} days) GROUP BY customer_key with the ` +
          `${floorAggregates} aggregates of the ${eventTags.length} event tags (window tags, and the lifecycle's four activity-day counts), each with its event ` +
          `filter, property filters, measured value and local-day window (as a timestamp range), compiled in this file from the definitions; wrapped in SELECT count(), groupBitXor(cityHash64(all aggregates)) so no column is pruned and ` +
          `nothing but one row goes to JS. Run twice over the three tenants; the faster pass counts (${floorPasses.map((s) => s.toFixed(2)).join(' s, ')} s).`,
        'full_s, incremental_s, full_rerun_s and full_recompute_s are summed over the three member tenants, run one after the other. The other full_*, incremental_*, rerun_* and recompute_* ' +
          'figures are the steps runTags reports, summed over tenants; a step of one level (levelN_x) is also summed over levels as x; *_other_s is the time outside ' +
          'any reported step (state reads, change counts).',
        `One new day: the events of the last local day (${localDate(new Date(asOf.getTime() - DAY_MS), TIME_ZONE)}) copied with timestamp and sent_at + 1 day, message_id + '-d1', ` +
          `received_at now; the incremental run then runs at asOf + 1 day (${asOf2.toISOString()}) with watermarkSlackMs 0.`,
        incrementalOk
          ? `Incremental run: mode incremental in all tenants; ${scoped} customers in scope (${((100 * scoped) / customers).toFixed(1)}% of all), rebuilt days ${rebuiltDays.map((d) => d.join(' ')).join(' | ')}.`
          : `Incremental run fell back to full in ${fallbacks} tenant(s).`,
        equal
          ? 'Two full runs at the same asOf after the incremental one, the first as the pipeline runs it and the second recomputing every tag (recompute), changed no value, ' +
            'and the tag_values checksums (count, groupBitXor of cityHash64(tag, customer_key, value, num)) agree after each: incremental = full.'
          : `Incremental != full: the full rerun changed ${rerunChanged} values and the recompute ${recomputeChanged} (${differing.join(', ') || 'checksums differ only'}).`,
        `Full rerun: ${rerun.results.reduce((a, r) => a + (r.reusedDays ?? 0), 0)} day builds reused and ${rerun.results.reduce((a, r) => a + r.rebuiltDays.length, 0)} rebuilt over the ` +
          `three tenants (a full run re-aggregates a day only when its events' count and fingerprint or the identities they resolve to changed since its build; ` +
          `check_days is that check); ${rerunDerived} tags (over the tenants) kept as they were: event tags whose day builds, customers and date were those they were ` +
          `computed with, and rules and scores over other tags alone whose inputs did not change; rules over profile and stock data and SQL tags recomputed for ` +
          `everyone; rerun_over_floor: ${(rerun.seconds / floorSeconds).toFixed(2)}x. ` +
          `Full recompute (recompute: every tag for everyone): recompute_over_floor ${(recomputed.seconds / floorSeconds).toFixed(2)}x.`,
        `Step floors, measured after the full run: floor_rebuild_days_s is the rebuild's per-(customer, day) aggregation of the same raw events ` +
          `(all measures, the whole window) without identity resolution and without writing the rows; floor_values_read_s is one read of every ` +
          `current value (tag_values FINAL, count and checksum), which each full diff needs at least once; floor_values_write_s is writing the values the full run ` +
          `stored, once, into two new tables of tag_history's and tag_values' shapes (INSERT … SELECT from tag_values, no diff, no transform): what a first run's apply writes. ` +
          `floor_stage_events_s, floor_rules_s, floor_scores_s and floor_sql_s are the run's own staging queries for every customer (event tags from the day builds in one query, ` +
          `each level's rules in one, each score and SQL tag alone), as SELECTs hashing every staged column, written nowhere; floor_bitmaps_s builds, written nowhere, a bitmap ` +
          `per value of the boolean and enum tags and one of every customer with a value per other tag (the step also buckets numbers and dates: a lower bound). ` +
          `floor_steps_sum_s adds the day aggregation, the values' write and these: what a first full run that keeps the day builds the incremental runs read cannot go under ` +
          `(no identity resolution, no day rows or stage rows written, no diff), and floor_steps_sum_over_floor divides it by the floor. ` +
          `floor_incremental_*: measured after the incremental run with its scope and changes, one per step: the customers with day builds on the days that ` +
          `entered or left a window (scope, not written); the new day's per-(customer, day) aggregation (not written); the event tags of the customers in its ` +
          `scope from the day builds (the run's staging query, not written); the rules it computed, each level's whole and narrowed groups as it staged them, ` +
          `every score for every customer and the SQL tags (not written); what its comparisons read of the current values, once (diff_read: the scope's event ` +
          `tags, the narrowed rules' customers, every customer's other tags); its changes written once into tables of history's and current values' shapes; ` +
          `and the bitmaps' update inputs (a bitmap per changed (tag, value) and one read of the changed tags' bitmaps, nothing written). ` +
          `floor_incremental_sum_over_full divides their sum by the full run: what the incremental run as built cannot go under.`,
        DIRECTION_NOTES,
        `Before each timed phase the run waits for background merges and mutations to finish (merges_settle_*_s), so the phases do not pay for each other's merges.`,
        `14M customers: not run here; extrapolated_14m_* scale this run's figures linearly by events (x${perMillion.toFixed(1)}) — an extrapolation, not a measurement.`,
        `*_cpu_s are this process's CPU seconds (Node and the engine's threads) in the phase, a check on the wall-clock ratios when other processes share the ` +
          `${os.cpus().length} cores; load1_after_* is the machine's one-minute load average at the end of each phase (${os.cpus().length} means the cores were busy).`,
        `max_rss_mb is the process peak (Node and the embedded engine together), generation included. engine_peak_*_mb is the engine's MemoryTracking ` +
          `peak in the phase and largest_statement_*_mb the largest peak of one running statement, both sampled each second from a second connection ` +
          `(the section below names the statements). Staging and diffs ran per customer-key range: ${keyRange || 'derived'} keys per range, ` +
          `${full.results.map((r) => r.keyRanges).join('/')} range(s) per tenant.`,
      ],
      sections: [monitorSection(peaks)],
    }
  },
}

/**
 * One bare scan: the per-customer aggregates of every event tag of `defs` over raw events
 * (window tags, and a lifecycle's activity-day counts over its four ranges), with the same event
 * conditions, measured values and local-day windows as the pipeline, but written here from the
 * definitions so the floor does not move with the pipeline's internals. No identity resolution.
 */
function floorQuery(defs: readonly TagDefinition[], today: string, tz: string): { sql: string; params: Record<string, unknown>; aggregates: number; span: number } {
  const b = new ParamBinder('f')
  const ts = (day: string) => b.bind(`DateTime64(3, 'UTC')`, chDateTime(zonedMidnight(day, tz)))
  // Window [today - offset - days + 1, today - offset] as an event time range.
  const within = (days: number, offset: number) => `timestamp >= ${ts(addDays(today, -(offset + days - 1)))} AND timestamp < ${ts(addDays(today, -offset + 1))}`
  const aggs: string[] = []
  let span = 0
  for (const d of defs) {
    const r = d.rule
    if (r.kind === 'window') {
      span = Math.max(span, r.days + r.offsetDays)
      const conds = [within(r.days, r.offsetDays)]
      if (r.events.length) conds.push(`event IN ${b.strs(r.events)}`)
      if (r.eventTypes?.length) conds.push(`toString(type) IN ${b.strs(r.eventTypes)}`)
      for (const f of r.where) conds.push(propertyCondition(f, b))
      const cond = conds.join(' AND ')
      const prop = r.property ?? ''
      const key = prop === 'product_id' ? 'toString(product_id)' : `JSONExtractRaw(properties, ${b.str(prop)})`
      const measure: string = r.measure
      const agg = {
        count: `countIf(${cond})`,
        sum: `round(sumIf(${prop === 'amount' ? 'amount' : `JSONExtractFloat(properties, ${b.str(prop)})`}, ${cond}), 2)`,
        // By a 64-bit hash of each key, as the tag run counts them (tag.measures.ts).
        distinct: `uniqExactIf(cityHash64(${key}), ${cond} AND ${key} != '')`,
        distinct_events: `uniqExactIf(cityHash64(toString(event)), ${cond})`,
        days: `uniqExactIf(day, ${cond})`,
        first_time: `minIf(timestamp, ${cond})`,
        last_time: `maxIf(timestamp, ${cond})`,
      }[measure]
      if (!agg) throw new Error(`floor: no aggregate for window measure ${measure}`)
      aggs.push(agg)
    } else if (r.kind === 'lifecycle') {
      span = Math.max(span, r.churnDays)
      const active = `toString(type) IN ('track', 'screen', 'page')`
      const prior = Math.max(1, r.churnDays - r.activeDays - r.dormantDays)
      // Activity days: recent, the dormant gap before it, the prior range, the whole churn range.
      for (const [days, offset] of [[r.activeDays, 0], [r.dormantDays, r.activeDays], [prior, r.activeDays + r.dormantDays], [r.churnDays, 0]] as const) {
        aggs.push(`uniqExactIf(day, ${active} AND ${within(days, offset)})`)
      }
    }
  }
  const names = aggs.map((_, i) => `a${i}`)
  const sql = `SELECT count() AS n, toString(groupBitXor(cityHash64(${names.join(', ')}))) AS x FROM (
      SELECT customer_key, ${aggs.map((a, i) => `${a} AS a${i}`).join(', ')}
      FROM (
        SELECT customer_key, timestamp, type, event, properties, product_id, amount, toDate(timestamp, {tz:String}) AS day
        FROM events
        WHERE tenant_id = {tenant:UInt16} AND timestamp >= ${ts(addDays(today, -(span - 1)))} AND timestamp < ${ts(addDays(today, 1))}
      )
      GROUP BY customer_key
    )`
  return { sql, params: { ...b.params, tz }, aggregates: aggs.length, span }
}



/** Count and an order-independent checksum of a tenant's current tag values. */
async function valuesChecksum(db: TenantDb): Promise<{ n: number; x: string }> {
  const [r] = await db.query(
    `SELECT count() AS n, toString(groupBitXor(cityHash64(tag, customer_key, value, num))) AS x
     FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0`,
    {},
    z.object({ n: z.coerce.number(), x: z.string() }),
  )
  return { n: r?.n ?? 0, x: r?.x ?? '' }
}

/** Pipeline step times summed over tenants, in seconds, grouped (levels summed) and the rest. */
function stepTotals(results: readonly TagRunResult[], seconds: number): Record<string, number> {
  const by = new Map<string, number>()
  let timed = 0
  for (const r of results) {
    for (const s of r.steps) {
      const group = s.step.replace(/^level\d+_/, '')
      by.set(group, (by.get(group) ?? 0) + s.ms / 1000)
      timed += s.ms / 1000
      if (group !== s.step) by.set(s.step, (by.get(s.step) ?? 0) + s.ms / 1000)
    }
  }
  by.set('other', seconds - timed)
  return Object.fromEntries(by)
}

function prefixed(prefix: string, steps: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(steps).map(([k, v]) => [`${prefix}_${k}_s`, v]))
}
