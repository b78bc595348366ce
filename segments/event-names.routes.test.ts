import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/** The event names an event condition can use: the bank's own recent track events, most frequent first. */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let other: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (key: string) => ({ authorization: `Bearer ${key}` })

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'names-bank')
  other = await tenantWithKeys(t, 'names-other')
  const now = chDateTime(new Date())
  const ev = (k: number, event: string, daysAgo: number, type = 'track') => ({
    customer_key: k, timestamp: chDateTime(Date.now() - daysAgo * 86_400_000), type, event, message_id: `m-${k}-${event}-${daysAgo}-${type}`, anonymous_id: '',
    user_id: `C${k}`, session_id: 's', properties: '{}', context: '{}', sent_at: now, received_at: now, violations: [],
  })
  await t.engine.db.forTenant(bank.tenant.id).insert('events', [
    ev(1, 'login', 1), ev(2, 'login', 2), ev(3, 'login', 3),
    ev(1, 'product_viewed', 1), ev(2, 'product_viewed', 5),
    ev(1, 'bill_paid', 200), // older than the window
    ev(1, 'home', 1, 'screen'), // a screen, not a track event
  ])
  await t.engine.db.forTenant(other.tenant.id).insert('events', [ev(1, 'other_bank_event', 1)])
}, 60_000)

afterAll(async () => t?.close())

describe('GET /v1/events/names', () => {
  it("lists the bank's track events of the last 90 days, most frequent first, and no other bank's", async () => {
    const r = await t.app.inject({ url: '/v1/events/names', headers: auth(bank.read) })
    expect(r.statusCode).toBe(200)
    expect(r.json()).toEqual({ days: 90, events: [{ name: 'login', events: 3 }, { name: 'product_viewed', events: 2 }] })
  })

  it('needs a key', async () => {
    expect((await t.app.inject({ url: '/v1/events/names' })).statusCode).toBe(401)
  })
})
