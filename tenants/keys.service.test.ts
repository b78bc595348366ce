import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SystemDb } from '../core/db.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createKeyService, generateKey, hashKey, type KeyService } from './keys.service.js'
import { LEGACY_SCOPE_ROLES, PERMISSIONS, ROLES, ROLE_PERMISSIONS, permissionsOf } from './permissions.js'
import { createTenantService, type TenantService } from './tenants.service.js'

let engine: TestEngine
let tenants: TenantService
let keys: KeyService
let clock = new Date('2026-12-01T00:00:00Z')
beforeAll(async () => {
  engine = await openTestEngine()
  tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
  keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 60_000, now: () => clock })
})
afterAll(async () => engine?.close())

describe('key format and hashing', () => {
  it('makes distinct high-entropy keys whose letter tells the role', () => {
    const a = generateKey(['ingest'])
    const b = generateKey(['ingest'])
    expect(a.key).toMatch(/^qm_i_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    expect(generateKey(['layout', 'push']).key).toMatch(/^qm_x_/)
    expect(generateKey([], 'write').key).toMatch(/^qm_w_/)
    expect(a.key).not.toBe(b.key)
    expect(a.key).toContain(a.keyId)
    expect(hashKey(a.key)).toMatch(/^[0-9a-f]{64}$/)
    expect(hashKey(a.key)).toBe(hashKey(a.key))
  })
  it('grants each role only its permissions; admin holds all', () => {
    expect([...permissionsOf(['ingest'])]).toEqual(['events:write'])
    expect([...permissionsOf(['layout'])]).toEqual(['layout:read'])
    expect([...permissionsOf(['push'])]).toEqual(['push:deliver'])
    expect([...permissionsOf(['analyst'])]).toEqual(['catalog:read'])
    expect([...permissionsOf(['marketer'])].sort()).toEqual(['campaigns:write', 'catalog:read', 'segments:write'])
    expect([...permissionsOf(['admin'])].sort()).toEqual([...PERMISSIONS].sort())
    // Personal data, merges and the audit trail belong to admin alone.
    for (const r of ROLES.filter((r) => r !== 'admin')) {
      for (const p of ['personal:read', 'identity:merge', 'audit:read', 'tenant:admin'] as const) expect(ROLE_PERMISSIONS[r]).not.toContain(p)
    }
    expect(LEGACY_SCOPE_ROLES).toEqual({ write: ['ingest'], read: ['layout', 'push', 'analyst'], admin: ['admin'] })
  })
})

describe('key service', () => {
  it('stores only the hash, and authenticates the key to its tenant and scope', async () => {
    const t = await tenants.create({ slug: 'bank-a', name: 'Bank A' })
    const { key, view } = await keys.issue(t.id, { roles: ['ingest'], holder: 'mobile app', label: 'app' })
    const stored = await engine.db.system.query<{ key_hash: string }>('SELECT key_hash FROM api_keys WHERE key_id = {id:String}', {
      id: view.keyId,
    })
    expect(stored).toEqual([{ key_hash: hashKey(key) }])
    const dump = JSON.stringify(await engine.db.system.query('SELECT * FROM api_keys'))
    expect(dump).not.toContain(key.slice(-43))
    expect(await keys.authenticate(key)).toMatchObject({ tenantId: t.id, keyId: view.keyId, roles: ['ingest'], holder: 'mobile app' })
  })

  it('rejects malformed, unknown, tampered and revoked keys', async () => {
    const t = await tenants.create({ slug: 'bank-b', name: 'Bank B' })
    const { key, view } = await keys.issue(t.id, { roles: ['layout'], holder: 'gateway' })
    await expect(keys.authenticate('nonsense')).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    await expect(keys.authenticate(generateKey(['layout']).key)).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    const tampered = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A')
    await expect(keys.authenticate(tampered)).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    // Same id and secret under another role letter is not the same key.
    await expect(keys.authenticate(key.replace('qm_l_', 'qm_a_'))).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    await keys.revoke(t.id, view.keyId)
    await expect(keys.authenticate(key)).rejects.toMatchObject({ code: 'AUTH_INVALID', message: /revoked/ })
  })

  it('cannot revoke another tenant\'s key', async () => {
    const a = await tenants.create({ slug: 'bank-c', name: 'Bank C' })
    const b = await tenants.create({ slug: 'bank-d', name: 'Bank D' })
    const { view } = await keys.issue(a.id, { roles: ['admin'], holder: 'admin c' })
    await expect(keys.revoke(b.id, view.keyId)).rejects.toMatchObject({ code: 'NOT_FOUND' })
    expect((await keys.list(b.id)).map((k) => k.keyId)).not.toContain(view.keyId)
  })

  it('refuses keys of a disabled tenant, and accepts them again once enabled', async () => {
    const t = await tenants.create({ slug: 'bank-e', name: 'Bank E' })
    const { key } = await keys.issue(t.id, { roles: ['ingest'], holder: 'app e' })
    await tenants.setStatus(t.id, 'disabled')
    await expect(keys.authenticate(key)).rejects.toMatchObject({ code: 'TENANT_DISABLED' })
    await tenants.setStatus('bank-e', 'active')
    await expect(keys.authenticate(key)).resolves.toMatchObject({ tenantId: t.id })
  })

  it('sees a key issued by another process (a second service on the same tables)', async () => {
    const t = await tenants.create({ slug: 'bank-f', name: 'Bank F' })
    const other = createKeyService({ system: engine.db.system, tenants: createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' }), cacheTtlMs: 60_000 })
    await keys.authenticate((await keys.issue(t.id, { roles: ['layout'], holder: 'gw' })).key) // warm this cache
    await new Promise((r) => setTimeout(r, 1100))
    const { key } = await other.issue(t.id, { roles: ['push'], holder: 'notifier' })
    await expect(keys.authenticate(key)).resolves.toMatchObject({ tenantId: t.id, roles: ['push'] })
  })

  it('stops a key verified before (held without its hash recomputed) once another process revokes it, within the cache TTL', async () => {
    const t = await tenants.create({ slug: 'bank-g', name: 'Bank G' })
    const ttlMs = 300
    const serving = createKeyService({ system: engine.db.system, tenants: createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' }), cacheTtlMs: ttlMs })
    const { key, view } = await keys.issue(t.id, { roles: ['layout'], holder: 'gateway g' })
    for (let i = 0; i < 3; i++) await expect(serving.authenticate(key)).resolves.toMatchObject({ keyId: view.keyId, roles: ['layout'] })
    // A wrong secret with the same id is refused while the right one is remembered.
    await expect(serving.authenticate(key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A'))).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    await keys.revoke(t.id, view.keyId)
    const revokedAt = Date.now()
    let refused: unknown
    while (!refused) {
      refused = await serving.authenticate(key).then(() => undefined, (e: unknown) => e)
      if (!refused) await new Promise((r) => setTimeout(r, 20))
    }
    expect(refused).toMatchObject({ code: 'AUTH_INVALID', message: /revoked/ })
    // The bound: the serving process's cache TTL plus one reload, with room for a loaded machine
    // (a key remembered past its revocation would never be refused: the loop would run to the timeout).
    expect(Date.now() - revokedAt).toBeLessThan(ttlMs + 5_000)
  })

  it('checks the stored hash again after a reload: a record changed in storage no longer admits the remembered key', async () => {
    const t = await tenants.create({ slug: 'bank-h', name: 'Bank H' })
    const serving = createKeyService({ system: engine.db.system, tenants: createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' }), cacheTtlMs: 200 })
    const { key, view } = await keys.issue(t.id, { roles: ['layout'], holder: 'gateway h' })
    await expect(serving.authenticate(key)).resolves.toMatchObject({ keyId: view.keyId })
    const [row] = await engine.db.system.query<Record<string, unknown>>('SELECT * FROM api_keys FINAL WHERE key_id = {id:String}', { id: view.keyId })
    await engine.db.system.insert('api_keys', [{ ...row, key_hash: hashKey(generateKey(['layout']).key), updated_at: '2099-01-01 00:00:00.000' }])
    await new Promise((r) => setTimeout(r, 250))
    await expect(serving.authenticate(key)).rejects.toMatchObject({ code: 'AUTH_INVALID' })
  })

  it('keeps keys of the old scopes working through the documented mapping', async () => {
    const t = await tenants.create({ slug: 'bank-legacy', name: 'Legacy' })
    for (const scope of ['write', 'read', 'admin'] as const) {
      const { key, view } = await keys.issue(t.id, { roles: [], legacyScope: scope, holder: `old ${scope}` })
      expect(key.startsWith(`qm_${scope[0]}_`)).toBe(true)
      expect(view).toMatchObject({ legacyScope: scope, roles: LEGACY_SCOPE_ROLES[scope] })
      expect((await keys.authenticate(key)).roles).toEqual(LEGACY_SCOPE_ROLES[scope])
    }
    // A row written before roles existed (scope only, no roles, no holder) maps the same way.
    const { key, keyId } = generateKey([], 'read')
    await engine.db.system.insert('api_keys', [
      { key_id: keyId, tenant_id: t.id, scope: 'read', key_hash: hashKey(key), label: 'old', created_at: '2025-01-01 00:00:00.000', revoked_at: null, updated_at: '2025-01-01 00:00:00.000' },
    ])
    await new Promise((r) => setTimeout(r, 1100))
    expect(await keys.authenticate(key)).toMatchObject({ roles: ['layout', 'push', 'analyst'], holder: `key ${keyId}` })
  })

  it('refuses a key without a holder or a role, with an expiry in the past, or of an unknown role', async () => {
    const t = await tenants.create({ slug: 'bank-bad', name: 'Bad' })
    await expect(keys.issue(t.id, { roles: ['ingest'], holder: ' ' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'holder' }] })
    await expect(keys.issue(t.id, { roles: [], holder: 'someone' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'roles' }] })
    await expect(keys.issue(t.id, { roles: ['ingest'], holder: 'x\u0007y' })).rejects.toMatchObject({ issues: [{ field: 'holder' }] })
    await expect(keys.issue(t.id, { roles: ['ingest'], holder: 'app', expiresAt: new Date(clock.getTime() - 1000) })).rejects.toMatchObject({
      issues: [{ field: 'expiresAt' }],
    })
  })

  it('expires keys at their time, and rotates with both keys valid during the grace period', async () => {
    const t = await tenants.create({ slug: 'bank-rot', name: 'Rotation' })
    const { key: old, view } = await keys.issue(t.id, { roles: ['layout', 'push'], holder: 'app gateway', label: 'gw' })
    const rotated = await keys.rotate(t.id, view.keyId, 3600)
    expect(rotated.view).toMatchObject({ roles: ['layout', 'push'], holder: 'app gateway', label: 'gw', expiresAt: null })
    expect(rotated.previous.expiresAt).toBe('2026-12-01 01:00:00.000')
    // Within the grace period both work.
    await expect(keys.authenticate(old)).resolves.toMatchObject({ keyId: view.keyId })
    await expect(keys.authenticate(rotated.key)).resolves.toMatchObject({ keyId: rotated.view.keyId })
    clock = new Date('2026-12-01T01:00:00Z')
    await expect(keys.authenticate(old)).rejects.toMatchObject({ code: 'AUTH_EXPIRED', status: 401 })
    await expect(keys.authenticate(rotated.key)).resolves.toMatchObject({ holder: 'app gateway' })
    // An expired key cannot be rotated; a revoked one neither.
    await expect(keys.rotate(t.id, view.keyId, 60)).rejects.toMatchObject({ code: 'CONFLICT' })
    await keys.revoke(t.id, rotated.view.keyId)
    await expect(keys.rotate(t.id, rotated.view.keyId, 60)).rejects.toMatchObject({ code: 'CONFLICT' })
    // Another tenant cannot rotate this tenant's key.
    const other = await tenants.create({ slug: 'bank-rot2', name: 'Other' })
    const k2 = await keys.issue(t.id, { roles: ['ingest'], holder: 'app' })
    await expect(keys.rotate(other.id, k2.view.keyId, 60)).rejects.toMatchObject({ code: 'NOT_FOUND' })
    clock = new Date('2026-12-01T00:00:00Z')
  })
})

describe('a change while the cache is being loaded', () => {
  it('refuses a revoked key once the revocation has returned, though a load that read before it was running', async () => {
    const real = engine.db.system
    let racing: Promise<unknown> | undefined
    // Another request's load (an unknown key id) starts just before the revocation is written.
    const system = {
      query: (...a: Parameters<SystemDb['query']>) => real.query(...a),
      insert: async (table: string, rows: readonly Record<string, unknown>[]) => {
        if (table === 'api_keys' && rows.some((r) => r.revoked_at)) racing = own.authenticate(generateKey(['layout']).key).catch(() => undefined)
        return real.insert(table, rows)
      },
    } as unknown as SystemDb
    const own: KeyService = createKeyService({ system, tenants, cacheTtlMs: 60_000 })
    const t = await tenants.create({ slug: 'race-bank', name: 'Race' })
    const { key, view } = await own.issue(t.id, { roles: ['layout'], holder: 'gateway' })
    await expect(own.authenticate(key)).resolves.toMatchObject({ keyId: view.keyId })
    expect((await own.revoke(t.id, view.keyId)).revokedAt).not.toBeNull()
    expect(racing).toBeDefined()
    await racing
    await expect(own.authenticate(key)).rejects.toMatchObject({ code: 'AUTH_INVALID' })
  })
})

describe('a revocation during a rotation', () => {
  it('keeps the key revoked when it is revoked while being rotated', async () => {
    const t = await tenants.create({ slug: 'rot-revoke', name: 'Rotate and revoke' })
    const { key, view } = await keys.issue(t.id, { roles: ['admin'], holder: 'leaked admin key' })
    // The rotation reads the key, issues its successor, then shortens the key's life: a
    // revocation landing in between must not be overwritten by that last write.
    const [, revoked] = await Promise.all([keys.rotate(t.id, view.keyId, 86400), keys.revoke(t.id, view.keyId)])
    expect(revoked.revokedAt).not.toBeNull()
    await expect(keys.authenticate(key)).rejects.toMatchObject({ code: 'AUTH_INVALID', message: /revoked/ })
    expect((await keys.list(t.id)).find((k) => k.keyId === view.keyId)?.revokedAt).not.toBeNull()
  })
})

describe('tenant registry', () => {
  it('validates slugs, parents and duplicates', async () => {
    await expect(tenants.create({ slug: 'Bad Slug', name: 'x' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    const g = await tenants.create({ slug: 'group-x', name: 'Group', kind: 'group' })
    const m = await tenants.create({ slug: 'member-x', name: 'Member', parent: 'group-x' })
    expect(m.parentId).toBe(g.id)
    await expect(tenants.create({ slug: 'member-x', name: 'again' })).rejects.toMatchObject({ code: 'CONFLICT' })
    await expect(tenants.create({ slug: 'member-y', name: 'M', parent: 'member-x' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(tenants.create({ slug: 'member-z', name: 'M', parent: 'nobody' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
  })
})
