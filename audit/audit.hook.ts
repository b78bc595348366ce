import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AuditActor, RouteAudit } from '../core/audit.js'
import { AppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { OPERATOR_TENANT, type AuditLog } from './audit.service.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Every onRequest hook (the route's authentication among them) let the request through. */
    auditPastAuth: boolean
  }
}

const OPERATOR_ACTOR = { keyId: 'operator', holder: 'operator', roles: ['operator'] } as const

/** A route as registered: what the coverage and least-privilege tests enumerate. */
export interface DeclaredRoute {
  method: string
  url: string
  audit: RouteAudit | undefined
  /** The route's own onRequest hooks (authentication: `auth.require` marks its permission). */
  onRequest: readonly unknown[]
}

/**
 * Records one entry for every answer of a route that declares `config.audit`, once the request
 * got past authentication: successes, refusals (4xx: outcome `refused`) and failures (5xx).
 * A caller stopped by authentication is not an actor the trail can name, so it is not recorded.
 *
 * The entry is written in `onSend`, before the answer leaves. For a personal-data route, an
 * answer whose entry could not be written is replaced by 503: the data is not handed out
 * unrecorded. For a change, which has already happened, the failure is logged with the entry
 * and counted, and the answer goes out as it is.
 */
export function registerAuditHook(app: FastifyInstance, deps: { audit: AuditLog; log: Logger; declared?: DeclaredRoute[] }): void {
  app.addHook('onRoute', (route) => {
    const onRequest = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      if (method === 'HEAD') continue
      deps.declared?.push({ method, url: route.url, audit: (route.config as { audit?: RouteAudit } | undefined)?.audit, onRequest })
    }
  })
  app.decorateRequest('auditNote', undefined)
  app.decorateRequest('auditPastAuth', false)
  // preParsing runs only after every onRequest hook (app and route) has passed, for every method.
  // Both hooks run on every request, most of which no entry follows: callback hooks, so those
  // pay no promise and microtask (the layout route's profile showed the hook chain).
  app.addHook('preParsing', (req, _reply, payload, done) => {
    req.auditPastAuth = true
    done(null, payload)
  })
  app.addHook('onSend', (req, reply, payload, done) => {
    const cfg = (req.routeOptions.config as { audit?: RouteAudit } | undefined)?.audit
    if (!cfg || !req.auditPastAuth) return done(null, payload)
    record(req, reply, payload, cfg).then((p) => done(null, p), done)
  })
  async function record(req: FastifyRequest, reply: FastifyReply, payload: unknown, cfg: RouteAudit): Promise<unknown> {
    const target = whoAndWhere(req)
    if (!target) return payload
    const status = reply.statusCode
    const note = req.auditNote ?? {}
    const params = (req.params ?? {}) as Record<string, unknown>
    const param = (name: string | undefined) => (name && typeof params[name] === 'string' ? (params[name] as string) : '')
    const customerNo = note.customerNo ?? param(cfg.customerParam)
    try {
      await deps.audit.record(target.tenantId, target.actor, [
        {
          action: cfg.action,
          objectKind: cfg.objectKind,
          objectId: note.objectId ?? param(cfg.objectParam),
          ...(customerNo ? { customerNo } : {}),
          // A refused read handed out nothing: it counts no customer unless the handler says so.
          customers: note.customers ?? (customerNo && status < 400 ? 1 : 0),
          outcome: status >= 500 ? 'failed' : status >= 400 ? 'refused' : 'ok',
          status,
          detail: { route: `${req.method} ${req.routeOptions.url ?? ''}`, ...note.detail },
        },
      ])
    } catch (err) {
      if (!cfg.personal) {
        deps.log.error({ err, action: cfg.action, requestId: req.id, status }, 'a change was made but its audit entry was not written')
        return payload
      }
      return refuseUnrecorded(reply, payload, cfg)
    }
    return payload
  }
}

function whoAndWhere(req: FastifyRequest): { tenantId: number; actor: AuditActor } | undefined {
  const where = { clientIp: req.ip, requestId: String(req.id) }
  const p = req.principal
  if (p) return { tenantId: p.tenantId, actor: { keyId: p.keyId, holder: p.holder, roles: p.roles, ...where } }
  // Operator routes authenticate by the operator token and leave no principal.
  if (req.routeOptions.url?.startsWith('/v1/operator/')) return { tenantId: OPERATOR_TENANT, actor: { ...OPERATOR_ACTOR, ...where } }
  return undefined
}

function refuseUnrecorded(reply: FastifyReply, payload: unknown, cfg: RouteAudit): string {
  if (payload && typeof (payload as Readable).destroy === 'function') (payload as Readable).destroy()
  const e = new AppError('STORAGE_UNAVAILABLE', `The audit trail could not record ${cfg.action}; nothing was handed out.`)
  void reply.code(e.status).type('application/json; charset=utf-8').removeHeader('content-disposition').removeHeader('content-length')
  return JSON.stringify(e.toJSON())
}
