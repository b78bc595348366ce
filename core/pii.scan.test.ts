import { describe, expect, it } from 'vitest'
import { createValueScanner, findPii, isResidentId, luhn, maskValue, type PiiKind } from './pii.scan.js'

/** A deterministic stream of digits, so the corpus is the same on every run. */
function rng(seed: number) {
  let x = seed >>> 0
  return (n: number) => {
    x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0
    return x % n
  }
}
const digits = (r: (n: number) => number, n: number) => Array.from({ length: n }, () => r(10)).join('')

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
function idCheck(body: string) {
  let s = 0
  for (let i = 0; i < 17; i++) s += Number(body[i]) * WEIGHTS[i]!
  return '10X98765432'[s % 11]!
}
const REGIONS = ['110101', '310104', '440305', '510107', '330102', '370202', '650102', '820000']
function residentId(r: (n: number) => number) {
  const y = 1930 + r(90)
  const m = 1 + r(12)
  const d = 1 + r(28)
  const body = REGIONS[r(REGIONS.length)]! + String(y) + String(m).padStart(2, '0') + String(d).padStart(2, '0') + digits(r, 3)
  return body + idCheck(body)
}
function luhnDigit(body: string) {
  for (let c = 0; c < 10; c++) if (luhn(body + c, 0, body.length + 1)) return String(c)
  throw new Error('unreachable')
}
function card(r: (n: number) => number) {
  const [prefix, lengths] = ([['62', [16, 17, 18, 19]], ['4', [13, 16, 19]], ['5', [16]]] as const)[r(3)]!
  const len = lengths[r(lengths.length)]!
  const body = prefix + digits(r, len - 1 - prefix.length)
  return body + luhnDigit(body)
}
const phone = (r: (n: number) => number) => '1' + (3 + r(7)) + digits(r, 9)
/** One digit changed to another: every checksum here catches that. */
function oneOff(r: (n: number) => number, v: string) {
  const i = r(17)
  const d = Number(v[i])
  return v.slice(0, i) + ((d + 1 + r(9)) % 10) + v.slice(i + 1)
}
const kinds = (s: string) => findPii(s).map((m) => [m.kind, s.slice(m.start, m.end)])

describe('value detection on a corpus', () => {
  const r = rng(20261201)
  it('finds every valid number, alone and inside Chinese and English text', () => {
    for (let i = 0; i < 500; i++) {
      const values: [PiiKind, string][] = [
        ['national_id', residentId(r)],
        ['card', card(r)],
        ['phone', phone(r)],
        ['email', `user.${i}+tag@bank-${i}.example.cn`],
      ]
      for (const [kind, v] of values) {
        expect(kinds(v), v).toEqual([[kind, v]])
        expect(kinds(`客户备注：手机${v}，请回电`), v).toEqual([[kind, v]])
        expect(kinds(`call me at ${v}.`), v).toEqual([[kind, v]])
        expect(kinds(`?q=${v}&x=1`), v).toEqual([[kind, v]])
      }
    }
    // Lower-case x as the check character.
    expect(isResidentId('11010519491231002x')).toBe(true)
    expect(kinds('身份证11010519491231002X')).toEqual([['national_id', '11010519491231002X']])
  })

  it.each([
    // The country code written before a mobile number, with its `+` when there is one: wholly one number.
    ['+8613812345678', [['phone', '+8613812345678']]],
    ['8613812345678', [['phone', '8613812345678']]],
    ['008613812345678', [['phone', '008613812345678']]],
    ['电话+8613812345678转8', [['phone', '+8613812345678']]],
    ['tel:008613812345678', [['phone', '008613812345678']]],
    // Separated, the number alone is found.
    ['+86 13812345678', [['phone', '13812345678']]],
    ['0086-13812345678', [['phone', '13812345678']]],
    // Not a mobile number after the code.
    ['008612812345678', []],
    ['8612812345678', []],
    ['+0086138123456789', []],
  ])('%s with a country code', (s, found) => {
    expect(kinds(s)).toEqual(found)
  })

  it('leaves near misses alone: a digit off, a wrong check character, random 18-digit numbers, longer runs', () => {
    let randomIdsTaken = 0
    for (let i = 0; i < 500; i++) {
      const id = residentId(r)
      // A digit off is never an identity number; it may pass as a UnionPay card (62…, one in ten), masked all the same.
      const off1 = oneOff(r, id)
      expect(kinds(off1).filter(([k, v]) => k !== 'card' || !v!.startsWith('62')), off1).toEqual([])
      const wrong = id.slice(0, 17) + ('10X98765432'.replace(id[17]!, '')[r(10)] ?? '0')
      expect(kinds(wrong), wrong).toEqual([])
      const c = card(r)
      const off = c.slice(0, -1) + ((Number(c.at(-1)) + 1 + r(9)) % 10)
      expect(kinds(off), off).toEqual([])
      // A 20-digit run holds neither a phone nor a card.
      expect(kinds(phone(r) + digits(r, 9))).toEqual([])
      expect(kinds(digits(r, 12))).toEqual([])
      if (kinds(digits(r, 18)).length) randomIdsTaken++
    }
    // A random 18-digit number is an identity number only by chance (a province, a date and a check digit).
    expect(randomIdsTaken).toBeLessThan(5)
  })

  it('does not take order numbers, timestamps, amounts or codes for identifiers', () => {
    const negatives = [
      'SO13812345678', // letters around: an order code
      'ORD6222021234567890123',
      '13812345678.50', // an amount
      '0.13812345678',
      '1764547200000', // a millisecond timestamp
      '1764547200',
      '2026-12-01T10:00:00.000Z',
      '12812345678', // no mobile number starts with 12
      '1381234567', // ten digits
      '138123456789', // twelve
      'abc@localhost',
      '@example.com',
      'user@example.c',
      '金额 12345678.90 元',
      '订单号 202612011234567',
    ]
    for (const s of negatives) expect(kinds(s), s).toEqual([])
  })

  it('finds several identifiers in one text, in order, an email whose local part is a phone as one email', () => {
    const s = '张三 13812345678 邮箱 13812345678@qq.com 卡号 6222021234567890128 身份证 11010519491231002X'
    expect(luhn('6222021234567890128', 0, 19)).toBe(true)
    expect(kinds(s)).toEqual([
      ['phone', '13812345678'],
      ['email', '13812345678@qq.com'],
      ['card', '6222021234567890128'],
      ['national_id', '11010519491231002X'],
    ])
  })
})

