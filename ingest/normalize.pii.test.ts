import { describe, expect, it } from 'vitest'
import { createPii } from '../core/pii.js'
import { createValueScanner } from '../core/pii.scan.js'
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
