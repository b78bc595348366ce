import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createKeyService, generateKey, hashKey, scopeAllows, type KeyService } from './keys.service.js'
import { createTenantService, type TenantService } from './tenants.service.js'

let engine: TestEngine
let tenants: TenantService
let keys: KeyService
beforeAll(async () => {
  engine = await openTestEngine()
  tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
  keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 60_000 })
})
afterAll(async () => engine?.close())

describe('key format and hashing', () => {
  it('makes distinct high-entropy keys with a scope letter', () => {
    const a = generateKey('write')
    const b = generateKey('write')
    expect(a.key).toMatch(/^qm_w_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    expect(a.key).not.toBe(b.key)
    expect(a.key).toContain(a.keyId)
    expect(hashKey(a.key)).toMatch(/^[0-9a-f]{64}$/)
    expect(hashKey(a.key)).toBe(hashKey(a.key))
  })
  it('admin includes read, nothing else is implied', () => {
    expect(scopeAllows('admin', 'read')).toBe(true)
    expect(scopeAllows('admin', 'write')).toBe(false)
    expect(scopeAllows('read', 'admin')).toBe(false)
    expect(scopeAllows('write', 'read')).toBe(false)
  })
})

describe('key service', () => {
  it('stores only the hash, and authenticates the key to its tenant and scope', async () => {
    const t = await tenants.create({ slug: 'bank-a', name: 'Bank A' })
    const { key, view } = await keys.issue(t.id, 'write', 'app')
    const stored = await engine.db.system.query<{ key_hash: string }>('SELECT key_hash FROM api_keys WHERE key_id = {id:String}', {
      id: view.keyId,
    })
    expect(stored).toEqual([{ key_hash: hashKey(key) }])
    const dump = JSON.stringify(await engine.db.system.query('SELECT * FROM api_keys'))
    expect(dump).not.toContain(key.slice(-43))
    expect(await keys.authenticate(key)).toEqual({ tenantId: t.id, keyId: view.keyId, scope: 'write' })
  })

  it('rejects malformed, unknown, tampered and revoked keys', async () => {
    const t = await tenants.create({ slug: 'bank-b', name: 'Bank B' })
    const { key, view } = await keys.issue(t.id, 'read')
    await expect(keys.authenticate('nonsense')).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    await expect(keys.authenticate(generateKey('read').key)).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    const tampered = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A')
    await expect(keys.authenticate(tampered)).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    // Same id and secret under another scope letter is not the same key.
    await expect(keys.authenticate(key.replace('qm_r_', 'qm_a_'))).rejects.toMatchObject({ code: 'AUTH_INVALID' })
    await keys.revoke(t.id, view.keyId)
    await expect(keys.authenticate(key)).rejects.toMatchObject({ code: 'AUTH_INVALID', message: /revoked/ })
  })

  it('cannot revoke another tenant\'s key', async () => {
    const a = await tenants.create({ slug: 'bank-c', name: 'Bank C' })
    const b = await tenants.create({ slug: 'bank-d', name: 'Bank D' })
    const { view } = await keys.issue(a.id, 'admin')
    await expect(keys.revoke(b.id, view.keyId)).rejects.toMatchObject({ code: 'NOT_FOUND' })
    expect((await keys.list(b.id)).map((k) => k.keyId)).not.toContain(view.keyId)
  })

  it('refuses keys of a disabled tenant, and accepts them again once enabled', async () => {
    const t = await tenants.create({ slug: 'bank-e', name: 'Bank E' })
    const { key } = await keys.issue(t.id, 'write')
    await tenants.setStatus(t.id, 'disabled')
    await expect(keys.authenticate(key)).rejects.toMatchObject({ code: 'TENANT_DISABLED' })
    await tenants.setStatus('bank-e', 'active')
    await expect(keys.authenticate(key)).resolves.toMatchObject({ tenantId: t.id })
  })

  it('sees a key issued by another process (a second service on the same tables)', async () => {
    const t = await tenants.create({ slug: 'bank-f', name: 'Bank F' })
    const other = createKeyService({ system: engine.db.system, tenants: createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' }), cacheTtlMs: 60_000 })
    await keys.authenticate((await keys.issue(t.id, 'read')).key) // warm this cache
    await new Promise((r) => setTimeout(r, 1100))
    const { key } = await other.issue(t.id, 'read')
    await expect(keys.authenticate(key)).resolves.toMatchObject({ tenantId: t.id, scope: 'read' })
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
