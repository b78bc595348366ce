import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody } from '../core/errors.js'
import type { Auth } from '../tenants/auth.js'
import type { ErasureJob } from './erasure.job.js'
import type { ErasureService } from './erasure.service.js'
import type { Tombstones } from './tombstones.js'

/**
 * Erasure over HTTP (admin): start a job for one customer (a reason is required), follow it and
 * read its proof; re-register an erased number so its events are accepted again. Every route is
 * audited as personal data.
 */

const security = [{ apiKey: [] }]
const idParam = z.object({ id: z.string().trim().min(1).max(64).describe('the customer number') })
const reasonBody = z.object({ reason: z.unknown().optional() }).loose().optional()

const stepView = z.object({ table: z.string(), label: z.string(), before: z.number().nullable(), after: z.number().nullable(), done: z.boolean() })
const jobView = z.object({
  id: z.string(),
  status: z.enum(['running', 'done', 'failed']),
  customers: z.number(),
  reason: z.string(),
  requestedBy: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  progress: z.object({ done: z.number(), total: z.number() }),
  steps: z.array(stepView),
  proof: z
    .object({
      checkedAt: z.string(),
      verified: z.boolean().describe('every place re-read after the job and none holds the customer'),
      places: z.array(z.object({ table: z.string(), label: z.string(), before: z.number(), after: z.number(), remaining: z.number() })),
      notHeld: z.array(z.object({ table: z.string(), why: z.string() })),
      outside: z.array(z.object({ place: z.string(), note: z.string() })),
    })
    .nullable(),
  error: z.string(),
})

const iso = (s: string) => `${s.replace(' ', 'T')}Z`

export function jobOut(j: ErasureJob): z.infer<typeof jobView> {
  return {
    id: j.jobId,
    status: j.status,
    customers: j.customers,
    reason: j.reason,
    requestedBy: j.requestedBy,
    createdAt: iso(j.createdAt),
    updatedAt: iso(j.updatedAt),
    progress: { done: j.steps.filter((s) => s.done).length, total: j.steps.length },
    steps: j.steps,
    proof: j.proof,
    error: j.error,
  }
}

export function registerErasureRoutes(app: FastifyInstance, deps: { auth: Auth; erasure: ErasureService; tombstones: Tombstones }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, erasure, tombstones } = deps

  r.post(
    '/v1/customers/:id/erasure',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'customer.erase', objectKind: 'customer', objectParam: 'id', personal: true } },
      schema: {
        tags: ['privacy'],
        summary: 'Erase a customer everywhere (PIPL art. 47): starts a job and answers its id (202); 409 while one runs',
        security,
        params: idParam,
        body: reasonBody,
        response: { 202: jobView, 400: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (req, reply) => {
      const p = req.principal!
      // The trail keeps this entry, but never the erased number in clear: its digest from the start.
      const erased = `erased:${tombstones.digest(p.tenantId, 'customer_no', req.params.id)}`
      req.auditNote = { objectId: erased, customerNo: erased, customers: 1 }
      const job = await erasure.start(p.tenantId, { customers: [req.params.id], reason: req.body?.reason }, { keyId: p.keyId, holder: p.holder })
      req.auditNote.detail = { job: job.jobId, reason: job.reason }
      return reply.code(202).send(jobOut(job))
    },
  )

  r.get(
    '/v1/erasures/:id',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'erasure.read', objectKind: 'erasure', objectParam: 'id' } },
      schema: {
        tags: ['privacy'],
        summary: 'An erasure job: its progress and, when done, the proof (rows before and after in every place, and the final re-read)',
        security,
        params: z.object({ id: z.string().max(64).describe('the job id') }),
        response: { 200: jobView, 400: errorBody, 404: errorBody },
      },
    },
    async (req) => jobOut(await erasure.get(req.principal!.tenantId, req.params.id)),
  )

  r.post(
    '/v1/customers/:id/reregistration',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'customer.reregister', objectKind: 'customer', objectParam: 'id', personal: true } },
      schema: {
        tags: ['privacy'],
        summary: 'Re-register an erased customer number: its events are accepted again (404 when it is not erased)',
        security,
        params: idParam,
        body: reasonBody,
        response: { 200: z.object({ customerId: z.string(), reregistered: z.literal(true) }), 400: errorBody, 404: errorBody },
      },
    },
    async (req) => {
      const p = req.principal!
      const reason = z.string().trim().min(1).max(1000).safeParse(req.body?.reason)
      if (!reason.success) throw new AppError('VALIDATION_FAILED', 'reason: a re-registration needs a reason.', { issues: [{ field: 'reason', message: 'a reason is required' }] })
      if (!(await tombstones.reregister(p.tenantId, req.params.id, p.holder))) throw new AppError('NOT_FOUND', `Customer ${req.params.id} is not erased.`)
      req.auditNote = { customerNo: req.params.id, customers: 1, detail: { reason: reason.data } }
      return { customerId: req.params.id, reregistered: true as const }
    },
  )
}
