import type { FastifyInstance } from 'fastify'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { registerAuditHook, type DeclaredRoute } from './audit.hook.js'
import { registerAuditRoutes } from './audit.routes.js'
import { createAuditLog, type AuditLog } from './audit.service.js'

/** The audit trail wired from its dependencies; the composition roots build one. */
export interface AuditModule {
  log: AuditLog
  /** The hook that records audited routes: registered on the app before any route. */
  hook(app: FastifyInstance): void
  routes(app: FastifyInstance, auth: Auth): void
  /** Every route registered after the hook, with its audit declaration and onRequest hooks. */
  declared(): readonly DeclaredRoute[]
}

export function createAuditModule(deps: { db: Db; log: Logger; metrics: Metrics; tenants: TenantService }): AuditModule {
  const log = createAuditLog(deps)
  const declared: DeclaredRoute[] = []
  return {
    log,
    hook: (app) => registerAuditHook(app, { audit: log, log: deps.log.child({ component: 'audit' }), declared }),
    declared: () => declared,
    routes: (app, auth) => registerAuditRoutes(app, { auth, audit: log, tenants: deps.tenants }),
  }
}
