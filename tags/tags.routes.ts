import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody } from '../core/errors.js'
import { seesSensitiveTags, type Auth } from '../tenants/auth.js'
import { retentionWarning, retentionWarnings, type RetentionWarning } from '../tenants/privacy.schema.js'
import { visibleTo, type TagCatalog } from './tag.catalog.js'
import { FEATURES } from './tag.features.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from './tag.pack.js'
import { parseDefinition, type TagRepository } from './tag.repository.js'
import { windowReach } from './tag.reach.js'
import { PURPOSES, TAG_NAME, type TagDefinition } from './tag.schema.js'

/**
 * The tag catalogue and its management. Definitions arrive as JSON and are validated by the
 * same schema as files (the route schema only says "an object", so every problem is reported
 * with its field by the definition schema rather than a generic body error).
 */

const security = [{ apiKey: [] }]
const nameParam = z.object({ name: z.string().regex(TAG_NAME, 'a tag name') })
const definition = z.record(z.string(), z.unknown()).describe('a tag definition (see the tag schema in the README)')
const definitionView = z.object({
  name: z.string(),
  type: z.string(),
  values: z.array(z.string()).optional(),
  description: z.object({ zh: z.string(), en: z.string() }),
  owner: z.string(),
  purpose: z.array(z.string()),
  sensitivity: z.string(),
  schedule: z.string(),
  rule: z.record(z.string(), z.unknown()),
  version: z.number(),
  createdBy: z.string(),
  createdAt: z.string(),
})
const stateView = z
  .object({ version: z.number(), build: z.string(), covered: z.number(), changed: z.number(), runId: z.string(), computedAt: z.string(), asOf: z.string() })
  .nullable()
const catalogView = definitionView.extend({ state: stateView, coverage: z.number().nullable().describe('share of customers with a value') })
const detailView = catalogView.extend({
  distribution: z.array(z.object({ value: z.string(), lo: z.number().optional(), hi: z.number().optional(), customers: z.number() })),
})

const warnings = z.array(retentionWarning).optional().describe('present when a saved window reads further back than the bank keeps raw events')

