import crypto from 'node:crypto'
import { z } from 'zod'
import type { SystemDb } from '../core/db.js'
import { createKeyedLock, type KeyedLock } from '../core/keyed-lock.js'
import { AppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import {
  LEGACY_SCOPE_ROLES,
  LEGACY_SCOPES,
  ROLES,
  keyLetter,
  normalizeRoles,
  permissionsOf,
  type LegacyScope,
  type Permission,
  type Role,
} from './permissions.js'
import type { TenantService } from './tenants.service.js'

/**
 * API keys. A key is `qm_<letter>_<key id>_<secret>`: the key id is public and used to find the
 * record, the letter tells what the key can do (tenants/permissions.ts), the secret is 32 random
 * bytes. Only SHA-256 of the whole key is stored. A slow password hash (scrypt, argon2) would add
 * milliseconds to every ingest request and buys nothing here: a 256-bit random secret cannot be
 * guessed from its hash.
 *
 * A key holds roles, names its holder (a person or a system: what version histories and the audit
 * trail show) and may expire. Rotation issues a successor with the same roles and holder and lets
 * the old key live for a grace period, so the systems holding it can switch without downtime.
 */

export const holderName = z
  .string()
  .trim()
  .min(2, 'name the person or system that holds the key')
  .max(120)
  // Holders are shown in histories, the console and audit exports: no control characters.
  .refine((s) => ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f), 'no control characters')

export const keyView = z.object({
  keyId: z.string(),
  tenantId: z.number().int(),
  roles: z.array(z.enum(ROLES)),
  holder: z.string(),
  label: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  /** For keys issued before roles: the scope they were issued with (the roles follow from it). */
  legacyScope: z.enum(LEGACY_SCOPES).nullable(),
})
export type KeyView = z.infer<typeof keyView>

const keyRow = z.object({
  key_id: z.string(),
  tenant_id: z.coerce.number(),
  scope: z.enum([...LEGACY_SCOPES, 'roles']),
  roles: z.array(z.string()),
  holder: z.string(),
  key_hash: z.string(),
  label: z.string(),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
  expires_at: z.string().nullable(),
})
type KeyRow = z.infer<typeof keyRow>

const KEY_PATTERN = /^qm_([a-z])_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

export interface Principal {
  tenantId: number
  keyId: string
  roles: readonly Role[]
  holder: string
  permissions: ReadonlySet<Permission>
  /** When the key stops working (ms since the epoch), or undefined: a key it issues may not outlive it. */
  expiresAt?: number | undefined
}

export interface IssueKeyInput {
  roles: readonly Role[]
  holder: string
  label?: string
  /** When the key stops working (ISO time), or none. */
  expiresAt?: Date | undefined
  /** Keys issued by the deprecated scope form keep its letter and mapping. */
  legacyScope?: LegacyScope | undefined
  /**
   * When the key asking for this one stops working (ms), if it does: the new key may not outlive
   * it, or a temporary administrator could leave behind access that lasts beyond their own.
   */
  notAfter?: number | undefined
}

export function hashKey(key: string): string {
  return crypto.createHash('sha256').update(key).digest('hex')
}

export function generateKey(roles: readonly Role[], legacy?: LegacyScope): { keyId: string; key: string } {
  const keyId = crypto.randomBytes(8).toString('hex')
  const secret = crypto.randomBytes(32).toString('base64url')
  return { keyId, key: `qm_${keyLetter(roles, legacy)}_${keyId}_${secret}` }
}

function rolesOf(r: KeyRow): Role[] {
  if (r.scope !== 'roles') return [...LEGACY_SCOPE_ROLES[r.scope]]
  return normalizeRoles(r.roles.filter((x): x is Role => (ROLES as readonly string[]).includes(x)))
}

/** "2026-12-01 10:00:00.000" (UTC, as stored) as epoch milliseconds. */
const storedMs = (s: string) => Date.parse(`${s.replace(' ', 'T')}Z`)

export interface KeyService {
  issue(tenantId: number, input: IssueKeyInput): Promise<{ key: string; view: KeyView }>
  list(tenantId: number): Promise<KeyView[]>
  revoke(tenantId: number, keyId: string): Promise<KeyView>
  /**
   * Issues a successor of a key (same roles, holder and label) and makes the old key expire after
   * `graceSeconds` (0: at once), so both work while the holder switches.
   */
  /** `notAfter`: when the key asking stops working (ms), if it does: a successor that would outlive it is refused. */
  rotate(tenantId: number, keyId: string, graceSeconds: number, notAfter?: number): Promise<{ key: string; view: KeyView; previous: KeyView }>
  /** Resolves a presented key to its principal, or throws AUTH_INVALID / AUTH_EXPIRED / TENANT_DISABLED. */
  authenticate(presented: string): Promise<Principal>
  /** Reloads the keys and the tenants' status now, after every change stored so far (another process made one). */
  refresh(): Promise<void>
}

