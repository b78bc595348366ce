import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import { corsPreflight } from '../tenants/cors.hooks.js'
import type { IdentityService } from './identity.service.js'
import { identityChange } from './identity.service.js'
import { INVALID_BODY, type IngestService } from './ingest.service.js'
import { parseJsonBody } from './json-body.js'
import { isRawBody, keepRawBodies, rawAwareValidator, validateAsRoute } from './raw-body.js'
import { batchEnvelope, EVENT_TYPES, ingestResponse, MAX_BATCH_BYTES, MAX_EVENT_BYTES, singleMessage, type EventType, type IngestResponse } from './segment.schema.js'
import { trackingPlanInput, trackingPlanView, type TrackingPlans } from './tracking-plan.js'

const security = [{ apiKey: [] }]
/** The one-letter paths the analytics.js browser library posts to. */
export const SHORT_PATHS = { track: 't', identify: 'i', page: 'p', screen: 's', group: 'g', alias: 'a' } as const
const mergeBody = z
  .strictObject({
    from: z.string().min(1).max(128).describe('the customer number merged away'),
    to: z.string().min(1).max(128).describe('the customer number that remains'),
    reason: z.string().trim().min(3, 'say why the two are one customer').max(500),
  })
  .refine((b) => b.from !== b.to, { path: ['to'], message: 'from and to are the same customer number' })

/**
 * The Segment HTTP Tracking API (`/v1/batch`, `/v1/track` ...) and the management of tracking
 * plans and identity changes. Official SDKs work unchanged with their host set to Qianmian.
 */
