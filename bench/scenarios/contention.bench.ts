import fs from 'node:fs'
import { Session } from 'node:inspector'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { z } from 'zod'
import { loadConfig } from '../../core/config.js'
import { localDate, zonedMidnight } from '../../core/time.js'
import { DEMO_BANKS } from '../../demo/demo.banks.js'
import { generateDemo } from '../../demo/demo.generator.js'
import { createRng } from '../../demo/demo.random.js'
import { seedDemoTags } from '../../demo/demo.tags.js'
import { startServer } from '../../server/start.js'
import type { BenchScenario } from '../harness.js'
import { makeEvent } from '../load.js'
import { phaseFigures, startOpenLoop, type KindFigures, type RequestSpec, type Stream } from '../open-loop.js'
import { codeVersion, settle } from '../support.js'

/**
 * The request path under the pipelines (`npm run bench contention -- --set customers=N`): the
 * server `qianmian start` runs (runtime and app factory) listens in this process on the demo
 * group, and an open-loop load at fixed rates (bench/open-loop.ts) runs through every phase:
 *
 * - ingest: `ingest_rps` requests/s to /v1/batch, each `batch` Segment events of random customers
 *   of one member bank (the banks in turn, each with its ingest key);
 * - previews: one tag-only segment preview every `preview_ms` (POST /v1/segments/preview, the
 *   banks in turn, analyst keys);
 * - layouts: `layout_rps` GET /v1/layout/s for random customers of the banks, layout keys.
 *
 * Phases, one after the other while the load runs: a warm-up (not reported), idle, a full tag
 * run of the largest bank (started by POST /v1/pipelines/runs, until the run ends), what
 * follows it in the background (the layout model, push targeting of due campaigns), a push
 * targeting run of a marketing campaign over the whole largest bank (POST
 * /v1/push/campaigns/:id/run), and a short idle tail. A request belongs to the phase it was
 * scheduled in; its latency counts from its schedule, whenever it was answered.
 */

const TIME_ZONE = 'Asia/Shanghai'
const PHASES = ['idle', 'tags', 'followers', 'push', 'tail'] as const
type Phase = (typeof PHASES)[number]
const KINDS = ['ingest', 'preview', 'layout'] as const

/** Tag-only, of tags an analyst may read: an in-memory bitmap preview after a freshness check. */
const PREVIEW = {
  purpose: 'marketing',
  rule: {
    all: [
      { tag: 'aum_tier', op: 'in', value: ['affluent', 'high_net_worth'] },
      { tag: 'active_days_30d', op: 'gte', value: 5 },
      { not: { tag: 'elder', op: 'eq', value: true } },
    ],
  },
  breakdown: ['lifecycle'],
}

const runRecord = z.object({ runId: z.string(), status: z.string(), rows: z.number(), error: z.string() })
const targetingView = z.object({ campaigns: z.array(z.object({ campaignId: z.string(), targeted: z.number(), queued: z.number() })), errors: z.array(z.unknown()) })

/**
 * Busy, stolen and total jiffies of the whole machine (Linux), to tell this process's load from
 * others' and from what the hypervisor took (steal: time a virtual CPU wanted to run and could not).
 */
function machineTicks(): { busy: number; steal: number; total: number } {
  try {
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    return { busy: user + nice + system + irq + softirq, steal, total: user + nice + system + idle + iowait + irq + softirq + steal }
  } catch {
    return { busy: NaN, steal: NaN, total: NaN }
  }
}

async function call(url: string, key: string, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(600_000),
  })
  const text = await r.text()
  return { status: r.status, json: text ? (JSON.parse(text) as unknown) : null }
}

