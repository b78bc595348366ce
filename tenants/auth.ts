import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import type { Db, TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { scopeAllows, type KeyService, type Principal, type Scope } from './keys.service.js'

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined
  }
}

/**
 * Reads the key from `Authorization: Basic base64(key:)` (the Segment SDK convention: the write
 * key is the user name, the password is empty) or `Authorization: Bearer key`.
 */
export function presentedKey(header: string | undefined): string | undefined {
  if (!header) return undefined
  const [kind, value] = header.trim().split(/\s+/, 2)
  if (!kind || !value) return undefined
  if (kind.toLowerCase() === 'bearer') return value
  if (kind.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    return colon === -1 ? decoded : decoded.slice(0, colon)
  }
  return undefined
}

export interface Auth {
  /**
   * A preHandler that admits keys whose scope satisfies `scope`, and sets `req.principal`.
   * `bodyKey` names a body field that may carry the key when no header does (Segment's
   * `writeKey`, used by browser beacons that cannot set headers).
   */
  require(scope: Scope, opts?: { bodyKey?: string }): preHandlerAsyncHookHandler
  /** A preHandler for platform-operator routes (tenant management), by the operator token. */
  operator(): preHandlerAsyncHookHandler
  /** The tenant-scoped query layer for the authenticated request. */
  tenantDb(req: FastifyRequest): TenantDb
}

export function createAuth(deps: { keys: KeyService; db: Db; operatorToken: string | undefined }): Auth {
  return {
    require(scope, opts = {}) {
      return async (req: FastifyRequest, _reply: FastifyReply) => {
        let key = presentedKey(req.headers.authorization)
        if (!key && opts.bodyKey && req.body && typeof req.body === 'object') {
          const v = (req.body as Record<string, unknown>)[opts.bodyKey]
          if (typeof v === 'string' && v) key = v
        }
        if (!key) throw new AppError('AUTH_MISSING')
        const principal = await deps.keys.authenticate(key)
        if (!scopeAllows(principal.scope, scope)) {
          throw new AppError('SCOPE_FORBIDDEN', `This route needs a ${scope} key; the key presented is ${principal.scope}.`)
        }
        req.principal = principal
      }
    },
    operator() {
      return async (req: FastifyRequest) => {
        const token = deps.operatorToken
        if (!token) throw new AppError('OPERATOR_ONLY', 'Operator routes are disabled: QIANMIAN_OPERATOR_TOKEN is not set.')
        const presented = presentedKey(req.headers.authorization)
        if (!presented) throw new AppError('AUTH_MISSING')
        const a = crypto.createHash('sha256').update(presented).digest()
        const b = crypto.createHash('sha256').update(token).digest()
        if (!crypto.timingSafeEqual(a, b)) throw new AppError('AUTH_INVALID')
      }
    },
    tenantDb(req) {
      if (!req.principal) throw new AppError('AUTH_MISSING')
      return deps.db.forTenant(req.principal.tenantId)
    },
  }
}
