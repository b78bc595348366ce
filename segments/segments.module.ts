import type { FastifyInstance } from 'fastify'
import type { Db } from '../core/db.js'
import type { PipelineRunner } from '../pipelines/pipeline.runner.js'
import type { TagRepository } from '../tags/tag.repository.js'
import type { Purpose } from '../tags/tag.schema.js'
import type { Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import type { BitmapStore } from './bitmap.store.js'
import { createSegmentRepository, type SegmentRepository } from './segment.repository.js'
import { tagLeavesOf } from './segment.schema.js'
import { registerEventNameRoutes } from './event-names.routes.js'
import { registerSegmentPipeline } from './segment.job.js'
import { registerMembershipRoutes } from './membership.routes.js'
import { registerSegmentRoutes } from './segments.routes.js'

/** Segments wired from their dependencies: saved segments, their HTTP routes and the `segments` pipeline. */
export interface SegmentsModule {
  repo: SegmentRepository
  routes(app: FastifyInstance, auth: Auth): void
}

/** `bitmaps`: tag bitmaps held in memory, so tag-only previews are answered in the process. */
export function createSegmentsModule(deps: { db: Db; tenants: TenantService; tags: TagRepository; runner: PipelineRunner; bitmaps?: BitmapStore }): SegmentsModule {
  const repo = createSegmentRepository({ db: deps.db })
  // Materialization goes on the pipeline lane, as every pipeline's work does.
  registerSegmentPipeline(deps.runner, { db: deps.db.lane('pipeline'), segments: repo, tags: deps.tags })
  // A saved segment uses its tags for its own purpose.
  deps.tags.registerUses(async (tenantId, tag) =>
    (await repo.list(tenantId)).flatMap((s) => tagLeavesOf(s.rule).filter((l) => l.tag === tag).map((l) => ({ kind: 'segment' as const, id: s.id, field: l.field, purpose: s.purpose as Purpose }))),
  )
  return {
    repo,
    routes(app, auth) {
      registerSegmentRoutes(app, { auth, db: deps.db, tenants: deps.tenants, tags: deps.tags, segments: repo, ...(deps.bitmaps ? { bitmaps: deps.bitmaps } : {}) })
      registerMembershipRoutes(app, { auth, db: deps.db, segments: repo })
      registerEventNameRoutes(app, { auth, db: deps.db })
    },
  }
}
