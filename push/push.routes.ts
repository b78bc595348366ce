import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody, issuesFromZod } from '../core/errors.js'
import { instantSchema } from '../core/time.js'
import { matchesQuery } from '../segments/segments.routes.js'
import { seesSensitiveTags, type Auth } from '../tenants/auth.js'
import type { CampaignCheck } from './campaign.check.js'
import { CAMPAIGN_ID, CHANNELS, PRIORITIES, PUSH_PURPOSES, campaignInput, type SavedCampaign } from './campaign.schema.js'
import type { CampaignRepository } from './campaign.repository.js'
import type { LeaseManager } from './lease.manager.js'
import type { PolicyRepository } from './policy.js'
import { campaignStats, listTargets, TARGET_STATUSES } from './stats.js'
import type { Targeting } from './targeting.js'

/**
 * Push over HTTP. Marketers (admin keys) manage campaigns and the tenant's policy and run
 * targeting by hand; read keys see campaigns, stats and targets. The notification service pulls
 * and acknowledges with a read key: pulled targets carry customer numbers and message text with
 * amounts, so a write key, which ships inside the app, must not reach them.
 */

const security = [{ apiKey: [] }]
const idParam = z.object({ id: z.string().regex(CAMPAIGN_ID, 'a campaign id: lower case letters, digits, _ and -') })
const listQuery = z.object({
  archived: z.enum(['exclude', 'include', 'only']).default('exclude').describe('archived campaigns: left out (default), listed too, or alone'),
  q: z.string().max(200).optional().describe('search: the words found in the id, name or description (any case)'),
})
const expected = z.object({ expectedVersion: z.coerce.number().int().min(0).optional() })

const campaignView = z.object({
  id: z.string(),
  version: z.number(),
  status: z.enum(['active', 'paused', 'retired', 'archived']),
  name: z.string(),
  description: z.string(),
  purpose: z.enum(PUSH_PURPOSES),
  channel: z.enum(CHANNELS),
  priority: z.enum(PRIORITIES),
  audience: z.unknown(),
  dateTrigger: z.unknown().optional(),
  schedule: z.unknown(),
  message: z.unknown().optional(),
  variants: z.array(z.object({ id: z.string(), weight: z.number(), message: z.unknown() })).optional(),
  validFrom: z.string().optional(),
  validUntil: z.string().optional(),
  ttlMinutes: z.number(),
  controlPerMille: z.number(),
  conversion: z.unknown().optional(),
  createdBy: z.string(),
  createdAt: z.string(),
  changeNote: z.string(),
})
const runView = z.object({
  runId: z.string(),
  asOf: z.string(),
  campaigns: z.array(
    z.object({
      campaignId: z.string(),
      version: z.number(),
      skipped: z.string().optional(),
      localDate: z.string().optional(),
      targeted: z.number(),
      queued: z.number(),
      suppressed: z.record(z.string(), z.number()),
      quietExempt: z.number(),
      ms: z.number(),
    }),
  ),
  errors: z.array(z.object({ campaignId: z.string(), code: z.string(), message: z.string(), issues: z.array(z.object({ field: z.string().optional(), message: z.string() }).loose()).optional() })),
})
const reachView = z.object({
  localDate: z.string().describe('the local date counted'),
  asIfToday: z.boolean().describe('the schedule has no occurrence today: counted as if it had one, due now'),
  audience: z.number().describe('customers of the audience not yet targeted for that date'),
  reached: z.number().describe('those who would be queued'),
  suppressed: z.record(z.string(), z.number()).describe('those left out, by reason'),
  ms: z.number(),
})
const group = z.object({ customers: z.number(), converted: z.number(), rate: z.number().nullable() })
const rate = z.object({ count: z.number(), of: z.number(), rate: z.number().nullable(), low: z.number().nullable().describe('95% Wilson interval'), high: z.number().nullable() })
const rateDiff = z.object({ diff: z.number().nullable(), low: z.number().nullable().describe('95% Newcombe interval of the difference'), high: z.number().nullable() })
const variantView = z.object({
  variant: z.string(),
  weight: z.number().nullable().describe('its weight in the current split; null when the campaign no longer has it'),
  targeted: z.number(),
  queued: z.number(),
  suppressed: z.number(),
  sent: z.number(),
  failed: z.number(),
  withdrawn: z.number(),
  delivered: z.number(),
  opened: z.number(),
  clicked: z.number(),
  clickThrough: rate.describe('sent targets clicked, over sent targets'),
  conversion: rate.nullable().describe('queued targets converted within the window, over queued targets; null without a goal'),
  vsBaseline: z.object({ clickThrough: rateDiff, conversion: rateDiff.nullable() }).nullable().describe('this variant minus the first; null for the first'),
})
const statsView = z.object({
  campaignId: z.string(),
  targeted: z.number(),
  queued: z.number(),
  suppressed: z.record(z.string(), z.number()).describe('by reason'),
  sent: z.number().describe('acknowledged as delivered to the channel'),
  failed: z.number(),
  withdrawn: z.number().describe('queued targets closed at pull: the customer withdrew consent after targeting (reason consent_withdrawn)'),
  delivered: z.number().describe('push_delivered events'),
  opened: z.number(),
  clicked: z.number(),
  conversion: z
    .object({
      event: z.array(z.string()),
      withinHours: z.number(),
      groups: z.object({ treated: group, holdout: group, control: group }),
      upliftVsHoldout: z.number().nullable(),
      upliftVsControl: z.number().nullable(),
    })
    .nullable(),
  variants: z.array(variantView).describe('the funnel per message variant (A/B), in the campaign\'s order; empty without variants'),
})
const targetView = z.object({
  targetId: z.string(),
  customerNo: z.string(),
  localDate: z.string(),
  status: z.enum(TARGET_STATUSES),
  reason: z.string(),
  dueAt: z.string(),
  expiresAt: z.string(),
  language: z.string(),
  variant: z.string(),
  messageVariant: z.string().describe('the message variant (A/B); empty without variants'),
  title: z.string(),
  body: z.string(),
  quietExempt: z.boolean(),
  createdAt: z.string(),
})
const policyView = z.object({
  version: z.number(),
  quietHours: z.object({ start: z.string(), end: z.string() }).nullable(),
  consent: z.object({ service: z.string(), security: z.string() }),
  caps: z.record(z.string(), z.object({ day: z.number(), week: z.number() })),
  maxAttempts: z.number(),
  createdBy: z.string(),
  createdAt: z.string(),
  changeNote: z.string(),
})
const pulledView = z.object({
  targetId: z.string(),
  idempotencyKey: z.string().describe('the same for every lease of the target and across reruns: deduplicate sends by it'),
  leaseId: z.string(),
  leaseUntil: z.string(),
  campaignId: z.string(),
  campaignVersion: z.number(),
  customerNo: z.string(),
  channel: z.string(),
  purpose: z.string(),
  priority: z.string(),
  language: z.string(),
  variant: z.string().describe('standard or elder text'),
  messageVariant: z.string().describe('the message variant (A/B) of the customer; empty without variants'),
  title: z.string(),
  body: z.string(),
  dueAt: z.string(),
  expiresAt: z.string(),
  test: z.boolean().describe('a test send to the bank\'s test list: deliver it, it counts in no statistics'),
})
const ackBody = z.strictObject({
  results: z
    .array(
      z.strictObject({
        targetId: z.string().regex(/^[0-9a-f]{32}$/, 'a target id'),
        status: z.enum(['delivered', 'failed']),
        reason: z.string().max(500).optional(),
        retry: z.boolean().optional().describe('failed only: return the target for another attempt now'),
      }),
    )
    .min(1)
    .max(10_000),
})

