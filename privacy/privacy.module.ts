import type { KeyedLock } from '../core/keyed-lock.js'
import type { FastifyInstance } from 'fastify'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { Pii } from '../core/pii.js'
import type { Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import type { ErasureJob, ForgetHook, Step } from './erasure.job.js'
import { registerErasureRoutes } from './erasure.routes.js'
import { createErasureService, type ErasureService } from './erasure.service.js'
import { createErasureWatch, type ErasureWatch } from './erasure.watch.js'
import { registerExportRoutes } from './export.routes.js'
import { createExportService, type ExportService } from './export.service.js'
import { createTombstones, type Tombstones } from './tombstones.js'

/**
 * Erasure and export of one customer. Built in two steps by the composition roots: the
 * tombstones first (ingest needs their check before the other capabilities exist), then the
 * erasure with the in-memory structures it must tell (`forget` hooks).
 */
export interface PrivacyModule {
  tombstones: Tombstones
  erasure: ErasureService
  exports: ExportService
  /** Applies erasures run by other processes to this one's memory (started when `watchMs` is given). */
  watch: ErasureWatch
  routes(app: FastifyInstance, auth: Auth): void
  /** Stops the watch; running jobs are waited for with `erasure.idle()`. */
  close(): Promise<void>
}

export function createPrivacyTombstones(deps: { db: Db; pii: Pii; metrics: Metrics }): Tombstones {
  return createTombstones(deps)
}

export function createPrivacyModule(deps: {
  db: Db
  tenants: TenantService
  log: Logger
  tombstones: Tombstones
  forget: readonly ForgetHook[]
  /**
   * How often this process looks for erasures run by another (API pods beside the worker that
   * runs the jobs). Without it the watch is built but not started (tests poll it themselves).
   */
  watchMs?: number
  beforeStep?: (job: ErasureJob, step: Step) => void
  /** Erasure steps of a tenant one at a time, across processes when shared (core/cluster-locks.ts). */
  lock?: KeyedLock
}): PrivacyModule {
  const watch = createErasureWatch({ db: deps.db, log: deps.log, forget: deps.forget, ...(deps.watchMs ? { intervalMs: deps.watchMs } : {}) })
  const erasure = createErasureService({ ...deps, db: deps.db.lane('pipeline'), forgotten: (job, final) => watch.noteApplied(job.tenantId, job.jobId, final) })
  const exports = createExportService({ db: deps.db, tombstones: deps.tombstones })
  if (deps.watchMs) watch.start()
  return {
    tombstones: deps.tombstones,
    erasure,
    exports,
    watch,
    routes(app, auth) {
      registerErasureRoutes(app, { auth, erasure, tombstones: deps.tombstones })
      registerExportRoutes(app, { auth, exports, tombstones: deps.tombstones })
    },
    close: () => watch.stop(),
  }
}
