import type { FastifyInstance, FastifyReply } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody } from '../core/errors.js'
import { createReplyBatch } from '../core/reply-batch.js'
import { addDays, daySchema, daysBetween, localDate } from '../core/time.js'
import { seesSensitiveTags, type Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import type { CatalogRepository } from './catalog.repository.js'
import type { ExperimentReport, ReportInput } from './experiments.report.js'
import { REASON_CODES } from './layout.reasons.js'
import type { LayoutService } from './layout.service.js'

const security = [{ apiKey: [] }]

const reason = z
  .object({
    kind: z.string().describe('the mechanism: tag (tags: those the key may see; a high-sensitivity tag only to a key with personal:read), rule, model (model: ease or co-occurrence; because: the item that led to it), popularity (scope tenant, segment or region), exploration, service'),
    code: z.enum(REASON_CODES).describe('a stable name of the explanation, for an app that words it itself'),
    detail: z.string().describe('for engineers, in English, unchanged whatever the language; names a high-sensitivity tag only to a key with personal:read'),
    text: z.string().describe('for the customer ("为什么推荐给我"), in the layout’s lang; never names a tag, segment or score'),
  })
  .catchall(z.unknown())
  .describe('why it is there')
const layoutView = z.object({
  tenant: z.number(),
  customerId: z.string().nullable(),
  known: z.boolean().describe('false: an unknown or anonymous customer, served the tenant default'),
  screen: z.literal('home'),
  elder: z.boolean(),
  largeElements: z.boolean(),
  holdout: z.boolean().describe('in the global holdout: non-personalized layout (shared with push)'),
  experiment: z.object({ id: z.string(), variant: z.string() }).nullable(),
  personalized: z.boolean().describe('whether the customer’s tags, segments and model were used'),
  personalizedReason: z
    .enum(['personalization_off', 'holdout', 'unknown_customer'])
    .nullable()
    .describe('why not: the customer turned personalization off (service reminders stay, reason kind "service"), the global holdout, or an unknown visitor'),
  model: z.object({ build: z.string().nullable(), builtAt: z.string().nullable(), catalogVersion: z.object({ group: z.number(), own: z.number() }) }),
  modules: z.array(
    z.object({
      id: z.string(),
      title: z.string(),
      reason,
      items: z.array(z.object({ id: z.string(), type: z.string(), title: z.string(), deeplink: z.string(), category: z.string(), reason, score: z.number() })),
    }),
  ),
})
const layoutQuery = z.strictObject({
  customerId: z.string().min(1).max(64).optional().describe('the signed-in customer number; absent for an anonymous visitor'),
  screen: z.enum(['home']).default('home'),
  lang: z.enum(['zh', 'en']).default('zh'),
  mode: z.enum(['auto', 'elder', 'standard']).default('auto').describe('auto: elder mode for customers with the elder tag (60+ or who chose it)'),
  region: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,32}$/, 'a region code')
    .optional()
    .describe('the visitor\u2019s region code: an unknown or anonymous visitor gets what is popular there'),
})
const proportion = z.object({ rate: z.number().nullable(), low: z.number().nullable(), high: z.number().nullable() })
const difference = z.object({ diff: z.number(), low: z.number(), high: z.number() }).nullable()
const resultMetrics = {
  holdout: z.boolean(),
  experiment: z.string().nullable(),
  variant: z.string().nullable().describe('null with holdout true: the global holdout; null with holdout false: layouts served outside any experiment (no experiment, personalization off)'),
  exposures: z.number().describe('items shown (impressions)'),
  customers: z.number(),
  clicks: z.number(),
  clickedExposures: z.number(),
  ctr: proportion.describe('clickedExposures / exposures, Wilson 95%'),
  clickers: z.number(),
  customerCtr: proportion.describe('clickers / customers, Wilson 95%: the experiment’s unit'),
  conversions: z.number(),
  convertedExposures: z.number(),
  conversionRate: proportion.describe('convertedExposures / exposures, Wilson 95%'),
  converters: z.number(),
  customerConversion: proportion.describe('converters / customers, Wilson 95%'),
  vsHoldout: z
    .object({ ctr: difference, customerCtr: difference, conversionRate: difference, customerConversion: difference })
    .nullable()
    .describe('this arm minus the holdout on the same module or item, Newcombe hybrid score 95%'),
}
const experimentReportView = z.object({
  from: z.string(),
  to: z.string(),
  timeZone: z.string(),
  experiment: z.string().nullable(),
  attribution: z.object({ clickEvent: z.string(), clickWithinHours: z.number(), conversionEvents: z.array(z.string()), conversionWithinHours: z.number() }),
  interval: z.object({ method: z.literal('wilson'), differenceMethod: z.literal('newcombe-hybrid-score'), confidence: z.literal(0.95) }),
  unattributedClicks: z.number().describe('clicks with no exposure of their item to that customer within clickWithinHours before them'),
  arms: z.array(z.object(resultMetrics)),
  modules: z.array(z.object({ ...resultMetrics, module: z.string() })),
  items: z.array(z.object({ ...resultMetrics, module: z.string(), item: z.string() })),
})
// Bounded to the days the engine holds: year 0's midnight in the bank's zone is in year -1.
const day = daySchema
const experimentsQuery = z.strictObject({
  from: day.optional().describe('first local day of the bank (default: 6 days before to)'),
  to: day.optional().describe('last local day, inclusive (default: today)'),
  experiment: z.string().regex(/^[a-z][a-z0-9_.:-]{0,62}$/, 'an experiment id').optional().describe('only this experiment’s variants (the holdout always shows)'),
  clickWithinHours: z.coerce.number().int().min(1).max(168).default(24),
  conversionEvents: z.string().max(1000).optional().describe('goal event names, comma-separated (default product_purchased,wealth_subscribed,loan_repaid,bill_paid)'),
  conversionWithinHours: z.coerce.number().int().min(1).max(720).default(72),
})
const DEFAULT_CONVERSIONS = ['product_purchased', 'wealth_subscribed', 'loan_repaid', 'bill_paid']
const MAX_REPORT_DAYS = 92
const badQuery = (field: string, message: string) => new AppError('VALIDATION_FAILED', `The request querystring is invalid: ${field}: ${message}`, { issues: [{ field: `querystring.${field}`, message }] })

