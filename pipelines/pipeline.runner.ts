import cron, { type ScheduledTask } from 'node-cron'
import type { Db } from '../core/db.js'
import { AppError, errText, isAppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { chDateTime, daysBetween, localDate } from '../core/time.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { newRunId } from '../core/run-id.js'
import { holdLease } from './pipeline.lease.js'
import { createRunStore, leaseOwner, type RunRecord, type RunStore } from './pipeline.runs.js'

/**
 * Runs pipelines: on demand (API, CLI) and on their cron schedules. Each run holds a lease on
 * (tenant, pipeline), renewed while it runs (pipeline.lease.ts), so overlapping runs never
 * double-run, records every state change in pipeline_runs, and is retried with exponential
 * backoff; runs are idempotent, so a retry after a failure half-way converges on the same values.
 *
 * The runner knows no pipeline's work: each capability registers its own (tags/tag.job.ts,
 * segments/segment.job.ts, recommend/recommend.module.ts, push/push.wiring.ts), with what it
 * follows and when it is scheduled, so the runner depends on none of them.
 */

export const PIPELINES = ['tags', 'segments', 'recommend', 'push'] as const
export type PipelineName = (typeof PIPELINES)[number]

export interface RunOptions {
  tenantId: number
  pipeline?: PipelineName
  /** Only these tags (their dependencies are read as they are). */
  tags?: readonly string[] | undefined
  mode?: 'full' | 'incremental'
  /** A full run that recomputes every tag for every customer, even those whose inputs it finds unchanged (tags only). */
  recompute?: boolean | undefined
  trigger: 'schedule' | 'api' | 'cli' | 'after-tags'
  /** Recompute history for these tenant-local days instead of the current values. */
  backfill?: { from: string; to: string } | undefined
  /** Time the values are computed as of (default now). */
  asOf?: Date | undefined
  /** Whether the pipelines registered after this one follow it (default true; never after a backfill). */
  follow?: boolean | undefined
}

export interface RunnerOptions {
  retries: number
  retryBaseMs: number
  /** How long a lease outlives a process that died; a running process renews it (pipeline.lease.ts). */
  leaseMs: number
}

export interface PipelineRunner {
  /** Starts a run; resolves with its id at once and `done` when it ends. CONFLICT when one is running. */
  start(o: RunOptions): Promise<{ runId: string; done: Promise<RunRecord> }>
  run(o: RunOptions): Promise<RunRecord>
  runs: RunStore['list']
  running(tenantId: number): string[]
  startScheduler(): Promise<void>
  /** Stops the schedules and waits for runs in progress. */
  stop(): Promise<void>
  /** Adds a pipeline's work, supplied by its capability; it runs on demand and as `opts` say. */
  register(pipeline: PipelineName, job: PipelineJob, opts?: PipelineSchedule): void
  /** Cron tasks of a tenant: `tags` lists the tag names, or the segment ids of a segments task. */
  schedules(tenantId: number): { pipeline: PipelineName; cron: string; timeZone: string; tags: string[]; next: string | null }[]
}

/** What a pipeline's work is handed: the run's options as started, and the tenant's time zone. */
export interface JobInput {
  tenantId: number
  timeZone: string
  asOf: Date
  runId: string
  options: RunOptions
  /**
   * Aborted when the run's lease was found taken by another holder: the work stops at its next
   * step (`signal.throwIfAborted()`), so two runs of the pipeline do not write beside each other
   * for long. Whatever the work does, such a run is recorded failed, not done.
   */
  signal: AbortSignal
}

/**
 * A registered pipeline's work for one tenant: rows written and details for the run record. With
 * `failures` the run completed all but those parts (tags, segments): it is `partial`, not
 * retried, and what follows it still runs.
 */
export type PipelineJob = (input: JobInput) => Promise<{
  rows: number
  details: Record<string, unknown>
  mode?: RunRecord['mode']
  watermark?: string
  failures?: readonly { name: string; error: string }[]
}>

/** When a registered pipeline runs besides on demand. */
export interface PipelineSchedule {
  /**
   * The pipeline it follows: it runs after every run of that one which itself started or
   * followed a chain (a run of a pipeline with no `after`, not a backfill). Without `after` the
   * pipeline starts a chain.
   */
  after?: PipelineName
  /** True when the pipeline has nothing to do for the tenant: what follows it then follows its `after` directly. */
  idle?: (tenantId: number) => Promise<boolean>
  /** One schedule for every tenant (tenant time zone). */
  cron?: string
  /** A tenant's own schedules: each thing scheduled (a tag, a segment) by name with its cron. */
  schedules?: (tenantId: number) => Promise<readonly { cron: string; name: string }[]>
  /** The options of a run a tenant's own schedule starts, from the names it covers. */
  scheduledRun?: (names: string[]) => Partial<RunOptions>
}

const BACKFILL_MAX_DAYS = 400
const RESYNC_MS = 5 * 60_000

export function createPipelineRunner(deps: {
  db: Db
  tenants: TenantService
  log: Logger
  metrics: Metrics
  options: RunnerOptions
}): PipelineRunner {
  const store = createRunStore({ db: deps.db })
  // Leases on the request lane: a renewal queued on the pipeline lane behind the run's own
  // minute-long statement would come too late.
  const leases = createRunStore({ db: deps.db.lane('request') })
  const log = deps.log
  const active = new Map<string, Promise<RunRecord>>()
  // Follow-ups asked for while a run of their pipeline was in progress: one more run when it ends.
  const pending = new Set<string>()
  const runKey = (tenantId: number, pipeline: PipelineName) => `${tenantId}:${pipeline}`
  const tasks = new Map<string, { task: ScheduledTask; tenantId: number; cron: string; timeZone: string; tags: string[]; pipeline: PipelineName }>()
  let resync: NodeJS.Timeout | undefined
  let stopped = false
  const jobs = new Map<PipelineName, { job: PipelineJob; schedule: PipelineSchedule }>()

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const duration = deps.metrics.histogram('qianmian_pipeline_run_seconds', 'Pipeline run duration', ['pipeline', 'status'], [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600])
  const outcomes = deps.metrics.counter('qianmian_pipeline_runs_total', 'Pipeline runs by outcome', ['pipeline', 'status'])
  // For alerting on staleness: now minus this, per tenant, beyond the schedule means trouble.
  const lastSuccess = deps.metrics.gauge('qianmian_pipeline_last_success_seconds', 'Unix time of the last successful run', ['tenant', 'pipeline'])
  const changedValues = deps.metrics.counter('qianmian_tag_values_changed_total', 'Tag values changed by pipeline runs', ['tenant'])
  // For alerting on definitions that fail: a partial run leaves these tags (segments) as they were.
  const failedTags = deps.metrics.counter('qianmian_tag_failures_total', 'Tags whose computation failed in a tag run (the run completed the others)', ['tenant'])
  const failedSegments = deps.metrics.counter('qianmian_segment_failures_total', 'Segments whose materialization failed in a segments run (the run completed the others)', ['tenant'])
  const failedParts: Partial<Record<PipelineName, typeof failedTags>> = { tags: failedTags, segments: failedSegments }
  const leasesLost = deps.metrics.counter('qianmian_pipeline_leases_lost_total', 'Runs that found their lease taken by another holder while in progress (stopped, recorded failed)', ['pipeline'])

  async function execute(o: RunOptions, runId: string): Promise<RunRecord> {
    const pipeline = o.pipeline ?? 'tags'
    const tenant = await deps.tenants.get(o.tenantId)
    const startedAt = chDateTime(new Date())
    const base: RunRecord = {
      runId, pipeline, mode: o.backfill ? 'backfill' : (o.mode ?? 'incremental'), trigger: o.trigger, status: 'running', attempt: 1,
      startedAt, finishedAt: null, asOf: chDateTime(o.asOf ?? new Date()), watermark: startedAt, rows: 0, details: {}, error: '',
    }
    const owner = leaseOwner()
    if (!(await leases.lease(o.tenantId, pipeline, owner, deps.options.leaseMs))) {
      const skipped = { ...base, status: 'skipped' as const, finishedAt: chDateTime(new Date()), error: 'another process holds the lease' }
      await store.record(o.tenantId, skipped)
      return skipped
    }
    const timer = duration.startTimer({ pipeline })
    const lease = holdLease({ store: leases, log, tenantId: o.tenantId, pipeline, owner, ttlMs: deps.options.leaseMs, onLost: () => leasesLost.inc({ pipeline }) })
    let outcome = 'failed'
    try {
      for (let attempt = 1; ; attempt++) {
        const rec = { ...base, attempt }
        await store.record(o.tenantId, rec)
        try {
          // A lost lease is a CONFLICT: final, not retried (the other holder runs it).
          lease.signal.throwIfAborted()
          const { failures = [], ...out } = await runJob(pipeline, o, runId, tenant.timeZone, lease.signal)
          lease.signal.throwIfAborted()
          // A run that completed all but some parts is partial: what follows it still runs.
          const error = failures.map((f) => `${f.name}: ${f.error}`).join('; ')
          const done: RunRecord = { ...rec, ...out, status: failures.length ? 'partial' : 'succeeded', finishedAt: chDateTime(new Date()), error }
          await store.record(o.tenantId, done)
          outcome = done.status
          if (failures.length) {
            failedParts[pipeline]?.inc({ tenant: String(o.tenantId) }, failures.length)
            log.warn({ tenant: o.tenantId, pipeline, runId, failed: failures.map((f) => f.name) }, `${pipeline} run partial: some parts failed`)
          }
          lastSuccess.set({ tenant: String(o.tenantId), pipeline }, Date.now() / 1000)
          changedValues.inc({ tenant: String(o.tenantId) }, done.rows)
          log.info({ tenant: o.tenantId, pipeline, runId, mode: done.mode, rows: done.rows, ms: Date.parse(`${done.finishedAt}Z`) - Date.parse(`${startedAt}Z`) }, 'pipeline run succeeded')
          // A chain goes on from a run that started it or followed in it.
          const startsChain = !jobs.get(pipeline)?.schedule.after && !o.backfill && o.follow !== false
          if (startsChain || o.trigger === 'after-tags') follow(o.tenantId, pipeline)
          return done
        } catch (err) {
          // Whatever the work threw once its lease was lost, the loss is why it ended.
          const lost = lease.signal.aborted
          const message = errText(lost ? lease.signal.reason : err)
          const final = lost || attempt > deps.options.retries || (isAppError(err) && err.status < 500) || stopped
          const failed: RunRecord = { ...rec, status: 'failed', finishedAt: chDateTime(new Date()), error: message }
          await store.record(o.tenantId, failed).catch(() => {})
          log.warn({ tenant: o.tenantId, pipeline, runId, attempt, err: message }, final ? 'pipeline run failed' : 'pipeline run failed; retrying')
          if (final) {
            return failed
          }
          await sleep(deps.options.retryBaseMs * 4 ** (attempt - 1))
        }
      }
    } finally {
      timer({ status: outcome })
      outcomes.inc({ pipeline, status: outcome })
      // A follow-up that another process could not start, as this process held the lease, was
      // recorded skipped: one asked for after this run began wants a run that starts after it.
      if (jobs.get(pipeline)?.schedule.after && !stopped && (await store.followUpSkipped(o.tenantId, pipeline, runId).catch(() => false))) {
        log.info({ tenant: o.tenantId, pipeline, runId }, `another process asked for a ${pipeline} run after this one began: one more follows`)
        pending.add(runKey(o.tenantId, pipeline))
      }
      await lease.stop()
      await leases.release(o.tenantId, pipeline, owner).catch((err: unknown) => log.warn({ err }, 'lease release failed'))
    }
  }

  async function runJob(pipeline: PipelineName, o: RunOptions, runId: string, timeZone: string, signal: AbortSignal): Promise<Awaited<ReturnType<PipelineJob>> & Pick<RunRecord, 'mode' | 'watermark'>> {
    const registered = jobs.get(pipeline)
    if (!registered) throw new AppError('VALIDATION_FAILED', `The ${pipeline} pipeline is not available in this process.`, { issues: [{ field: 'pipeline', message: 'not available' }] })
    const r = await registered.job({ tenantId: o.tenantId, timeZone, asOf: o.asOf ?? new Date(), runId, options: o, signal })
    return { ...r, mode: r.mode ?? 'full', watermark: r.watermark ?? chDateTime(new Date()) }
  }

  /** Starts the pipelines registered after `pipeline`; one with nothing to do passes the turn to those after it. */
  function follow(tenantId: number, pipeline: PipelineName): void {
    for (const [next, { schedule }] of jobs) {
      if (schedule.after !== pipeline) continue
      void (async () => {
        if (stopped) return
        if (schedule.idle && (await schedule.idle(tenantId))) return follow(tenantId, next)
        await followUp(tenantId, next)
      })().catch((err: unknown) => log.info({ tenant: tenantId, pipeline: next, err: errText(err) }, `${next} did not follow the ${pipeline} run`))
    }
  }

  /**
   * Starts a follow-up run of `pipeline`. While one is in progress in this process, that run began
   * before what it should follow ended: the follow-up is remembered and starts when that run ends
   * (several asked meanwhile make one). Checked and remembered in one synchronous step, so the run
   * in progress cannot end between the two.
   */
  async function followUp(tenantId: number, pipeline: PipelineName): Promise<void> {
    if (stopped) return
    const key = runKey(tenantId, pipeline)
    if (active.has(key)) {
      pending.add(key)
      log.info({ tenant: tenantId, pipeline }, `a ${pipeline} run is in progress: the follow-up starts when it ends`)
      return
    }
    await (await runner.start({ tenantId, pipeline, trigger: 'after-tags' })).done
  }

  function validate(o: RunOptions): void {
    if (o.backfill) {
      const n = daysBetween(o.backfill.from, o.backfill.to)
      if (!(n >= 0 && n < BACKFILL_MAX_DAYS)) {
        throw new AppError('VALIDATION_FAILED', `A backfill covers 1 to ${BACKFILL_MAX_DAYS} days, from <= to.`, { issues: [{ field: 'backfill', message: 'invalid range' }] })
      }
    }
    if (o.recompute && (o.mode !== 'full' || o.backfill || (o.pipeline ?? 'tags') !== 'tags')) {
      throw new AppError('VALIDATION_FAILED', 'recompute applies to a full run of the tags pipeline (mode full, no backfill).', {
        issues: [{ field: 'recompute', message: 'needs mode full on the tags pipeline' }],
      })
    }
  }

  /** A backfill recomputes the past: the bank's today and later days are refused, each named. */
  async function pastDaysOnly(tenantId: number, backfill: { from: string; to: string }): Promise<void> {
    const today = localDate(new Date(), (await deps.tenants.get(tenantId)).timeZone)
    const late = (['from', 'to'] as const).filter((f) => backfill[f] >= today)
    if (!late.length) return
    throw new AppError('VALIDATION_FAILED', `A backfill recomputes past days: the bank's today (${today}) and later days are computed by ordinary runs.`, {
      issues: late.map((f) => ({ field: `backfill.${f}`, message: `a day before ${today}` })),
    })
  }

  const runner: PipelineRunner = {
    register(pipeline, job, schedule = {}) {
      jobs.set(pipeline, { job, schedule })
    },
    async start(o) {
      validate(o)
      // Only a backfill waits here (for the bank's zone): no await stands between a follow-up's
      // check of the runs in progress and this one's.
      if (o.backfill) await pastDaysOnly(o.tenantId, o.backfill)
      if (stopped) throw new AppError('SHUTTING_DOWN')
      const pipeline = o.pipeline ?? 'tags'
      const key = runKey(o.tenantId, pipeline)
      if (active.has(key)) throw new AppError('CONFLICT', `A ${pipeline} run is already in progress for this tenant.`)
      const runId = newRunId()
      const done = execute(o, runId).finally(() => {
        active.delete(key)
        if (pending.delete(key)) void followUp(o.tenantId, pipeline).catch((err: unknown) => log.info({ tenant: o.tenantId, pipeline, err: errText(err) }, `the waiting ${pipeline} follow-up did not run`))
      })
      active.set(key, done)
      return { runId, done }
    },
    async run(o) {
      return (await runner.start(o)).done
    },
    runs: (tenantId, o) => store.list(tenantId, o),
    running: (tenantId) => [...active.keys()].filter((k) => k.startsWith(`${tenantId}:`)).map((k) => k.split(':')[1]!),
    async startScheduler() {
      await syncSchedules()
      resync = setInterval(() => void syncSchedules().catch((err: unknown) => log.warn({ err }, 'schedule sync failed')), RESYNC_MS)
      resync.unref()
    },
    async stop() {
      stopped = true
      pending.clear()
      if (resync) clearInterval(resync)
      for (const t of tasks.values()) await t.task.destroy()
      tasks.clear()
      await Promise.allSettled([...active.values()])
    },
    schedules(tenantId) {
      return [...tasks.values()]
        .filter((t) => t.tenantId === tenantId)
        .map((t) => ({ pipeline: t.pipeline, cron: t.cron, timeZone: t.timeZone, tags: t.tags, next: t.task.getNextRun()?.toISOString() ?? null }))
    },
  }

  /**
   * One cron task per (tenant, schedule), re-read every few minutes as definitions change. A
   * tenant whose schedules cannot be read keeps its tasks as they were, and the others are synced.
   */
  async function syncSchedules(): Promise<void> {
    if (stopped) return
    type Wanted = { tenantId: number; cron: string; timeZone: string; tags: string[]; pipeline: PipelineName }
    const wanted = new Map<string, Wanted>()
    const unread = new Set<number>()
    for (const t of await deps.tenants.list()) {
      if (t.status !== 'active') continue
      try {
        const mine = new Map<string, Wanted>()
        for (const [pipeline, { schedule }] of jobs) {
          for (const own of (await schedule.schedules?.(t.id)) ?? []) {
            const key = `${t.id}|${pipeline}|${own.cron}|${t.timeZone}`
            const w = mine.get(key) ?? { tenantId: t.id, cron: own.cron, timeZone: t.timeZone, tags: [], pipeline }
            w.tags.push(own.name)
            mine.set(key, w)
          }
          if (schedule.cron) mine.set(`${t.id}|${pipeline}|${schedule.cron}|${t.timeZone}`, { tenantId: t.id, cron: schedule.cron, timeZone: t.timeZone, tags: [], pipeline })
        }
        for (const [key, w] of mine) wanted.set(key, w)
      } catch (err) {
        unread.add(t.id)
        log.warn({ tenant: t.id, err: errText(err) }, "the tenant's schedules could not be read: its tasks stay as they were, the other tenants' are synced")
      }
    }
    for (const [key, t] of tasks) {
      if (unread.has(t.tenantId)) continue
      const w = wanted.get(key)
      if (!w || w.tags.join() !== t.tags.join()) {
        await t.task.destroy()
        tasks.delete(key)
      }
    }
    for (const [key, w] of wanted) {
      if (tasks.has(key)) continue
      const task = cron.schedule(
        w.cron,
        async () => {
          const own = jobs.get(w.pipeline)?.schedule.scheduledRun?.(w.tags) ?? {}
          const o: RunOptions = { ...own, tenantId: w.tenantId, pipeline: w.pipeline, trigger: 'schedule' }
          const r = await runner.start(o).catch((err: unknown) => {
            log.info({ tenant: w.tenantId, pipeline: w.pipeline, err: errText(err) }, 'scheduled run not started')
            return undefined
          })
          await r?.done
        },
        { timezone: w.timeZone, name: key, noOverlap: true },
      )
      tasks.set(key, { task, ...w })
    }
  }

  return runner
}