export function registerTagRoutes(
  app: FastifyInstance,
  deps: { auth: Auth; repo: TagRepository; catalog: TagCatalog; privacy: (tenantId: number) => Promise<{ eventsDays: number }> },
) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, repo, catalog } = deps
  /** `{ warnings }` for the saved definitions whose windows reach past the bank's events retention, or nothing. */
  const warned = async (tenantId: number, defs: readonly TagDefinition[]): Promise<{ warnings?: RetentionWarning[] }> => {
    const reach = windowReach(defs)
    if (!reach.length) return {}
    const found = retentionWarnings(reach, (await deps.privacy(tenantId)).eventsDays)
    return found.length ? { warnings: found } : {}
  }
  // Versions name the key's holder (a person or a system); the audit trail adds the key id.
  const actor = (req: { principal?: { holder: string } | undefined }) => req.principal?.holder ?? 'unknown'

  r.get(
    '/v1/tags',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['tags'],
        summary: 'Tag catalogue: definitions, coverage and last run',
        security,
        querystring: z.object({ q: z.string().max(100).optional(), purpose: z.enum(PURPOSES).optional() }),
        response: { 200: z.object({ tags: z.array(catalogView) }) },
      },
    },
    async (req) => ({ tags: await catalog.list(req.principal!.tenantId, seesSensitiveTags(req.principal!), req.query) }),
  )

  r.get(
    '/v1/tags/features',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['tags'],
        summary: 'Profile features rule tags may read',
        security,
        response: { 200: z.object({ features: z.array(z.object({ name: z.string(), type: z.string(), source: z.string(), description: z.string() })) }) },
      },
    },
    async () => ({
      features: Object.entries(FEATURES).map(([name, f]) => ({ name, type: f.type, source: f.source, description: f.description })),
    }),
  )

  r.get(
    '/v1/tags/:name',
    {
      onRequest: auth.require('catalog:read'),
      schema: { tags: ['tags'], summary: 'One tag: definition, coverage, distribution, last run', security, params: nameParam, response: { 200: detailView, 404: errorBody } },
    },
    async (req) => catalog.get(req.principal!.tenantId, req.params.name, seesSensitiveTags(req.principal!)),
  )

  r.get(
    '/v1/tags/:name/versions',
    {
      onRequest: auth.require('catalog:read'),
      schema: { tags: ['tags'], summary: 'Every version of a tag definition, oldest first', security, params: nameParam, response: { 200: z.object({ versions: z.array(definitionView.extend({ retired: z.boolean() })) }), 404: errorBody } },
    },
    async (req) => {
      // As the tag itself: a high-sensitivity tag (its SQL, its values) is not shown without
      // personal:read, nor the versions of a lowered tag from when it was high.
      const all = await repo.versions(req.principal!.tenantId, req.params.name)
      const versions = all.filter((v) => visibleTo(seesSensitiveTags(req.principal!), v.sensitivity))
      if (!versions.length || versions.at(-1) !== all.at(-1)) throw new AppError('NOT_FOUND', `No tag named ${req.params.name}.`)
      return { versions }
    },
  )

  r.put(
    '/v1/tags/:name',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'tag.save', objectKind: 'tag', objectParam: 'name' } },
      schema: {
        tags: ['tags'],
        summary: 'Create or change a tag (a change makes the next version; an unchanged definition is a no-op)',
        security,
        params: nameParam,
        querystring: z.object({ expectedVersion: z.coerce.number().int().min(0).optional().describe('refuse with 409 unless the tag is at this version (0: new)') }),
        body: definition,
        response: {
          200: z.object({ tag: definitionView, changed: z.boolean(), warnings }),
          201: z.object({ tag: definitionView, changed: z.boolean(), warnings }),
          400: errorBody,
          409: errorBody,
        },
      },
    },
    async (req, reply) => {
      const body = { ...req.body }
      if (body.name !== undefined && body.name !== req.params.name) {
        throw new AppError('VALIDATION_FAILED', 'The name in the body differs from the path.', { issues: [{ field: 'name', message: `expected ${req.params.name}` }] })
      }
      body.name = req.params.name
      const opts = req.query.expectedVersion !== undefined ? { expectedVersion: req.query.expectedVersion } : {}
      const out = await repo.save(req.principal!.tenantId, body, actor(req), opts)
      return reply.code(out.changed && out.tag.version === 1 ? 201 : 200).send({ ...out, ...(await warned(req.principal!.tenantId, [out.tag])) })
    },
  )

  r.delete(
    '/v1/tags/:name',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'tag.retire', objectKind: 'tag', objectParam: 'name' } },
      schema: { tags: ['tags'], summary: 'Retire a tag (refused while other tags, segments, campaigns or the catalogue use it)', security, params: nameParam, response: { 204: z.null(), 404: errorBody, 409: errorBody } },
    },
    async (req, reply) => {
      await repo.retire(req.principal!.tenantId, req.params.name, actor(req))
      return reply.code(204).send(null)
    },
  )

  r.post(
    '/v1/tags/apply',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'tag.apply', objectKind: 'tag' } },
      schema: {
        tags: ['tags'],
        summary: 'Apply many definitions at once (all validated before any is saved), or the shipped banking pack',
        security,
        body: z.object({ definitions: z.array(definition).max(500).optional(), pack: z.enum(['banking']).optional() }),
        response: { 200: z.object({ applied: z.array(z.object({ name: z.string(), version: z.number(), changed: z.boolean() })), warnings }), 400: errorBody },
      },
    },
    async (req) => {
      const defs = req.body.pack ? readDefinitionFiles(BANKING_PACK) : (req.body.definitions ?? []).map((d, i) => parseDefinition(d, `definitions.${i}.`))
      if (!defs.length) throw new AppError('VALIDATION_FAILED', 'Give `definitions` or `pack`.', { issues: [{ field: 'definitions', message: 'empty' }] })
      return { applied: await applyDefinitions(repo, req.principal!.tenantId, defs, actor(req)), ...(await warned(req.principal!.tenantId, defs)) }
    },
  )
}