describe('short strings', () => {
  it('reads a string shorter than a phone number only for an e-mail address', () => {
    expect(kinds('a@b.cn')).toEqual([['email', 'a@b.cn']])
    expect(kinds('ab@cd.com')).toEqual([['email', 'ab@cd.com']])
    expect(kinds('a@b.c')).toEqual([])
    expect(kinds('1381234567')).toEqual([])
    expect(kinds('13812345678')).toEqual([['phone', '13812345678']])
    expect(kinds('手机13812345678')).toEqual([['phone', '13812345678']])
    // Ten characters with an '@' but no address: read, nothing found.
    expect(kinds('1381234@56')).toEqual([])
  })
})

describe('the scanner', () => {
  it('masks or digests by policy, and counts', () => {
    const digest = (k: PiiKind, v: string) => `${k}-${v.length}`
    const mask = createValueScanner('mask', digest)
    expect(mask.text('tel 13812345678; id 11010519491231002X; a.b@c.cn')).toBe('tel 138****5678; id 1****************X; a***@c.cn')
    expect(mask.counts).toEqual({ phone: 1, national_id: 1, card: 0, email: 1 })
    const dig = createValueScanner('digest', digest)
    expect(dig.text('卡号6222021234567890128')).toBe('卡号[card:card-19]')
    expect(dig.whole('13812345678')).toBe('phone')
    expect(dig.whole('tel 13812345678')).toBeUndefined()
    const plain = '没有个人信息 no personal data 42'
    expect(dig.text(plain)).toBe(plain)
    expect(maskValue('card', '6222021234567890128')).toBe('622202*********0128')
    expect(maskValue('phone', '8613812345678')).toBe('86138****5678')
    expect(maskValue('national_id', '11010519491231002X')).toBe('1****************X')
    expect(maskValue('email', 'wang.wu@example.cn')).toBe('w***@example.cn')
  })

  it('answers `text` right after `whole` of the same or another string, counting each identifier once', () => {
    const s = createValueScanner('mask', () => 'unused')
    expect(s.whole('tel 13812345678')).toBeUndefined()
    // Another string than the one asked about as a whole: its own matches, not the last ones.
    expect(s.text('id 11010519491231002X')).toBe('id 1****************X')
    expect(s.whole('tel 13812345678')).toBeUndefined()
    expect(s.text('tel 13812345678')).toBe('tel 138****5678')
    expect(s.whole('no number here at all')).toBeUndefined()
    expect(s.text('tel 13912345678')).toBe('tel 139****5678')
    expect(s.text('tel 13912345678')).toBe('tel 139****5678')
    expect(s.counts).toEqual({ phone: 3, national_id: 1, card: 0, email: 0 })
  })
})
