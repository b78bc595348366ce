import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../core/errors.js'
import type { Metrics } from '../core/metrics.js'

export type Phase = 'starting' | 'migrating' | 'seeding' | 'ready' | 'failed' | 'stopping'

/** What /ready reports; the composition root moves it along as start-up proceeds. */
export interface Readiness {
  phase: Phase
  detail?: string
}

const healthBody = z.object({ status: z.literal('ok'), uptimeSeconds: z.number() })
const readyBody = z.object({ status: z.literal('ready') })

/** `exposition`: the text `/metrics` serves; this process's registry without it (server/cluster.metrics.ts sums several). */
export function registerHealthRoutes(app: FastifyInstance, deps: { readiness: Readiness; metrics: Metrics; exposition?: (() => Promise<string>) | undefined }) {
  const r = app.withTypeProvider<ZodTypeProvider>()
  r.get(
    '/health',
    { schema: { tags: ['operations'], summary: 'Liveness: the process answers', response: { 200: healthBody } } },
    async () => ({ status: 'ok' as const, uptimeSeconds: Math.round(process.uptime()) }),
  )
  r.get(
    '/ready',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: migrations applied and start-up seeding finished',
        response: { 200: readyBody },
      },
    },
    async () => {
      const { phase, detail } = deps.readiness
      if (phase === 'ready') return { status: 'ready' as const }
      if (phase === 'stopping') throw new AppError('SHUTTING_DOWN')
      throw new AppError('NOT_READY', `Not ready: ${phase}${detail ? ` (${detail})` : ''}.`, {
        headers: { 'retry-after': '1' },
      })
    },
  )
  r.get(
    '/metrics',
    { schema: { tags: ['operations'], summary: 'Prometheus metrics (text exposition format)' } },
    async (_req, reply) => {
      const text = await (deps.exposition ? deps.exposition() : deps.metrics.registry.metrics())
      return reply.type(deps.metrics.registry.contentType).send(text)
    },
  )
  r.get(
    '/docs',
    { schema: { tags: ['operations'], summary: 'This OpenAPI document, generated from the route schemas' } },
    async () => app.swagger(),
  )
}
