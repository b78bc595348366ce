import { Analytics } from '@segment/analytics-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

// The official Node SDK, unmodified, with its host pointed at Qianmian.
let t: TestApp
let host: string
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'sdk-bank')
  host = await t.app.listen({ port: 0, host: '127.0.0.1' })
})
afterAll(async () => t?.close())

describe('@segment/analytics-node', () => {
  it('delivers track, identify, page, screen, group and alias calls that are then stored', async () => {
    const analytics = new Analytics({ writeKey: bank.write, host, flushAt: 20, flushInterval: 50, maxRetries: 2 })
    const errors: unknown[] = []
    analytics.on('error', (e) => errors.push(e))
    analytics.identify({ anonymousId: 'sdk-dev-1', userId: 'S0001', traits: { gender: 'male', phone: '13600000000' } })
    for (let i = 0; i < 25; i++) {
      analytics.track({ userId: 'S0001', event: 'product_viewed', properties: { product_id: `p${i % 3}`, amount: i } })
    }
    analytics.page({ anonymousId: 'sdk-dev-2', name: 'home', properties: { path: '/' } })
    analytics.screen({ userId: 'S0001', name: 'wealth' })
    analytics.group({ userId: 'S0001', groupId: 'family-9', traits: { members: 3 } })
    analytics.alias({ previousId: 'sdk-dev-2', userId: 'S0001' })
    await analytics.closeAndFlush({ timeout: 10_000 })
    expect(errors).toEqual([])

    const rows = await t.engine.db
      .forTenant(bank.tenant.id)
      .query<{ type: string; n: string }>('SELECT type, count() AS n FROM events WHERE tenant_id = {tenant:UInt16} GROUP BY type ORDER BY type')
    expect(Object.fromEntries(rows.map((r) => [r.type, Number(r.n)]))).toEqual({ track: 25, identify: 1, page: 1, screen: 1, group: 1, alias: 1 })
    const [lib] = await t.engine.db
      .forTenant(bank.tenant.id)
      .query<{ lib: string }>("SELECT JSONExtractString(context, 'library', 'name') AS lib FROM events WHERE tenant_id = {tenant:UInt16} LIMIT 1")
    expect(lib!.lib).toBe('@segment/analytics-node')
    const dump = JSON.stringify(await t.engine.db.system.query('SELECT * FROM events'))
    expect(dump).not.toContain('13600000000')
  })

  it('is refused with a wrong key, and the SDK reports it', async () => {
    const analytics = new Analytics({ writeKey: 'qm_w_0000000000000000_' + 'A'.repeat(43), host, flushAt: 1, maxRetries: 0 })
    const errors: unknown[] = []
    analytics.on('error', (e) => errors.push(e))
    analytics.track({ userId: 'x', event: 'nope' })
    await analytics.closeAndFlush({ timeout: 5000 })
    expect(errors.length).toBeGreaterThan(0)
  })
})
