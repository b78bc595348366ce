import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import type { ExportService } from './export.service.js'
import type { Tombstones } from './tombstones.js'

const rowsView = z.array(z.record(z.string(), z.unknown()))
const labelView = z.record(z.string(), z.object({ zh: z.string(), en: z.string() }))
const exportView = z.object({
  customerId: z.string(),
  exportedAt: z.string(),
  labels: z.object({ sections: labelView, fields: labelView }),
  sections: z.record(z.string(), z.object({ rows: rowsView, truncated: z.boolean() })),
  events: z.object({ rows: rowsView, next: z.string().nullable().describe('the cursor of the next page, or null') }),
})

/** A customer's copy of their data (admin, personal:read), audited; 410 once they are erased. */
export function registerExportRoutes(app: FastifyInstance, deps: { auth: Auth; exports: ExportService; tombstones: Tombstones }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, exports, tombstones } = deps

  r.get(
    '/v1/customers/:id/export',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'customer.export', objectKind: 'customer', objectParam: 'id', personal: true } },
      schema: {
        tags: ['privacy'],
        summary: 'Everything held about a customer (PIPL art. 45), fields named in Chinese and English; events in pages (after = the previous page’s next)',
        security: [{ apiKey: [] }],
        params: z.object({ id: z.string().trim().min(1).max(64).describe('the customer number') }),
        querystring: z.strictObject({ after: z.string().max(400).optional(), limit: z.coerce.number().int().min(1).max(10_000).default(1000) }),
        response: { 200: exportView, 400: errorBody, 404: errorBody, 410: errorBody },
      },
    },
    async (req) => {
      const p = req.principal!
      if (await tombstones.erased(p.tenantId, req.params.id)) {
        // The refusal is recorded, without the erased number in clear.
        const erased = `erased:${tombstones.digest(p.tenantId, 'customer_no', req.params.id)}`
        req.auditNote = { objectId: erased, customerNo: erased, customers: 0 }
      } else req.auditNote = { customerNo: req.params.id, customers: 1 }
      return exports.export(p.tenantId, req.params.id, { after: req.query.after, limit: req.query.limit })
    },
  )
}