export function createKeyService(deps: {
  system: SystemDb
  tenants: TenantService
  cacheTtlMs: number
  now?: () => Date
  /** Revocations and rotations one at a time (one is made when absent). */
  lock?: KeyedLock
  /** Told after each change is stored, before it is answered: other processes reload (tenants/registry.sync.ts). */
  changed?: () => Promise<void>
}): KeyService {
  const { system, tenants } = deps
  const now = deps.now ?? (() => new Date())
  // Auth runs on every request; a ClickHouse round trip each time would serialize all traffic
  // behind the engine. The cache holds hashes only, and is reloaded on a TTL, after local
  // changes, and (at most once a second) when a key id is unknown: a key issued by another
  // process then works within a second.
  let cache = new Map<string, { row: KeyRow; principal: Principal }>()
  let loadedAt = 0
  let lastMissReload = 0
  let inflight: Promise<void> | undefined
  // Presented keys whose hash and letter matched their record in the current `cache`, so a
  // key's SHA-256 is computed once per cache load instead of once per request (near half the
  // auth hook's time under layout load). Emptied with every reload, so a revoked or changed
  // record is checked afresh; revocation, expiry and the tenant's status are still read per
  // request below. Only keys that passed the hash get in: bounded by the keys that exist.
  let verified = new Map<string, { row: KeyRow; principal: Principal }>()

  async function reload() {
    inflight ??= (async () => {
      try {
        const rows = await system.query(
          `SELECT key_id, tenant_id, scope, roles, holder, key_hash, label, toString(created_at) AS created_at,
                  if(isNull(revoked_at), NULL, toString(revoked_at)) AS revoked_at,
                  if(isNull(expires_at), NULL, toString(expires_at)) AS expires_at
           FROM api_keys FINAL`,
          {},
          keyRow,
        )
        // Principals are built once per load: authentication then allocates nothing.
        cache = new Map(rows.map((r) => [r.key_id, { row: r, principal: principalOf(r) }]))
        // Keys verified against the old rows are verified again against the new ones.
        verified = new Map()
        // Tenant status (disabled by another process) rides on the same refresh.
        await tenants.reload()
        loadedAt = Date.now()
      } finally {
        inflight = undefined
      }
    })()
    return inflight
  }

  function principalOf(r: KeyRow): Principal {
    const roles = rolesOf(r)
    return Object.freeze({
      tenantId: r.tenant_id,
      keyId: r.key_id,
      roles,
      holder: r.holder || `key ${r.key_id}`,
      permissions: permissionsOf(roles),
      expiresAt: r.expires_at ? storedMs(r.expires_at) : undefined,
    })
  }

  const view = (r: KeyRow): KeyView => ({
    keyId: r.key_id,
    tenantId: r.tenant_id,
    roles: rolesOf(r),
    holder: r.holder,
    label: r.label,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    legacyScope: r.scope === 'roles' ? null : r.scope,
  })

  async function write(r: KeyRow) {
    await system.insert('api_keys', [{ ...r, updated_at: chDateTime(now()) }])
    // A load already running may have read before the insert (another request's unknown key):
    // joined, it would leave a revoked key accepted until the next load. This one starts after.
    if (inflight) await inflight.catch(() => undefined)
    await reload()
    await deps.changed?.()
  }

  async function issue(tenantId: number, input: IssueKeyInput) {
    await tenants.get(tenantId)
    const roles = normalizeRoles(input.legacyScope ? LEGACY_SCOPE_ROLES[input.legacyScope] : input.roles)
    if (!roles.length) throw new AppError('VALIDATION_FAILED', 'A key needs at least one role.', { issues: [{ field: 'roles', message: 'at least one role' }] })
    const holder = holderName.safeParse(input.holder)
    if (!holder.success) throw new AppError('VALIDATION_FAILED', 'A key needs a named holder.', { issues: [{ field: 'holder', message: holder.error.issues[0]!.message }] })
    if (input.expiresAt && input.expiresAt.getTime() <= now().getTime()) {
      throw new AppError('VALIDATION_FAILED', 'The expiry is in the past.', { issues: [{ field: 'expiresAt', message: 'must be in the future' }] })
    }
    if (input.notAfter !== undefined && (!input.expiresAt || input.expiresAt.getTime() > input.notAfter)) {
      const until = new Date(input.notAfter).toISOString()
      throw new AppError('VALIDATION_FAILED', `A key may not outlive the key that issues it: give an expiry at or before ${until}.`, {
        issues: [{ field: 'expiresAt', message: `at or before ${until}, when the issuing key expires` }],
      })
    }
    const { keyId, key } = generateKey(roles, input.legacyScope)
    const row: KeyRow = {
      key_id: keyId,
      tenant_id: tenantId,
      scope: input.legacyScope ?? 'roles',
      roles,
      holder: holder.data,
      key_hash: hashKey(key),
      label: input.label ?? '',
      created_at: chDateTime(now()),
      revoked_at: null,
      expires_at: input.expiresAt ? chDateTime(input.expiresAt) : null,
    }
    await write(row)
    return { key, view: view(row) }
  }

  async function own(tenantId: number, keyId: string): Promise<KeyRow> {
    await reload()
    const e = cache.get(keyId)
    if (!e || e.row.tenant_id !== tenantId) throw new AppError('NOT_FOUND', `No key ${keyId} for this tenant.`)
    return e.row
  }

  // A revocation or a rotation reads a key's record and writes a whole new version of it: one at
  // a time, or a rotation that read the key before a revocation would write it back unrevoked.
  // Shared by every API process when there are several (core/cluster-locks.ts).
  const lock = deps.lock ?? createKeyedLock()
  const oneAtATime = <T>(change: () => Promise<T>): Promise<T> => lock.run('keys', change)

  async function refresh() {
    // A load already running may have read before the other process's change.
    if (inflight) await inflight.catch(() => undefined)
    await reload()
  }

  return {
    issue,
    refresh,
    async list(tenantId) {
      await reload()
      return [...cache.values()].filter((e) => e.row.tenant_id === tenantId).map((e) => view(e.row))
    },
    revoke: (tenantId, keyId) =>
      oneAtATime(async () => {
        const r = await own(tenantId, keyId)
        if (r.revoked_at) return view(r)
        const revoked = { ...r, revoked_at: chDateTime(now()) }
        await write(revoked)
        return view(revoked)
      }),
    rotate: (tenantId, keyId, graceSeconds, notAfter) =>
      oneAtATime(async () => {
        const r = await own(tenantId, keyId)
        if (r.revoked_at) throw new AppError('CONFLICT', `Key ${keyId} was revoked; issue a new key instead.`)
        if (notAfter !== undefined && (!r.expires_at || storedMs(r.expires_at) > notAfter)) {
          throw new AppError('SCOPE_FORBIDDEN', `Key ${keyId} outlives the key asking to rotate it, and so would its successor: a key without that expiry rotates it.`, {
            issues: [{ field: 'keyId', message: 'outlives the key asking' }],
          })
        }
        const t = now().getTime()
        if (r.expires_at && storedMs(r.expires_at) <= t) throw new AppError('CONFLICT', `Key ${keyId} has expired; issue a new key instead.`)
        const successor = await issue(tenantId, {
          roles: rolesOf(r),
          holder: r.holder || `key ${r.key_id}`,
          label: r.label,
          expiresAt: r.expires_at ? new Date(storedMs(r.expires_at)) : undefined,
        })
        const ends = new Date(t + graceSeconds * 1000)
        // Read again: another process may have revoked or shortened the key meanwhile.
        const latest = await own(tenantId, keyId)
        const keepsEarlier = latest.revoked_at || (latest.expires_at && storedMs(latest.expires_at) < ends.getTime())
        const previous = keepsEarlier ? latest : { ...latest, expires_at: chDateTime(ends) }
        if (!keepsEarlier) await write(previous)
        return { ...successor, previous: view(previous) }
      }),
    async authenticate(presented) {
      if (Date.now() - loadedAt > deps.cacheTtlMs) await reload()
      let e = verified.get(presented)
      if (!e) {
        const m = KEY_PATTERN.exec(presented)
        if (!m) throw new AppError('AUTH_INVALID')
        const keyId = m[2]!
        e = cache.get(keyId)
        if (!e && Date.now() - lastMissReload > 1000) {
          lastMissReload = Date.now()
          await reload()
          e = cache.get(keyId)
        }
        if (!e) throw new AppError('AUTH_INVALID')
        const a = Buffer.from(hashKey(presented), 'hex')
        const b = Buffer.from(e.row.key_hash, 'hex')
        if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) throw new AppError('AUTH_INVALID')
        // The letter is part of the hashed key, so a changed letter already fails the hash; this
        // also refuses a record whose roles were altered in storage behind the key's back.
        if (keyLetter(e.principal.roles, e.row.scope === 'roles' ? undefined : e.row.scope) !== m[1]) throw new AppError('AUTH_INVALID')
        // Remembered only while the rows it was checked against are the ones held.
        if (cache.get(keyId) === e) verified.set(presented, e)
      }
      const r = e.row
      if (r.revoked_at) throw new AppError('AUTH_INVALID', 'The API key was revoked.')
      if (r.expires_at && storedMs(r.expires_at) <= now().getTime()) throw new AppError('AUTH_EXPIRED')
      const tenant = tenants.cached(r.tenant_id) ?? (await tenants.get(r.tenant_id))
      if (tenant.status !== 'active') throw new AppError('TENANT_DISABLED')
      return e.principal
    },
  }
}
