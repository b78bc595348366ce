import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody } from '../core/errors.js'
import { daySchema } from '../core/time.js'
import type { Auth } from '../tenants/auth.js'
import { PIPELINES, type PipelineRunner } from './pipeline.runner.js'
import { RUN_STATUSES } from './pipeline.runs.js'

/** Run history, status and manual runs (backfills included) of the tenant's pipelines. */

const security = [{ apiKey: [] }]
const day = daySchema

const run = z.object({
  runId: z.string(),
  pipeline: z.string(),
  mode: z.enum(['full', 'incremental', 'backfill']),
  trigger: z.string(),
  status: z.enum(RUN_STATUSES).describe('partial: a tag or segments run that completed all but some tags or segments (details.failures)'),
  attempt: z.number(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  asOf: z.string(),
  watermark: z.string(),
  rows: z.number().describe('values changed'),
  details: z.record(z.string(), z.unknown()),
  error: z.string(),
})

export function registerPipelineRoutes(app: FastifyInstance, deps: { auth: Auth; runner: PipelineRunner }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { auth, runner } = deps

  r.get(
    '/v1/pipelines/runs',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['pipelines'],
        summary: 'Run history, newest first (start, end, rows, status, error)',
        security,
        querystring: z.object({
          pipeline: z.enum(PIPELINES).optional(),
          status: z.enum(RUN_STATUSES).optional(),
          limit: z.coerce.number().int().min(1).max(500).default(50),
          before: z.string().regex(/^\d+$/).optional().describe('cursor: the nextBefore of the previous page'),
        }),
        response: { 200: z.object({ runs: z.array(run), nextBefore: z.string().nullable() }) },
      },
    },
    async (req) => {
      const runs = await runner.runs(req.principal!.tenantId, req.query)
      return { runs, nextBefore: runs.length === req.query.limit ? runs[runs.length - 1]!.runId : null }
    },
  )

  r.get(
    '/v1/pipelines/runs/:runId',
    {
      onRequest: auth.require('catalog:read'),
      schema: { tags: ['pipelines'], summary: 'One run', security, params: z.object({ runId: z.string().regex(/^\d+$/) }), response: { 200: run, 404: errorBody } },
    },
    async (req) => {
      const runs = await runner.runs(req.principal!.tenantId, { limit: 1, before: (BigInt(req.params.runId) + 1n).toString() })
      const found = runs.find((x) => x.runId === req.params.runId)
      if (!found) throw new AppError('NOT_FOUND', `No run ${req.params.runId}.`)
      return found
    },
  )

  r.post(
    '/v1/pipelines/runs',
    {
      onRequest: auth.require('tenant:admin'),
      config: { audit: { action: 'pipeline.run', objectKind: 'pipeline' } },
      schema: {
        tags: ['pipelines'],
        summary: 'Start a run (202 with its id; with wait=true, 200 when it ends); 409 while one is running',
        security,
        body: z.object({
          pipeline: z.enum(PIPELINES).default('tags'),
          tags: z.array(z.string().max(63)).min(1).max(500).optional(),
          mode: z.enum(['full', 'incremental']).default('incremental'),
          recompute: z
            .boolean()
            .default(false)
            .describe('with mode full: recompute every tag for every customer, instead of keeping the tags whose inputs the run finds unchanged'),
          backfill: z.object({ from: day, to: day }).optional().describe('recompute history for these local days'),
          wait: z.boolean().default(false),
        }),
        response: { 200: run, 202: z.object({ runId: z.string() }), 400: errorBody, 409: errorBody },
      },
    },
    async (req, reply) => {
      const b = req.body
      const started = await runner.start({ tenantId: req.principal!.tenantId, pipeline: b.pipeline, tags: b.tags, mode: b.mode, recompute: b.recompute, backfill: b.backfill, trigger: 'api' })
      if (!b.wait) {
        started.done.catch(() => {})
        return reply.code(202).send({ runId: started.runId })
      }
      return reply.code(200).send(await started.done)
    },
  )

  r.get(
    '/v1/pipelines/status',
    {
      onRequest: auth.require('catalog:read'),
      schema: {
        tags: ['pipelines'],
        summary: 'Per pipeline: running now, last run, last success, schedules with their next time',
        security,
        response: {
          200: z.object({
            pipelines: z.array(
              z.object({
                pipeline: z.string(),
                running: z.boolean(),
                lastRun: run.nullable(),
                lastSuccess: run.nullable(),
                schedules: z.array(z.object({ pipeline: z.string(), cron: z.string(), timeZone: z.string(), tags: z.array(z.string()).describe('tag names, or segment ids'), next: z.string().nullable() })),
              }),
            ),
          }),
        },
      },
    },
    async (req) => {
      const t = req.principal!.tenantId
      const running = runner.running(t)
      const pipelines = await Promise.all(
        PIPELINES.map(async (p) => {
          const [lastRun] = await runner.runs(t, { pipeline: p, limit: 1 })
          const [lastSuccess] = await runner.runs(t, { pipeline: p, status: 'succeeded', limit: 1 })
          return { pipeline: p, running: running.includes(p), lastRun: lastRun ?? null, lastSuccess: lastSuccess ?? null, schedules: runner.schedules(t).filter((x) => x.pipeline === p) }
        }),
      )
      return { pipelines }
    },
  )
}
