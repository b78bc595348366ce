import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import type { PipelineRunner } from '../pipelines/pipeline.runner.js'
import type { TagRepository } from '../tags/tag.repository.js'
import { materializeAll } from './segment.materialize.js'
import type { SegmentRepository } from './segment.repository.js'

/**
 * The `segments` pipeline: every saved segment of the tenant materialized, after each tag run
 * (the tags they read) and on a segment's own schedule. With no saved segments it has nothing
 * to do, and what follows it (the layout model, push targeting) follows the tag run directly.
 * One segment that fails does not stop the others; the run then fails naming each.
 */
export function registerSegmentPipeline(runner: PipelineRunner, deps: { db: Db; segments: SegmentRepository; tags: TagRepository }): void {
  runner.register(
    'segments',
    async ({ tenantId, timeZone, asOf, options }) => {
      const [saved, defs] = await Promise.all([deps.segments.list(tenantId), deps.tags.list(tenantId)])
      const r = await materializeAll(
        { db: deps.db },
        { tenantId, timeZone, segments: saved, defs: new Map(defs.map((d) => [d.name, d])), asOf, trigger: options.trigger, newBuildId: () => newRunId() },
      )
      if (r.errors.length) {
        throw new AppError('VALIDATION_FAILED', `Segments not materialized: ${r.errors.map((e) => `${e.segmentId} (${e.code}: ${e.message})`).join('; ')}`)
      }
      return { mode: 'full', watermark: chDateTime(new Date()), rows: r.results.reduce((s, x) => s + x.entered + x.exited, 0), details: { segments: r.results } }
    },
    {
      after: 'tags',
      idle: async (tenantId) => (await deps.segments.list(tenantId)).length === 0,
      // Segments with a schedule of their own, besides following every tag run.
      schedules: async (tenantId) => (await deps.segments.list(tenantId)).flatMap((s) => (s.schedule ? [{ cron: s.schedule, name: s.id }] : [])),
    },
  )
}
