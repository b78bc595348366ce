import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../core/errors.js'
import { instantSchema } from '../core/time.js'
import type { Auth } from './auth.js'
import { holderName, keyView, type IssueKeyInput, type KeyService } from './keys.service.js'
import { LEGACY_SCOPES, ROLES } from './permissions.js'
import { digestStatusView, rekeyReportView, type DigestMigration } from './digest.migration.js'
import { privacyInput, privacyView, retentionWarning, retentionWarnings } from './privacy.schema.js'
import { createTenantInput, tenantSlug, tenantView, type TenantService } from './tenants.service.js'

const security = [{ apiKey: [] }]
const issuedKey = z.object({ key: z.string().describe('shown once; store it now'), info: keyView })
const tenantRef = z.object({ tenant: z.union([tenantSlug, z.string().regex(/^\d+$/)]) })
const keyIdParam = z.object({ keyId: z.string().regex(/^[0-9a-f]{16}$/) })

/** A key to issue: its roles (or, deprecated, a scope that maps to roles), its holder, an expiry. */
export const issueKeyBody = z
  .strictObject({
    roles: z.array(z.enum(ROLES)).min(1).max(ROLES.length).optional().describe('what the key may do: ' + ROLES.join(', ')),
    scope: z.enum(LEGACY_SCOPES).optional().describe('deprecated: write = [ingest], read = [layout, push, analyst], admin = [admin]'),
    holder: holderName.describe('the person or system that holds the key: shown in histories and the audit trail'),
    label: z.string().max(200).default(''),
    expiresAt: instantSchema.optional().describe('when the key stops working'),
  })
  .superRefine((b, ctx) => {
    if (!b.roles === !b.scope) ctx.addIssue({ code: 'custom', path: ['roles'], message: 'give roles (or the deprecated scope), not both' })
  })

export type IssueKeyBody = z.input<typeof issueKeyBody>

export function issueInput(b: z.infer<typeof issueKeyBody>): IssueKeyInput {
  return {
    roles: b.roles ?? [],
    legacyScope: b.scope,
    holder: b.holder,
    label: b.label,
    expiresAt: b.expiresAt ? new Date(b.expiresAt) : undefined,
  }
}

/**
 * Tenant self-service (an admin key manages its own tenant's keys) and operator routes (the
 * platform team creates and disables member banks with the operator token).
 */
