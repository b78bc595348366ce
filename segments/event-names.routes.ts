import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'

/**
 * The track events a bank's app sent lately, most frequent first: what an event condition of a
 * segment can name. A name the app never sends counts nobody, silently; the console suggests
 * these names and questions any other.
 */

const DAYS = 90
const LIMIT = 500

const eventNamesView = z.object({
  days: z.number().describe('the window the names were seen in'),
  events: z.array(z.object({ name: z.string(), events: z.number().describe('how many were received in the window') })),
})

export function registerEventNameRoutes(app: FastifyInstance, deps: { auth: Auth; db: Db }) {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/events/names',
    {
      onRequest: deps.auth.require('catalog:read'),
      schema: {
        tags: ['segments'],
        summary: `Track event names received in the last ${DAYS} days, most frequent first (at most ${LIMIT})`,
        security: [{ apiKey: [] }],
        response: { 200: eventNamesView, 401: errorBody, 403: errorBody },
      },
    },
    async (req) => {
      // Reads the event name column only, of the window's monthly partitions, in the tenant's key range.
      const rows = await deps.db.forTenant(req.principal!.tenantId).query(
        `SELECT event AS name, count() AS events FROM events
         WHERE tenant_id = {tenant:UInt16} AND type = 'track' AND event != '' AND timestamp >= now64(3) - toIntervalDay({days:UInt16})
         GROUP BY event ORDER BY events DESC, name LIMIT {limit:UInt32}`,
        { days: DAYS, limit: LIMIT },
        z.object({ name: z.string(), events: z.coerce.number() }),
      )
      return { days: DAYS, events: rows }
    },
  )
}
