import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import { tenantSlug, type TenantService } from '../tenants/tenants.service.js'
import { auditEntryView, auditFilters, OPERATOR_TENANT, type AuditLog } from './audit.service.js'

const security = [{ apiKey: [] }]
const page = z.object({ entries: z.array(auditEntryView), nextCursor: z.string().nullable() })
const tenantRef = z.union([tenantSlug, z.string().regex(/^\d+$/)])

/**
 * Reading the trail. Only GET: no route updates or deletes an entry (the coverage test holds
 * this). Reading the trail is itself recorded, since the trail names customers and staff.
 */
export function registerAuditRoutes(app: FastifyInstance, deps: { auth: Auth; audit: AuditLog; tenants: TenantService }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, audit } = deps

  r.get(
    '/v1/audit',
    {
      onRequest: auth.require('audit:read'),
      config: { audit: { action: 'audit.read', objectKind: 'audit', personal: true } },
      schema: {
        tags: ['audit'],
        summary: "This tenant's audit trail, newest first, filtered, a page at a time",
        security,
        querystring: auditFilters,
        response: { 200: page, 400: errorBody },
      },
    },
    async (req) => {
      const out = await audit.query(req.principal!.tenantId, req.query)
      req.auditNote = { detail: { entries: out.entries.length } }
      return out
    },
  )

  r.get(
    '/v1/operator/audit',
    {
      onRequest: auth.operator(),
      config: { audit: { action: 'audit.read', objectKind: 'audit', personal: true } },
      schema: {
        tags: ['operator'],
        summary: "A tenant's audit trail, or (without `tenant`) the operator's own",
        security,
        querystring: auditFilters.extend({ tenant: tenantRef.optional() }),
        response: { 200: page, 400: errorBody, 404: errorBody },
      },
    },
    async (req) => {
      const { tenant, ...filters } = req.query
      const tenantId = tenant === undefined ? OPERATOR_TENANT : (await deps.tenants.get(tenant)).id
      const out = await audit.query(tenantId, filters)
      req.auditNote = { objectId: String(tenantId), detail: { entries: out.entries.length } }
      return out
    },
  )
}
