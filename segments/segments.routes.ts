import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { AuditNote } from '../core/audit.js'
import type { Db } from '../core/db.js'
import { errorBody } from '../core/errors.js'
import type { TagRepository } from '../tags/tag.repository.js'
import { customerNumbers } from '../tags/customers.lookup.js'
import { visibleTo } from '../tags/tag.catalog.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import { seesSensitiveTags, type Auth } from '../tenants/auth.js'
import type { BitmapStore } from './bitmap.store.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { compileSegment, explain } from './segment.compile.js'
import { preview } from './segment.preview.js'
import { SEGMENT_ID, type SegmentRepository } from './segment.repository.js'
import { parseSegment } from './segment.schema.js'

/**
 * Segments over HTTP: preview and explain a rule as a marketer edits it, and save it as a
 * versioned, audited segment. Rules arrive as JSON and are validated by the segment language
 * (node paths in errors), then against the tenant's tags (types, purposes).
 */

const security = [{ apiKey: [] }]
const idParam = z.object({ id: z.string().regex(SEGMENT_ID, 'a segment id: lower case letters, digits, _ and -') })
const ruleBody = z.object({
  purpose: z.string().describe('marketing, service, risk or security: tags whose purpose excludes it are refused'),
  rule: z.unknown().describe('the segment tree: all / any / not over tag, event and sequence conditions and {segment: id} references'),
})
const previewBody = ruleBody.extend({
  breakdown: z.array(z.string().max(63)).max(10).default([]).describe('tags to break the members down by'),
  sampleSize: z.number().int().min(0).max(1000).default(20),
})
interface PlanNodeView {
  path: string
  node: string
  strategy: string
  detail: string
  children?: PlanNodeView[]
}
// Recursive, so named in the schema registry: the API document then holds it once under
// components.schemas and every level refers to it there (an unnamed cycle pointed nowhere).
const planNode: z.ZodType<PlanNodeView> = z
  .object({
    path: z.string(),
    node: z.string(),
    strategy: z.string(),
    detail: z.string(),
    get children() {
      return z.array(planNode).optional()
    },
  })
  .meta({ id: 'SegmentPlanNode', description: 'one node of the rule tree and how it is evaluated' })
const plan = z.object({ root: planNode, eventScans: z.number(), bitmapLeaves: z.number(), eventLeaves: z.number() })
const previewView = z.object({
  count: z.number(),
  total: z.number(),
  share: z.number(),
  breakdown: z.record(z.string(), z.array(z.object({ value: z.string(), customers: z.number() }))),
  sample: z.array(z.string()).describe('customer numbers of a few members'),
  plan,
  executor: z.enum(['memory', 'clickhouse']).describe('memory: tag bitmaps held by the server; clickhouse: a query in the engine'),
  ms: z.number(),
})
const savedView = z.object({
  id: z.string(),
  version: z.number(),
  name: z.string(),
  description: z.string(),
  purpose: z.string(),
  rule: z.unknown(),
  schedule: z.string(),
  retired: z.boolean(),
  archived: z.boolean(),
  createdBy: z.string(),
  createdAt: z.string(),
  changeNote: z.string(),
})
const listQuery = z.object({
  archived: z.enum(['exclude', 'include', 'only']).default('exclude').describe('archived segments: left out (default), listed too, or alone'),
  q: z.string().max(200).optional().describe('search: the words found in the id, name or description (any case)'),
})
const archiveBody = z.strictObject({ archived: z.boolean(), changeNote: z.string().max(500).optional() })

/** Every word of `q` in the id, name or description. */
export function matchesQuery(s: { id: string; name: string; description: string }, q: string | undefined): boolean {
  const words = (q ?? '').toLowerCase().split(/\s+/).filter(Boolean)
  const text = `${s.id} ${s.name} ${s.description}`.toLowerCase()
  return words.every((w) => text.includes(w))
}
const saveBody = z.object({
  name: z.string(),
  description: z.string().optional(),
  purpose: z.string(),
  rule: z.unknown(),
  schedule: z.string().optional(),
  changeNote: z.string().optional(),
})

