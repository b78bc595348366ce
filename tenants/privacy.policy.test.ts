import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

let t: TestApp
beforeAll(async () => {
  t = await openTestApp()
})
afterAll(async () => t?.close())

describe("the bank's policy for identifiers found in event values", () => {
  it('digests by default and masks once the admin chose masking', async () => {
    const k = await tenantWithKeys(t, 'policy-a')
    const send = (messageId: string) =>
      t.app.inject({ method: 'POST', url: '/v1/track', headers: { authorization: `Bearer ${k.write}` }, payload: { messageId, userId: 'C1', event: 'e', properties: { tel: '13812345678' } } })
    expect((await send('p1')).statusCode).toBe(200)
    const put = await t.app.inject({ method: 'PUT', url: '/v1/tenant/privacy', headers: { authorization: `Bearer ${k.admin}` }, payload: { valuePolicy: 'mask' } })
    expect(put.statusCode).toBe(200)
    expect((await send('p2')).statusCode).toBe(200)
    const rows = await t.engine.db
      .forTenant(k.tenant.id)
      .query<{ m: string; p: string }>(`SELECT message_id AS m, properties AS p FROM events WHERE tenant_id = {tenant:UInt16} ORDER BY m`)
    expect(rows.map((r) => JSON.parse(r.p).tel)).toEqual([expect.stringMatching(/^\[phone:k2:[0-9a-f]{64}\]$/), '138****5678'])
  })
})
