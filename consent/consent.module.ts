import type { FastifyInstance } from 'fastify'
import type { Auth } from '../tenants/auth.js'
import { registerConsentRoutes } from './consent.routes.js'
import { createConsentService, type ConsentDeps, type ConsentService } from './consent.service.js'

/** Consent and the personalization switch, wired from their dependencies; the composition roots build one. */
export interface ConsentModule {
  service: ConsentService
  routes(app: FastifyInstance, auth: Auth): void
}

export function createConsentModule(deps: Omit<ConsentDeps, 'now' | 'categoriesCacheMs'>): ConsentModule {
  const service = createConsentService({ ...deps, log: deps.log.child({ component: 'consent' }) })
  return {
    service,
    routes(app, auth) {
      registerConsentRoutes(app, { auth, consent: service })
    },
  }
}
