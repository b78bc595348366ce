import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../core/errors.js'
import type { Auth } from './auth.js'
import { SCOPES, keyView, type KeyService } from './keys.service.js'
import { createTenantInput, tenantSlug, tenantView, type TenantService } from './tenants.service.js'

const security = [{ apiKey: [] }]
const issuedKey = z.object({ key: z.string().describe('shown once; store it now'), info: keyView })
const tenantRef = z.object({ tenant: z.union([tenantSlug, z.string().regex(/^\d+$/)]) })

/**
 * Tenant self-service (an admin key manages its own tenant's keys) and operator routes (the
 * platform team creates and disables member banks with the operator token).
 */
export function registerTenantRoutes(app: FastifyInstance, deps: { auth: Auth; tenants: TenantService; keys: KeyService }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, tenants, keys } = deps

  r.get(
    '/v1/tenant',
    {
      preHandler: auth.require('read'),
      schema: { tags: ['tenants'], summary: 'The tenant of the presented key', security, response: { 200: tenantView, 401: errorBody } },
    },
    async (req) => tenants.get(req.principal!.tenantId),
  )
  r.get(
    '/v1/keys',
    {
      preHandler: auth.require('admin'),
      schema: { tags: ['tenants'], summary: "List this tenant's API keys (never the secrets)", security, response: { 200: z.object({ keys: z.array(keyView) }) } },
    },
    async (req) => ({ keys: await keys.list(req.principal!.tenantId) }),
  )
  r.post(
    '/v1/keys',
    {
      preHandler: auth.require('admin'),
      schema: {
        tags: ['tenants'],
        summary: 'Issue an API key for this tenant; the key is in this answer only',
        security,
        body: z.object({ scope: z.enum(SCOPES), label: z.string().max(200).default('') }),
        response: { 201: issuedKey, 400: errorBody },
      },
    },
    async (req, reply) => {
      const { key, view } = await keys.issue(req.principal!.tenantId, req.body.scope, req.body.label)
      return reply.code(201).send({ key, info: view })
    },
  )
  r.delete(
    '/v1/keys/:keyId',
    {
      preHandler: auth.require('admin'),
      schema: {
        tags: ['tenants'],
        summary: 'Revoke an API key of this tenant',
        security,
        params: z.object({ keyId: z.string().regex(/^[0-9a-f]{16}$/) }),
        response: { 200: keyView, 404: errorBody },
      },
    },
    async (req) => keys.revoke(req.principal!.tenantId, req.params.keyId),
  )

  // Operator routes.
  r.get(
    '/v1/operator/tenants',
    {
      preHandler: auth.operator(),
      schema: { tags: ['operator'], summary: 'List tenants', security, response: { 200: z.object({ tenants: z.array(tenantView) }) } },
    },
    async () => ({ tenants: await tenants.list() }),
  )
  r.post(
    '/v1/operator/tenants',
    {
      preHandler: auth.operator(),
      schema: { tags: ['operator'], summary: 'Create a tenant (a member bank or a group)', security, body: createTenantInput, response: { 201: tenantView, 400: errorBody, 409: errorBody } },
    },
    async (req, reply) => reply.code(201).send(await tenants.create(req.body)),
  )
  for (const [action, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
    r.post(
      `/v1/operator/tenants/:tenant/${action}`,
      {
        preHandler: auth.operator(),
        schema: { tags: ['operator'], summary: `${action === 'disable' ? 'Disable' : 'Enable'} a tenant`, security, params: tenantRef, response: { 200: tenantView, 404: errorBody } },
      },
      async (req) => tenants.setStatus(req.params.tenant, status),
    )
  }
  r.post(
    '/v1/operator/tenants/:tenant/keys',
    {
      preHandler: auth.operator(),
      schema: {
        tags: ['operator'],
        summary: 'Issue an API key for a tenant',
        security,
        params: tenantRef,
        body: z.object({ scope: z.enum(SCOPES), label: z.string().max(200).default('') }),
        response: { 201: issuedKey, 404: errorBody },
      },
    },
    async (req, reply) => {
      const t = await tenants.get(req.params.tenant)
      const { key, view } = await keys.issue(t.id, req.body.scope, req.body.label)
      return reply.code(201).send({ key, info: view })
    },
  )
  r.get(
    '/v1/operator/tenants/:tenant/keys',
    {
      preHandler: auth.operator(),
      schema: { tags: ['operator'], summary: "List a tenant's API keys", security, params: tenantRef, response: { 200: z.object({ keys: z.array(keyView) }), 404: errorBody } },
    },
    async (req) => ({ keys: await keys.list((await tenants.get(req.params.tenant)).id) }),
  )
  r.delete(
    '/v1/operator/tenants/:tenant/keys/:keyId',
    {
      preHandler: auth.operator(),
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
