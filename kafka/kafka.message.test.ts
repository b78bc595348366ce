import { describe, expect, it } from 'vitest'
import type { PendingEvent } from '../ingest/normalize.js'
import { pendingEvent } from '../test/fixtures.js'
import { decodeEvent, encodeEvent } from './kafka.message.js'

const event = (over: Partial<PendingEvent> = {}): PendingEvent => pendingEvent(over)

describe('the Kafka event message', () => {
  it('round-trips an event, a reset device clock (1970) included', () => {
    const e = event({ sentAt: 0 })
    const d = decodeEvent(Buffer.from(encodeEvent(7, 'k', e).value))
    expect(d).toEqual({ ok: true, message: { v: 1, tenant: 7, actor: 'k', event: e } })
  })

  it('refuses times the events table cannot hold, naming the field (the worker dead-letters it)', () => {
    for (const [field, v] of [
      ['sentAt', Date.UTC(-1, 0, 1)],
      ['timestamp', Date.UTC(2300, 0, 1)],
      ['receivedAt', Date.UTC(1899, 11, 31)],
      ['sentAt', 1.5],
    ] as const) {
      const d = decodeEvent(Buffer.from(encodeEvent(7, 'k', event({ [field]: v })).value))
      expect(d.ok, `${field} ${v}`).toBe(false)
      if (!d.ok) expect(d.reason).toMatch(new RegExp(`^invalid event\\.${field}:`))
    }
  })
})
