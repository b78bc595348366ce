import fs from 'node:fs'
import os from 'node:os'
import { createPii } from '../../core/pii.js'
import { EVENT_COLUMNS, toRow } from '../../ingest/event-row.js'
import { createValueScanner, type ValuePolicy } from '../../core/pii.scan.js'
import { normalizeMessage, type NormalizeOptions } from '../../ingest/normalize.js'
import type { BenchScenario } from '../harness.js'
import { measureDedup, perEvent, threadCpuUs } from '../dedup.js'
import { batchBody, runLoad, startBenchServer, type LoadResult } from '../load.js'

/**
 * Sustained HTTP ingest: a `qianmian start` child process receives realistic Segment batches
 * (100 events of ~300 B) from autocannon in this process; beside it, the same kind of rows go
 * through the insert path the writer uses (TabSeparated, zero-copy) into this process's own
 * engine: the ceiling ingest is held to.
 */
export const scenario: BenchScenario = {
  name: 'ingest',
  description:
    'Sustained HTTP ingest of Segment batches (100 events, ~300 B each) from autocannon into a `qianmian start` process, against the raw insert of the same rows in the same run.',
  async run(ctx) {
    const seconds = Number(ctx.args.duration ?? 20)
    const connections = Number(ctx.args.connections ?? 64)
    const size = Number(ctx.args.batch ?? 100)
    // The connection counts of the sweep (the edge with its worker pool), each for half the duration.
    const sweep = String(ctx.args.sweep ?? '8,32,128').split(',').filter(Boolean).map(Number)
    // `--set profile=DIR`: each server writes V8 CPU profiles (main thread and workers) under DIR/<variant>.
    const profile = ctx.args.profile
    // The machine is shared: its load average (1 min) at the start and the end goes with the figures.
    const loadStart = os.loadavg()[0]!
    // First, while this process's engine is idle and no server runs: the in-process measure is
    // not disturbed by background merges of the rows inserted below.
    const scan = ctx.args.scan === '0' ? undefined : scanCost(size)
    const http = async (variant: string, env: Record<string, string>, sweepConnections: number[]) => {
      const srv = await startBenchServer(env, profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}/${variant}`] : [])
      try {
        await runLoad(srv, { seconds: 8, connections, size }) // warm-up: JIT, first parts, identities
        const pid = srv.server.child.pid!
        const cpu0 = await serverCpuSeconds(srv.server.url)
        const main0 = mainThreadCpuUs(pid)
        const threads0 = threadCpuUs(pid)
        const gen0 = process.cpuUsage()
        const load = await runLoad(srv, { seconds, connections, size })
        const gen = process.cpuUsage(gen0)
        const threads = perEvent(threads0, threadCpuUs(pid), load.stored)
        const mainUs = mainThreadCpuUs(pid) - main0
        const cpuS = (await serverCpuSeconds(srv.server.url)) - cpu0
        const swept: [number, LoadResult][] = []
        for (const c of sweepConnections) swept.push([c, await runLoad(srv, { seconds: Math.max(5, Math.round(seconds / 2)), connections: c, size })])
        return { load, cpuUs: (cpuS * 1e6) / load.stored, mainCpuUs: mainUs / load.stored, swept, threads, generatorUs: (gen.user + gen.system) / load.stored }
      } finally {
        await srv.close()
      }
    }
    // The edge in its HTTP thread (INGEST_WORKERS=0, as before the pool), then with the pool (the default).
    const inThread = await http('in_thread', { INGEST_WORKERS: '0' }, [])
    const pooled = await http('pool', {}, sweep)
    const load = pooled.load
    const serverCpuUs = pooled.cpuUs
    // The ceiling: the same rows, built as the writer builds them, inserted the way it inserts.
    const rows = makeRows(Math.max(100_000, Math.min(400_000, Math.round(Math.max(load.eventsPerS, inThread.load.eventsPerS) * 2))), size)
    const t0 = performance.now()
    const rawCpu0 = process.cpuUsage()
    for (let i = 0; i < rows.length; i += 20_000) await ctx.db.system.insertTsv('events', EVENT_COLUMNS, rows.slice(i, i + 20_000))
    const rawCpu = process.cpuUsage(rawCpu0)
    const rawPerS = rows.length / ((performance.now() - t0) / 1000)
    const rawCpuUs = (rawCpu.user + rawCpu.system) / rows.length
    // What the rate could be if all of both cores went to the edge, its engine and the generator at this run's CPU per event.
    const cpuBoundPerS = (os.cpus().length * 1e6) / (pooled.cpuUs + pooled.generatorUs)
    // `--set dedup_ids=N` (0: skip): the flush's dedup question against an index of N ids; the
    // default is three days of the bank's events (262M a month), what the index keeps.
    const dedupIds = Number(ctx.args.dedup_ids ?? 26_000_000)
    const dedup = dedupIds > 0 ? await measureDedup(ctx.db, [...new Set([Math.min(1_000_000, dedupIds), dedupIds])]) : undefined
    const dedupFigures: Record<string, number> = {}
    const dedupRatios: Record<string, number> = {}
    for (const d of dedup?.sizes ?? []) {
      const size = d.ids - d.afterFlushes * dedup!.flush
      const at = `${size >= 1e6 ? `${size / 1e6}m` : `${size / 1e3}k`}${d.afterFlushes ? `_after_${d.afterFlushes}_flushes` : ''}`
      dedupFigures[`dedup_scan_ms_per_flush_at_${at}`] = d.scanMs
      dedupFigures[`dedup_keys_ms_per_flush_at_${at}`] = d.keysMs
      dedupRatios[`dedup_scan_over_keys_at_${at}`] = d.scanMs / d.keysMs
    }
    if (dedup) dedupFigures.dedup_index_write_us_per_id = dedup.writeUsPerId
    const threadFigures: Record<string, number> = {}
    for (const [k, v] of Object.entries(pooled.threads)) threadFigures[`server_cpu_us_per_event_${k}`] = v
    for (const [k, v] of Object.entries(inThread.threads)) threadFigures[`server_cpu_us_per_event_in_thread_${k}`] = v
    threadFigures.load_generator_cpu_us_per_event = pooled.generatorUs
    const sweepFigures: Record<string, number> = {}
    const sweepRatios: Record<string, number> = {}
    for (const [c, r] of pooled.swept) {
      sweepFigures[`http_pool_c${c}_events_per_s`] = r.eventsPerS
      sweepFigures[`http_pool_c${c}_latency_p99_ms`] = r.latencyP99Ms
      sweepFigures[`http_pool_c${c}_non_2xx`] = r.non2xx + r.errors
      sweepFigures[`http_pool_c${c}_latency_p50_ms`] = r.latencyP50Ms
      sweepFigures[`http_pool_c${c}_events_per_flush`] = r.stored / Math.max(1, r.flushes)
      sweepRatios[`http_pool_c${c}_vs_raw_insert`] = r.eventsPerS / rawPerS
    }
    const scanFigures: Record<string, number> = scan
      ? {
          normalize_events_per_s_with_scan: scan.withScan,
          normalize_events_per_s_without_scan: scan.without,
          normalize_pii_events_per_s_with_scan: scan.piiWithScan,
          normalize_pii_events_per_s_without_scan: scan.piiWithout,
          normalize_pii_events_per_s_with_scan_mask: scan.piiMask,
          normalize_pii_cpu_us_per_event_without_scan: scan.cpuUsOff,
          scan_cpu_us_per_plain_event: scan.scanCpuUsPlain,
          scan_cpu_us_per_pii_event: scan.scanCpuUs,
          scan_cpu_us_per_pii_event_mask: scan.scanCpuUsMask,
          scan_cpu_us_per_pii_event_repeated: scan.scanCpuUsRepeated,
        }
      : {}
    const scanRatios: Record<string, number> = scan
      ? {
          normalize_with_vs_without_scan: scan.withScan / scan.without,
          normalize_with_vs_without_scan_median: scan.medianRatio,
          normalize_pii_with_vs_without_scan_median: scan.piiMedianRatio,
          // The share of the server's time per event the scan takes, at the HTTP rate measured.
          scan_share_of_http_ingest: load.eventsPerS * (1 / scan.withScan - 1 / scan.without),
          scan_share_of_http_ingest_pii_text: load.eventsPerS * (1 / scan.piiWithScan - 1 / scan.piiWithout),
          scan_share_of_http_ingest_pii_text_mask: load.eventsPerS * (1 / scan.piiMask - 1 / scan.piiWithout),
          // The scan's CPU time per event against all the CPU time the server spends per event.
          scan_share_of_server_cpu_pii_text: scan.scanCpuUs / serverCpuUs,
          scan_share_of_server_cpu_pii_text_mask: scan.scanCpuUsMask / serverCpuUs,
          scan_share_of_server_cpu_pii_text_repeated: scan.scanCpuUsRepeated / serverCpuUs,
        }
      : {}
    return {
      params: {
        duration_s: seconds,
        connections,
        events_per_batch: size,
        batch_bytes: Buffer.byteLength(batchBody(0, size)),
        raw_rows: rows.length,
        load_avg_1m_start: loadStart.toFixed(2),
        load_avg_1m_end: os.loadavg()[0]!.toFixed(2),
      },
      figures: {
        http_events_per_s: load.eventsPerS,
        http_requests_per_s: load.requestsPerS,
        http_latency_p50_ms: load.latencyP50Ms,
        http_latency_p99_ms: load.latencyP99Ms,
        http_non_2xx: load.non2xx,
        http_errors: load.errors,
        events_stored: load.stored,
        http_flushes_per_s: load.flushes / seconds,
        http_events_per_flush: load.stored / Math.max(1, load.flushes),
        http_flush_mean_ms: load.flushMeanMs,
        ...Object.fromEntries(Object.entries(load.flushPhaseMs).map(([k, v]) => [`http_flush_${k}_ms`, v])),
        visible_p50_s_le: load.visibleP50S,
        visible_p99_s_le: load.visibleP99S,
        http_in_thread_events_per_s: inThread.load.eventsPerS,
        http_in_thread_latency_p99_ms: inThread.load.latencyP99Ms,
        http_in_thread_non_2xx: inThread.load.non2xx + inThread.load.errors,
        ...sweepFigures,
        raw_insert_rows_per_s: rawPerS,
        raw_insert_cpu_us_per_row: rawCpuUs,
        http_cpu_bound_events_per_s: cpuBoundPerS,
        ...scanFigures,
        server_cpu_us_per_event: serverCpuUs,
        server_cpu_us_per_event_in_thread: inThread.cpuUs,
        server_main_thread_cpu_us_per_event: pooled.mainCpuUs,
        server_main_thread_cpu_us_per_event_in_thread: inThread.mainCpuUs,
        ...threadFigures,
        ...dedupFigures,
      },
      ratios: {
        http_vs_raw_insert: load.eventsPerS / rawPerS,
        // The rate over what the cores could carry at the CPU each event cost: near 1, the edge is bound by CPU, not by waiting.
        http_vs_cpu_bound: load.eventsPerS / cpuBoundPerS,
        cpu_bound_vs_raw_insert: cpuBoundPerS / rawPerS,
        http_in_thread_vs_raw_insert: inThread.load.eventsPerS / rawPerS,
        http_pool_vs_in_thread: load.eventsPerS / inThread.load.eventsPerS,
        // What the pool takes off the HTTP thread (the one that limited the edge): less moved by other work on the machine than the rates.
        main_thread_cpu_pool_vs_in_thread: pooled.mainCpuUs / inThread.mainCpuUs,
        ...sweepRatios,
        ...scanRatios,
        ...dedupRatios,
      },
      notes: [
        'The server and the load generator share the machine: autocannon and its JSON building take CPU the server would otherwise have.',
        'http_* (and events_stored, visible_*, server_cpu_us_per_event): the server as started by default, with its ingest worker pool (INGEST_WORKERS unset: one worker per core but one, at least one): bodies parsed, validated and normalized in worker threads, the insert in the main thread. http_in_thread_*: the same load against a server started with INGEST_WORKERS=0 (all in the HTTP thread, as before the pool), in the same run, before it. http_pool_c<N>_*: the pooled server after its measured run, at N connections, each for half the duration.',
        'The server runs with the per-tenant rate limits lifted (INGEST_RATE_EVENTS_PER_S=0, INGEST_RATE_REQUESTS_PER_S=0): the bench sends as one tenant, and the default of 20,000 events a second per bank is a policy, not the capacity measured here.',
        'http_flushes_per_s, http_events_per_flush, http_flush_mean_ms: the writer\'s inserts during the measured run, from the server\'s qianmian_ingest_flush_seconds histogram (a flush: the dedup lookup, identities, one insert). With every connection waiting for its answer, a connection\'s cycle is about the time between two flushes it takes part in. http_flush_<phase>_ms: a flush\'s mean wall time in each phase (dedup: the lookup of its message ids; identity: keys for new ids and links; insert: the events and their views), from qianmian_ingest_flush_phase_seconds_total.',
        'events_stored is read from the server metric qianmian_ingest_events_total{outcome="stored"}: only acknowledged and written events count.',
        'visible_*: receipt at the edge to row written, from the server histogram (bucket upper bounds).',
        'normalize_*: the edge\'s per-event validation and scrubbing of the same batches, in this process before the server starts, with the value scan (phone, identity, card numbers, e-mail) and without, the order rotated round by round, one scanner per batch as the server makes one per request; *_per_s are the best of 9 rounds. The *_pii_* events also carry a free-text note with their customer\'s phone number and a property holding their identity number: 20,000 customers, 40,000 identifiers a pass, each met once, so the digests are computed, not found in the digest memo (a worst case); *_repeated: the same events from 1,000 customers, whose 2,000 identifiers the memo holds after the first round (compared with the same baseline: the events differ only in digits). The scan = detection + replacement by the policy: digest (the default: the bank\'s keyed digests, core/pii.ts as it stands) or mask.',
        'scan_share_of_http_ingest: the scan\'s extra time per event times the HTTP events per second: the fraction of HTTP ingest throughput it costs (the server ran with the scan). The HTTP load carries plain events, so for the *_pii_text shares this is the rate of cheaper events: it overstates the share.',
        'scan_cpu_us_*: CPU microseconds per event with the scan minus without, median of the per-round differences (this process\'s CPU time, which other processes on the machine disturb less than wall time). server_cpu_us_per_event: the server process\'s CPU time (its engine threads included) during the measured HTTP run per event stored; scan_share_of_server_cpu_* divides the one by the other: the share of the server\'s CPU per event the scan would take. Again the server\'s figure is for plain events (a lower bound for PII-carrying ones), so the share is overstated.',
        'Not measured: HTTP ingest with the scan switched off in the server. The server has no switch for it, deliberately: a setting that stores raw identity numbers is not one a bank should be able to turn on, so the with/without comparison is made at the edge\'s normalization, where the scan runs.',
        'server_main_thread_cpu_us_per_event*: the server\'s main thread\'s CPU time (from /proc) over the measured run per event stored, with the pool and in the HTTP thread: what the pool takes off the thread that serves HTTP and inserts. It moves less with other work on the machine than the rates do.',
        'server_cpu_us_per_event_<group>: the server\'s CPU per event stored over the measured run, by thread (from /proc): main (HTTP, auth, dedup and identity bookkeeping, the insert call), node_threads (the ingest worker threads and libuv\'s pool, where the embedded engine runs each statement: parsing the inserted rows, the lookups), engine_merges (background merges of the parts the inserts made) and engine_other (the engine\'s other pools). load_generator_cpu_us_per_event: this process\'s CPU (autocannon and the batches it builds) over the same run: on 2 cores the server and the generator share, the rate is at most 2 s of CPU a second over the sum of the two.',
        `dedup_*: one flush's dedup question (${dedup?.flush ?? 5000} message ids, half stored, half new, of 3 tenants) against an index of N ids (1M, then ${dedupIds.toLocaleString('en-US')}: three days of 262M events a month), median of 5 rounds; *_after_N_flushes: the same question after N more inserts of a flush's ids each into the larger index, as a running writer makes them (the bulk fill alone leaves the index in a state the writer never does); *_scan_* as the writer asked it before (ingest_dedup, a MergeTree sorted by tenant and message id: a flush's random ids land in every granule, so it reads the whole index), *_keys_* as it asks now (ingest_dedup_digests, one RocksDB read per key; the 64-bit digests computed in the writer and passed as one string, included). Both return the same rows (checked each round). dedup_index_write_us_per_id: filling ingest_dedup and, through its view, the key index, µs per id.`,
        'raw_insert_cpu_us_per_row: this process\'s CPU (the engine\'s threads included) during the raw insert, per row: the engine\'s part of an event\'s cost. http_cpu_bound_events_per_s: the cores of the machine divided by the server\'s and the generator\'s CPU per event in the measured run: the rate at which both cores would be busy; cpu_bound_vs_raw_insert is the highest http_vs_raw_insert that CPU cost allows on this machine.',
        'raw_insert_rows_per_s: the same event rows as TabSeparated handed to the embedded engine in 20k-row inserts (the writer\'s own insert path), in this process, after the HTTP run.',
      ],
    }
  },
}