/** Rendered bytes of the documented body, sent as they are (the typed reply expects the object). */
function sendJson(reply: unknown, body: Buffer): void {
  void (reply as FastifyReply).type('application/json; charset=utf-8').send(body)
}

const savedCatalogView = z.object({ version: z.number(), catalog: z.unknown(), createdBy: z.string(), createdAt: z.string(), changeNote: z.string() })

export function registerRecommendRoutes(
  app: FastifyInstance,
  deps: { auth: Auth; tenants: TenantService; catalogs: CatalogRepository; layouts: LayoutService; report: (tenantId: number, input: ReportInput) => Promise<ExperimentReport> },
) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, tenants, catalogs, layouts } = deps
  const batch = createReplyBatch((err) => app.log.error({ err }, 'a layout reply could not be sent'))

  r.get(
    '/v1/layout/experiments',
    {
      // Counts per arm, module and item: no customer in it, so analysts read it and it is not audited.
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['recommend'],
        summary: 'Online results of the home screen: exposures, clicks, click-through and conversions per variant, module and item against the holdout, with 95% intervals',
        security,
        querystring: experimentsQuery,
        response: { 200: experimentReportView, 400: errorBody },
      },
    },
    async (req) => {
      const tenant = await tenants.get(req.principal!.tenantId)
      const q = req.query
      const to = q.to ?? localDate(new Date(), tenant.timeZone)
      const from = q.from ?? addDays(to, -6)
      if (from > to) throw badQuery('to', `${to} is before from (${from})`)
      if (daysBetween(from, to) >= MAX_REPORT_DAYS) throw badQuery('from', `at most ${MAX_REPORT_DAYS} days in one report`)
      const events = q.conversionEvents === undefined ? DEFAULT_CONVERSIONS : q.conversionEvents.split(',').map((e) => e.trim())
      if (!events.length || events.length > 20 || events.some((e) => !e || e.length > 100)) throw badQuery('conversionEvents', '1 to 20 event names of 1 to 100 characters, comma-separated')
      return deps.report(tenant.id, {
        from,
        to,
        timeZone: tenant.timeZone,
        experiment: q.experiment,
        clickWithinHours: q.clickWithinHours,
        conversionEvents: events,
        conversionWithinHours: q.conversionWithinHours,
      })
    },
  )

  r.get(
    '/v1/layout',
    {
      onRequest: auth.require('layout:read'),
      // The body is bytes rendered from typed snapshot data (layout.render.ts), never from
      // input, so no serializer runs on it: re-validating it with zod cost more than ranking it
      // (measured ~1 ms of ~1.7 ms per request), JSON.stringify more than ranking too. The
      // schema still documents it in the OpenAPI file.
      schema: {
        tags: ['recommend'],
        summary: 'The personalized home-screen layout of a customer: ordered modules and items, each with its reason',
        security,
        querystring: layoutQuery,
        response: { 200: layoutView, 400: errorBody },
      },
    },
    // Not async: with the snapshot held the bytes are ready now, and the reply goes out with the
    // other replies of this turn of the event loop (core/reply-batch.ts says why).
    (req, reply) => {
      // High-sensitivity tags (risk flags) are named in reasons only to keys that may read personal data.
      const body = layouts.layoutJson({ tenantId: req.principal!.tenantId, ...req.query, withSensitive: seesSensitiveTags(req.principal!) })
      if (body instanceof Promise) return body.then((b) => sendJson(reply, b))
      // Nothing returned, so fastify waits for the batch's send and takes no payload of its own.
      batch.send(reply as unknown as FastifyReply, body)
      return undefined
    },
  )

  r.get(
    '/v1/layout/catalog',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['recommend'],
        summary: 'The catalogue this tenant serves (built-in, group, own merged) and its own document',
        security,
        response: { 200: z.object({ effective: z.unknown(), versions: z.object({ group: z.number(), own: z.number() }), own: savedCatalogView.nullable() }) },
      },
    },
    async (req) => {
      const tenant = await tenants.get(req.principal!.tenantId)
      const [eff, own] = await Promise.all([catalogs.effective(tenant), catalogs.latest(tenant.id)])
      return { effective: eff.catalog, versions: { group: eff.groupVersion, own: eff.ownVersion }, own: own ?? null }
    },
  )

  r.put(
    '/v1/layout/catalog',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'catalog.save', objectKind: 'layout_catalog' } },
      schema: {
        tags: ['recommend'],
        summary: 'Save this tenant’s catalogue (a group’s is every member bank’s default); a change is a new version',
        security,
        querystring: z.strictObject({ expectedVersion: z.coerce.number().int().min(0).optional(), changeNote: z.string().max(500).optional() }),
        body: z.unknown(),
        response: { 200: savedCatalogView, 201: savedCatalogView, 400: errorBody, 409: errorBody },
      },
    },
    async (req, reply) => {
      const tenant = await tenants.get(req.principal!.tenantId)
      const { saved, created } = await catalogs.save(tenant, req.body, req.principal!.holder, {
        ...(req.query.expectedVersion !== undefined ? { expectedVersion: req.query.expectedVersion } : {}),
        ...(req.query.changeNote ? { changeNote: req.query.changeNote } : {}),
      })
      if (created) {
        // This tenant, and a group's members, serve the change from their next snapshot.
        const affected = [tenant.id, ...(tenant.kind === 'group' ? (await tenants.list()).filter((t) => t.parentId === tenant.id).map((t) => t.id) : [])]
        for (const id of affected) void layouts.reload(id).catch(() => {})
      }
      return reply.status(created ? 201 : 200).send(saved)
    },
  )

  r.get(
    '/v1/layout/catalog/versions',
    {
      onRequest: auth.require('catalog:read'),
      schema: { tags: ['recommend'], summary: 'Every version of this tenant’s own catalogue: who changed it, when, why', security, response: { 200: z.object({ versions: z.array(savedCatalogView) }) } },
    },
    async (req) => ({ versions: await catalogs.versions(req.principal!.tenantId) }),
  )

  r.get(
    '/v1/layout/model',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['recommend'],
        summary: 'The snapshot this process serves for the tenant: build, its model, catalogue versions, sizes',
        security,
        response: { 200: z.object({ build: z.string().nullable(), builtAt: z.string().nullable(), catalogVersion: z.object({ group: z.number(), own: z.number() }), model: z.string().describe('the model the build chose for this bank: ease_<λ per customer> or sar'), items: z.number(), modules: z.number(), customers: z.number(), indexed: z.number(), segments: z.number(), loadMs: z.number(), bytes: z.number() }) },
      },
    },
    async (req) => {
      const s = await layouts.snapshot(req.principal!.tenantId)
      return {
        build: s.build,
        builtAt: s.builtAt,
        catalogVersion: s.catalogVersions,
        model: s.model.name,
        items: s.items.length,
        modules: s.modules.length,
        customers: s.customers.keys.length,
        indexed: s.index.keys.length,
        segments: s.segments.length,
        loadMs: Math.round(s.loadedMs),
        bytes: s.bytes,
      }
    },
  )
}
