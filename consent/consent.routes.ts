import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import { CONSENT_CHANNELS, CONSENT_PURPOSES } from './consent.schema.js'
import type { ConsentService } from './consent.service.js'

/**
 * Consent over HTTP: the app back end, a counter or the call centre records a customer's
 * decision (a key of the `consent` role); admins map the app's Segment consent categories to
 * purposes and channels. Both customer routes are audited as personal data.
 */

const security = [{ apiKey: [] }]
const idParam = z.object({ id: z.string().trim().min(1).max(64).describe('the customer number') })

const recordedView = z.object({
  purpose: z.string(),
  channel: z.string(),
  granted: z.boolean(),
  at: z.string(),
  effective: z.boolean().describe('true: this decision is now the current state'),
})
const stateView = z.object({
  customerId: z.string(),
  personalized: z.boolean().describe('false: the customer turned personalized recommendations off'),
  current: z.array(z.object({ purpose: z.string(), channel: z.string(), granted: z.boolean(), at: z.string(), source: z.string() })),
  history: z.array(
    z.object({
      purpose: z.string(),
      channel: z.string(),
      granted: z.boolean(),
      at: z.string().describe('when the customer decided'),
      receivedAt: z.string(),
      source: z.string(),
      noticeVersion: z.string(),
      keyId: z.string(),
      holder: z.string(),
      category: z.string().describe('the Segment consent category it came from, for changes through ingest'),
    }),
  ),
})
const pairView = z.object({ purpose: z.enum(CONSENT_PURPOSES), channel: z.enum(CONSENT_CHANNELS) })
const categoriesView = z.object({ version: z.number().describe('0: the built-in default'), mapping: z.record(z.string(), z.array(pairView)) })

export function registerConsentRoutes(app: FastifyInstance, deps: { auth: Auth; consent: ConsentService }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, consent } = deps

  r.put(
    '/v1/customers/:id/consents',
    {
      onRequest: auth.require('consent:write'),
      config: { audit: { action: 'consent.record', objectKind: 'customer', objectParam: 'id', customerParam: 'id', personal: true } },
      schema: {
        tags: ['consent'],
        summary: 'Record a customer’s decision for a purpose and channel (or the personalization switch); kept in history',
        security,
        params: idParam,
        // Validated by the service, so every bad field answers CONSENT_INVALID naming it.
        body: z.unknown(),
        response: { 200: recordedView, 400: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (req) => {
      const p = req.principal!
      const out = await consent.put(p.tenantId, req.params.id, req.body, { keyId: p.keyId, holder: p.holder })
      req.auditNote = { customerNo: req.params.id, customers: 1, detail: { purpose: out.purpose, channel: out.channel, granted: out.granted } }
      return out
    },
  )

  r.get(
    '/v1/customers/:id/consents',
    {
      onRequest: auth.require('consent:read'),
      config: { audit: { action: 'consent.read', objectKind: 'customer', objectParam: 'id', customerParam: 'id', personal: true } },
      schema: {
        tags: ['consent'],
        summary: 'A customer’s current consents, the personalization switch and the history of changes (newest first)',
        security,
        params: idParam,
        querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(200) }),
        response: { 200: stateView, 404: errorBody },
      },
    },
    async (req) => {
      req.auditNote = { customerNo: req.params.id, customers: 1 }
      return consent.state(req.principal!.tenantId, req.params.id, { limit: req.query.limit })
    },
  )

  r.get(
    '/v1/consent/categories',
    {
      onRequest: auth.require('tenant:admin'),
      schema: { tags: ['consent'], summary: 'How the app’s Segment consent categories map to purposes and channels', security, response: { 200: categoriesView } },
    },
    async (req) => consent.categories(req.principal!.tenantId),
  )

  r.put(
    '/v1/consent/categories',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'consent.categories.save', objectKind: 'tenant' } },
      schema: {
        tags: ['consent'],
        summary: 'Save the tenant’s mapping of consent categories (a new version); unmapped categories are ignored on ingest',
        security,
        querystring: z.strictObject({ changeNote: z.string().max(500).optional() }),
        body: z.unknown(),
        response: { 200: categoriesView.extend({ changed: z.boolean() }), 400: errorBody },
      },
    },
    async (req) => {
      const p = req.principal!
      return consent.saveCategories(p.tenantId, req.body, { keyId: p.keyId, holder: p.holder }, req.query.changeNote ?? '')
    },
  )
}
