import { describe, expect, it } from 'vitest'
import { createPii } from '../core/pii.js'
import { normalizeMessage } from '../ingest/normalize.js'
import { MAX_EVENT_BYTES } from '../ingest/segment.schema.js'
import { encodeEvent } from './kafka.message.js'
import { BROKER_DEFAULT_MAX_MESSAGE_BYTES, recordSize, sendCap, tooLarge } from './send-limits.js'

const opts = { receivedAt: Date.now(), backdateMs: 30 * 86_400_000, maxFutureMs: 86_400_000, sensitiveTraits: new Set(['phone']), pii: createPii('k'.repeat(40)) }

/** A track event as sent, its properties' one string filled with `unit` to just under 32 KB. */
function filled(unit: string) {
  const base = { type: 'track', messageId: 'm'.repeat(200), userId: 'u'.repeat(200), anonymousId: 'a'.repeat(200), event: 'e', properties: { t: '' } }
  const room = MAX_EVENT_BYTES - JSON.stringify(base).length - 8
  return { ...base, properties: { t: unit.repeat(Math.floor(room / JSON.stringify(unit).slice(1, -1).length)) } }
}

describe('what an accepted event grows to on its way to Kafka', () => {
  it('fits one message under the broker’s default limit even in the worst case measured (e-mail addresses digested: 10.7x)', () => {
    const sizes: Record<string, number> = {}
    for (const [name, unit] of Object.entries({ emails: 'a@b.cn ', phones: '13812345678 ', quotes: '"', backslashes: '\\', controls: '\u0001' })) {
      const sent = filled(unit)
      const n = normalizeMessage(sent, 1, {}, opts)
      expect(n.ok, name).toBe(true)
      if (!n.ok) continue
      sizes[name] = recordSize(encodeEvent(1, 'an-actor-key-id', n.event)) / Buffer.byteLength(JSON.stringify(sent))
    }
    expect(sizes.emails).toBeGreaterThan(10)
    expect(Math.max(...Object.values(sizes))).toBe(sizes.emails)
    expect(sizes.emails! * MAX_EVENT_BYTES).toBeLessThan(sendCap(BROKER_DEFAULT_MAX_MESSAGE_BYTES))
    // The lowest limit the configuration takes holds it too.
    expect(sizes.emails! * MAX_EVENT_BYTES).toBeLessThan(sendCap(524_288))
  })

  it('knows the broker’s refusals as too large, wrapped or not', () => {
    const refusal = Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE' })
    expect(tooLarge(refusal)).toBe(true)
    expect(tooLarge(new Error('retries exceeded', { cause: Object.assign(new Error('x'), { type: 'RECORD_LIST_TOO_LARGE' }) }))).toBe(true)
    expect(tooLarge(new Error('connection closed'))).toBe(false)
  })
})
