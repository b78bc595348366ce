import type { Db } from '../core/db.js'
import { AppError, ERROR_CATALOGUE, type ErrorCode } from '../core/errors.js'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import type { PipelineRunner } from '../pipelines/pipeline.runner.js'
import type { TagRepository } from '../tags/tag.repository.js'
import { materializeAll, type MaterializeAllResult } from './segment.materialize.js'
import type { SegmentRepository } from './segment.repository.js'

/**
 * The `segments` pipeline: every saved segment of the tenant materialized, after each tag run
 * (the tags they read) and on a segment's own schedule. With no saved segments it has nothing
 * to do, and what follows it (the layout model, push targeting) follows the tag run directly.
 * One segment that fails does not stop the others: the run is then `partial`, naming each
 * failure, and what follows it still runs (a failed segment keeps its last build).
 */
export function registerSegmentPipeline(runner: PipelineRunner, deps: { db: Db; segments: SegmentRepository; tags: TagRepository }): void {
  runner.register(
    'segments',
    async ({ tenantId, timeZone, asOf, options, signal }) => {
      const [saved, defs] = await Promise.all([deps.segments.list(tenantId), deps.tags.list(tenantId)])
      const r = await materializeAll(
        { db: deps.db },
        { tenantId, timeZone, segments: saved, defs: new Map(defs.map((d) => [d.name, d])), asOf, trigger: options.trigger, newBuildId: () => newRunId(), signal },
      )
      return {
        mode: 'full',
        watermark: chDateTime(new Date()),
        rows: r.results.reduce((s, x) => s + x.entered + x.exited, 0),
        details: { segments: r.results, failures: r.errors },
        failures: segmentFailures(r),
      }
    },
    {
      after: 'tags',
      idle: async (tenantId) => (await deps.segments.list(tenantId)).length === 0,
      // Segments with a schedule of their own, besides following every tag run.
      schedules: async (tenantId) => (await deps.segments.list(tenantId)).flatMap((s) => (s.schedule ? [{ cron: s.schedule, name: s.id }] : [])),
    },
  )
}

const statusOf = (code: string): number => (Object.hasOwn(ERROR_CATALOGUE, code) ? ERROR_CATALOGUE[code as ErrorCode].status : 500)

/**
 * The segments a run could not materialize, for the run record (a partial run). When every
 * segment failed and the engine is among the causes (a 5xx, or an error without a code), the run
 * fails instead and is retried, as a tag run in which every tag fails. Failures of definitions
 * alone (4xx) a retry cannot cure, and the layout model and push targeting do not need every
 * segment fresh (a failed one keeps its last build): that run stays partial so they still follow.
 */
export function segmentFailures(r: MaterializeAllResult): { name: string; error: string }[] {
  if (r.errors.length && !r.results.length && r.errors.some((e) => statusOf(e.code) >= 500)) {
    throw new AppError('INTERNAL', `Every segment failed: ${r.errors.map((e) => `${e.segmentId} (${e.code}: ${e.message})`).join('; ').slice(0, 2000)}`)
  }
  return r.errors.map((e) => ({ name: e.segmentId, error: `${e.code}: ${e.message}` }))
}
