import Analytics from '@rudderstack/rudder-sdk-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

// RudderStack's official Node SDK, unmodified, with its data plane pointed at Qianmian. It posts
// gzip JSON batches to /v1/batch labelled application/x-www-form-urlencoded (axios' default for
// a Buffer body), the key as the Basic user name.
let t: TestApp
let host: string
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'rudder-bank')
  host = await t.app.listen({ port: 0, host: '127.0.0.1' })
})
afterAll(async () => t?.close())

const countsByType = async (tenantId: number) => {
  const rows = await t.engine.db
    .forTenant(tenantId)
    .query<{ type: string; n: string; ids: string }>('SELECT type, count() AS n, uniqExact(message_id) AS ids FROM events WHERE tenant_id = {tenant:UInt16} GROUP BY type ORDER BY type')
  return rows
}

describe('@rudderstack/rudder-sdk-node', () => {
  it('delivers track, identify, page, screen, group and alias calls, each stored once', async () => {
    const errors: unknown[] = []
    const analytics = new Analytics(bank.write, { dataPlaneUrl: host, flushAt: 100, flushInterval: 50, retryCount: 0, logLevel: 'error', errorHandler: (e) => errors.push(e) })
    analytics.identify({ anonymousId: 'rs-dev-1', userId: 'R0001', traits: { gender: 'female', phone: '13700000000' } })
    for (let i = 0; i < 25; i++) analytics.track({ userId: 'R0001', event: 'product_viewed', properties: { product_id: `p${i % 3}`, amount: i } })
    analytics.page({ anonymousId: 'rs-dev-2', name: 'home', properties: { path: '/' } })
    analytics.screen({ userId: 'R0001', name: 'wealth' })
    analytics.group({ userId: 'R0001', groupId: 'family-7', traits: { members: 4 } })
    analytics.alias({ previousId: 'rs-dev-2', userId: 'R0001' })
    // The first call is sent at once, the rest when flushed: two gzip requests.
    await analytics.flush()
    expect(errors).toEqual([])

    const rows = await countsByType(bank.tenant.id)
    expect(Object.fromEntries(rows.map((r) => [r.type, Number(r.n)]))).toEqual({ track: 25, identify: 1, page: 1, screen: 1, group: 1, alias: 1 })
    for (const r of rows) expect(Number(r.ids), r.type).toBe(Number(r.n))
    const [lib] = await t.engine.db
      .forTenant(bank.tenant.id)
      .query<{ lib: string }>("SELECT JSONExtractString(context, 'library', 'name') AS lib FROM events WHERE tenant_id = {tenant:UInt16} LIMIT 1")
    expect(lib!.lib).toBe('analytics-node')
    const dump = JSON.stringify(await t.engine.db.system.query('SELECT * FROM events'))
    expect(dump).not.toContain('13700000000')
  })

  it('sends uncompressed batches too (gzip: false), as JSON', async () => {
    const other = await tenantWithKeys(t, 'rudder-plain')
    const errors: unknown[] = []
    const analytics = new Analytics(other.write, { dataPlaneUrl: host, gzip: false, flushAt: 100, flushInterval: 50, retryCount: 0, logLevel: 'error', errorHandler: (e) => errors.push(e) })
    analytics.track({ userId: 'R0002', event: 'login' })
    analytics.track({ userId: 'R0002', event: 'logout' })
    await analytics.flush()
    expect(errors).toEqual([])
    expect((await countsByType(other.tenant.id)).map((r) => [r.type, Number(r.n), Number(r.ids)])).toEqual([['track', 2, 2]])
  })

  it('is refused with a wrong key, and the SDK reports it', async () => {
    const errors: { response?: { status?: number } }[] = []
    const analytics = new Analytics('qm_w_0000000000000000_' + 'A'.repeat(43), { dataPlaneUrl: host, flushAt: 1, retryCount: 0, logLevel: 'error', errorHandler: (e) => errors.push(e as never) })
    analytics.track({ userId: 'x', event: 'nope' })
    await analytics.flush()
    expect(errors.map((e) => e.response?.status)).toEqual([401])
  })
})
