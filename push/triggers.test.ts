import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { antiFraudCampaign } from '../test/fixtures.js'
import { campaign, openPush, seedBank, type PushFixture } from './push.fixture.js'

/**
 * Event triggers end to end on the real engine: events are written to the events table as the
 * ingest writer writes them, `onEvents` is called with the batch, and the notification service's
 * next pull has the anti-fraud tip, within seconds of the event.
 */

let fx: PushFixture
let t: number
const MIN = 60_000

const antiFraud = campaign({
  ...antiFraudCampaign,
  message: { body: { zh: '{{name}}，您刚在新设备上登录并大额转账，谨防诈骗', en: 'New device and a large transfer: beware of fraud' } },
})

function event(k: number, name: string, at: number, props: Record<string, unknown>) {
  const ts = chDateTime(at)
  return {
    customer_key: k, timestamp: ts, type: 'track', event: name, message_id: `${name}-${k}-${at}`, anonymous_id: '', user_id: `TR000${k}`,
    session_id: 's', properties: JSON.stringify(props), context: '{}', sent_at: ts, received_at: ts, violations: [],
  }
}

beforeAll(async () => {
  fx = await openPush()
  t = await seedBank(fx, { slug: 'trigger', timeZone: 'Asia/Shanghai', prefix: 'TR', n: 6, loanDay: '2026-03-18', asOf: new Date() })
  await fx.push.campaigns.save(t, 'anti-fraud', antiFraud, 'test')
}, 60_000)
afterAll(async () => fx?.close())

describe('event triggers', () => {
  it('turns "new-device sign-in, then a large transfer within 30 minutes" into a pullable target within seconds', async () => {
    const now = Date.now()
    const db = fx.engine.db.forTenant(t)
    // Earlier events, already stored: the sign-ins.
    await db.insert('events', [
      event(1, 'signed_in', now - 10 * MIN, { new_device: true }),
      event(3, 'signed_in', now - 10 * MIN, { new_device: true }),
      event(4, 'signed_in', now - 120 * MIN, { new_device: true }),
      event(5, 'signed_in', now - 10 * MIN, { new_device: false }),
    ])
    // The batch that completes (or not) the sequence: stored, then handed to the triggers.
    const batch = [
      event(1, 'transfer_completed', now, { amount: 60_000 }), // completes
      event(2, 'transfer_completed', now, { amount: 90_000 }), // no sign-in
      event(3, 'transfer_completed', now, { amount: 1_000 }), // small
      event(4, 'transfer_completed', now, { amount: 80_000 }), // sign-in too long ago
      event(5, 'transfer_completed', now, { amount: 80_000 }), // a known device
    ]
    const t0 = performance.now()
    await db.insert('events', batch)
    const result = await fx.push.onEvents(t, batch.map((e) => ({ event: e.event, userId: e.user_id, timestamp: now })))
    const pulled = await fx.push.leases.pull(t, { limit: 10, leaseSeconds: 30 })
    const seconds = (performance.now() - t0) / 1000
    expect(result).toMatchObject({ campaigns: 1, queued: 1 })
    expect(pulled.map((p) => [p.customerNo, p.campaignId, p.purpose, p.body])).toEqual([['TR0001', 'anti-fraud', 'security', '张1*，您刚在新设备上登录并大额转账，谨防诈骗']])
    expect(seconds).toBeLessThan(10)

    // The same customers again the same day: one tip per customer and local date.
    const again = [event(1, 'transfer_completed', now + 1000, { amount: 70_000 })]
    await db.insert('events', again)
    expect(await fx.push.onEvents(t, [{ event: 'transfer_completed', customerKey: 1, timestamp: now + 1000 }])).toMatchObject({ targeted: 0 })
  })

  it('costs nothing for events no trigger waits for, and skips events without a known customer', async () => {
    expect(await fx.push.onEvents(t, [{ event: 'page_viewed', userId: 'TR0001', timestamp: Date.now() }])).toEqual({ campaigns: 0, targeted: 0, queued: 0 })
    expect(await fx.push.onEvents(t, [{ event: 'transfer_completed', userId: 'nobody', timestamp: Date.now() }])).toEqual({ campaigns: 0, targeted: 0, queued: 0 })
    expect(await fx.push.onEvents(t, [{ event: 'transfer_completed', timestamp: Date.now() }])).toEqual({ campaigns: 0, targeted: 0, queued: 0 })
  })

  it('keeps a scheduled run away from event campaigns', async () => {
    const out = await fx.push.runTargeting(t, {})
    expect(out.campaigns.map((c) => c.campaignId)).not.toContain('anti-fraud')
  })
})
