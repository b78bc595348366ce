import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import { recentEventNames } from './event-names.repository.js'

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
    async (req) => ({ days: DAYS, events: await recentEventNames(deps.db.forTenant(req.principal!.tenantId), { days: DAYS, limit: LIMIT }) }),
  )
}
