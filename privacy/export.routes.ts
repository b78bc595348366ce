import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody } from '../core/errors.js'
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

/** Which form the caller asked for: `format` decides; without it, an Accept of application/zip alone asks for the archive. */
function formatOf(format: 'json' | 'zip' | undefined, accept: string | undefined): 'json' | 'zip' {
  if (format) return format
  const types = (accept ?? '').split(',').map((t) => t.split(';')[0]!.trim().toLowerCase())
  return types.includes('application/zip') && !types.includes('application/json') ? 'zip' : 'json'
}

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
        summary:
          'Everything held about a customer (PIPL art. 45), fields named in Chinese and English; events in pages (after = the previous page’s next), or with format=zip (or Accept: application/zip) one streamed ZIP with every event',
        security: [{ apiKey: [] }],
        params: z.object({ id: z.string().trim().min(1).max(64).describe('the customer number') }),
        querystring: z.strictObject({
          after: z.string().max(400).optional(),
          limit: z.coerce.number().int().min(1).max(10_000).default(1000),
          format: z.enum(['json', 'zip']).optional().describe('json (the default) or zip: README.txt, a JSON file per section and every event as NDJSON files'),
        }),
        response: { 200: exportView, 400: errorBody, 404: errorBody, 410: errorBody },
      },
    },
    async (req, reply) => {
      const p = req.principal!
      const format = formatOf(req.query.format, req.headers.accept)
      if (await tombstones.erased(p.tenantId, req.params.id)) {
        // The refusal is recorded, without the erased number in clear.
        const erased = `erased:${tombstones.digest(p.tenantId, 'customer_no', req.params.id)}`
        req.auditNote = { objectId: erased, customerNo: erased, customers: 0, detail: { format } }
      } else req.auditNote = { customerNo: req.params.id, customers: 1, detail: { format } }
      if (format === 'json') return exports.export(p.tenantId, req.params.id, { after: req.query.after, limit: req.query.limit })
      if (req.query.after !== undefined) {
        throw new AppError('VALIDATION_FAILED', 'after: the archive holds every event; a cursor pages the JSON form only.', { issues: [{ field: 'after', message: 'not with format zip' }] })
      }
      const archive = await exports.archive(p.tenantId, req.params.id)
      const name = `customer-${req.params.id.replace(/[^A-Za-z0-9_-]/g, '_')}-export.zip`
      // The response schema describes the JSON form; fastify sends a stream as it is, unserialized.
      return reply.header('content-type', 'application/zip').header('content-disposition', `attachment; filename="${name}"`).send(archive as never)
    },
  )
}