export function registerTenantRoutes(
  app: FastifyInstance,
  deps: {
    auth: Auth
    tenants: TenantService
    keys: KeyService
    digests?: DigestMigration | undefined
    /** The days of events each of the bank's window tags reads back (tags/tag.reach.ts), to warn when a retention is shorter. */
    tagWindows?: ((tenantId: number) => Promise<{ tag: string; days: number }[]>) | undefined
  },
) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, tenants, keys } = deps

  r.get(
    '/v1/tenant',
    {
      onRequest: auth.require('catalog:read'),
      schema: { tags: ['tenants'], summary: 'The tenant of the presented key, with its retention and privacy settings', security, response: { 200: tenantView.extend({ privacy: privacyView }), 401: errorBody } },
    },
    async (req) => ({ ...(await tenants.get(req.principal!.tenantId)), privacy: await tenants.privacy(req.principal!.tenantId) }),
  )
  r.put(
    '/v1/tenant/privacy',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'tenant.retention.save', objectKind: 'tenant' } },
      schema: {
        tags: ['tenants'],
        summary: 'Change how long raw events, exposures, push outcomes and tag history are kept, the legal minimum, and the policy for personal data found in event values',
        security,
        body: privacyInput,
        response: {
          200: privacyView.extend({
            warnings: z.array(retentionWarning).optional().describe("present when the bank's tags read events further back than the new events retention keeps"),
          }),
          400: errorBody,
        },
      },
    },
    async (req) => {
      const saved = await tenants.savePrivacy(req.principal!.tenantId, req.body, req.principal!.holder)
      req.auditNote = { objectId: String(req.principal!.tenantId), detail: { ...req.body } }
      const warnings = deps.tagWindows ? retentionWarnings(await deps.tagWindows(req.principal!.tenantId), saved.eventsDays) : []
      return warnings.length ? { ...saved, warnings } : saved
    },
  )
  const digests = deps.digests
  if (digests) {
    r.get(
      '/v1/tenant/digests',
      {
        onRequest: auth.require('tenant:admin'),
        schema: { tags: ['tenants'], summary: "How many stored digests are still under the shared key (before per-bank keys), how many under this bank's own, and how many are neither", security, response: { 200: digestStatusView } },
      },
      async (req) => digests.status(req.principal!.tenantId),
    )
    r.post(
      '/v1/tenant/digests/rekey',
      {
        onRequest: auth.require('tenant:admin'),
        config: { audit: { action: 'tenant.digests.rekey', objectKind: 'tenant' } },
        schema: {
          tags: ['tenants'],
          summary:
            "Convert the digests still under the shared key (before per-bank keys) to this bank's own, page by page; a run that stops is completed by the next, and one with nothing left changes nothing. Answers the counts before and after",
          security,
          response: { 200: rekeyReportView },
        },
      },
      async (req) => {
        const report = await digests.rekey(req.principal!.tenantId)
        req.auditNote = { objectId: String(req.principal!.tenantId), detail: { converted: report.converted, left: report.after.sharedKey } }
        return report
      },
    )
  }
  r.get(
    '/v1/keys',
    {
      onRequest: auth.require('tenant:admin'),
      schema: { tags: ['tenants'], summary: "List this tenant's API keys (never the secrets)", security, response: { 200: z.object({ keys: z.array(keyView) }) } },
    },
    async (req) => ({ keys: await keys.list(req.principal!.tenantId) }),
  )
  r.post(
    '/v1/keys',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'key.issue', objectKind: 'key' } },
      schema: {
        tags: ['tenants'],
        summary: 'Issue an API key for this tenant; the key is in this answer only',
        security,
        body: issueKeyBody,
        response: { 201: issuedKey, 400: errorBody, 403: errorBody },
      },
    },
    async (req, reply) => {
      const { key, view } = await keys.issue(req.principal!.tenantId, { ...issueInput(req.body), notAfter: req.principal!.expiresAt })
      req.auditNote = { objectId: view.keyId, detail: { roles: view.roles, holder: view.holder } }
      return reply.code(201).send({ key, info: view })
    },
  )
  r.post(
    '/v1/keys/:keyId/rotate',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'key.rotate', objectKind: 'key', objectParam: 'keyId' } },
      schema: {
        tags: ['tenants'],
        summary: 'Issue a successor of a key (same roles and holder); the old key keeps working for the grace period',
        security,
        params: keyIdParam,
        // No body: the default grace of a day.
        body: z.strictObject({ graceSeconds: z.number().int().min(0).max(30 * 86400).default(86400) }).nullish(),
        response: { 201: issuedKey.extend({ previous: keyView }), 403: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (req, reply) => {
      const { key, view, previous } = await keys.rotate(req.principal!.tenantId, req.params.keyId, req.body?.graceSeconds ?? 86400, req.principal!.expiresAt)
      // The successor is a new key: the trail names it, as it names a key issued.
      req.auditNote = { detail: { successor: view.keyId, roles: view.roles, holder: view.holder, previousExpiresAt: previous.expiresAt } }
      return reply.code(201).send({ key, info: view, previous })
    },
  )
  r.delete(
    '/v1/keys/:keyId',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'key.revoke', objectKind: 'key', objectParam: 'keyId' } },
      schema: {
        tags: ['tenants'],
        summary: 'Revoke an API key of this tenant',
        security,
        params: keyIdParam,
        response: { 200: keyView, 404: errorBody },
      },
    },
    async (req) => keys.revoke(req.principal!.tenantId, req.params.keyId),
  )

  // Operator routes.
  r.get(
    '/v1/operator/tenants',
    {
      onRequest: auth.operator(),
      schema: { tags: ['operator'], summary: 'List tenants', security, response: { 200: z.object({ tenants: z.array(tenantView) }) } },
    },
    // Read afresh: with several API processes, another one may have changed the registry since
    // this one last read it (the cache serves authentication, where a few seconds are fine).
    async () => {
      await tenants.reload()
      return { tenants: await tenants.list() }
    },
  )
  r.post(
    '/v1/operator/tenants',
    {
      onRequest: auth.operator(),
      config: { audit: { action: 'tenant.create', objectKind: 'tenant' } },
      schema: { tags: ['operator'], summary: 'Create a tenant (a member bank or a group)', security, body: createTenantInput, response: { 201: tenantView, 400: errorBody, 409: errorBody } },
    },
    async (req, reply) => {
      const created = await tenants.create(req.body)
      req.auditNote = { objectId: created.slug, detail: { id: created.id, kind: created.kind, parentId: created.parentId } }
      return reply.code(201).send(created)
    },
  )
  for (const [action, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
    r.post(
      `/v1/operator/tenants/:tenant/${action}`,
      {
        onRequest: auth.operator(),
        config: { audit: { action: `tenant.${action}`, objectKind: 'tenant', objectParam: 'tenant' } },
        schema: { tags: ['operator'], summary: `${action === 'disable' ? 'Disable' : 'Enable'} a tenant`, security, params: tenantRef, response: { 200: tenantView, 404: errorBody } },
      },
      async (req) => tenants.setStatus(req.params.tenant, status),
    )
  }
  r.post(
    '/v1/operator/tenants/:tenant/keys',
    {
      onRequest: auth.operator(),
      config: { audit: { action: 'key.issue', objectKind: 'tenant', objectParam: 'tenant' } },
      schema: {
        tags: ['operator'],
        summary: 'Issue an API key for a tenant',
        security,
        params: tenantRef,
        body: issueKeyBody,
        response: { 201: issuedKey, 404: errorBody },
      },
    },
    async (req, reply) => {
      const t = await tenants.get(req.params.tenant)
      const { key, view } = await keys.issue(t.id, issueInput(req.body))
      req.auditNote = { detail: { keyId: view.keyId, roles: view.roles, holder: view.holder } }
      return reply.code(201).send({ key, info: view })
    },
  )
  r.get(
    '/v1/operator/tenants/:tenant/keys',
    {
      onRequest: auth.operator(),
      schema: { tags: ['operator'], summary: "List a tenant's API keys", security, params: tenantRef, response: { 200: z.object({ keys: z.array(keyView) }), 404: errorBody } },
    },
    async (req) => ({ keys: await keys.list((await tenants.get(req.params.tenant)).id) }),
  )
  r.delete(
    '/v1/operator/tenants/:tenant/keys/:keyId',
    {
      onRequest: auth.operator(),
      config: { audit: { action: 'key.revoke', objectKind: 'key', objectParam: 'keyId' } },
      schema: {
        tags: ['operator'],
        summary: "Revoke a tenant's API key",
        security,
        params: tenantRef.extend({ keyId: z.string().regex(/^[0-9a-f]{16}$/) }),
        response: { 200: keyView, 404: errorBody },
      },
    },
    async (req) => keys.revoke((await tenants.get(req.params.tenant)).id, req.params.keyId),
  )
}