export function registerIngestRoutes(app: FastifyInstance, auth: Auth, deps: { ingest: IngestService; identities: IdentityService; plans: TrackingPlans }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const writeAuth = auth.requireWithBodyKey('events:write', 'writeKey')

  // The Segment endpoints in a scope of their own: with worker threads, their bodies stay bytes
  // here and are parsed, validated and normalized in a worker (raw-body.ts, ingest.pool.ts).
  void app.register(async (scope) => {
    if (deps.ingest.pooled) keepRawBodies(scope)
    const s = scope.withTypeProvider<ZodTypeProvider>()
    const ingest = async (req: FastifyRequest, type: EventType | undefined, url: string): Promise<IngestResponse> => {
      const tenantId = req.principal!.tenantId
      const actor = req.principal!.keyId
      let body: unknown = req.body
      if (isRawBody(body)) {
        const out = await deps.ingest.ingestBody({ tenantId, actor, body: body.bytes, type })
        if (out !== INVALID_BODY) return out
        // Not of the route's shape: the same 400 as the schema's (this throws).
        body = parseJsonBody(body.bytes)
      }
      if (type) return deps.ingest.ingest({ tenantId, actor, messages: [validateAsRoute(singleMessage, body, url)], envelope: { type }, single: true })
      const b = validateAsRoute(batchEnvelope, body, url)
      return deps.ingest.ingest({ tenantId, actor, messages: b.batch, envelope: { sentAt: b.sentAt, context: b.context }, single: false })
    }

    // analytics.js posts batches to /v1/b, single calls to /v1/t, /v1/p ... (see SHORT_PATHS).
    const route = (url: string, type: EventType | undefined, bodyLimit: number, summary: string, body: typeof batchEnvelope | typeof singleMessage) =>
      s.post(
        url,
        {
          bodyLimit,
          config: { segmentApi: true },
          onRequest: writeAuth.onRequest,
          preValidation: writeAuth.preValidation,
          validatorCompiler: rawAwareValidator,
          schema: { tags: ['ingest'], summary, security, body, response: { 200: ingestResponse, 400: errorBody, 401: errorBody, 413: errorBody, 503: errorBody } },
        },
        async (req) => ingest(req, type, url),
      )
    for (const url of ['/v1/batch', '/v1/b']) route(url, undefined, MAX_BATCH_BYTES, 'Send a batch of Segment messages (at most 500 KB, each at most 32 KB)', batchEnvelope)
    for (const [type, url] of EVENT_TYPES.flatMap((t) => [[t, `/v1/${t}`], [t, `/v1/${SHORT_PATHS[t]}`]] as const)) route(url, type, MAX_EVENT_BYTES, `Send one ${type} message`, singleMessage)
  })

  // Browser pages on the tenant's origins: the preflight, answered before any key is known (tenants/cors.hooks.ts).
  for (const url of ['/v1/batch', '/v1/b', ...EVENT_TYPES.flatMap((t) => [`/v1/${t}`, `/v1/${SHORT_PATHS[t]}`])]) {
    r.options(url, { schema: { tags: ['ingest'], summary: 'CORS preflight of a browser source', hide: true } }, corsPreflight)
  }

  r.get(
    '/v1/tracking-plan',
    { onRequest: auth.require('tenant:admin'), schema: { tags: ['ingest'], summary: "The tenant's active tracking plan", security, response: { 200: trackingPlanView, 404: errorBody } } },
    async (req, reply) => {
      const plan = await deps.plans.current(req.principal!.tenantId)
      if (!plan) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'This tenant has no tracking plan: every event is accepted.' } })
      return plan
    },
  )
  r.put(
    '/v1/tracking-plan',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'tracking_plan.save', objectKind: 'tracking_plan' } },
      schema: { tags: ['ingest'], summary: 'Replace the tracking plan (a new version)', security, body: trackingPlanInput, response: { 200: trackingPlanView, 400: errorBody } },
    },
    async (req) => deps.plans.save(req.principal!.tenantId, req.body, req.principal!.holder),
  )
  r.delete(
    '/v1/tracking-plan',
    { onRequest: auth.require('tenant:admin'), config: { audit: { action: 'tracking_plan.clear', objectKind: 'tracking_plan' } }, schema: { tags: ['ingest'], summary: 'Remove the tracking plan', security } },
    async (req, reply) => {
      await deps.plans.clear(req.principal!.tenantId, req.principal!.holder)
      return reply.code(204).send()
    },
  )

  r.get(
    '/v1/identities/changes',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'identity.changes.read', objectKind: 'identity', personal: true } },
      schema: {
        tags: ['ingest'],
        summary: 'Identity links and merges (who, when, why), newest first',
        security,
        querystring: z.object({ customerKey: z.coerce.number().int().min(1).max(2 ** 32 - 1).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: { 200: z.object({ changes: z.array(identityChange) }) },
      },
    },
    async (req) => {
      const changes = await deps.identities.changes(req.principal!.tenantId, { key: req.query.customerKey, limit: req.query.limit })
      req.auditNote = { customers: new Set(changes.flatMap((c) => [c.fromKey, c.intoKey]).filter((k) => k > 0)).size, detail: { changes: changes.length } }
      return { changes }
    },
  )
  r.post(
    '/v1/identities/changes/:changeId/undo',
    {
      onRequest: auth.require('identity:merge'),
      config: { audit: { action: 'identity.undo', objectKind: 'identity_change', objectParam: 'changeId' } },
      schema: {
        tags: ['ingest'],
        summary: 'Undo a link or merge',
        security,
        params: z.object({ changeId: z.uuid() }),
        response: { 200: identityChange, 404: errorBody, 409: errorBody },
      },
    },
    async (req) => {
      const change = await deps.identities.undo(req.principal!.tenantId, req.params.changeId, req.principal!.holder)
      // A merge's undo is found by the customer number it gave back, as the merge is; a link's names a device.
      req.auditNote = change.action === 'merge' ? { customerNo: change.idValue, customers: 2 } : { customers: 1 }
      return change
    },
  )
  // Events may link a device to a customer but never merge two customers (the app key ships
  // inside the app): a merge is an administrator's act, with a reason, audited.
  r.post(
    '/v1/identities/merge',
    {
      onRequest: auth.require('identity:merge'),
      config: { audit: { action: 'identity.merge', objectKind: 'identity_change' } },
      schema: {
        tags: ['ingest'],
        summary: 'Merge one known customer number into another, with a reason (undo it through its change)',
        security,
        body: mergeBody,
        response: { 200: identityChange, 400: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (req) => {
      const { from, to, reason } = req.body
      const change = await deps.identities.merge(req.principal!.tenantId, from, to, { id: req.principal!.holder, reason })
      if (!change) throw new AppError('CONFLICT', `${from} is already merged into ${to}.`)
      req.auditNote = { objectId: change.changeId, customerNo: from, customers: 2, detail: { into: to, reason } }
      return change
    },
  )
}