export function registerPushRoutes(
  app: FastifyInstance,
  deps: { auth: Auth; campaigns: CampaignRepository; policies: PolicyRepository; targeting: Targeting; leases: LeaseManager; check?: CampaignCheck },
) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, campaigns, policies, leases } = deps
  const catalog = auth.require('catalog:read')
  const campaignsWrite = auth.require('campaigns:write')
  const personal = auth.require('personal:read')
  const admin = auth.require('tenant:admin')
  const deliver = auth.require('push:deliver')
  // Versions name the key's holder (a person or a system); the audit trail adds the key id.
  const actor = (p: { holder: string }) => p.holder

  r.get(
    '/v1/push/campaigns',
    { onRequest: catalog, schema: { tags: ['push'], summary: 'Campaigns (retired ones left out, archived ones on request), optionally searched', security, querystring: listQuery, response: { 200: z.object({ campaigns: z.array(campaignView) }), 400: errorBody } } },
    async (req) => {
      const a = req.query.archived
      const list = (await campaigns.list(req.principal!.tenantId)).filter((c) => a === 'include' || (a === 'only') === (c.status === 'archived'))
      return { campaigns: list.filter((c) => matchesQuery(c, req.query.q)) }
    },
  )

  r.put(
    '/v1/push/campaigns/:id/archived',
    {
      onRequest: campaignsWrite,
      config: { audit: { action: 'campaign.archive', objectKind: 'campaign', objectParam: 'id' } },
      schema: {
        tags: ['push'],
        summary: 'Archive a campaign (it never runs and leaves the default list) or restore it (paused)',
        security,
        params: idParam,
        body: z.strictObject({ archived: z.boolean(), changeNote: z.string().max(500).optional() }),
        response: { 200: z.object({ campaign: campaignView, changed: z.boolean() }), 400: errorBody, 404: errorBody },
      },
    },
    async (req) => {
      const out = await campaigns.setArchived(req.principal!.tenantId, req.params.id, req.body.archived, actor(req.principal!), req.body.changeNote)
      req.auditNote = { detail: { archived: req.body.archived, changed: out.changed } }
      return out
    },
  )

  r.get('/v1/push/campaigns/:id', { onRequest: catalog, schema: { tags: ['push'], summary: 'A campaign', security, params: idParam, response: { 200: campaignView, 404: errorBody } } }, async (req) =>
    campaigns.get(req.principal!.tenantId, req.params.id),
  )

  r.get(
    '/v1/push/campaigns/:id/versions',
    { onRequest: catalog, schema: { tags: ['push'], summary: 'Every version: who changed what and when', security, params: idParam, response: { 200: z.object({ versions: z.array(campaignView) }), 404: errorBody } } },
    async (req) => ({ versions: await campaigns.versions(req.principal!.tenantId, req.params.id) }),
  )

  r.put(
    '/v1/push/campaigns/:id',
    {
      onRequest: campaignsWrite,
      config: { audit: { action: 'campaign.save', objectKind: 'campaign', objectParam: 'id' } },
      schema: {
        tags: ['push'],
        summary: 'Create or change a campaign (each change is a version, with who and a note)',
        security,
        params: idParam,
        querystring: expected,
        body: z.record(z.string(), z.unknown()).describe('the campaign: see push/README.md'),
        response: { 200: z.object({ campaign: campaignView, changed: z.boolean() }), 201: z.object({ campaign: campaignView, changed: z.boolean() }), 400: errorBody, 409: errorBody },
      },
    },
    async (req, reply) => {
      const t = req.principal!.tenantId
      const opts = { withSensitive: seesSensitiveTags(req.principal!), ...(req.query.expectedVersion !== undefined ? { expectedVersion: req.query.expectedVersion } : {}) }
      const out = await campaigns.save(t, req.params.id, req.body, actor(req.principal!), opts)
      return reply.code(out.changed && out.campaign.version === 1 ? 201 : 200).send(out)
    },
  )

  r.delete('/v1/push/campaigns/:id', { onRequest: campaignsWrite, config: { audit: { action: 'campaign.retire', objectKind: 'campaign', objectParam: 'id' } }, schema: { tags: ['push'], summary: 'Retire a campaign (its history and targets stay)', security, params: idParam, response: { 204: z.null(), 404: errorBody } } }, async (req, reply) => {
    await campaigns.retire(req.principal!.tenantId, req.params.id, actor(req.principal!))
    return reply.code(204).send(null)
  })

  r.post(
    '/v1/push/campaigns/:id/run',
    {
      onRequest: campaignsWrite,
      config: { audit: { action: 'campaign.run', objectKind: 'campaign', objectParam: 'id' } },
      schema: {
        tags: ['push'],
        summary: 'Target the campaign now (its occurrence of today; targets already made stay as they are)',
        security,
        params: idParam,
        body: z.strictObject({ asOf: instantSchema.optional() }).default({}),
        response: { 200: runView, 400: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const c = await campaigns.get(t, req.params.id)
      if (c.schedule.kind === 'event') throw new AppError('VALIDATION_FAILED', 'An event-triggered campaign runs as its events arrive.', { issues: [{ field: 'schedule.kind', message: 'event' }] })
      const out = await deps.targeting.runTargeting(t, { campaignIds: [c.id], trigger: 'manual', ...(req.body.asOf ? { asOf: new Date(req.body.asOf) } : {}) })
      const err = out.errors[0]
      if (err) throw new AppError(err.code, err.message, err.issues ? { issues: err.issues } : {})
      if (out.campaigns[0]?.skipped === 'not_approved') throw new AppError('NOT_APPROVED', `Campaign ${c.id} version ${c.version} is not approved: a second holder approves it first.`, { issues: [{ field: 'approval', message: 'not_approved' }] })
      return out
    },
  )

  r.post(
    '/v1/push/campaigns/:id/reach',
    {
      onRequest: campaignsWrite,
      config: { audit: { action: 'campaign.reach', objectKind: 'campaign', objectParam: 'id' } },
      schema: {
        tags: ['push'],
        summary: 'A dry run of a campaign as it would be saved: how many of its audience it would reach today after consent, holdout, control group, quiet hours and caps (nothing is written)',
        security,
        params: idParam,
        body: z.record(z.string(), z.unknown()).describe('the campaign, as for PUT /v1/push/campaigns/:id'),
        response: { 200: reachView, 400: errorBody, 404: errorBody },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const parsed = campaignInput.safeParse(req.body)
      if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The campaign is invalid.', { issues: issuesFromZod(parsed.error.issues) })
      const c = parsed.data
      if (c.schedule.kind === 'event') throw new AppError('VALIDATION_FAILED', 'An event-triggered campaign reaches customers as their events arrive.', { issues: [{ field: 'schedule.kind', message: 'event' }] })
      await deps.check?.(t, c, seesSensitiveTags(req.principal!))
      const draft: SavedCampaign = { ...c, id: req.params.id, version: 0, status: 'active', createdBy: req.principal!.holder, createdAt: new Date().toISOString(), changeNote: '' }
      return deps.targeting.reach(t, draft)
    },
  )

  r.get('/v1/push/campaigns/:id/stats', { onRequest: catalog, schema: { tags: ['push'], summary: 'Funnel, suppression reasons and uplift, and the funnel per message variant with intervals', security, params: idParam, response: { 200: statsView, 404: errorBody } } }, async (req) => {
    const t = req.principal!.tenantId
    return campaignStats(auth.tenantDb(req), await campaigns.get(t, req.params.id))
  })

  r.get(
    '/v1/push/campaigns/:id/targets',
    {
      onRequest: personal,
      config: { audit: { action: 'campaign.targets.read', objectKind: 'campaign', objectParam: 'id', personal: true } },
      schema: {
        tags: ['push'],
        summary: 'Targets of a campaign, page by page',
        security,
        params: idParam,
        querystring: z.object({ status: z.enum(TARGET_STATUSES).optional(), cursor: z.string().max(40).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: { 200: z.object({ targets: z.array(targetView), nextCursor: z.string().nullable() }), 400: errorBody, 404: errorBody },
      },
    },
    async (req) => {
      await campaigns.get(req.principal!.tenantId, req.params.id)
      const page = await listTargets(auth.tenantDb(req), req.params.id, req.query)
      req.auditNote = { customers: new Set(page.targets.map((x) => x.customerNo)).size, detail: { targets: page.targets.length } }
      return page
    },
  )

  r.get('/v1/push/policy', { onRequest: catalog, schema: { tags: ['push'], summary: 'Quiet hours, consent needs and caps', security, response: { 200: policyView } } }, async (req) =>
    policies.get(req.principal!.tenantId),
  )

  r.put(
    '/v1/push/policy',
    {
      onRequest: admin,
      config: { audit: { action: 'push_policy.save', objectKind: 'push_policy' } },
      schema: { tags: ['push'], summary: 'Change the push policy (a new version)', security, querystring: expected, body: z.record(z.string(), z.unknown()), response: { 200: z.object({ policy: policyView, changed: z.boolean() }), 400: errorBody, 409: errorBody } },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const out = await policies.save(t, req.body, actor(req.principal!), req.query.expectedVersion !== undefined ? { expectedVersion: req.query.expectedVersion } : {})
      leases.invalidate(t)
      return out
    },
  )

  r.post(
    '/v1/push/pull',
    {
      onRequest: deliver,
      // Up to 10,000 targets built by the lease manager from typed rows, never from input:
      // re-validating each with zod on the way out took about a tenth of a pull of 10,000 over
      // HTTP (357 against 317 ms in the push benchmark). The schema still documents the body.
      serializerCompiler: () => (data) => JSON.stringify(data),
      config: { audit: { action: 'push.pull', objectKind: 'push_target', personal: true } },
      schema: {
        tags: ['push'],
        summary: 'Lease up to `limit` due targets for `leaseSeconds`; unacknowledged ones return when the lease runs out',
        security,
        body: z.strictObject({ limit: z.number().int().min(1).max(10_000).default(100), leaseSeconds: z.number().int().min(1).max(3600).default(60) }).default({ limit: 100, leaseSeconds: 60 }),
        response: { 200: z.object({ targets: z.array(pulledView) }), 400: errorBody, 503: errorBody },
      },
    },
    async (req) => {
      const targets = await leases.pull(req.principal!.tenantId, req.body)
      req.auditNote = { customers: new Set(targets.map((x) => x.customerNo)).size, detail: { targets: targets.length } }
      return { targets }
    },
  )

  r.post(
    '/v1/push/ack',
    {
      onRequest: deliver,
      config: { audit: { action: 'push.ack', objectKind: 'push_target' } },
      schema: {
        tags: ['push'],
        summary: 'Report leased targets delivered or failed (with a reason)',
        security,
        body: ackBody,
        response: { 200: z.object({ accepted: z.number(), rejected: z.array(z.object({ index: z.number(), targetId: z.string(), reason: z.string() })) }), 400: errorBody, 503: errorBody },
      },
    },
    async (req) => leases.ack(req.principal!.tenantId, req.body.results),
  )
}