/** A valid resident identity number of its own for each customer number below 1,680,000. */
function residentIdOf(customer: number): string {
  const day = customer % 16_800
  const date = `${1950 + (day % 50)}${String(1 + (Math.floor(day / 50) % 12)).padStart(2, '0')}${String(1 + Math.floor(day / 600)).padStart(2, '0')}`
  const body = `110105${date}${String(Math.floor(customer / 16_800)).padStart(3, '0')}`
  let sum = 0
  for (let i = 0; i < 17; i++) sum += Number(body[i]) * ID_WEIGHTS[i]!
  return body + '10X98765432'[sum % 11]!
}
const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]

type Variant = 'off' | ValuePolicy
interface Pass {
  wallUs: number
  cpuUs: number
}

/**
 * The edge's per-event work (normalizeMessage) on the same batches with the value scan and
 * without, in alternating order round by round, as the server does it: one scanner per request,
 * digests from the bank's digest function. Wall time (best of the rounds) and this process's CPU
 * time (median of the per-round differences, less disturbed by other processes on the machine).
 */
function scanCost(size: number) {
  const pii = createPii('bench-secret-bench-secret-bench-secret')
  const base = { receivedAt: Date.now(), backdateMs: 30 * 86_400_000, maxFutureMs: 86_400_000, sensitiveTraits: new Set<string>(), pii }
  const batches = Array.from({ length: 200 }, (_, b) => JSON.parse(batchBody(b * size, size)) as { batch: Record<string, unknown>[]; sentAt: string })
  // Each customer's own phone and identity number, the customers as the HTTP load spreads them:
  // 40,000 distinct identifiers a pass, each met once, so a digest memo sees them as new ones.
  const withIdentifiers = (fold: number) =>
    batches.map((b) => ({
      ...b,
      batch: b.batch.map((e) => {
        const c = Number(String(e.userId).slice(1)) % fold
        return { ...e, properties: { ...(e.properties as object), note: `客户来电 139${String(c).padStart(8, '0')}，已核实`, idNo: residentIdOf(c) } }
      }),
    }))
  const piiBatches = withIdentifiers(Number.MAX_SAFE_INTEGER)
  // The same shape of events from 1,000 customers: 2,000 identifiers, found in the memo.
  const repeatBatches = withIdentifiers(1000)
  // Its own digest memo for the repeated identifiers: the 40,000 others would evict them.
  const piiRepeat = createPii('bench-secret-bench-secret-bench-secret')
  const pass = (set: typeof batches, variant: Variant): Pass => {
    const digests = set === repeatBatches ? piiRepeat : pii
    let n = 0
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    for (const b of set) {
      const scan = variant === 'off' ? false : createValueScanner(variant, (kind, v) => digests.hash(kind, v, 1))
      const opts: NormalizeOptions = { ...base, scan }
      for (const raw of b.batch) if (normalizeMessage(raw, 1, { sentAt: b.sentAt }, opts).ok) n++
    }
    const wall = performance.now() - t0
    const cpu = process.cpuUsage(c0)
    return { wallUs: (wall * 1000) / n, cpuUs: (cpu.user + cpu.system) / n }
  }
  const runs = [
    ['plain', 'off'],
    ['plain', 'digest'],
    ['pii', 'off'],
    ['pii', 'digest'],
    ['pii', 'mask'],
    ['repeat', 'digest'],
  ] as const
  const seen = new Map<string, Pass[]>()
  for (let round = 0; round < 9; round++) {
    // Each round starts with another variant, so none is always measured first or last.
    for (let k = 0; k < runs.length; k++) {
      const [set, variant] = runs[(round + k) % runs.length]!
      const key = `${set}:${variant}`
      seen.set(key, [...(seen.get(key) ?? []), pass(set === 'pii' ? piiBatches : set === 'repeat' ? repeatBatches : batches, variant)])
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const bestRate = (key: string) => 1e6 / Math.min(...seen.get(key)!.map((p) => p.wallUs))
  const perRound = (on: string, off: string, f: (a: Pass, b: Pass) => number) => median(seen.get(on)!.map((p, i) => f(p, seen.get(off)![i]!)))
  return {
    withScan: bestRate('plain:digest'),
    without: bestRate('plain:off'),
    piiWithScan: bestRate('pii:digest'),
    piiWithout: bestRate('pii:off'),
    piiMask: bestRate('pii:mask'),
    medianRatio: perRound('plain:digest', 'plain:off', (a, b) => b.wallUs / a.wallUs),
    piiMedianRatio: perRound('pii:digest', 'pii:off', (a, b) => b.wallUs / a.wallUs),
    cpuUsOff: median(seen.get('pii:off')!.map((p) => p.cpuUs)),
    scanCpuUs: perRound('pii:digest', 'pii:off', (a, b) => a.cpuUs - b.cpuUs),
    scanCpuUsMask: perRound('pii:mask', 'pii:off', (a, b) => a.cpuUs - b.cpuUs),
    scanCpuUsRepeated: perRound('repeat:digest', 'pii:off', (a, b) => a.cpuUs - b.cpuUs),
    scanCpuUsPlain: perRound('plain:digest', 'plain:off', (a, b) => a.cpuUs - b.cpuUs),
  }
}

/**
 * CPU microseconds of a process's main thread so far, from /proc (user and system clock ticks,
 * USER_HZ 100 on every Linux this runs on): the thread that runs HTTP, the merge check and the
 * insert, without the ingest workers and the engine's threads.
 */
function mainThreadCpuUs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

/** The server process's CPU seconds so far (prom-client's default metric; the engine's threads included). */
async function serverCpuSeconds(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = /^qianmian_process_cpu_seconds_total(?:\{[^}]*\})? (\S+)$/m.exec(text)
  if (!m) throw new Error('the server reports no qianmian_process_cpu_seconds_total (METRICS_DEFAULT off?)')
  return Number(m[1])
}

function makeRows(n: number, size: number): unknown[][] {
  const pii = createPii('bench-secret-bench-secret-bench-secret')
  const opts = { receivedAt: Date.now(), backdateMs: 30 * 86_400_000, maxFutureMs: 86_400_000, sensitiveTraits: new Set<string>(), pii }
  const out: unknown[][] = []
  for (let i = 0; i < n; i += size) {
    const body = JSON.parse(batchBody(i, Math.min(size, n - i))) as { batch: unknown[]; sentAt: string }
    for (const raw of body.batch) {
      const r = normalizeMessage(raw, 1, { sentAt: body.sentAt }, opts)
      if (r.ok) out.push(toRow(1, 1 + (i % 200_000), r.event))
    }
  }
  return out
}
