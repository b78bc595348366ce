import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import { catalogueView, type CatalogueService } from './catalogue.service.js'

export function registerCatalogueRoutes(app: FastifyInstance, auth: Auth, deps: { catalogue: CatalogueService }) {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/data-catalogue',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['tenants'],
        summary: 'Every stored column, trait and tag with its JR/T 0171-2020 class (C1 general, C2 sensitive; C3 is never stored)',
        security: [{ apiKey: [] }],
        response: { 200: catalogueView, 401: errorBody, 403: errorBody },
      },
    },
    async (req) => deps.catalogue.catalogue(req.principal!.tenantId),
  )
}
