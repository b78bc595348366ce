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
})
