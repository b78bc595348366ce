import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError } from '../core/errors.js'
import type { CorsOrigins } from './cors.service.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A Segment HTTP Tracking API route: it reads the JSON bodies the Segment-family SDKs send
     * whatever they label them, and serves browsers on the tenant's origins (CORS).
     */
    segmentApi?: boolean
  }
}

/**
 * CORS for browser sources (analytics.js, the RudderStack JS SDK on the bank's H5 pages).
 *
 * The preflight (OPTIONS) carries neither the write key nor a body, so it cannot name a tenant:
 * it is answered for any origin, and the origin is enforced on the actual request once the key
 * names the tenant. Answering it per tenant is impossible, and answering for "any origin some bank
 * lists" would let anyone probe which origins the banks list, for no gain: the preflight only lets
 * the browser send a request that the key must still admit. The enforcement cannot rest on the
 * preflight anyway: analytics.js posts `text/plain` with the key in the body, a "simple" request
 * that browsers send without one. So a request carrying `Origin` that is not among the tenant's
 * origins is refused (403 ORIGIN_FORBIDDEN, without CORS headers) before anything is stored; one
 * from a listed origin is answered with `Access-Control-Allow-Origin` naming it. No credentials
 * mode is offered (no `Access-Control-Allow-Credentials`): cookies are never a credential here.
 *
 * Not @fastify/cors: it decides from the origin alone before the route runs, and only adds or
 * leaves out headers; here the decision needs the tenant (known after the key, which a beacon
 * carries in its body) and a refused origin must not have its events stored.
 */

/** What the browser SDKs set: the Basic key (RudderStack), JSON or gzip labels, RudderStack's AnonymousId. */
const ALLOWED_HEADERS = 'Authorization, Content-Type, Content-Encoding, AnonymousId'
/** Chromium caps a preflight's cache at two hours; ten minutes lets a changed answer through soon. */
const PREFLIGHT_MAX_AGE_S = '600'
const checked = Symbol('origin checked')

/** An `Origin` header as browsers send it: http(s), host and port. `null` (sandboxed pages, files) is not one. */
function isOrigin(v: string): boolean {
  if (!/^https?:\/\//.test(v)) return false
  try {
    return new URL(v).origin === v
  } catch {
    return false
  }
}

/** The preflight answer of a Segment API route; see above for why it names no tenant. */
export async function corsPreflight(req: FastifyRequest, reply: FastifyReply) {
  const origin = req.headers.origin
  void reply.header('vary', 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers')
  void reply.header('allow', 'POST, OPTIONS')
  if (typeof origin === 'string' && isOrigin(origin) && String(req.headers['access-control-request-method']).toUpperCase() === 'POST') {
    void reply.header('access-control-allow-origin', origin)
    void reply.header('access-control-allow-methods', 'POST')
    void reply.header('access-control-allow-headers', ALLOWED_HEADERS)
    void reply.header('access-control-max-age', PREFLIGHT_MAX_AGE_S)
  }
  return reply.code(204).send()
}

/**
 * Enforces the tenant's origins on the Segment API routes, as soon as the tenant is known: before
 * the body is read when the key came in a header, after parsing when it came as `writeKey` in the
 * body. Registered before the routes and before the per-tenant rate limit, so an allowed page can
 * read a 429 (and its Retry-After) too. A request without `Origin` is not a browser's (server SDKs,
 * curl) and is not concerned. Browsers send `Origin` on every POST, same-origin ones included: a
 * page served through a proxy on the API's own origin is listed like any other.
 */
export function registerCorsHooks(app: FastifyInstance, origins: CorsOrigins): void {
  const check = async (req: FastifyRequest, reply: FastifyReply) => {
    const r = req as FastifyRequest & { [checked]?: true }
    if (r[checked] || !req.routeOptions.config.segmentApi || !req.principal) return
    r[checked] = true
    const origin = req.headers.origin
    if (origin === undefined) return
    void reply.header('vary', 'Origin')
    if (!(await origins.allows(req.principal.tenantId, origin))) {
      throw new AppError('ORIGIN_FORBIDDEN', `${origin} is not among this tenant's browser origins; an administrator lists them with PUT /v1/tenant/cors.`, {
        issues: [{ field: 'headers.origin', message: 'not among the tenant’s browser origins' }],
      })
    }
    void reply.header('access-control-allow-origin', origin)
    void reply.header('access-control-expose-headers', 'Retry-After')
  }
  // Callback hooks: every other route passes without a promise and a microtask per hook.
  app.addHook('preParsing', (req, reply, payload, done) => {
    if (!req.routeOptions.config.segmentApi) return done(null, payload)
    check(req, reply).then(() => done(null, payload), done)
  })
  app.addHook('preHandler', (req, reply, done) => {
    if (!req.routeOptions.config.segmentApi) return done()
    check(req, reply).then(() => done(), done)
  })
}