export const scenario: BenchScenario = {
  name: 'contention',
  description:
    'A fixed open-loop load (ingest, tag-only segment previews, layouts) on the HTTP server in this process over the demo group: idle, during a full tag run of the largest bank, and during push targeting of a marketing campaign over that bank',
  async run(ctx) {
    const customers = Number(ctx.args.customers ?? 1_000_000)
    const days = Number(ctx.args.days ?? 30)
    const seed = Number(ctx.args.seed ?? 42)
    const ingestRps = Number(ctx.args.ingest_rps ?? 40)
    const batch = Number(ctx.args.batch ?? 100)
    const previewMs = Number(ctx.args.preview_ms ?? 250)
    const layoutRps = Number(ctx.args.layout_rps ?? 20)
    const warmupS = Number(ctx.args.warmup ?? 10)
    const idleS = Number(ctx.args.idle ?? 20)
    const tailS = Number(ctx.args.tail ?? 10)
    const timeoutMs = Number(ctx.args.timeout_ms ?? 120_000)
    const label = ctx.args.label ?? ''
    const limitS = Number(ctx.args.run_limit_s ?? 300)
    // Server configuration variables (upper case, e.g. LANE_PIPELINE_PRIORITY=0) pass through to it.
    const serverEnv = Object.fromEntries(Object.entries(ctx.args).filter(([k]) => /^[A-Z][A-Z0-9_]*$/.test(k)))
    const say = (msg: string) => console.error(`[contention ${new Date().toISOString().slice(11, 19)}] ${msg}`)
    const code = codeVersion()
    const loadAtStart = os.loadavg()[0]!

    // The server as `qianmian start` builds it, on the harness's data directory (a second
    // connection of this process to it). The api role alone: the scheduler's crons would start
    // runs at times of their own inside the phases; the runs measured here are started on purpose.
    const config = loadConfig({
      QIANMIAN_DATA_DIR: ctx.dataDir,
      PORT: '0',
      HOST: '127.0.0.1',
      QIANMIAN_DEMO: 'false',
      QIANMIAN_ROLES: 'api',
      QIANMIAN_DEFAULT_TIMEZONE: TIME_ZONE,
      LOG_LEVEL: 'warn',
      SHUTDOWN_TIMEOUT_MS: '300000',
      ...serverEnv,
    })
    const server = await startServer(config, { version: 'bench', print: (l) => say(l) })
    try {
      await server.startup
      const rt = server.runtime
      // By address: a stalled phase opens new sockets, and a name lookup for each one ran on the
      // same event loop as the server (getaddrinfo took 6% of the loop in a profiled run).
      const url = server.url.replace('//localhost:', '//127.0.0.1:')
      const asOf = zonedMidnight(localDate(new Date(), TIME_ZONE), TIME_ZONE)
      say(`generating the demo: ${customers} customers, ${days} days, now = ${asOf.toISOString()}`)
      // On the pipeline lane, as `qianmian start` seeds it (the request lane's memory cap is for requests).
      const summary = await generateDemo({ db: rt.db.lane('pipeline'), tenants: rt.tenants, keys: rt.keys, pii: rt.pii, log: rt.log }, { customers, days, seed, now: asOf, progress: false })
      say(`demo: ${summary.rows.events ?? 0} events in ${summary.seconds.toFixed(1)} s`)
      const seeded = await seedDemoTags({ tenants: rt.tenants, tags: rt.tags, recommend: rt.recommend !== undefined })
      say(`banking pack computed and layout models built for ${seeded.tenants} banks in ${seeded.seconds.toFixed(1)} s`)

      const banks = await Promise.all(
        DEMO_BANKS.map(async (b) => {
          const t = summary.tenants.find((x) => x.slug === b.slug)!
          const key = (role: string) => t.keys.find((k) => k.role === role)!.key
          const [row] = await rt.db
            .forTenant(t.id)
            .query(`SELECT count() AS n FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0`, {}, z.object({ n: z.coerce.number() }))
          return { slug: b.slug, id: t.id, prefix: b.customerPrefix, n: row?.n ?? 0, ingest: key('ingest'), layout: key('layout'), analyst: key('analyst'), marketer: key('marketer'), admin: key('admin') }
        }),
      )
      const main = banks.reduce((a, b) => (b.n > a.n ? b : a))
      // Idle means idle: the merges the generation and the seeding left behind finish first.
      const settleS = await settle(rt.db.system)
      say(`merges settled in ${settleS.toFixed(1)} s`)
      const customerNo = (b: (typeof banks)[number], k: number) => `${b.prefix}${String(k).padStart(10, '0')}`

      // --- the load -------------------------------------------------------------------------
      const rng = createRng(seed, 1000)
      let eventSeq = 0
      const streams: Stream[] = [
        {
          kind: 'ingest',
          ratePerS: ingestRps,
          make(i): RequestSpec {
            const b = banks[i % banks.length]!
            const now = Date.now()
            const events = Array.from({ length: batch }, () => {
              const { anonymousId: _device, ...e } = makeEvent(eventSeq++, now)
              return { ...e, userId: customerNo(b, rng.int(1, b.n)) }
            })
            return { method: 'POST', path: '/v1/batch', headers: { authorization: `Bearer ${b.ingest}`, 'content-type': 'application/json' }, body: JSON.stringify({ batch: events, sentAt: new Date(now).toISOString() }) }
          },
        },
        {
          kind: 'preview',
          ratePerS: 1000 / previewMs,
          make(i): RequestSpec {
            const b = banks[i % banks.length]!
            return { method: 'POST', path: '/v1/segments/preview', headers: { authorization: `Bearer ${b.analyst}`, 'content-type': 'application/json' }, body: JSON.stringify(PREVIEW) }
          },
        },
        {
          kind: 'layout',
          ratePerS: layoutRps,
          make(i): RequestSpec {
            const b = banks[i % banks.length]!
            return { method: 'GET', path: `/v1/layout?customerId=${customerNo(b, rng.int(1, b.n))}`, headers: { authorization: `Bearer ${b.layout}` } }
          },
        },
      ]

      const bounds = new Map<Phase, { from: number; to: number; cpuS: number; elDelayP99Ms: number; elDelayMaxMs: number; load1: number; machineBusyCores: number; stealCores: number }>()
      const eld = monitorEventLoopDelay({ resolution: 10 })
      eld.enable()
      let phaseStart = { at: 0, cpu: process.cpuUsage(), ticks: machineTicks() }
      // profile_dir=DIR writes a CPU profile of this process's JavaScript per phase (DIR/contention-<phase>.cpuprofile):
      // where the event loop went while a run was stalling the request path.
      const profileDir = ctx.args.profile_dir
      const inspector = profileDir ? new Session() : undefined
      inspector?.connect()
      const post = (method: string, params?: object) => new Promise<unknown>((ok, fail) => inspector!.post(method, params ?? {}, (err, res) => (err ? fail(err) : ok(res))))
      if (inspector) await post('Profiler.enable')
      const begin = () => {
        if (inspector) void post('Profiler.start')
        eld.reset()
        phaseStart = { at: performance.now(), cpu: process.cpuUsage(), ticks: machineTicks() }
      }
      const end = (p: Phase) => {
        const to = performance.now()
        const cpu = process.cpuUsage(phaseStart.cpu)
        const ticks = machineTicks()
        const cores = os.cpus().length
        bounds.set(p, {
          from: phaseStart.at,
          to,
          cpuS: (cpu.user + cpu.system) / 1e6,
          elDelayP99Ms: eld.percentile(99) / 1e6,
          elDelayMaxMs: eld.max / 1e6,
          load1: os.loadavg()[0]!,
          machineBusyCores: ((ticks.busy - phaseStart.ticks.busy) / (ticks.total - phaseStart.ticks.total)) * cores,
          stealCores: ((ticks.steal - phaseStart.ticks.steal) / (ticks.total - phaseStart.ticks.total)) * cores,
        })
        say(`${p}: ${((to - phaseStart.at) / 1000).toFixed(1)} s`)
        if (inspector)
          void post('Profiler.stop').then((r) => fs.writeFileSync(path.join(profileDir!, `contention-${p}.cpuprofile`), JSON.stringify((r as { profile: unknown }).profile)))
      }
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

      /** Whether the bank runs `only` (any pipeline when undefined): waits up to `appearMs` for it to start, then until it ends or `limitMs` passed. */
      const waitRunner = async (only: string | undefined, appearMs: number, limitMs: number): Promise<boolean> => {
        const busy = () => {
          const r = rt.tags.runner.running(main.id)
          return only ? r.includes(only) : r.length > 0
        }
        for (let w = 0; w < appearMs && !busy(); w += 20) await sleep(20)
        const t0 = performance.now()
        while (busy()) {
          if (performance.now() - t0 > limitMs) return false
          await sleep(50)
        }
        return true
      }

      say(`load: ${ingestRps} ingest/s x ${batch} events, a preview every ${previewMs} ms, ${layoutRps} layouts/s; warm-up ${warmupS} s`)
      const loop = startOpenLoop(url, streams, { timeoutMs })
      let targeting: z.infer<typeof targetingView> | undefined
      // A phase whose run did not end within run_limit_s under the load: the load stops there and
      // the run is left to finish without it (how long that took is reported).
      let cut: 'tags' | 'followers' | 'push' | undefined
      let pushCall: Promise<{ status: number; json: unknown }> | undefined
      let afterCutS = NaN
      let runId = ''
      try {
        await sleep(warmupS * 1000)
        begin()
        await sleep(idleS * 1000)
        end('idle')

        // Started through the route without waiting, its end watched in the runner's memory: an
        // answer held open for the whole run was reset once at 1M (ECONNRESET), and polling the
        // route would add requests of its own to the request path.
        begin()
        const tr = await call(url, main.admin, 'POST', '/v1/pipelines/runs', { pipeline: 'tags', mode: 'full', wait: false })
        if (tr.status !== 202) throw new Error(`starting the tag run answered ${tr.status}: ${JSON.stringify(tr.json)}`)
        runId = z.object({ runId: z.string() }).parse(tr.json).runId
        if (!(await waitRunner('tags', 3000, limitS * 1000))) cut = 'tags'
        end('tags')

        if (!cut) {
          // The model build and push targeting follow the tag run in the background.
          begin()
          if (!(await waitRunner(undefined, 3000, limitS * 1000))) cut = 'followers'
          end('followers')
        }

        if (!cut) {
          // Created now, not before: push targeting follows every tag run and would target it there.
          const put = await call(url, main.marketer, 'PUT', '/v1/push/campaigns/contention-pick', {
            name: 'Contention bench: a pick for everyone',
            purpose: 'marketing',
            priority: 'low',
            schedule: { kind: 'cron', cron: '0 8 * * *' },
            message: { body: { zh: '{{name|您好}}，为您精选稳健理财', en: 'A steady wealth product picked for you' } },
          })
          if (put.status !== 200 && put.status !== 201) throw new Error(`saving the campaign answered ${put.status}: ${JSON.stringify(put.json)}`)
          // A marketing campaign runs once a second holder approved it: the bank's admin, before the phase.
          const ok = await call(url, main.admin, 'POST', '/v1/push/campaigns/contention-pick/approval', { version: (put.json as { campaign: { version: number } }).campaign.version })
          if (ok.status !== 200) throw new Error(`approving the campaign answered ${ok.status}: ${JSON.stringify(ok.json)}`)
          begin()
          pushCall = call(url, main.marketer, 'POST', '/v1/push/campaigns/contention-pick/run', {})
          const raced = await Promise.race([pushCall, sleep(limitS * 1000).then(() => undefined)])
          end('push')
          if (!raced) cut = 'push'
        }

        if (!cut) {
          begin()
          await sleep(tailS * 1000)
          end('tail')
        }
        if (cut) say(`the ${cut} phase did not end within ${limitS} s under the load: the load stops and the run finishes without it`)
      } finally {
        await loop.stop()
        eld.disable()
      }
      if (cut) {
        const t0 = performance.now()
        await pushCall?.catch(() => undefined)
        await waitRunner(undefined, 0, Infinity)
        afterCutS = (performance.now() - t0) / 1000
        say(`the runs ended ${afterCutS.toFixed(1)} s after the load stopped`)
      }
      const rec = await call(url, main.admin, 'GET', `/v1/pipelines/runs/${runId}`)
      if (rec.status !== 200) throw new Error(`reading the tag run answered ${rec.status}: ${JSON.stringify(rec.json)}`)
      const tagRun = runRecord.parse(rec.json)
      if (tagRun.status !== 'succeeded') throw new Error(`the tag run ${tagRun.status}: ${tagRun.error}`)
      if (pushCall) {
        const pr = await pushCall
        if (pr.status !== 200) throw new Error(`the targeting run answered ${pr.status}: ${JSON.stringify(pr.json)}`)
        targeting = targetingView.parse(pr.json)
      }

      // --- figures ----------------------------------------------------------------------------
      const shots = loop.shots
      const idle = bounds.get('idle')!
      const idleKind = Object.fromEntries(KINDS.map((k) => [k, phaseFigures(shots, k, idle.from, idle.to)])) as Record<(typeof KINDS)[number], KindFigures>
      const table = new Map<Phase, Record<(typeof KINDS)[number], KindFigures>>()
      const ran = PHASES.filter((p) => bounds.has(p))
      for (const p of ran) {
        const b = bounds.get(p)!
        table.set(p, Object.fromEntries(KINDS.map((k) => [k, phaseFigures(shots, k, b.from, b.to)])) as Record<(typeof KINDS)[number], KindFigures>)
      }
      const figures: Record<string, number> = {
        generation_s: summary.seconds,
        events: summary.rows.events ?? 0,
        seed_tags_and_models_s: seeded.seconds,
        merges_settle_before_load_s: settleS,
        main_bank_customers: main.n,
        tag_run_changed: tagRun.rows,
        push_targeted: targeting?.campaigns.reduce((s, c) => s + c.targeted, 0) ?? NaN,
        push_queued: targeting?.campaigns.reduce((s, c) => s + c.queued, 0) ?? NaN,
        // 1 when the phase's run ended under the load within run_limit_s.
        tags_finished_under_load: cut === 'tags' ? 0 : 1,
        push_finished_under_load: cut === undefined ? 1 : 0,
        runs_end_after_load_stopped_s: afterCutS,
      }
      for (const p of ran) {
        const b = bounds.get(p)!
        figures[`${p}_s`] = (b.to - b.from) / 1000
        figures[`${p}_process_cpu_cores`] = b.cpuS / ((b.to - b.from) / 1000)
        figures[`${p}_machine_busy_cores`] = b.machineBusyCores
        figures[`${p}_steal_cores`] = b.stealCores
        figures[`${p}_event_loop_delay_p99_ms`] = b.elDelayP99Ms
        figures[`${p}_event_loop_delay_max_ms`] = b.elDelayMaxMs
        for (const k of KINDS) {
          const f = table.get(p)![k]
          Object.assign(figures, {
            [`${p}_${k}_offered`]: f.offered,
            [`${p}_${k}_completed`]: f.completed,
            [`${p}_${k}_non2xx`]: f.non2xx,
            [`${p}_${k}_errors`]: f.errors,
            [`${p}_${k}_p50_ms`]: f.p50Ms,
            [`${p}_${k}_p95_ms`]: f.p95Ms,
            [`${p}_${k}_p99_ms`]: f.p99Ms,
            [`${p}_${k}_max_ms`]: f.maxMs,
            [`${p}_${k}_offered_per_s`]: f.offeredPerS,
            [`${p}_${k}_achieved_per_s`]: f.achievedPerS,
            [`${p}_${k}_send_lag_p99_ms`]: f.sendLagP99Ms,
          })
        }
      }
      const during = (['tags', 'push'] as const).filter((p) => bounds.has(p))
      const ratios: Record<string, number> = {}
      for (const p of during) {
        const f = table.get(p)!
        ratios[`ingest_p99_${p}_over_idle`] = f.ingest.p99Ms / idleKind.ingest.p99Ms
        ratios[`preview_p99_${p}_over_idle`] = f.preview.p99Ms / idleKind.preview.p99Ms
        ratios[`layout_p99_${p}_over_idle`] = f.layout.p99Ms / idleKind.layout.p99Ms
        ratios[`ingest_completed_over_offered_${p}`] = f.ingest.completed / f.ingest.offered
        ratios[`ingest_achieved_over_offered_rate_${p}`] = f.ingest.achievedPerS / f.ingest.offeredPerS
      }
      const non2xx = ran.reduce((s, p) => s + KINDS.reduce((t, k) => t + table.get(p)![k].non2xx + table.get(p)![k].errors, 0), 0)
      // The baseline itself overloaded: answers fell behind the offered rate, or some failed.
      const idleSaturated = idleKind.ingest.achievedPerS < 0.95 * idleKind.ingest.offeredPerS || KINDS.some((k) => idleKind[k].non2xx + idleKind[k].errors > 0)
      figures.idle_saturated = idleSaturated ? 1 : 0
      const goal = (p: 'tags' | 'push') => {
        if (!bounds.has(p)) return `not measured: the ${cut} phase before it did not end within ${limitS} s under the load`
        const ip = ratios[`ingest_p99_${p}_over_idle`]!
        const pp = ratios[`preview_p99_${p}_over_idle`]!
        const rate = ratios[`ingest_achieved_over_offered_rate_${p}`]!
        const done = ratios[`ingest_completed_over_offered_${p}`]!
        const met = (b: boolean) => (b ? 'met' : 'NOT met')
        const unfinished = cut === p ? `NOT met: the run did not end within ${limitS} s under the load (it ended ${afterCutS.toFixed(0)} s after the load stopped); until then, ` : ''
        return (
          unfinished +
          `during the ${p === 'tags' ? 'full tag run' : 'push targeting run'} (${figures[`${p}_s`]!.toFixed(1)} s): ingest p99 ${table.get(p)!.ingest.p99Ms.toFixed(0)} ms = ${ip.toFixed(2)}x idle (${met(ip <= 2)}), ` +
          `preview p99 ${table.get(p)!.preview.p99Ms.toFixed(0)} ms = ${pp.toFixed(2)}x idle (${met(pp <= 2)}), ingest answered 2xx ${(100 * done).toFixed(1)}% of offered, at ${(100 * rate).toFixed(1)}% of the offered rate inside the phase ` +
          (figures[`${p}_s`]! >= 10 ? `(${met(done === 1 && rate >= 0.95)}: all answered 2xx and >= 95% of the rate)` : `(${done === 1 ? 'all answered 2xx' : 'NOT all answered 2xx'}; a phase under 10 s is too short to judge the rate by)`)
        )
      }
      const row = (p: Phase, k: (typeof KINDS)[number]) => {
        const f = table.get(p)![k]
        const r = (v: number) => (Number.isFinite(v) ? String(Math.round(v)) : '-')
        const failures = Object.entries(f.failures).map(([w, n]) => `${w}: ${n}`).join(', ')
        return `| ${p} | ${k} | ${f.offered} | ${f.offeredPerS.toFixed(1)} | ${f.achievedPerS.toFixed(1)} | ${f.completed} | ${f.non2xx} | ${f.errors} | ${r(f.p50Ms)} | ${r(f.p95Ms)} | ${r(f.p99Ms)} | ${r(f.maxMs)} | ${failures} |`
      }
      const phaseRow = (p: Phase) => {
        const b = bounds.get(p)!
        const s = (b.to - b.from) / 1000
        return `| ${p} | ${s.toFixed(1)} | ${(b.cpuS / s).toFixed(2)} | ${b.machineBusyCores.toFixed(2)} | ${b.stealCores.toFixed(2)} | ${b.load1.toFixed(2)} | ${b.elDelayP99Ms.toFixed(0)} | ${b.elDelayMaxMs.toFixed(0)} |`
      }
      return {
        params: {
          customers, days, seed, code, ...(label ? { label } : {}), main_bank: main.slug, ingest_rps: ingestRps, batch, preview_ms: previewMs, layout_rps: layoutRps,
          warmup_s: warmupS, idle_s: idleS, tail_s: tailS, timeout_ms: timeoutMs, run_limit_s: limitS, load1_at_start: Number(loadAtStart.toFixed(2)), ...serverEnv,
        },
        figures,
        ratios,
        notes: [
          `Goals: 0 non-2xx; ingest and preview p99 during a run <= 2x idle; ingest keeps the offered rate. Non-2xx answers and failed requests over the whole run: ${non2xx} (${non2xx === 0 ? 'met' : 'NOT met'}).`,
          `Idle (${idleS} s): ingest p99 ${idleKind.ingest.p99Ms.toFixed(0)} ms, preview p99 ${idleKind.preview.p99Ms.toFixed(0)} ms, layout p99 ${idleKind.layout.p99Ms.toFixed(0)} ms.` +
            (idleSaturated
              ? ` Idle was NOT idle: the offered load alone was more than the server kept up with (ingest answered ${idleKind.ingest.achievedPerS.toFixed(1)}/s of ${idleKind.ingest.offeredPerS.toFixed(1)}/s offered, ` +
                `${idleKind.ingest.non2xx + idleKind.ingest.errors} not 2xx), so the ratios against idle understate what the runs cost: rerun with a lower load (ingest_rps) or on a machine not shared with other work.`
              : ''),
          `Tag run: ${goal('tags')}.`,
          `Push run: ${goal('push')}.`,
          `The full tag run of ${main.slug} (${main.n.toLocaleString('en-US')} customers; ${tagRun.rows.toLocaleString('en-US')} values changed) started through POST /v1/pipelines/runs; the phase ends when the runner reports it ended. ` +
            `"followers" is what the runner starts after it in the background (the layout model build, push targeting of due campaigns), until none runs. ` +
            `The push phase is POST /v1/push/campaigns/:id/run of a low-priority marketing campaign to everyone in ${main.slug} (every policy: consent, holdout, caps, dedup): ${targeting ? `${figures.push_targeted!.toLocaleString('en-US')} targets, ${figures.push_queued!.toLocaleString('en-US')} queued` : 'not run'}. ` +
            `A run that does not end within run_limit_s (${limitS} s) under the load ends the measurement there: the load stops and the run finishes without it (runs_end_after_load_stopped_s).`,
          `Load: open loop at fixed rates (bench/open-loop.ts): requests go out on schedule whether or not earlier ones were answered, and latency counts from the schedule, so a stall shows in every request it delays. ` +
            `The generator runs in the server's process, on the same event loop: a request sent late because the loop was busy counts that delay (send_lag). A request belongs to the phase it was scheduled in. ` +
            `completed = answered 2xx (whenever); achieved_per_s = 2xx answers arriving within the phase, per second (in a phase of a few seconds, a change of latency at its edges moves it by latency/duration); offered_per_s = scheduled per second.`,
          `Ingest: ${ingestRps} requests/s of ${batch} Segment track events of random customers of one bank (the banks in turn, each with its ingest key), answered once written. ` +
            `Previews: the tag-only rule ${JSON.stringify(PREVIEW.rule)} with a breakdown by lifecycle, analyst keys, the banks in turn. Layouts: random customers of the banks in turn, layout keys.`,
          `The server: startServer (the runtime and app factory of \`qianmian start\`) on the data directory the bench opened, roles api only (no cron starts a run inside a phase), listening on 127.0.0.1 in this process; its engine connection(s) are the runtime's own.`,
          `Machine: load1 ${loadAtStart.toFixed(2)} when the scenario started; machine_busy_cores per phase is the whole machine's busy CPU (from /proc/stat, steal excluded), process_cpu_cores this process's: their difference is other processes sharing the ${os.cpus().length} cores; steal_cores is CPU the hypervisor did not give the machine when it wanted it.`,
        ],
        sections: [
          '## Per phase and kind',
          '',
          'Latency in ms from the scheduled time; offered and achieved per second.',
          '',
          '| phase | kind | offered | offered/s | achieved/s | completed | non-2xx | errors | p50 | p95 | p99 | max | not 2xx, by status or error |',
          '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
          ...ran.flatMap((p) => KINDS.map((k) => row(p, k))),
          '',
          '| phase | seconds | process CPU cores | machine busy cores | stolen cores | load1 at end | event-loop delay p99 ms | event-loop delay max ms |',
          '| --- | --- | --- | --- | --- | --- | --- | --- |',
          ...ran.map(phaseRow),
          '',
        ],
      }
    } finally {
      await server.stop('bench done')
    }
  },
}
