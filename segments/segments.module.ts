import type { FastifyInstance } from 'fastify'
import type { Db } from '../core/db.js'
import { isAppError, type AppError } from '../core/errors.js'
import type { PipelineRunner } from '../pipelines/pipeline.runner.js'
import type { TagChangeCheck, TagRepository, TagUseFinder } from '../tags/tag.repository.js'
import type { Purpose, TagDefinition } from '../tags/tag.schema.js'
import type { Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import type { BitmapStore } from './bitmap.store.js'
import { createSegmentRepository, type SegmentRepository } from './segment.repository.js'
import { prepare } from './segment.compile.js'
import { parseSegment, tagLeavesOf } from './segment.schema.js'
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
  deps.tags.registerUses(segmentTagUses(repo), segmentTagChangeCheck(repo, deps.tenants))
  return {
    repo,
    routes(app, auth) {
      registerSegmentRoutes(app, { auth, db: deps.db, tenants: deps.tenants, tags: deps.tags, segments: repo, ...(deps.bitmaps ? { bitmaps: deps.bitmaps } : {}) })
      registerMembershipRoutes(app, { auth, db: deps.db, segments: repo, timeZone: async (t) => (await deps.tenants.get(t)).timeZone })
      registerEventNameRoutes(app, { auth, db: deps.db })
    },
  }
}

/**
 * A saved segment uses its tags for its own purpose. Archived segments count: they may be
 * restored, and would then fail to materialize.
 */
function segmentTagUses(repo: SegmentRepository): TagUseFinder {
  return async (tenantId, tag) =>
    (await repo.list(tenantId, { archived: 'include' })).flatMap((s) =>
      tagLeavesOf(s.rule).filter((l) => l.tag === tag).map((l) => ({ kind: 'segment' as const, id: s.id, field: l.field, purpose: s.purpose as Purpose })),
    )
}

/**
 * The saved segments a new definition of a tag would break: each that reads the tag (through its
 * references too) is checked as materializing compiles it, with the definitions as they are and
 * with the new one in place. Only one that compiles now and would not then is named: a segment
 * already broken is not this change's doing.
 */
function segmentTagChangeCheck(repo: SegmentRepository, tenants: TenantService): TagChangeCheck {
  return async (tenantId, next, defs) => {
    const { timeZone } = await tenants.get(tenantId)
    const after = new Map(defs).set(next.name, next)
    const out: Awaited<ReturnType<TagChangeCheck>> = []
    for (const s of await repo.list(tenantId, { archived: 'include' })) {
      const rule = await repo.expanded(tenantId, s.rule, { id: s.id, rule: s.rule }).catch(() => undefined)
      if (rule === undefined || !tagLeavesOf(rule).some((l) => l.tag === next.name)) continue
      const fault = (d: ReadonlyMap<string, TagDefinition>): AppError | undefined => {
        try {
          prepare(parseSegment({ purpose: s.purpose, rule }).rule, { purpose: s.purpose, defs: d, asOf: new Date(), timeZone })
          return undefined
        } catch (e) {
          if (isAppError(e)) return e
          throw e
        }
      }
      const e = fault(defs) ? undefined : fault(after)
      if (!e) continue
      for (const i of e.issues ?? [{ field: 'rule', message: e.message }]) out.push({ kind: 'segment', id: s.id, field: i.field ?? 'rule', purpose: s.purpose as Purpose, reason: i.message })
    }
    return out
  }
}
