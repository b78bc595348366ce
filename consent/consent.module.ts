import type { FastifyInstance } from 'fastify'
import type { AuditSink } from '../core/audit.js'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { Auth } from '../tenants/auth.js'
import { registerConsentRoutes } from './consent.routes.js'
import { createConsentService, type ConsentService } from './consent.service.js'

/** Consent and the personalization switch, wired from their dependencies; the composition roots build one. */
export interface ConsentModule {
  service: ConsentService
  routes(app: FastifyInstance, auth: Auth): void
}

export function createConsentModule(deps: {
  db: Db
  log: Logger
  metrics: Metrics
  resolveKeys: (tenantId: number, refs: readonly { userId?: string; anonymousId?: string }[]) => Promise<number[]>
  audit?: AuditSink | undefined
  holderOf?: ((tenantId: number, keyId: string) => Promise<string | undefined>) | undefined
}): ConsentModule {
  const service = createConsentService({ ...deps, log: deps.log.child({ component: 'consent' }) })
  return {
    service,
    routes(app, auth) {
      registerConsentRoutes(app, { auth, consent: service })
    },
  }
}
