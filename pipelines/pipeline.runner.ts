import cron, { type ScheduledTask } from 'node-cron'
import type { Db } from '../core/db.js'
import { AppError, errText, isAppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { addDays, chDateTime, daysBetween, zonedMidnight } from '../core/time.js'
import type { TagRepository } from '../tags/tag.repository.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { newRunId } from '../core/run-id.js'
import { createRunStore, leaseOwner, type RunRecord, type RunStore } from './pipeline.runs.js'
import { runTags, type TagRunResult } from './tag.pipeline.js'
import { materializeAll } from '../segments/segment.materialize.js'
import { createSegmentRepository } from '../segments/segment.repository.js'

/**
 * Runs pipelines: on demand (API, CLI) and on the tags' cron schedules. Each run holds a lease on
 * (tenant, pipeline) so overlapping runs never double-run, records every state change in
 * pipeline_runs, and is retried with exponential backoff; runs are idempotent, so a retry after a
 * failure half-way converges on the same values.
 */

export const PIPELINES = ['tags', 'segments', 'recommend', 'push'] as const
export type PipelineName = (typeof PIPELINES)[number]

export interface RunOptions {
  tenantId: number
  pipeline?: PipelineName
  /** Only these tags (their dependencies are read as they are). */
  tags?: readonly string[] | undefined
  mode?: 'full' | 'incremental'
  trigger: 'schedule' | 'api' | 'cli' | 'after-tags'
  /** Recompute history for these tenant-local days instead of the current values. */
  backfill?: { from: string; to: string } | undefined
  /** Time the values are computed as of (default now). */
  asOf?: Date | undefined
  /** Whether segments and registered pipelines follow a tag run (default true). */
  follow?: boolean | undefined
}

export interface RunnerOptions {
  retries: number
  retryBaseMs: number
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
  /**
   * Adds the work of a pipeline other than tags and segments (the recommend model), supplied by
   * its capability so the runner does not depend on it. It runs after every tag run (after the
   * segments, when there are saved ones), on demand, and with `cron` for every tenant on that
   * schedule (tenant time zone) as well.
   */
  register(pipeline: Exclude<PipelineName, 'tags' | 'segments'>, job: PipelineJob, opts?: { cron?: string }): void
  /** Cron tasks of a tenant: `tags` lists the tag names, or the segment ids of a segments task. */
  schedules(tenantId: number): { pipeline: PipelineName; cron: string; timeZone: string; tags: string[]; next: string | null }[]
}

/** A registered pipeline's work for one tenant: rows written and details for the run record. */
export type PipelineJob = (input: { tenantId: number; asOf: Date; runId: string }) => Promise<{ rows: number; details: Record<string, unknown> }>

const BACKFILL_MAX_DAYS = 400
const RESYNC_MS = 5 * 60_000

export function createPipelineRunner(deps: {
  db: Db
  tenants: TenantService
  tags: TagRepository
  log: Logger
  metrics: Metrics
  options: RunnerOptions
}): PipelineRunner {
  const store = createRunStore({ db: deps.db })
  const segmentRepo = createSegmentRepository({ db: deps.db })
  const log = deps.log
  const active = new Map<string, Promise<RunRecord>>()
  const tasks = new Map<string, { task: ScheduledTask; tenantId: number; cron: string; timeZone: string; tags: string[]; pipeline: PipelineName }>()
  let resync: NodeJS.Timeout | undefined
  let stopped = false
  const jobs = new Map<PipelineName, PipelineJob>()
  const jobCrons = new Map<PipelineName, string>()

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const duration = deps.metrics.histogram('qianmian_pipeline_run_seconds', 'Pipeline run duration', ['pipeline', 'status'], [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600])
  const outcomes = deps.metrics.counter('qianmian_pipeline_runs_total', 'Pipeline runs by outcome', ['pipeline', 'status'])
  // For alerting on staleness: now minus this, per tenant, beyond the schedule means trouble.
  const lastSuccess = deps.metrics.gauge('qianmian_pipeline_last_success_seconds', 'Unix time of the last successful run', ['tenant', 'pipeline'])
  const changedValues = deps.metrics.counter('qianmian_tag_values_changed_total', 'Tag values changed by pipeline runs', ['tenant'])
  // For alerting on definitions that fail: a partial run leaves these tags as they were.
  const failedTags = deps.metrics.counter('qianmian_tag_failures_total', 'Tags whose computation failed in a tag run (the run completed the others)', ['tenant'])

  async function execute(o: RunOptions, runId: string): Promise<RunRecord> {
    const pipeline = o.pipeline ?? 'tags'
    const tenant = await deps.tenants.get(o.tenantId)
    const defs = await deps.tags.list(o.tenantId)
    const startedAt = chDateTime(new Date())
    const base: RunRecord = {
      runId, pipeline, mode: o.backfill ? 'backfill' : (o.mode ?? 'incremental'), trigger: o.trigger, status: 'running', attempt: 1,
      startedAt, finishedAt: null, asOf: chDateTime(o.asOf ?? new Date()), watermark: startedAt, rows: 0, details: {}, error: '',
    }
    const owner = leaseOwner()
    if (!(await store.lease(o.tenantId, pipeline, owner, deps.options.leaseMs))) {
      const skipped = { ...base, status: 'skipped' as const, finishedAt: chDateTime(new Date()), error: 'another process holds the lease' }
      await store.record(o.tenantId, skipped)
      return skipped
    }
    const timer = duration.startTimer({ pipeline })
    let outcome = 'failed'
    try {
      for (let attempt = 1; ; attempt++) {
        const rec = { ...base, attempt }
        await store.record(o.tenantId, rec)
        try {
          const out =
            pipeline === 'segments' ? await materialize(o, tenant.timeZone, defs) : pipeline === 'tags' ? await computeTags(o, runId, tenant.timeZone, defs) : await runJob(pipeline, o, runId)
          // A tag run that completed all but some tags is partial: what follows it still runs.
          const failures = pipeline === 'tags' ? ((out.details.failures as { tag: string; error: string }[] | undefined) ?? []) : []
          const error = failures.map((f) => `${f.tag}: ${f.error}`).join('; ')
          const done: RunRecord = { ...rec, ...out, status: failures.length ? 'partial' : 'succeeded', finishedAt: chDateTime(new Date()), error }
          await store.record(o.tenantId, done)
          outcome = done.status
          if (failures.length) {
            failedTags.inc({ tenant: String(o.tenantId) }, failures.length)
            log.warn({ tenant: o.tenantId, pipeline, runId, failed: failures.map((f) => f.tag) }, 'tag run partial: some tags failed')
          }
          lastSuccess.set({ tenant: String(o.tenantId), pipeline }, Date.now() / 1000)
          changedValues.inc({ tenant: String(o.tenantId) }, done.rows)
          log.info({ tenant: o.tenantId, pipeline, runId, mode: done.mode, rows: done.rows, ms: Date.parse(`${done.finishedAt}Z`) - Date.parse(`${startedAt}Z`) }, 'pipeline run succeeded')
          // Saved segments follow the tags they read.
          if (pipeline === 'tags' && !o.backfill && o.follow !== false) followWithSegments(o.tenantId)
          if (pipeline === 'segments' && o.trigger === 'after-tags') followWithJobs(o.tenantId)
          return done
        } catch (err) {
          const message = errText(err)
          const final = attempt > deps.options.retries || (isAppError(err) && err.status < 500) || stopped
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
      await store.release(o.tenantId, pipeline, owner).catch((err: unknown) => log.warn({ err }, 'lease release failed'))
    }
  }

  type RunOutcome = Pick<RunRecord, 'mode' | 'watermark' | 'rows' | 'details'>

  async function computeTags(o: RunOptions, runId: string, timeZone: string, defs: Awaited<ReturnType<TagRepository['list']>>): Promise<RunOutcome> {
    const results: TagRunResult[] = []
    if (o.backfill) {
      for (let d = o.backfill.from; d <= o.backfill.to; d = addDays(d, 1)) {
        const asOf = new Date(zonedMidnight(addDays(d, 1), timeZone).getTime() - 1)
        results.push(await runTags({ db: deps.db }, { tenantId: o.tenantId, timeZone, defs, only: o.tags, mode: 'backfill', asOf, runId: newRunId() }))
      }
    } else {
      results.push(await runTags({ db: deps.db }, { tenantId: o.tenantId, timeZone, defs, only: o.tags, mode: o.mode ?? 'incremental', asOf: o.asOf ?? new Date(), runId }))
    }
    const last = results[results.length - 1]
    return {
      mode: o.backfill ? 'backfill' : (last?.mode ?? o.mode ?? 'incremental'),
      watermark: last?.state.watermark ?? chDateTime(new Date()),
      rows: results.reduce((s, r) => s + r.changed, 0),
      details: o.backfill
        ? {
            days: results.map((r) => ({ today: r.state.today, changed: r.changed, ...(r.failures.length ? { failures: r.failures } : {}) })),
            failures: results.flatMap((r) => r.failures.map((f) => ({ ...f, today: r.state.today }))),
          }
        : { ...last },
    }
  }

  /** Materializes every saved segment of the tenant; one that fails does not stop the others. */
  async function materialize(o: RunOptions, timeZone: string, defs: Awaited<ReturnType<TagRepository['list']>>): Promise<RunOutcome> {
    const saved = await segmentRepo.list(o.tenantId)
    const r = await materializeAll(
      { db: deps.db },
      { tenantId: o.tenantId, timeZone, segments: saved, defs: new Map(defs.map((d) => [d.name, d])), asOf: o.asOf ?? new Date(), trigger: o.trigger, newBuildId: () => newRunId() },
    )
    if (r.errors.length) {
      throw new AppError('VALIDATION_FAILED', `Segments not materialized: ${r.errors.map((e) => `${e.segmentId} (${e.code}: ${e.message})`).join('; ')}`)
    }
    return {
      mode: 'full',
      watermark: chDateTime(new Date()),
      rows: r.results.reduce((s, x) => s + x.entered + x.exited, 0),
      details: { segments: r.results },
    }
  }

  async function runJob(pipeline: PipelineName, o: RunOptions, runId: string): Promise<RunOutcome> {
    const job = jobs.get(pipeline)
    if (!job) throw new AppError('VALIDATION_FAILED', `The ${pipeline} pipeline is not available in this process.`, { issues: [{ field: 'pipeline', message: 'not available' }] })
    const r = await job({ tenantId: o.tenantId, asOf: o.asOf ?? new Date(), runId })
    return { mode: 'full', watermark: chDateTime(new Date()), rows: r.rows, details: r.details }
  }

  function followWithSegments(tenantId: number): void {
    void segmentRepo
      .list(tenantId)
      .then(async (saved) => {
        if (stopped) return
        // Without saved segments the registered pipelines follow the tags directly.
        if (!saved.length) return followWithJobs(tenantId)
        const started = await runner.start({ tenantId, pipeline: 'segments', trigger: 'after-tags' })
        await started.done
      })
      .catch((err: unknown) => log.info({ tenant: tenantId, err: errText(err) }, 'segments not materialized after the tag run'))
  }

  function followWithJobs(tenantId: number): void {
    for (const pipeline of jobs.keys()) {
      void runner
        .start({ tenantId, pipeline, trigger: 'after-tags' })
        .then((s) => s.done)
        .catch((err: unknown) => log.info({ tenant: tenantId, pipeline, err: errText(err) }, 'pipeline did not follow the tag run'))
    }
  }

  function validate(o: RunOptions): void {
    if (o.backfill) {
      const n = daysBetween(o.backfill.from, o.backfill.to)
      if (!(n >= 0 && n < BACKFILL_MAX_DAYS)) {
        throw new AppError('VALIDATION_FAILED', `A backfill covers 1 to ${BACKFILL_MAX_DAYS} days, from <= to.`, { issues: [{ field: 'backfill', message: 'invalid range' }] })
      }
    }
  }

  const runner: PipelineRunner = {
    register(pipeline, job, opts = {}) {
      jobs.set(pipeline, job)
      if (opts.cron) jobCrons.set(pipeline, opts.cron)
    },
    async start(o) {
      validate(o)
      if (stopped) throw new AppError('SHUTTING_DOWN')
      const key = `${o.tenantId}:${o.pipeline ?? 'tags'}`
      if (active.has(key)) throw new AppError('CONFLICT', `A ${o.pipeline ?? 'tags'} run is already in progress for this tenant.`)
      const runId = newRunId()
      const done = execute(o, runId).finally(() => active.delete(key))
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

  /** One cron task per (tenant, schedule), re-read every few minutes as definitions change. */
  async function syncSchedules(): Promise<void> {
    if (stopped) return
    const wanted = new Map<string, { tenantId: number; cron: string; timeZone: string; tags: string[]; pipeline: PipelineName }>()
    for (const t of await deps.tenants.list()) {
      if (t.status !== 'active') continue
      for (const d of await deps.tags.list(t.id)) {
        const key = `${t.id}|tags|${d.schedule}|${t.timeZone}`
        const w = wanted.get(key) ?? { tenantId: t.id, cron: d.schedule, timeZone: t.timeZone, tags: [], pipeline: 'tags' as const }
        w.tags.push(d.name)
        wanted.set(key, w)
      }
      // Segments with a schedule of their own (besides following every tag run).
      for (const s of await segmentRepo.list(t.id)) {
        if (!s.schedule) continue
        const key = `${t.id}|segments|${s.schedule}|${t.timeZone}`
        const w = wanted.get(key) ?? { tenantId: t.id, cron: s.schedule, timeZone: t.timeZone, tags: [], pipeline: 'segments' as const }
        w.tags.push(s.id)
        wanted.set(key, w)
      }
      for (const [pipeline, c] of jobCrons) wanted.set(`${t.id}|${pipeline}|${c}|${t.timeZone}`, { tenantId: t.id, cron: c, timeZone: t.timeZone, tags: [], pipeline })
    }
    for (const [key, t] of tasks) {
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
          const o: RunOptions = w.pipeline === 'tags' ? { tenantId: w.tenantId, tags: w.tags, mode: 'incremental', trigger: 'schedule' } : { tenantId: w.tenantId, pipeline: w.pipeline, trigger: 'schedule' }
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
