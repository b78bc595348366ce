import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify'
import fastifySwagger from '@fastify/swagger'
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import type { Logger } from 'pino'
import sjson from 'secure-json-parse'
import type { AuditModule } from '../audit/audit.module.js'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import type { Metrics } from '../core/metrics.js'
import type { Pii } from '../core/pii.js'
import { createAuth, type Auth } from '../tenants/auth.js'
import type { KeyService } from '../tenants/keys.service.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { registerGroupRoutes } from '../tenants/group.routes.js'
import { registerTenantRoutes } from '../tenants/tenants.routes.js'
import { createDigestMigration } from '../tenants/digest.migration.js'
import { registerCatalogueRoutes } from '../catalogue/catalogue.routes.js'
import { registerCorsHooks } from '../tenants/cors.hooks.js'
import { registerCorsRoutes } from '../tenants/cors.routes.js'
import { createCorsOrigins } from '../tenants/cors.service.js'
import { createCatalogueService } from '../catalogue/catalogue.service.js'
import { decodeBody } from './body-encoding.js'
import { registerConsoleRoutes } from './console.routes.js'
import { registerErrorHandling } from './error-handler.js'
import { registerHealthRoutes, type Readiness } from './health.routes.js'
import { lazyRequestLogger } from './request-logger.js'

const utf8 = new TextDecoder('utf-8', { fatal: true })

export interface AppDeps {
  db: Db
  log: Logger
  metrics: Metrics
  /** What `/metrics` serves, when not this process's registry (the API on several processes). */
  metricsExposition?: (() => Promise<string>) | undefined
  tenants: TenantService
  keys: KeyService
  readiness: Readiness
  operatorToken: string | undefined
  version: string
  /** Capability route modules added by later layers (ingest, segments ...), given the shared auth. */
  modules?: ((app: FastifyInstance, auth: Auth) => void)[]
  bodyLimitBytes?: number
  /** Tenant self-service and operator routes (off in a worker-only process). */
  tenantRoutes?: boolean
  /** The audit trail: its hook records every route that declares `config.audit`, and `GET /v1/audit`. */
  audit?: AuditModule
  /** The digest keys: with them the tenant routes count and re-key the bank's stored digests. */
  pii?: Pii
  /** The days of events each of a bank's window tags reads back: the retention route warns when they outreach it. */
  tagWindows?: (tenantId: number) => Promise<{ tag: string; days: number }[]>
}

/** Builds the HTTP app without listening; tests call `inject` on it. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request log lines at thousands of requests a second cost more than they tell; latency
    // and status go to metrics, refusals and failures to the error handler's log.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyRequestLogger,
    bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024,
    trustProxy: false,
    return503OnClosing: true,
    // The router refuses a bad percent-encoding (FST_ERR_BAD_URL) or a path parameter over 100
    // characters (FST_ERR_MAX_PARAM_LENGTH) before any hook, in its own body shape: answered
    // here with the catalogue's.
    frameworkErrors: (err, _req, reply) => {
      const message = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is longer than 100 characters.' : 'The URL is not validly percent-encoded.'
      void (reply as FastifyReply).code(400).send(new AppError('VALIDATION_FAILED', message, { issues: [{ field: 'url', message }] }).toJSON())
    },
  })
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  app.decorateRequest('principal', undefined)
  // JSON bodies must be valid UTF-8: the default parser would turn bad bytes into U+FFFD and
  // store them. Browser SDKs send beacons as text/plain; the body is JSON all the same.
  const parseJson = (body: Buffer, done: (err: Error | null, body?: unknown) => void) => {
    let text: string
    try {
      text = utf8.decode(body)
    } catch {
      return done(new AppError('INVALID_ENCODING', 'The body is not valid UTF-8.'), undefined)
    }
    if (!text.trim()) return done(new AppError('INVALID_JSON', 'The body is empty.'), undefined)
    try {
      done(null, sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }))
    } catch (e) {
      done(new AppError('INVALID_JSON', `The body is not valid JSON: ${(e as Error).message}`), undefined)
    }
  }
  app.removeContentTypeParser(['application/json', 'text/plain'])
  app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'buffer' }, (_req, body, done) => parseJson(body as Buffer, done))
  // RudderStack's Node SDK sends its gzip JSON batches labelled form-urlencoded (axios' default
  // for a Buffer body), and Segment-spec servers read them as JSON: so do the Segment API routes
  // (config.segmentApi). Everywhere else a form body stays unsupported (415).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, (req, body, done) => {
    if (!req.routeOptions.config.segmentApi) return done(new AppError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type application/x-www-form-urlencoded is not supported here (send application/json).'), undefined)
    parseJson(body as Buffer, done)
  })
  registerErrorHandling(app, deps.metrics)
  // Before any route: a route's hooks are fixed when it is registered.
  deps.audit?.hook(app)
  // Before the body is decoded and before the ingest rate limit: a refused page costs nothing more.
  const corsOrigins = createCorsOrigins({ db: deps.db })
  registerCorsHooks(app, corsOrigins)

  // SDKs may gzip their bodies (Content-Encoding: gzip). Decoded here, before the body limit and
  // JSON parsing see the bytes; a gzip bomb stops at the same limit as a plain body.
  // Both hooks run on every request: callback hooks, not async ones (a promise and a microtask
  // each), and the histogram's child per method, route and status resolved once.
  app.addHook('preParsing', (req, _reply, payload, done) => {
    const decoded = decodeBody(payload, req.headers['content-encoding'])
    if (decoded !== payload) delete req.headers['content-length']
    done(null, decoded)
  })

  const durations = new Map<string, { observe(seconds: number): void }>()
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched'
    const k = `${req.method} ${reply.statusCode} ${route}`
    let h = durations.get(k)
    if (!h) durations.set(k, (h = deps.metrics.httpDuration.labels({ method: req.method, route, status: String(reply.statusCode) })))
    h.observe(reply.elapsedTime / 1000)
    done()
  })

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Qianmian',
        description: 'Customer data platform for tagging and personalization: ingest, tags, segments, layouts, push.',
        version: deps.version,
      },
      components: {
        securitySchemes: {
          apiKey: {
            type: 'http',
            scheme: 'bearer',
            description: 'A tenant API key (write, read or admin), as Bearer or as the Basic user name.',
          },
        },
      },
    },
    transform: jsonSchemaTransform,
    // Schemas named in zod's registry (the recursive ones) go to components.schemas.
    transformObject: jsonSchemaTransformObject,
  })

  const auth = createAuth({ keys: deps.keys, db: deps.db, operatorToken: deps.operatorToken })
  registerHealthRoutes(app, { readiness: deps.readiness, metrics: deps.metrics, exposition: deps.metricsExposition })
  registerConsoleRoutes(app)
  if (deps.tenantRoutes !== false) registerTenantRoutes(app, { auth, tenants: deps.tenants, keys: deps.keys, digests: deps.pii && createDigestMigration({ db: deps.db, pii: deps.pii }), tagWindows: deps.tagWindows })
  if (deps.tenantRoutes !== false) registerCorsRoutes(app, { auth, origins: corsOrigins })
  if (deps.tenantRoutes !== false) registerGroupRoutes(app, { auth, tenants: deps.tenants, db: deps.db })
  if (deps.tenantRoutes !== false) registerCatalogueRoutes(app, auth, { catalogue: createCatalogueService({ db: deps.db }) })
  for (const m of deps.modules ?? []) m(app, auth)
  if (deps.audit && deps.tenantRoutes !== false) deps.audit.routes(app, auth)
  await app.ready()
  return app
}
