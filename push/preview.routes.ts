import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { errorBody } from '../core/errors.js'
import { instantSchema, timeZoneSchema } from '../core/time.js'
import { requireCustomerKey } from '../tags/customers.lookup.js'
import type { TagRepository } from '../tags/tag.repository.js'
import { seesSensitiveTags, type Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { cronExpr, messageSchema } from './campaign.schema.js'
import { nextRuns } from './schedule.js'
import { previewTemplate } from './template.preview.js'

/**
 * What the console used to compute with its own copies of the scheduler and the template
 * filler: a cron's next runs (push/schedule.ts) and a message filled for a customer
 * (template.preview.ts, the targeting SQL). Both write nothing.
 */

const security = [{ apiKey: [] }]

const schedulePreviewBody = z.strictObject({
  cron: cronExpr.describe('five fields (minute hour day month weekday), as a campaign schedule takes them'),
  timeZone: timeZoneSchema.optional().describe("the zone the cron is read in; the bank's own by default"),
  count: z.number().int().min(1).max(100).default(10).describe('how many runs'),
  from: instantSchema.optional().describe('count from this instant (default now)'),
})
const schedulePreviewView = z.object({
  timeZone: z.string(),
  runs: z.array(z.object({ localDate: z.string().describe('the local day of the run'), at: z.string().describe('when its targets are due (UTC); today’s may be past, then they are due at once') })),
})

const textPair = z.object({ title: z.string().nullable(), body: z.string().nullable().describe('null: a field without fallback has no value (targeting leaves the customer out: missing_field)') })
const templatePreviewBody = z.strictObject({
  message: messageSchema.describe('the message, as a campaign holds it'),
  customerNo: z.string().min(1).max(64).optional().describe('the customer to fill it for; without one, fields from a customer stay unfilled'),
})
const templatePreviewView = z.object({
  customerNo: z.string().nullable(),
  localDate: z.string().describe("today in the bank's zone ({{today}})"),
  elder: z.boolean().describe('the customer gets the elder variant'),
  language: z.enum(['zh', 'en']).nullable().describe('the language targeting would choose for the customer'),
  texts: z.object({ zh: textPair, en: textPair }),
  fields: z.array(z.object({ field: z.string(), value: z.string().nullable(), masked: z.boolean().describe('a C2 value this key may not read') })),
})

export function registerPushPreviewRoutes(app: FastifyInstance, deps: { auth: Auth; db: Db; tenants: TenantService; tags: TagRepository }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const campaignsWrite = deps.auth.require('campaigns:write')

  r.post(
    '/v1/push/schedules/preview',
    {
      onRequest: campaignsWrite,
      config: { audit: { action: 'schedule.preview', objectKind: 'campaign' } },
      schema: { tags: ['push'], summary: "A cron's next runs as the scheduler makes them (one per local day)", security, body: schedulePreviewBody, response: { 200: schedulePreviewView, 400: errorBody } },
    },
    async (req) => {
      const timeZone = req.body.timeZone ?? (await deps.tenants.get(req.principal!.tenantId)).timeZone
      const from = req.body.from ? new Date(req.body.from) : new Date()
      return { timeZone, runs: nextRuns(req.body.cron, from, req.body.count, timeZone).map((x) => ({ localDate: x.localDate, at: x.at.toISOString() })) }
    },
  )

  r.post(
    '/v1/push/templates/preview',
    {
      onRequest: campaignsWrite,
      config: { audit: { action: 'template.preview', objectKind: 'campaign', personal: true } },
      schema: {
        tags: ['push'],
        summary: 'A message filled for a customer as targeting fills it (C2 values masked unless the key may read personal data); nothing is written',
        security,
        body: templatePreviewBody,
        response: { 200: templatePreviewView, 400: errorBody, 404: errorBody },
      },
    },
    async (req) => {
      const p = req.principal!
      const db = deps.auth.tenantDb(req)
      const customerNo = req.body.customerNo ?? null
      const customerKey = customerNo === null ? null : await requireCustomerKey(deps.db, p.tenantId, customerNo)
      if (customerNo !== null) req.auditNote = { customerNo, customers: 1 }
      const [tenant, tags] = await Promise.all([deps.tenants.get(p.tenantId), deps.tags.list(p.tenantId)])
      return previewTemplate(db, { message: req.body.message, customerKey, customerNo, timeZone: tenant.timeZone, now: new Date(), tags, seesPersonal: seesSensitiveTags(p) })
    },
  )
}
