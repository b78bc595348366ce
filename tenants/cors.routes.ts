import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { errorBody } from '../core/errors.js'
import type { Auth } from './auth.js'
import { corsInput, corsView, type CorsOrigins } from './cors.service.js'

const security = [{ apiKey: [] }]

/** The bank's browser origins, read and replaced by its administrator (a change is audited). */
export function registerCorsRoutes(app: FastifyInstance, deps: { auth: Auth; origins: CorsOrigins }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  r.get(
    '/v1/tenant/cors',
    {
      onRequest: deps.auth.require('tenant:admin'),
      schema: { tags: ['tenants'], summary: 'The origins whose browser pages may send events with this bank’s write key', security, response: { 200: corsView } },
    },
    async (req) => deps.origins.get(req.principal!.tenantId),
  )
  r.put(
    '/v1/tenant/cors',
    {
      onRequest: deps.auth.require('tenant:admin'),
      config: { audit: { action: 'tenant.cors.save', objectKind: 'tenant' } },
      schema: {
        tags: ['tenants'],
        summary: 'Replace the browser origins: exact https://host[:port] origins (http:// for localhost only), no wildcards; [] refuses every browser',
        security,
        body: corsInput,
        response: { 200: corsView, 400: errorBody },
      },
    },
    async (req) => {
      const saved = await deps.origins.save(req.principal!.tenantId, req.body, req.principal!.holder)
      req.auditNote = { objectId: String(req.principal!.tenantId), detail: { origins: saved.origins } }
      return saved
    },
  )
}