export function registerSegmentRoutes(
  app: FastifyInstance,
  deps: { auth: Auth; db: Db; tenants: TenantService; tags: TagRepository; segments: SegmentRepository; bitmaps?: BitmapStore },
) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, db, tenants, tags, segments } = deps

  /**
   * The tenant's tags a key may use: high-sensitivity ones (risk flags) only with personal:read.
   * No default: every route says which view it has, so none hands out the full one by omission.
   */
  async function context(tenantId: number, withSensitive: boolean) {
    const [tenant, defs] = await Promise.all([tenants.get(tenantId), tags.list(tenantId)])
    const usable = defs.filter((d) => visibleTo(withSensitive, d.sensitivity))
    return { timeZone: tenant.timeZone, defs: new Map<string, TagDefinition>(usable.map((d) => [d.name, d])), asOf: new Date() }
  }

  /** The rule with its `{segment: id}` references expanded, validated. */
  async function resolve(tenantId: number, purpose: string, rule: unknown, self?: { id: string; rule: unknown }) {
    return parseSegment({ purpose, rule: await segments.expanded(tenantId, rule, self) })
  }

  async function runPreview(tenantId: number, withSensitive: boolean, body: z.infer<typeof previewBody>) {
    const segment = await resolve(tenantId, body.purpose, body.rule)
    const ctx = await context(tenantId, withSensitive)
    const t0 = performance.now()
    const p = await preview(db.forTenant(tenantId), segment, { ...ctx, breakdown: body.breakdown, sampleSize: body.sampleSize, ...(deps.bitmaps ? { store: deps.bitmaps } : {}) })
    const ms = Number((performance.now() - t0).toFixed(1))
    return { ...p, sample: await customerNumbers(db, tenantId, p.sample), ms }
  }

  /** Sample members are customer numbers: a key without personal:read (an analyst) gets sizes and breakdowns only. */
  const sampleFor = (p: { permissions: ReadonlySet<string> }, n: number) => (p.permissions.has('personal:read') ? n : 0)

  /** The audit entry counts the customers whose numbers the answer hands out: the sample. */
  function noted<T extends { sample: string[]; count: number }>(req: { auditNote: AuditNote | undefined }, out: T): T {
    req.auditNote = { customers: out.sample.length, detail: { count: out.count } }
    return out
  }

  r.post(
    '/v1/segments/preview',
    {
      onRequest: auth.require('catalog:read'),
      config: { audit: { action: 'segment.preview', objectKind: 'segment', personal: true } },
      schema: {
        tags: ['segments'],
        summary: 'Size, share, breakdown and a sample of a segment rule (not saved)',
        security,
        body: previewBody,
        response: { 200: previewView, 400: errorBody, 503: errorBody },
      },
    },
    async (req) => noted(req, await runPreview(req.principal!.tenantId, seesSensitiveTags(req.principal!), { ...req.body, sampleSize: sampleFor(req.principal!, req.body.sampleSize) })),
  )

  r.post(
    '/v1/segments/explain',
    {
      onRequest: auth.require('catalog:read'),
      config: { audit: { action: 'segment.explain', objectKind: 'segment' } },
      schema: { tags: ['segments'], summary: 'How a rule is evaluated: bitmap algebra or an event scan, per node', security, body: ruleBody, response: { 200: z.object({ plan }), 400: errorBody } },
    },
    async (req) => {
      const segment = await resolve(req.principal!.tenantId, req.body.purpose, req.body.rule)
      return { plan: explain(segment, await context(req.principal!.tenantId, seesSensitiveTags(req.principal!))) }
    },
  )

  r.get(
    '/v1/segments',
    { onRequest: auth.require('catalog:read'), schema: { tags: ['segments'], summary: 'Saved segments (archived ones on request), optionally searched', security, querystring: listQuery, response: { 200: z.object({ segments: z.array(savedView) }), 400: errorBody } } },
    async (req) => ({ segments: (await segments.list(req.principal!.tenantId, { archived: req.query.archived })).filter((s) => matchesQuery(s, req.query.q)) }),
  )

  r.put(
    '/v1/segments/:id/archived',
    {
      onRequest: auth.require('segments:write'),
      config: { audit: { action: 'segment.archive', objectKind: 'segment', objectParam: 'id' } },
      schema: {
        tags: ['segments'],
        summary: 'Archive a segment (out of the default list, used by nothing) or restore it; refused with the users named while a campaign or segment uses it',
        security,
        params: idParam,
        body: archiveBody,
        response: { 200: z.object({ segment: savedView, changed: z.boolean() }), 400: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (req) => {
      const out = await segments.setArchived(req.principal!.tenantId, req.params.id, req.body.archived, req.principal!.holder, req.body.changeNote)
      req.auditNote = { detail: { archived: req.body.archived, changed: out.changed } }
      return out
    },
  )

  r.get(
    '/v1/segments/:id',
    { onRequest: auth.require('catalog:read'), schema: { tags: ['segments'], summary: 'A saved segment', security, params: idParam, response: { 200: savedView, 404: errorBody } } },
    async (req) => segments.get(req.principal!.tenantId, req.params.id),
  )

  r.get(
    '/v1/segments/:id/versions',
    {
      onRequest: auth.require('catalog:read'),
      schema: { tags: ['segments'], summary: 'Every version: who changed what and when', security, params: idParam, response: { 200: z.object({ versions: z.array(savedView) }), 404: errorBody } },
    },
    async (req) => ({ versions: await segments.versions(req.principal!.tenantId, req.params.id) }),
  )

  r.post(
    '/v1/segments/:id/preview',
    {
      onRequest: auth.require('catalog:read'),
      config: { audit: { action: 'segment.preview', objectKind: 'segment', objectParam: 'id', personal: true } },
      schema: {
        tags: ['segments'],
        summary: 'Preview a saved segment now',
        security,
        params: idParam,
        body: z.object({ breakdown: z.array(z.string().max(63)).max(10).default([]), sampleSize: z.number().int().min(0).max(1000).default(20) }).default({ breakdown: [], sampleSize: 20 }),
        response: { 200: previewView, 404: errorBody, 503: errorBody },
      },
    },
    async (req) => {
      const s = await segments.get(req.principal!.tenantId, req.params.id)
      return noted(req, await runPreview(req.principal!.tenantId, seesSensitiveTags(req.principal!), { purpose: s.purpose, rule: s.rule, breakdown: req.body.breakdown, sampleSize: sampleFor(req.principal!, req.body.sampleSize) }))
    },
  )

  r.put(
    '/v1/segments/:id',
    {
      onRequest: auth.require('segments:write'),
      config: { audit: { action: 'segment.save', objectKind: 'segment', objectParam: 'id' } },
      schema: {
        tags: ['segments'],
        summary: 'Create or change a segment (each change is a version, with who and a note)',
        security,
        params: idParam,
        querystring: z.object({ expectedVersion: z.coerce.number().int().min(0).optional() }),
        body: saveBody,
        response: { 200: z.object({ segment: savedView, changed: z.boolean() }), 201: z.object({ segment: savedView, changed: z.boolean() }), 400: errorBody, 409: errorBody },
      },
    },
    async (req, reply) => {
      const t = req.principal!.tenantId
      // The rule must compile against the tags this key may use now: unknown tags, wrong types
      // and purposes are refused at save time, with the node at fault. A high tag the key may not
      // see is unknown to it, refused as the preview refuses it, so the refusal does not tell it exists.
      compileSegment(await resolve(t, req.body.purpose, req.body.rule, { id: req.params.id, rule: req.body.rule }), await context(t, seesSensitiveTags(req.principal!)))
      const opts = req.query.expectedVersion !== undefined ? { expectedVersion: req.query.expectedVersion } : {}
      const out = await segments.save(t, req.params.id, req.body, req.principal!.holder, opts)
      return reply.code(out.changed && out.segment.version === 1 ? 201 : 200).send(out)
    },
  )

  r.delete(
    '/v1/segments/:id',
    {
      onRequest: auth.require('segments:write'),
      config: { audit: { action: 'segment.retire', objectKind: 'segment', objectParam: 'id' } },
      schema: {
        tags: ['segments'],
        summary: 'Retire a segment (its history stays); refused with the users named while a campaign or segment uses it',
        security,
        params: idParam,
        response: { 204: z.null(), 404: errorBody, 409: errorBody },
      },
    },
    async (req, reply) => {
      await segments.retire(req.principal!.tenantId, req.params.id, req.principal!.holder)
      return reply.code(204).send(null)
    },
  )
}
