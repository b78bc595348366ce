import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { seedDemoBank, serviceItem } from '../test/demo.js'
import { openTestApp, type TestApp } from '../test/app.js'
import type { Layout } from './layout.service.js'

/**
 * A customer merged into another is one person in their layouts: the survivor is offered what
 * either key's tags call for, and the number merged away is served the survivor's layout (as the
 * merges stood when the layout snapshot was loaded).
 */

let t: TestApp
let tenantId: number
let read: string
let admin: string
let agri: string[]
let others: string[]

beforeAll(async () => {
  t = await openTestApp()
  tenantId = (await seedDemoBank(t, { customers: 300, days: 7, seed: 11 })).id
  read = (await t.keys.issue(tenantId, { roles: ['layout'], holder: 'test gateway' })).key
  admin = (await t.keys.issue(tenantId, { roles: ['admin'], holder: 'test admin' })).key
  const own = { holdoutPerMille: 0, items: [serviceItem('svc.agri', { when: { tag: 'agri_interest', op: 'eq', value: true } })] }
  const put = await t.app.inject({ method: 'PUT', url: '/v1/layout/catalog', headers: { authorization: `Bearer ${admin}` }, payload: own })
  expect(put.statusCode, put.body).toBe(201)
  const run = await t.tags.runner.run({ tenantId, pipeline: 'recommend', trigger: 'api' })
  expect(run.status, run.error).toBe('succeeded')
  const rows = await t.engine.db.forTenant(tenantId).query(
    `SELECT c.customer_no AS no, has(groupArrayIf(tv.tag, tv.value = 'true'), 'agri_interest') AS agri
     FROM customers AS c FINAL
     LEFT JOIN (SELECT customer_key, tag, value FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0) AS tv ON tv.customer_key = c.customer_key
     WHERE c.tenant_id = {tenant:UInt16} AND c.deleted = 0 GROUP BY no ORDER BY no`,
    {},
    z.object({ no: z.string(), agri: z.coerce.boolean() }),
  )
  agri = rows.filter((r) => r.agri).map((r) => r.no)
  others = rows.filter((r) => !r.agri).map((r) => r.no)
}, 300_000)
afterAll(async () => t?.close())

async function items(customerId: string): Promise<string[]> {
  const res = await t.app.inject({ url: `/v1/layout?${new URLSearchParams({ lang: 'en', customerId })}`, headers: { authorization: `Bearer ${read}` } })
  expect(res.statusCode, res.body).toBe(200)
  const l = res.json<Layout>()
  expect(l.personalizedReason, customerId).toBe(null)
  return l.modules.flatMap((m) => m.items.map((i) => i.id))
}

async function personalizedReason(customerId: string): Promise<string | null> {
  const res = await t.app.inject({ url: `/v1/layout?${new URLSearchParams({ lang: 'en', customerId })}`, headers: { authorization: `Bearer ${read}` } })
  expect(res.statusCode, res.body).toBe(200)
  return res.json<Layout>().personalizedReason
}

/** The switch reaches the layouts with the next background refresh: ask until it holds, or say what was seen. */
async function eventually(customerId: string, want: string | null): Promise<void> {
  let seen: string | null = null
  for (let i = 0; i < 100; i++) {
    seen = await personalizedReason(customerId)
    if (seen === want) return
    await new Promise((r) => setTimeout(r, 100))
  }
  expect(seen, customerId).toBe(want)
}

const merge = async (from: string, to: string): Promise<string> => {
  const res = await t.app.inject({ method: 'POST', url: '/v1/identities/merge', headers: { authorization: `Bearer ${admin}` }, payload: { from, to, reason: 'one person, two registrations' } })
  expect(res.statusCode, res.body).toBe(200)
  return res.json<{ changeId: string }>().changeId
}

describe('layouts of merged customers', () => {
  it('offer the survivor what the key merged into it calls for, and serve the number merged away the survivor’s layout', async () => {
    expect(agri.length).toBeGreaterThan(0)
    expect(others.length).toBeGreaterThan(0)
    const [from, into] = [agri[0]!, others[0]!]
    expect(await items(from)).toContain('svc.agri')
    expect(await items(into)).not.toContain('svc.agri')

    await merge(from, into)
    await t.recommend.layouts.reload(tenantId)
    expect(await items(into)).toContain('svc.agri')
    expect(await items(from)).toContain('svc.agri')
    // The survivor's own: another customer without the tag is still not offered it.
    expect(await items(others[1]!)).not.toContain('svc.agri')
  })

  it('hold the personalization switch of the person: the latest decision under either number, until the merge is undone', async () => {
    const [from, into] = [others[2]!, others[3]!]
    const desk = (await t.keys.issue(tenantId, { roles: ['consent'], holder: 'test counter' })).key
    const turn = async (no: string, on: boolean, at: Date) => {
      const res = await t.app.inject({
        method: 'PUT',
        url: `/v1/customers/${no}/consents`,
        headers: { authorization: `Bearer ${desk}` },
        payload: { purpose: 'personalization', granted: on, source: 'app', noticeVersion: 'v1', at: at.toISOString() },
      })
      expect(res.statusCode, res.body).toBe(200)
    }
    const now = Date.now()
    await turn(into, true, new Date(now - 60_000))
    await turn(from, false, new Date(now - 30_000))
    await eventually(from, 'personalization_off')
    await eventually(into, null)

    const change = await merge(from, into)
    await t.recommend.layouts.reload(tenantId)
    await eventually(into, 'personalization_off')
    await eventually(from, 'personalization_off')

    const undo = await t.app.inject({ method: 'POST', url: `/v1/identities/changes/${change}/undo`, headers: { authorization: `Bearer ${admin}` } })
    expect(undo.statusCode, undo.body).toBe(200)
    await t.recommend.layouts.reload(tenantId)
    await eventually(into, null)
    await eventually(from, 'personalization_off')
  })
})
