import crypto from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createPii, TENANT_DIGEST_PREFIX } from './pii.js'

describe('per-bank digest keys', () => {
  const pii = createPii('master-secret-master-secret-master-secret')
  it('gives the same value unrelated digests in two banks, stable within one', () => {
    const a = pii.hash('national_id', '11010519491231002X', 1)
    const b = pii.hash('national_id', '11010519491231002X', 2)
    expect(a).not.toBe(b)
    expect(a.slice(TENANT_DIGEST_PREFIX.length)).not.toBe(b.slice(TENANT_DIGEST_PREFIX.length))
    expect(pii.hash('national_id', '110105 19491231 002x', 1)).toBe(a)
    expect(a).toMatch(/^k2:[0-9a-f]{64}$/)
  })
  it('keys depend on the master secret, and the shared-key form stays available for matching old rows', () => {
    const other = createPii('another-master-secret-another-master')
    expect(other.hash('phone', '13812345678', 1)).not.toBe(pii.hash('phone', '13812345678', 1))
    const [current, legacy] = pii.digests('phone', '138-1234-5678', 7)
    expect(current).toBe(pii.hash('phone', '13812345678', 7))
    expect(legacy).toMatch(/^[0-9a-f]{64}$/)
    expect(pii.digests('phone', '13812345678', 8)[1]).toBe(legacy)
  })
  it('has no key for a tenant that cannot exist', () => {
    expect(() => pii.hash('phone', '13812345678', 0)).toThrow()
  })
  it("is the bank key's HMAC of the version-1 digest, so a stored version-1 digest converts without the value", () => {
    const secret = 'master-secret-master-secret-master-secret'
    const hmac = (key: string | Buffer, text: string) => crypto.createHmac('sha256', key).update(text).digest()
    const v1 = hmac(secret, 'phone:13812345678').toString('hex')
    const bank = hmac(secret, 'tenant:5')
    expect(pii.hash('phone', '138-1234-5678', 5)).toBe('k2:' + hmac(bank, v1).toString('hex'))
    expect(pii.digests('phone', '13812345678', 5)[1]).toBe(v1)
    expect(pii.rekey(v1, 5)).toBe(pii.hash('phone', '13812345678', 5))
    expect(pii.rekey(v1, 6)).toBe(pii.hash('phone', '13812345678', 6))
    expect(pii.rekey(v1, 6)).not.toBe(pii.rekey(v1, 5))
  })
  it('refuses to re-key what is not a version-1 digest (a bank digest, upper case, a raw value)', () => {
    const v1 = pii.digests('phone', '13812345678', 1)[1]
    for (const bad of [pii.hash('phone', '13812345678', 1), v1.toUpperCase(), v1.slice(1), '13812345678', '']) expect(() => pii.rekey(bad, 1)).toThrow(/version-1/)
    expect(() => pii.rekey(v1, 0)).toThrow()
  })
  it('remembers digests per tenant, kind and value: the same answers once evicted, never another bank\'s', () => {
    const small = createPii('master-secret-master-secret-master-secret', { cacheEntries: 2 })
    const first = small.hash('phone', '13812345678', 1)
    expect(small.hash('phone', '13812345678', 2)).not.toBe(first)
    expect(small.hash('national_id', '13812345678', 1)).not.toBe(first)
    for (let i = 0; i < 10; i++) small.hash('phone', `1391234560${i}`, 1)
    expect(small.hash('phone', '13812345678', 1)).toBe(first)
    expect(small.hash('phone', '13812345678', 1)).toBe(pii.hash('phone', '13812345678', 1))
    expect(() => small.hash('phone', '13812345678', 0)).toThrow()
    const long = `${'x'.repeat(100)}@example.cn`
    expect(small.hash('email', long, 1)).toBe(pii.hash('email', long.toUpperCase(), 1))
  })
})
