import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { errorBody } from '../core/errors.js'
import { daySchema, instantSchema } from '../core/time.js'
import { customerNumbers, requireCustomerKey } from '../tags/customers.lookup.js'
import { AT_DESCRIPTION, atInstant } from '../tags/customers.routes.js'
import type { Auth } from '../tenants/auth.js'
import { membershipAt, segmentHistory } from './segment.materialize.js'
import { customerSegments, exportSegment, MAX_PAGE, members, segmentRuns } from './segment.members.js'
import { SEGMENT_ID, type SegmentRepository } from './segment.repository.js'

/**
 * Materialized segments: members page by page, exports, size per run, which segments hold a
 * customer, and why a customer was in a segment at a time (enter/exit events with the version).
 * Members are shown by the bank's customer number.
 */

const security = [{ apiKey: [] }]
const idParam = z.object({ id: z.string().regex(SEGMENT_ID, 'a segment id') })
const CONTENT_TYPES = { csv: 'text/csv; charset=utf-8', parquet: 'application/vnd.apache.parquet', arrow: 'application/vnd.apache.arrow.stream' } as const
const at = instantSchema.or(daySchema).describe(AT_DESCRIPTION)

export function registerMembershipRoutes(app: FastifyInstance, deps: { auth: Auth; db: Db; segments: SegmentRepository; timeZone: (tenantId: number) => Promise<string> }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, db, segments } = deps

  const numbers = (tenantId: number, keys: readonly number[]) => customerNumbers(db, tenantId, keys)
  const keyOf = (tenantId: number, customerNo: string) => requireCustomerKey(db, tenantId, customerNo)

  r.get(
    '/v1/segments/:id/members',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'segment.members.read', objectKind: 'segment', objectParam: 'id', personal: true } },
      schema: {
        tags: ['segments'],
        summary: 'Members of the last materialization, a page at a time',
        security,
        params: idParam,
        querystring: z.object({ cursor: z.string().regex(/^\d+$/).optional().describe('nextCursor of the previous page'), limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(100) }),
        response: { 200: z.object({ members: z.array(z.string()), nextCursor: z.string().nullable(), size: z.number(), build: z.string() }), 404: errorBody },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      await segments.get(t, req.params.id)
      const page = await members(db.forTenant(t), req.params.id, { ...(req.query.cursor ? { cursor: Number(req.query.cursor) } : {}), limit: req.query.limit })
      req.auditNote = { customers: page.keys.length, detail: { build: page.build } }
      return { members: await numbers(t, page.keys), nextCursor: page.nextCursor === null ? null : String(page.nextCursor), size: page.size, build: page.build }
    },
  )

  r.get(
    '/v1/segments/:id/export',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'segment.export', objectKind: 'segment', objectParam: 'id', personal: true } },
      schema: {
        tags: ['segments'],
        summary: 'The members (customer key and number) as CSV, Parquet or Arrow',
        security,
        params: idParam,
        querystring: z.object({ format: z.enum(['csv', 'parquet', 'arrow']).default('csv') }),
      },
    },
    async (req, reply) => {
      const t = req.principal!.tenantId
      await segments.get(t, req.params.id)
      // The export holds every member of the last materialization: that count is the entry's.
      const { size, build } = await members(db.forTenant(t), req.params.id, { limit: 1 })
      req.auditNote = { customers: size, detail: { format: req.query.format, build } }
      // A whole segment's members is a bulk read: the pipeline lane, so previews are not queued behind it.
      const stream = await exportSegment(db.lane('pipeline').forTenant(t), req.params.id, req.query.format)
      const ext = req.query.format === 'arrow' ? 'arrows' : req.query.format
      return reply
        .header('content-type', CONTENT_TYPES[req.query.format])
        .header('content-disposition', `attachment; filename="${req.params.id}.${ext}"`)
        .send(stream)
    },
  )

  r.get(
    '/v1/segments/:id/runs',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['segments'],
        summary: 'Size per materialization, newest first (for charts)',
        security,
        params: idParam,
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: {
          200: z.object({ runs: z.array(z.object({ build: z.string(), version: z.number(), size: z.number(), entered: z.number(), exited: z.number(), finishedAt: z.string(), trigger: z.string() })) }),
        },
      },
    },
    async (req) => ({ runs: await segmentRuns(db.forTenant(req.principal!.tenantId), req.params.id, req.query.limit) }),
  )

  r.get(
    '/v1/segments/:id/members/:customerId',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'segment.membership.read', objectKind: 'segment', objectParam: 'id', customerParam: 'customerId', personal: true } },
      schema: {
        tags: ['segments'],
        summary: 'Was the customer in the segment (now, or at a time), since when and by which version; every entry and exit',
        security,
        params: idParam.extend({ customerId: z.string().min(1).max(128) }),
        querystring: z.object({ at: at.optional() }),
        response: {
          200: z.object({
            member: z.boolean(),
            since: z.string().nullable(),
            version: z.number().nullable(),
            history: z.array(z.object({ at: z.string(), kind: z.string(), version: z.number(), build: z.string() })),
          }),
          404: errorBody,
        },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      await segments.get(t, req.params.id)
      const key = await keyOf(t, req.params.customerId)
      const when = req.query.at ? atInstant(req.query.at, await deps.timeZone(t)) : new Date()
      const m = await membershipAt(db.forTenant(t), req.params.id, key, when)
      const history = await segmentHistory(db.forTenant(t), req.params.id, key)
      return { member: m.member, since: m.since ?? null, version: m.version ?? null, history }
    },
  )

  r.get(
    '/v1/customers/:id/segments',
    {
      onRequest: auth.require('personal:read'),
      config: { audit: { action: 'customer.segments.read', objectKind: 'customer', customerParam: 'id', personal: true } },
      schema: {
        tags: ['customers'],
        summary: "The saved segments a customer is in (their last materialization)",
        security,
        params: z.object({ id: z.string().min(1).max(128) }),
        response: { 200: z.object({ segments: z.array(z.object({ id: z.string(), name: z.string(), purpose: z.string() })) }), 404: errorBody },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const key = await keyOf(t, req.params.id)
      const ids = new Set(await customerSegments(db.forTenant(t), key))
      const saved = (await segments.list(t)).filter((s) => ids.has(s.id))
      return { segments: saved.map((s) => ({ id: s.id, name: s.name, purpose: s.purpose })) }
    },
  )
}
