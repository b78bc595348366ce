import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Push wired into the server as a user meets it: a campaign saved over HTTP, events sent to the
 * Segment endpoint, the anti-fraud tip pulled by the notification service within seconds; and
 * targeting as the `push` pipeline with its run history.
 */

let t: TestApp
let keys: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })

beforeAll(async () => {
  t = await openTestApp()
  keys = await tenantWithKeys(t, 'push-wired')
  const db = t.engine.db.forTenant(keys.tenant.id)
  const at = chDateTime(new Date('2026-01-01T00:00:00Z'))
  await db.insert('customers', [1, 2].map((k) => ({ customer_key: k, customer_no: `PW${k}`, gender: 'unknown', birth_date: '1980-01-01', region_code: 'r', branch_code: 'b', opened_at: at, updated_at: at })))
  await db.insert('identities', [1, 2].map((k) => ({ id_kind: 'customer_no', id_value: `PW${k}`, customer_key: k, source: 'test', created_at: at, updated_at: at })))
}, 60_000)
afterAll(async () => t?.close())

describe('push in the server', () => {
  it('an anti-fraud trigger fires from events sent to /v1/batch, and the target is pulled within 10 s', async () => {
    const body = {
      name: 'Anti-fraud tip',
      purpose: 'security',
      priority: 'critical',
      channel: 'push',
      schedule: {
        kind: 'event',
        steps: [{ event: { names: ['signed_in'], where: [{ property: 'new_device', op: 'eq', value: true }] } }, { event: { names: ['transfer_completed'], where: [{ property: 'amount', op: 'gte', value: 50_000 }] } }],
        withinMinutes: 30,
      },
      message: { body: { zh: '您刚在新设备上登录并大额转账，谨防诈骗', en: 'New device and a large transfer: beware of fraud' } },
    }
    const saved = await t.app.inject({ method: 'PUT', url: '/v1/push/campaigns/anti-fraud', headers: auth(keys.admin), payload: body })
    expect(saved.statusCode, saved.body).toBe(201)
    const now = Date.now()
    const track = (userId: string, event: string, at: number, properties: Record<string, unknown>) => ({ type: 'track', userId, event, properties, timestamp: new Date(at).toISOString(), messageId: `${userId}-${event}-${at}` })
    const sent = performance.now()
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/batch',
      headers: auth(keys.write),
      payload: { batch: [track('PW1', 'signed_in', now - 60_000, { new_device: true }), track('PW1', 'transfer_completed', now, { amount: 80_000 }), track('PW2', 'transfer_completed', now, { amount: 80_000 })] },
    })
    expect(res.statusCode, res.body).toBe(200)
    let targets: { customerNo?: string; campaignId?: string }[] = []
    while (performance.now() - sent < 10_000) {
      const pulled = await t.app.inject({ method: 'POST', url: '/v1/push/pull', headers: auth(keys.read), payload: { limit: 10, leaseSeconds: 30 } })
      expect(pulled.statusCode, pulled.body).toBe(200)
      targets = pulled.json().targets
      if (targets.length) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(performance.now() - sent).toBeLessThan(10_000)
    expect(targets.map((x) => x.customerNo)).toEqual(['PW1'])
  })

  it('targeting runs as the push pipeline, recorded like every run', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(keys.admin), payload: { pipeline: 'push', wait: true } })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().status).toBe('succeeded')
    const status = await t.app.inject({ method: 'GET', url: '/v1/pipelines/status', headers: auth(keys.read) })
    expect(JSON.stringify(status.json())).toContain('"push"')
  })
})
