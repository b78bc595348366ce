import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import type { Approvals } from './campaign.approval.js'
import { CAMPAIGN_ID, VARIANT_ID } from './campaign.schema.js'
import type { CampaignRepository } from './campaign.repository.js'
import type { TestSends } from './test-send.js'

/**
 * Before a campaign goes out: its approval (a second holder approves a marketing campaign's
 * version) and test sends to the bank's test lists. Marketers and admins (campaigns:write) do
 * both; the request, the approval, list changes and test sends are in the audit trail.
 */

const security = [{ apiKey: [] }]
const ID = z.string().regex(CAMPAIGN_ID, 'lower case letters, digits, _ and -')
const idParam = z.object({ id: ID })
const decision = z.strictObject({
  version: z.number().int().min(1).describe('the campaign version read: a newer one is refused with 409 CONFLICT'),
  note: z.string().max(500).optional(),
})

const approvalView = z.object({
  campaignId: z.string(),
  version: z.number(),
  required: z.boolean().describe('marketing campaigns need approval; service and security campaigns do not'),
  status: z.enum(['not_required', 'draft', 'requested', 'approved']).describe('of the current version'),
  changedBy: z.string().describe('who made the current version: the one holder who may not approve it'),
  requestedBy: z.string().nullable(),
  requestedAt: z.string().nullable(),
  approvedBy: z.string().nullable(),
  approvedAt: z.string().nullable(),
  note: z.string(),
})
const member = z.object({ customerNo: z.string(), label: z.string() })
const testListView = z.object({ id: z.string(), name: z.string(), members: z.array(member), changedBy: z.string(), changedAt: z.string() })
const testSendView = z.object({
  sendId: z.string(),
  campaignId: z.string(),
  version: z.number(),
  listId: z.string(),
  variants: z.array(z.string()).describe('the message variants sent (each member gets each); empty without variants'),
  queued: z
    .array(member.extend({ targetId: z.string(), messageVariant: z.string().optional().describe('the message variant, for a campaign with variants'), language: z.string(), variant: z.string(), title: z.string().optional(), body: z.string().optional() }))
    .describe('pulled through POST /v1/push/pull with test: true; the filled text only for a key that may read personal data (it can carry names and amounts)'),
  leftOut: z.array(member.extend({ messageVariant: z.string().optional(), reason: z.string() })).describe('members who get nothing: no_consent, consent_refused, personalization_off, missing_field, unknown_customer'),
})

export function registerApprovalRoutes(app: FastifyInstance, deps: { auth: Auth; campaigns: CampaignRepository; approvals: Approvals; tests: TestSends }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, campaigns, approvals, tests } = deps
  const catalog = auth.require('catalog:read')
  const write = auth.require('campaigns:write')
  const who = (p: { holder: string; keyId: string }) => ({ holder: p.holder, keyId: p.keyId })

  r.get(
    '/v1/push/campaigns/:id/approval',
    { onRequest: catalog, schema: { tags: ['push'], summary: 'Whether the current version of a campaign is approved, asked for, or needs no approval', security, params: idParam, response: { 200: approvalView, 404: errorBody } } },
    async (req) => approvals.state(req.principal!.tenantId, await campaigns.get(req.principal!.tenantId, req.params.id)),
  )

  r.post(
    '/v1/push/campaigns/:id/approval/request',
    {
      onRequest: write,
      config: { audit: { action: 'campaign.approval.request', objectKind: 'campaign', objectParam: 'id' } },
      schema: { tags: ['push'], summary: 'Ask a second holder to approve this version of a marketing campaign', security, params: idParam, body: decision, response: { 200: approvalView, 400: errorBody, 404: errorBody, 409: errorBody } },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const c = await campaigns.get(t, req.params.id)
      req.auditNote = { detail: { version: req.body.version } }
      return approvals.request(t, c, who(req.principal!), req.body.version, req.body.note)
    },
  )

  r.post(
    '/v1/push/campaigns/:id/approval',
    {
      onRequest: write,
      config: { audit: { action: 'campaign.approve', objectKind: 'campaign', objectParam: 'id' } },
      schema: {
        tags: ['push'],
        summary: 'Approve this version of a marketing campaign (not by the holder who made it); a later version needs approval again',
        security,
        params: idParam,
        body: decision,
        response: { 200: approvalView, 400: errorBody, 403: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const c = await campaigns.get(t, req.params.id)
      req.auditNote = { detail: { version: req.body.version, changedBy: c.createdBy } }
      return approvals.approve(t, c, who(req.principal!), req.body.version, req.body.note)
    },
  )

  r.get(
    '/v1/push/test-lists',
    {
      onRequest: write,
      // Members are customer numbers (the staff's own accounts) with a label naming their holder: a personal read.
      config: { audit: { action: 'push_test_list.list', objectKind: 'push_test_list', personal: true } },
      schema: { tags: ['push'], summary: 'The bank\'s test lists: its own test customers (staff phones) that test sends go to', security, response: { 200: z.object({ lists: z.array(testListView) }) } },
    },
    async (req) => {
      const lists = await tests.lists(req.principal!.tenantId)
      req.auditNote = { customers: lists.reduce((n, l) => n + l.members.length, 0), detail: { lists: lists.length } }
      return { lists }
    },
  )

  r.put(
    '/v1/push/test-lists/:id',
    {
      onRequest: write,
      config: { audit: { action: 'push_test_list.save', objectKind: 'push_test_list', objectParam: 'id' } },
      schema: {
        tags: ['push'],
        summary: 'Create or replace a test list (members are customer numbers the bank has, each with a label)',
        security,
        params: idParam,
        body: z.record(z.string(), z.unknown()).describe('{ name, members: [{ customerNo, label }] }, at most 50 members'),
        response: { 200: testListView, 400: errorBody },
      },
    },
    async (req) => {
      const out = await tests.saveList(req.principal!.tenantId, req.params.id, req.body, req.principal!.holder)
      req.auditNote = { detail: { members: out.members.length } }
      return out
    },
  )

  r.post(
    '/v1/push/campaigns/:id/test',
    {
      onRequest: write,
      // It names the members who got the message and, for a key that may read personal data, the filled text.
      config: { audit: { action: 'campaign.test_send', objectKind: 'campaign', objectParam: 'id', personal: true } },
      schema: {
        tags: ['push'],
        summary: 'Send the campaign\'s message now to a test list, marked as a test: pulled like any target, counted in no statistics, spending no cap; consent still applies',
        security,
        params: idParam,
        body: z.strictObject({ list: ID.describe('the test list'), variant: z.string().regex(VARIANT_ID, 'a variant id: one capital letter').optional().describe('one message variant; without it, every variant') }),
        response: { 200: testSendView, 400: errorBody, 404: errorBody },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const c = await campaigns.get(t, req.params.id)
      const out = await tests.send(t, c, req.body.list, req.principal!.holder, req.body.variant)
      req.auditNote = { customers: out.queued.length + out.leftOut.length, detail: { list: req.body.list, version: c.version, variants: out.variants, queued: out.queued.length, leftOut: out.leftOut.length } }
      if (req.principal!.permissions.has('personal:read')) return out
      return { ...out, queued: out.queued.map(({ title: _t, body: _b, ...m }) => m) }
    },
  )
}
