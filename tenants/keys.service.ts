import crypto from 'node:crypto'
import { z } from 'zod'
import type { SystemDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import type { TenantService } from './tenants.service.js'

/**
 * API keys. A key is `qm_<scope letter>_<key id>_<secret>`: the key id is public and used to find
 * the record, the secret is 32 random bytes. Only SHA-256 of the whole key is stored. A slow
 * password hash (scrypt, argon2) would add milliseconds to every ingest request and buys nothing
 * here: a 256-bit random secret cannot be guessed from its hash.
 *
 * Scopes: `write` (ingest; the key ships inside the app, so it can do nothing else), `read`
 * (layouts, push pulls), `admin` (management, which includes everything `read` can do).
 */

export const SCOPES = ['write', 'read', 'admin'] as const
export type Scope = (typeof SCOPES)[number]
const SCOPE_LETTER: Record<Scope, string> = { write: 'w', read: 'r', admin: 'a' }

/** Which scopes satisfy a route that requires `needed`. */
export function scopeAllows(have: Scope, needed: Scope): boolean {
  if (have === needed) return true
  return have === 'admin' && needed === 'read'
}

export interface Principal {
  tenantId: number
  keyId: string
  scope: Scope
}

export const keyView = z.object({
  keyId: z.string(),
  tenantId: z.number().int(),
  scope: z.enum(SCOPES),
  label: z.string(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
})
export type KeyView = z.infer<typeof keyView>

const keyRow = z.object({
  key_id: z.string(),
  tenant_id: z.coerce.number(),
  scope: z.enum(SCOPES),
  key_hash: z.string(),
  label: z.string(),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
})
type KeyRow = z.infer<typeof keyRow>

const KEY_PATTERN = /^qm_([wra])_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

export function hashKey(key: string): string {
  return crypto.createHash('sha256').update(key).digest('hex')
}

export function generateKey(scope: Scope): { keyId: string; key: string } {
  const keyId = crypto.randomBytes(8).toString('hex')
  const secret = crypto.randomBytes(32).toString('base64url')
  return { keyId, key: `qm_${SCOPE_LETTER[scope]}_${keyId}_${secret}` }
}

export interface KeyService {
  issue(tenantId: number, scope: Scope, label?: string): Promise<{ key: string; view: KeyView }>
  list(tenantId: number): Promise<KeyView[]>
  revoke(tenantId: number, keyId: string): Promise<KeyView>
  /** Resolves a presented key to its principal, or throws AUTH_INVALID / TENANT_DISABLED. */
  authenticate(presented: string): Promise<Principal>
}

export function createKeyService(deps: {
  system: SystemDb
  tenants: TenantService
  cacheTtlMs: number
  now?: () => Date
}): KeyService {
  const { system, tenants } = deps
  const now = deps.now ?? (() => new Date())
  // Auth runs on every request; a ClickHouse round trip each time would serialize all traffic
  // behind the engine. The cache holds hashes only, and is reloaded on a TTL, after local
  // changes, and (at most once a second) when a key id is unknown: a key issued by another
  // process then works within a second.
  let cache = new Map<string, KeyRow>()
  let loadedAt = 0
  let lastMissReload = 0
  let inflight: Promise<void> | undefined

  async function reload() {
    inflight ??= (async () => {
      try {
        const rows = await system.query(
          `SELECT key_id, tenant_id, scope, key_hash, label, toString(created_at) AS created_at,
                  if(isNull(revoked_at), NULL, toString(revoked_at)) AS revoked_at
           FROM api_keys FINAL`,
          {},
          keyRow,
        )
        cache = new Map(rows.map((r) => [r.key_id, r]))
        // Tenant status (disabled by another process) rides on the same refresh.
        await tenants.reload()
        loadedAt = Date.now()
      } finally {
        inflight = undefined
      }
    })()
    return inflight
  }

  const view = (r: KeyRow): KeyView => ({
    keyId: r.key_id,
    tenantId: r.tenant_id,
    scope: r.scope,
    label: r.label,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  })

  async function write(r: KeyRow) {
    await system.insert('api_keys', [{ ...r, updated_at: chDateTime(now()) }])
    await reload()
  }

  return {
    async issue(tenantId, scope, label = '') {
      await tenants.get(tenantId)
      const { keyId, key } = generateKey(scope)
      const row: KeyRow = {
        key_id: keyId,
        tenant_id: tenantId,
        scope,
        key_hash: hashKey(key),
        label,
        created_at: chDateTime(now()),
        revoked_at: null,
      }
      await write(row)
      return { key, view: view(row) }
    },
    async list(tenantId) {
      await reload()
      return [...cache.values()].filter((r) => r.tenant_id === tenantId).map(view)
    },
    async revoke(tenantId, keyId) {
      await reload()
      const r = cache.get(keyId)
      if (!r || r.tenant_id !== tenantId) throw new AppError('NOT_FOUND', `No key ${keyId} for this tenant.`)
      if (r.revoked_at) return view(r)
      const revoked = { ...r, revoked_at: chDateTime(now()) }
      await write(revoked)
      return view(revoked)
    },
    async authenticate(presented) {
      const m = KEY_PATTERN.exec(presented)
      if (!m) throw new AppError('AUTH_INVALID')
      const keyId = m[2]!
      if (Date.now() - loadedAt > deps.cacheTtlMs) await reload()
      let r = cache.get(keyId)
      if (!r && Date.now() - lastMissReload > 1000) {
        lastMissReload = Date.now()
        await reload()
        r = cache.get(keyId)
      }
      if (!r) throw new AppError('AUTH_INVALID')
      const a = Buffer.from(hashKey(presented), 'hex')
      const b = Buffer.from(r.key_hash, 'hex')
      if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) throw new AppError('AUTH_INVALID')
      if (r.revoked_at) throw new AppError('AUTH_INVALID', 'The API key was revoked.')
      if (SCOPE_LETTER[r.scope] !== m[1]) throw new AppError('AUTH_INVALID')
      const tenant = tenants.cached(r.tenant_id) ?? (await tenants.get(r.tenant_id))
      if (tenant.status !== 'active') throw new AppError('TENANT_DISABLED')
      return { tenantId: r.tenant_id, keyId, scope: r.scope }
    },
  }
}
