import type { Db } from '../core/db.js'
import { newRunId } from '../core/run-id.js'
import { addDays, chDateTime, DAY_MS, localDate, zonedMidnight } from '../core/time.js'
import type { PipelineRunner } from '../pipelines/pipeline.runner.js'
import { runTags, type TagRunResult } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'
import type { TenantService } from '../tenants/tenants.service.js'

/**
 * The first local day whose events a retention of `eventsDays` keeps whole at `now`: the
 * retention job deletes events older than now less that many days, so the day holding that
 * instant has lost some.
 */
export function eventsKeptFrom(now: Date, eventsDays: number, timeZone: string): string {
  return addDays(localDate(new Date(now.getTime() - eventsDays * DAY_MS), timeZone), 1)
}

/**
 * The `tags` pipeline, registered with the runner like every other: it starts the chain the
 * other pipelines follow (segments, then the layout model and push targeting), and each tag's
 * cron is a schedule of its tenant's (a scheduled run computes the tags of that cron only,
 * incrementally). A backfill recomputes history day by day, each day under its own run id.
 */
export function registerTagPipeline(runner: PipelineRunner, deps: { db: Db; repo: TagRepository; keyRange?: number; tenants?: Pick<TenantService, 'privacy'> }): void {
  runner.register(
    'tags',
    async ({ tenantId, timeZone, runId, options: o, signal }) => {
      const defs = await deps.repo.list(tenantId)
      const results: TagRunResult[] = []
      // The events retention's edge today: whatever day a run computes for, days before it keep their builds.
      const retention = deps.tenants ? { eventsKeptFrom: eventsKeptFrom(new Date(), (await deps.tenants.privacy(tenantId)).eventsDays, timeZone) } : {}
      if (o.backfill) {
        for (let d = o.backfill.from; d <= o.backfill.to; d = addDays(d, 1)) {
          signal.throwIfAborted()
          const asOf = new Date(zonedMidnight(addDays(d, 1), timeZone).getTime() - 1)
          results.push(await runTags({ db: deps.db }, { tenantId, timeZone, defs, only: o.tags, mode: 'backfill', asOf, runId: newRunId(), keyRange: deps.keyRange, signal, ...retention }))
        }
      } else {
        results.push(
          await runTags(
            { db: deps.db },
            { tenantId, timeZone, defs, only: o.tags, mode: o.mode ?? 'incremental', asOf: o.asOf ?? new Date(), runId, keyRange: deps.keyRange, recompute: o.recompute === true, signal, ...retention },
          ),
        )
      }
      const last = results[results.length - 1]
      const failures = o.backfill ? results.flatMap((r) => r.failures.map((f) => ({ ...f, today: r.state.today }))) : (last?.failures ?? [])
      return {
        mode: o.backfill ? 'backfill' : (last?.mode ?? o.mode ?? 'incremental'),
        watermark: last?.state.watermark ?? chDateTime(new Date()),
        rows: results.reduce((s, r) => s + r.changed, 0),
        details: o.backfill
          ? { days: results.map((r) => ({ today: r.state.today, changed: r.changed, ...(r.failures.length ? { failures: r.failures } : {}) })), failures }
          : { ...last },
        failures: failures.map((f) => ({ name: f.tag, error: f.error })),
      }
    },
    {
      schedules: async (tenantId) => (await deps.repo.list(tenantId)).map((d) => ({ cron: d.schedule, name: d.name })),
      scheduledRun: (names) => ({ tags: names, mode: 'incremental' }),
    },
  )
}
