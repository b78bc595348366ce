import { describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import { createPii, type DigestKind } from '../core/pii.js'
import { createValueScanner, maskValue } from '../core/pii.scan.js'
import { normalizeMessage, type NormalizeOptions } from './normalize.js'

const pii = createPii('test-secret-test-secret-test-secret')
const opts = (over: Partial<NormalizeOptions> = {}): NormalizeOptions => ({
  receivedAt: Date.now(),
  backdateMs: 30 * 86_400_000,
  maxFutureMs: 86_400_000,
  sensitiveTraits: new Set(['phone']),
  pii,
  ...over,
})
const ID = '11010519491231002X'
const CARD = '6222021234567890128'

function stored(m: unknown, o = opts()) {
  const n = normalizeMessage(m, 3, {}, o)
  if (!n.ok) throw new Error(JSON.stringify(n.rejection))
  return n.event
}

describe('personal data caught by value on ingest', () => {
  it('replaces numbers under names the list does not know, at any depth, in free text and in the context', () => {
    const e = stored({
      type: 'track',
      userId: 'C1',
      event: 'form_submitted',
      properties: { idcard: ID, tel: '13812345678', cardNo: CARD, form: { id_card: ID, list: [{ mail: 'wang.wu@example.cn' }] }, note: '请回电13912345678谢谢', amount: 13812345678.5, big: 13812345678 },
      context: { page: { url: `https://app.example.cn/apply?mobile=13712345678` } },
    })
    const p = JSON.parse(e.properties)
    const { amount: _amount, ...rest } = p
    for (const raw of [ID, '13812345678', CARD, 'wang.wu@example.cn', '13912345678', '13712345678']) {
      expect(JSON.stringify(rest) + e.context, raw).not.toContain(raw)
    }
    expect(p.idcard).toBe(`[national_id:${pii.hash('national_id', ID, 3)}]`)
    expect(p.note).toBe(`请回电[phone:${pii.hash('phone', '13912345678', 3)}]谢谢`)
    expect(p.big).toBe(`[phone:${pii.hash('phone', '13812345678', 3)}]`)
    // An amount is not a phone number.
    expect(p.amount).toBe(13812345678.5)
    // Where they were found is stored with the event, for the tracking-plan report.
    expect(e.violations).toEqual([
      'personal_data:properties.idcard',
      'personal_data:properties.tel',
      'personal_data:properties.cardNo',
      'personal_data:properties.form.id_card',
      'personal_data:properties.form.list.0.mail',
      'personal_data:properties.note',
      'personal_data:properties.big',
      'personal_data:context.page.url',
    ])
  })

  it('masks instead when the tenant chose masking, and counts what it found', () => {
    const scan = createValueScanner('mask', () => 'unused')
    const e = stored({ type: 'track', userId: 'C1', event: 'e', properties: { tel: '13812345678', text: `卡号${CARD}` } }, opts({ scan }))
    expect(JSON.parse(e.properties)).toEqual({ tel: '138****5678', text: '卡号622202*********0128' })
    expect(scan.counts).toEqual({ phone: 1, national_id: 0, card: 1, email: 0 })
  })

  it('moves a trait that holds one identifier to the digested traits, with the kind found', () => {
    const e = stored({ type: 'identify', userId: 'C1', traits: { tel: '13812345678', idNo: ID, nickname: '小王', phone: '13612345678' } })
    expect(e.traits!.plain).toEqual({ nickname: '小王' })
    expect(e.violations).toEqual(['personal_data:traits.tel', 'personal_data:traits.idNo'])
    expect(e.traits!.hashed).toEqual({ tel: pii.hash('phone', '13812345678', 3), idNo: pii.hash('national_id', ID, 3), phone: pii.hash('phone', '13612345678', 3) })
  })

  it('drops C3 secrets under spelled-out names at any depth', () => {
    const e = stored({ type: 'track', userId: 'C1', event: 'e', properties: { sms_code: '123456', form: { 'pay-password': 'x', loginPwd: 'y', Otp_Code: '1' }, kept: 1 } })
    expect(JSON.parse(e.properties)).toEqual({ form: {}, kept: 1 })
  })

  it('drops them the same way once names are remembered, after the memory starts over, and under long names', () => {
    const secrets = { sms_code: '123456', 'pay-password': 'x', loginPwd: 'y', kept: 1 }
    for (let i = 0; i < 3; i++) expect(JSON.parse(stored({ type: 'track', userId: 'C1', event: 'e', properties: secrets }).properties)).toEqual({ kept: 1 })
    // 12,000 made-up names: more than the names remembered (10,000), so the memory starts over.
    for (let i = 0; i < 120; i++) {
      const props = Object.fromEntries(Array.from({ length: 100 }, (_, j) => [`field_${i}_${j}`, j]))
      expect(Object.keys(JSON.parse(stored({ type: 'track', userId: 'C1', event: 'e', properties: props }).properties))).toHaveLength(100)
    }
    expect(JSON.parse(stored({ type: 'track', userId: 'C1', event: 'e', properties: secrets }).properties)).toEqual({ kept: 1 })
    // Past 64 characters a name is checked each time: long names are kept, not remembered.
    const longName = `note_${'x'.repeat(70)}`
    expect(JSON.parse(stored({ type: 'track', userId: 'C1', event: 'e', properties: { [longName]: 1, password: 'p' } }).properties)).toEqual({ [longName]: 1 })
  })

  it('stores values as sent when the scan is switched off (the benchmark baseline only)', () => {
    const e = stored({ type: 'track', userId: 'C1', event: 'e', properties: { tel: '13812345678' } }, opts({ scan: false }))
    expect(JSON.parse(e.properties)).toEqual({ tel: '13812345678' })
    expect(e.violations).toEqual([])
  })
})

describe('the id made for a message sent without messageId', () => {
  // An identify carrying only a customer number and a phone: an unkeyed SHA-256 of the raw
  // message could be reversed by trying every mobile number (about 10^9). The id is keyed by
  // the bank's digest key instead, so it says nothing to whoever lacks the master secret.
  const msg = { type: 'identify', userId: 'C1', traits: { phone: '13812345678' }, timestamp: '2026-11-30T08:00:00.000Z' }
  const idOf = (o: NormalizeOptions, tenantId = 3) => {
    const n = normalizeMessage(msg, tenantId, {}, o)
    if (!n.ok) throw new Error(JSON.stringify(n.rejection))
    return n.event.messageId
  }

  it('is the same for a retry and differs between banks and between master secrets', () => {
    expect(idOf(opts())).toMatch(/^qm-[0-9a-f]{32}$/)
    expect(idOf(opts())).toBe(idOf(opts()))
    expect(idOf(opts(), 4)).not.toBe(idOf(opts(), 3))
    expect(idOf(opts({ pii: createPii('another-secret-another-secret-another') }))).not.toBe(idOf(opts()))
  })

  it('cannot be recomputed from the message content without the key', async () => {
    const crypto = await import('node:crypto')
    const unkeyed = crypto.createHash('sha256').update(`3:${JSON.stringify(msg)}`).digest('hex').slice(0, 32)
    expect(idOf(opts())).not.toBe(`qm-${unkeyed}`)
  })
})

/**
 * Every place of a message the app fills with its own text, as the events table and the traits
 * store it: an identifier there is replaced by the bank's policy like one in a property value,
 * and where it was is listed. Keys as well as values: a contact list keyed by phone number.
 */
describe('personal data in every place a message carries text', () => {
  const EMAIL = 'wang@example.cn'
  const KINDS = [
    ['phone', '13812345678', 'a mobile number'],
    ['national_id', ID, 'an identity number'],
    ['card', CARD, 'a card number'],
    ['email', EMAIL, 'an e-mail address'],
  ] as const
  type Place = { name: string; message: (v: string) => Record<string, unknown>; where: string }
  const base = { messageId: 'm-places', userId: 'C1' }
  const PLACES: Place[] = [
    { name: 'a property value', message: (v) => ({ ...base, type: 'track', event: 'e', properties: { note: `tel:${v}` } }), where: 'properties.note' },
    { name: 'a property key', message: (v) => ({ ...base, type: 'track', event: 'e', properties: { [v]: 'mum' } }), where: 'properties.' },
    { name: 'a nested property key', message: (v) => ({ ...base, type: 'track', event: 'e', properties: { contacts: { [v]: 'mum' } } }), where: 'properties.contacts.' },
    { name: 'a key inside an array', message: (v) => ({ ...base, type: 'track', event: 'e', properties: { list: [{ [`call ${v}`]: 1 }] } }), where: 'properties.list.0.' },
    { name: 'a trait key', message: (v) => ({ ...base, type: 'identify', traits: { [v]: 'mum' } }), where: 'traits.' },
    { name: 'a nested trait key', message: (v) => ({ ...base, type: 'identify', traits: { family: { [v]: 'mum' } } }), where: 'traits.family.' },
    { name: 'a group trait key', message: (v) => ({ ...base, type: 'group', groupId: 'g1', traits: { [v]: 'x' } }), where: 'traits.' },
    { name: 'a context key', message: (v) => ({ ...base, type: 'track', event: 'e', context: { app: { [v]: 'x' } } }), where: 'context.app.' },
    { name: 'the track event name', message: (v) => ({ ...base, type: 'track', event: `call:${v}` }), where: 'event' },
    { name: 'the page name', message: (v) => ({ ...base, type: 'page', name: `profile ${v}` }), where: 'name' },
    { name: 'the screen name', message: (v) => ({ ...base, type: 'screen', name: `profile ${v}` }), where: 'name' },
    { name: 'the page category', message: (v) => ({ ...base, type: 'page', name: 'p', category: `tel:${v}` }), where: 'category' },
    { name: 'the screen category', message: (v) => ({ ...base, type: 'screen', name: 's', category: `tel:${v}` }), where: 'category' },
    { name: 'the groupId', message: (v) => ({ ...base, type: 'group', groupId: v }), where: 'groupId' },
    { name: 'the session id in the context', message: (v) => ({ ...base, type: 'track', event: 'e', context: { sessionId: `s:${v}` } }), where: 'context.sessionId' },
    { name: 'the session id in the properties', message: (v) => ({ ...base, type: 'track', event: 'e', properties: { session_id: `s:${v}` } }), where: 'properties.session_id' },
  ]
  const CASES = PLACES.flatMap((p) => KINDS.flatMap(([kind, v, label]) => (['digest', 'mask'] as const).map((policy) => [p.name, label, policy, p, kind, v] as const)))

  it.each(CASES)('%s holding %s (%s)', (_name, _label, policy, place, kind, v) => {
    const scan = createValueScanner(policy, (k, x) => pii.hash(k, x, 3))
    const e = stored(place.message(v), opts({ scan }))
    // Nowhere in what is stored: the row's columns, the traits, the list of places.
    expect(JSON.stringify(e)).not.toContain(v)
    const replaced = policy === 'digest' ? `[${kind}:${pii.hash(kind, v, 3)}]` : maskValue(kind, v)
    expect(JSON.stringify(e)).toContain(JSON.stringify(replaced).slice(1, -1))
    expect(scan.counts[kind]).toBe(1)
    // Listed where it was found, under the key as stored when the key held it.
    const path = place.where.endsWith('.') ? expect.stringMatching(new RegExp(`^personal_data:${place.where.replace(/\./g, '\\.')}.+`)) : `personal_data:${place.where}`
    expect(e.violations).toEqual([path])
  })

  it('replaces a number inside an event name as it is sent (call_13812345678)', () => {
    const e = stored({ ...base, type: 'track', event: 'call_13812345678' })
    expect(e.event).toBe(`call_[phone:${pii.hash('phone', '13812345678', 3)}]`)
    expect(e.violations).toEqual(['personal_data:event'])
  })

  it('stores the session id the context names, scrubbed, in the session_id column', () => {
    const e = stored({ ...base, type: 'track', event: 'e', context: { sessionId: 'sess-13812345678' } })
    expect(e.sessionId).toBe(`sess-[phone:${pii.hash('phone', '13812345678', 3)}]`)
    expect(stored({ ...base, type: 'track', event: 'e', context: { sessionId: 'sess-42' } }).sessionId).toBe('sess-42')
  })

  it('keeps keys that hold no identifier as they are, and two keys that become one key both', () => {
    const e = stored({ ...base, type: 'track', event: 'e', properties: { plain: 1, nested: { also_plain: 2 } } })
    expect(JSON.parse(e.properties)).toEqual({ plain: 1, nested: { also_plain: 2 } })
    const scan = createValueScanner('mask', () => 'unused')
    const masked = stored({ ...base, type: 'track', event: 'e', properties: { contacts: { '13812345678': 'mum', '13899995678': 'dad' } } }, opts({ scan }))
    expect(Object.values(JSON.parse(masked.properties).contacts).sort()).toEqual(['dad', 'mum'])
  })
})

describe('one mobile number, one digest, with or without the country code', () => {
  const FORMS = ['13812345678', '8613812345678', '+8613812345678', '008613812345678', '+86 13812345678', '0086 13812345678', '电话+8613812345678']
  it.each(FORMS)('%s in a value digests as 13812345678', (form) => {
    const e = stored({ type: 'track', messageId: 'm', userId: 'C1', event: 'e', properties: { tel: form } })
    expect(JSON.parse(e.properties).tel).toContain(`[phone:${pii.hash('phone', '13812345678', 3)}]`)
    expect(e.properties).not.toContain('13812345678')
  })
  it.each(FORMS.filter((f) => !f.includes(' ') && /^[+\d]/.test(f)))('%s as a phone trait digests as 13812345678', (form) => {
    expect(stored({ type: 'identify', messageId: 'm', userId: 'C1', traits: { phone: form, tel: form } }).traits!.hashed).toEqual({
      phone: pii.hash('phone', '13812345678', 3),
      tel: pii.hash('phone', '13812345678', 3),
    })
  })
})

describe('the kind a sensitive trait is digested as', () => {
  const OLD_ID = '110105491231002'
  const defaults = opts({ sensitiveTraits: new Set(loadConfig({}).ingest.sensitiveTraits) })
  const cases: [trait: string, value: string, kind: DigestKind][] = [
    // Names of identity numbers: a valid one, and one of the 15-digit form the value scan does not know.
    ...['idCard', 'idNumber', 'nationalId', 'national_id', 'id_number', 'idNo', 'id_no', 'id_card'].flatMap((n): [string, string, DigestKind][] => [[n, ID, 'national_id'], [n, OLD_ID, 'national_id']]),
    // Names of card numbers, with and without separators (the scan does not read those).
    ...['bankCard', 'cardNumber', 'card_number', 'cardNo', 'card_no', 'bank_card'].flatMap((n): [string, string, DigestKind][] => [[n, CARD, 'card'], [n, '6222 0212 3456 7890 128', 'card']]),
    ...['phone', 'mobile', 'phoneNumber', 'phone_number'].map((n): [string, string, DigestKind] => [n, '+86 138 1234 5678', 'phone']),
    ['email', 'Wang@Example.cn', 'email'],
    ['name', '王小明', 'name'],
  ]
  it.each(cases)('%s = %s is digested as %s, as the import and the value scan do', (trait, value, kind) => {
    const e = stored({ type: 'identify', messageId: 'm', userId: 'C1', traits: { [trait]: value } }, defaults)
    expect(e.traits!.plain).toEqual({})
    expect(e.traits!.hashed).toEqual({ [trait]: pii.hash(kind, value, 3) })
  })

  it('stores an empty sensitive trait empty, not as the digest of nothing that every empty value would match', () => {
    const e = stored({ type: 'identify', messageId: 'm', userId: 'C1', traits: { phone: '', idCard: '  ', email: 'a@b.cn' } }, defaults)
    expect(e.traits!.hashed).toEqual({ phone: '', idCard: '', email: pii.hash('email', 'a@b.cn', 3) })
  })
})
