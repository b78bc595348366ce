import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler, preValidationAsyncHookHandler } from 'fastify'
import type { Db, TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import type { KeyService, Principal } from './keys.service.js'
import type { Permission } from './permissions.js'

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

/** High-sensitivity tags (risk flags) are shown and usable only where personal data may be read. */
export const seesSensitiveTags = (p: Principal): boolean => p.permissions.has('personal:read')

/** A route hook that admits keys holding `permission`; it says which, for tests and the docs. */
export type PermissionHook = onRequestAsyncHookHandler & { readonly permission: Permission }

export interface Auth {
  /**
   * An `onRequest` hook: it runs before the body is read, so a caller without a key, or with a key
   * that lacks `permission`, learns nothing of the route's schema and costs no parsing.
   */
  require(permission: Permission): PermissionHook
  /**
   * For the Segment ingest routes, whose browser beacons cannot set headers and carry the key as
   * `writeKey` in the body: the header is checked before parsing (`onRequest`); a body key after
   * parsing but before validation (`preValidation`), so an unauthenticated body never reaches the
   * schema. The body is already capped by the route's body limit when it is parsed.
   */
  requireWithBodyKey(permission: Permission, bodyKey: string): { onRequest: PermissionHook; preValidation: preValidationAsyncHookHandler }
  /** A preHandler for platform-operator routes (tenant management), by the operator token. */
  operator(): onRequestAsyncHookHandler
  /** The tenant-scoped query layer for the authenticated request. */
  tenantDb(req: FastifyRequest): TenantDb
}

export function createAuth(deps: { keys: KeyService; db: Db; operatorToken: string | undefined }): Auth {
  async function admit(req: FastifyRequest, key: string, permission: Permission) {
    const principal = await deps.keys.authenticate(key)
    if (!principal.permissions.has(permission)) {
      throw new AppError(
        'SCOPE_FORBIDDEN',
        `This route needs the ${permission} permission; the key presented holds the role(s) ${principal.roles.join(', ')}.`,
      )
    }
    req.principal = principal
  }

  function hook(permission: Permission, deferToBody: boolean): PermissionHook {
    const h = async (req: FastifyRequest, _reply: FastifyReply) => {
      const key = presentedKey(req.headers.authorization)
      if (key) return admit(req, key, permission)
      if (!deferToBody) throw new AppError('AUTH_MISSING')
    }
    return Object.assign(h, { permission })
  }

  return {
    require: (permission) => hook(permission, false),
    requireWithBodyKey(permission, bodyKey) {
      return {
        onRequest: hook(permission, true),
        async preValidation(req) {
          if (req.principal) return
          const v = req.body && typeof req.body === 'object' ? (req.body as Record<string, unknown>)[bodyKey] : undefined
          if (typeof v !== 'string' || !v) throw new AppError('AUTH_MISSING')
          await admit(req, v, permission)
        },
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
