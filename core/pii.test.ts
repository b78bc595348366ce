import crypto from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createPii, TENANT_DIGEST_PREFIX, traitDigestKind } from './pii.js'

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

describe('one digest per mobile number, however the country code is written', () => {
  const pii = createPii('master-secret-master-secret-master-secret')
  const bare = pii.hash('phone', '13812345678', 1)
  it.each(['13812345678', '8613812345678', '+8613812345678', '008613812345678', '+86 138 1234 5678', '0086-138-1234-5678', '+86 (138) 1234-5678', ' 138 1234 5678 '])(
    '%s digests as 13812345678, in the bank key and the shared one',
    (form) => {
      expect(pii.hash('phone', form, 1)).toBe(bare)
      expect(pii.digests('phone', form, 1)).toEqual(pii.digests('phone', '13812345678', 1))
    },
  )
  it.each([
    // What remains is no mobile number: the digits are kept as they are.
    ['8612812345678', '12812345678'],
    ['861381234567', '1381234567'],
    ['86138123456789', '138123456789'],
    ['0086 10 1234 5678', '1012345678'],
  ])('%s keeps its 86', (form, without) => {
    expect(pii.hash('phone', form, 1)).not.toBe(pii.hash('phone', without, 1))
    expect(pii.hash('phone', form, 1)).toBe(pii.hash('phone', form.replace(/\D/g, ''), 1))
  })
  it('strips it from phones only: an identity or card number starting 86 is what it is', () => {
    expect(pii.hash('card', '8613812345678', 1)).not.toBe(pii.hash('card', '13812345678', 1))
    expect(pii.hash('national_id', '8613812345678', 1)).not.toBe(pii.hash('national_id', '13812345678', 1))
  })
})

describe('the kind a trait is digested as', () => {
  const ID = '11010519491231002X'
  const CARD = '6222021234567890128'
  it.each([
    ['idCard', ID, 'national_id'],
    ['idCard', '110105491231002', 'national_id'],
    ['id_card', ID, 'national_id'],
    ['idNumber', ID, 'national_id'],
    ['nationalId', ID, 'national_id'],
    ['idNo', ID, 'national_id'],
    ['ID_NO', '110105491231002', 'national_id'],
    ['bankCard', CARD, 'card'],
    ['cardNumber', '6222 0212 3456 7890 128', 'card'],
    ['cardNo', CARD, 'card'],
    // A UnionPay card that also reads as an identity number (62 is a province code): the name decides.
    ['cardNo', '620102199001010257', 'card'],
    ['phone', '+86 138 1234 5678', 'phone'],
    ['mobile', '13812345678', 'phone'],
    ['email', 'Wang@Example.cn', 'email'],
    ['name', '王小明', 'name'],
    ['address', '杭州市西湖区', 'name'],
    // Names the list does not know: the value first, then what the name says.
    ['spouseIdCard', ID, 'national_id'],
    ['spouseIdCard', '110105491231002', 'national_id'],
    ['homePhone', '0571-88888888', 'phone'],
    ['salaryCard', '6222 0212 3456 7890 128', 'card'],
    ['contact', '13812345678', 'phone'],
    ['contact', 'Li Lei', 'name'],
  ] as const)('%s = %s is a %s', (trait, value, kind) => {
    expect(traitDigestKind(trait, value)).toBe(kind)
  })
})
