import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError, errorBody } from '../core/errors.js'
import type { Auth } from './auth.js'
import { memberFigures } from './group.repository.js'
import type { TenantService } from './tenants.service.js'

/**
 * What the provincial group may see of its member banks: aggregate counts, never a member's
 * customer rows, tags, segments or campaigns. Each member's figures are read through that
 * member's own tenant layer (group.repository.ts).
 */

const memberCounts = z.object({
  slug: z.string(),
  name: z.string(),
  status: z.string(),
  customers: z.number().int().describe('customers on file (erased and deleted ones left out)'),
  activeCustomers30d: z.number().int().describe('customers with at least one app event in the last 30 days'),
  events30d: z.number().int().describe('app events in the last 30 days'),
})

export function registerGroupRoutes(app: FastifyInstance, deps: { auth: Auth; tenants: TenantService; db: Db }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  r.get(
    '/v1/group/members',
    {
      onRequest: deps.auth.require('catalog:read'),
      schema: {
        tags: ['tenants'],
        summary: "A group's member banks with aggregate counts (no customer rows)",
        security: [{ apiKey: [] }],
        response: { 200: z.object({ group: z.string(), members: z.array(memberCounts) }), 404: errorBody },
      },
    },
    async (req) => {
      const group = await deps.tenants.get(req.principal!.tenantId)
      if (group.kind !== 'group') throw new AppError('NOT_FOUND', `${group.slug} is a member bank, not a group: it has no member banks.`)
      const members = (await deps.tenants.list()).filter((t) => t.parentId === group.id)
      const out = []
      for (const m of members) {
        const c = await memberFigures(deps.db.forTenant(m.id))
        out.push({ slug: m.slug, name: m.name, status: m.status, customers: c.customers, activeCustomers30d: c.active, events30d: c.events })
      }
      return { group: group.slug, members: out }
    },
  )
}
