import type { FastifyInstance } from 'fastify'
import type { ProcessChannel } from '../core/cluster-locks.js'
import { shareLayoutCaps } from './layout.share.js'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { PipelineRunner } from '../pipelines/pipeline.runner.js'
import type { BitmapStore } from '../segments/bitmap.store.js'
import type { TagRepository } from '../tags/tag.repository.js'
import type { Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { createCatalogRepository, type CatalogRepository } from './catalog.repository.js'
import { experimentReport } from './experiments.report.js'
import { createLayoutService, type LayoutService } from './layout.service.js'
import { buildModel } from './model.build.js'
import { registerRecommendRoutes } from './recommend.routes.js'

/**
 * The home-screen layout: catalogues, the model the `recommend` pipeline builds after each tag
 * run, and the layouts served from memory. The pipeline's job is registered with the runner;
 * when it runs in this process the snapshot is reloaded at once, otherwise at the next check.
 */
export interface RecommendModule {
  catalogs: CatalogRepository
  layouts: LayoutService
  routes(app: FastifyInstance, auth: Auth): void
  close(): Promise<void>
}

export function createRecommendModule(deps: {
  db: Db
  tenants: TenantService
  tags: TagRepository
  bitmaps: BitmapStore
  runner: PipelineRunner
  log: Logger
  metrics: Metrics
  refreshMs?: number
  /** How often exposures are written (LAYOUT_EXPOSURE_FLUSH_MS). */
  exposureFlushMs?: number
  /** One of several API processes (server/cluster.ts): capped items served are counted by the others too. */
  clusterChannel?: ProcessChannel
}): RecommendModule {
  const catalogs = createCatalogRepository({ db: deps.db, tags: deps.tags, tenants: deps.tenants })
  const log = deps.log.child({ component: 'recommend' })
  const layouts = createLayoutService({ db: deps.db, tenants: deps.tenants, tags: deps.tags, catalogs, bitmaps: deps.bitmaps, log, metrics: deps.metrics, ...(deps.refreshMs ? { refreshMs: deps.refreshMs } : {}), ...(deps.exposureFlushMs ? { flushMs: deps.exposureFlushMs } : {}) })
  deps.runner.register('recommend', async ({ tenantId, asOf, runId, signal }) => {
    const tenant = await deps.tenants.get(tenantId)
    const built = await buildModel({ db: deps.db.lane('pipeline'), catalogs }, { tenant, asOf, build: runId, ...(signal ? { signal } : {}) })
    await layouts.reload(tenantId)
    return { rows: built.customers, details: { build: built.build, catalogVersion: built.catalogVersion, customers: built.customers, items: built.items, model: built.model, choice: built.choice, ms: built.ms } }
  }, { after: 'segments' })
  layouts.start()
  const unshare = deps.clusterChannel ? shareLayoutCaps(layouts, deps.clusterChannel) : undefined
  return {
    catalogs,
    layouts,
    routes(app, auth) {
      // The report scans days of exposures: the pipeline lane, so layouts' and previews' lookups never wait on it.
      const report: Parameters<typeof registerRecommendRoutes>[1]['report'] = (tenantId, input) => experimentReport(deps.db.lane('pipeline').forTenant(tenantId), input)
      registerRecommendRoutes(app, { auth, tenants: deps.tenants, catalogs, layouts, report })
    },
    close: () => {
      unshare?.()
      return layouts.close()
    },
  }
}
