import type { FastifyInstance } from 'fastify'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { createPipelineRunner, type PipelineRunner, type RunnerOptions } from '../pipelines/pipeline.runner.js'
import { registerPipelineRoutes } from '../pipelines/pipelines.routes.js'
import type { Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { registerCustomerRoutes } from './customers.routes.js'
import { registerTagPipeline } from './tag.job.js'
import { createTagCatalog, type TagCatalog } from './tag.catalog.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'
import { windowReach } from './tag.reach.js'
import { registerTagRoutes } from './tags.routes.js'

/** Tags, the pipeline runner and the `tags` pipeline that computes them, wired from their dependencies. */
export interface TagsModule {
  repo: TagRepository
  catalog: TagCatalog
  runner: PipelineRunner
  routes(app: FastifyInstance, auth: Auth): void
  /** The days of events each of the bank's window and lifecycle tags reads back. */
  windows(tenantId: number): Promise<{ tag: string; days: number }[]>
}

export function createTagsModule(deps: { db: Db; tenants: TenantService; log: Logger; metrics: Metrics; runner: RunnerOptions & { tagKeyRange?: number } }): TagsModule {
  const repo = createTagRepository({ db: deps.db })
  const catalog = createTagCatalog({ db: deps.db, repo })
  const runner = createPipelineRunner({
    // Runs (tags, segments, the jobs registered with the runner) go on the pipeline lane.
    db: deps.db.lane('pipeline'),
    tenants: deps.tenants,
    log: deps.log.child({ component: 'pipelines' }),
    metrics: deps.metrics,
    options: deps.runner,
  })
  registerTagPipeline(runner, { db: deps.db.lane('pipeline'), repo, keyRange: deps.runner.tagKeyRange ?? 0, tenants: deps.tenants })
  return {
    repo,
    catalog,
    runner,
    windows: async (tenantId) => windowReach(await repo.list(tenantId)),
    routes(app, auth) {
      registerTagRoutes(app, { auth, repo, catalog, privacy: (t) => deps.tenants.privacy(t) })
      registerCustomerRoutes(app, { auth, db: deps.db, catalog, timeZone: async (t) => (await deps.tenants.get(t)).timeZone })
      registerPipelineRoutes(app, { auth, runner })
    },
  }
}
