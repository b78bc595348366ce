import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { seedDemoBank } from '../test/demo.js'
import { openTestApp, type TestApp } from '../test/app.js'
import type { Layout } from './layout.service.js'

/**
 * The personalization switch on the layouts, end to end on a small demo bank: a customer who
 * turns it off gets the bank's non-personalized default plus the service reminders they need,
 * from the next request, and the layout says so.
 */

let t: TestApp
let tenantId: number
let gateway: string
let desk: string
/** A customer with a loan due in 7 days (a service reminder) and a tag-conditioned module. */
let due: { no: string; key: number }

beforeAll(async () => {
  t = await openTestApp()
  tenantId = (await seedDemoBank(t, { customers: 1500, days: 14, seed: 11 })).id
  const run = await t.tags.runner.run({ tenantId, pipeline: 'recommend', trigger: 'api' })
  expect(run.status, run.error).toBe('succeeded')
  gateway = (await t.keys.issue(tenantId, { roles: ['layout'], holder: 'test gateway' })).key
  desk = (await t.keys.issue(tenantId, { roles: ['consent'], holder: 'test counter' })).key
  const [r] = await t.engine.db.forTenant(tenantId).query(
    `SELECT c.customer_no AS no, c.customer_key AS key FROM customers AS c FINAL
     WHERE c.tenant_id = {tenant:UInt16} AND c.customer_key IN (
       SELECT customer_key FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'loan_due_7d' AND value = 'true' AND is_deleted = 0)
       AND c.customer_key IN (
       SELECT customer_key FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'elder' AND value = 'true' AND is_deleted = 0)
     ORDER BY key LIMIT 1`,
    {},
    z.object({ no: z.string(), key: z.coerce.number() }),
  )
  expect(r, 'the demo bank has an elder customer with a loan due').toBeDefined()
  due = r!
}, 300_000)
afterAll(async () => t?.close())

async function layout(query: Record<string, string>): Promise<Layout> {
  const res = await t.app.inject({ url: `/v1/layout?${new URLSearchParams({ lang: 'en', ...query })}`, headers: { authorization: `Bearer ${gateway}` } })
  expect(res.statusCode, res.body).toBe(200)
  return res.json<Layout>()
}
const turn = (on: boolean, at: string) =>
  t.app.inject({
    method: 'PUT',
    url: `/v1/customers/${due.no}/consents`,
    headers: { authorization: `Bearer ${desk}` },
    payload: { purpose: 'personalization', granted: on, source: 'app', noticeVersion: 'v1', at },
  })
const kinds = (l: Layout) => new Set(l.modules.flatMap((m) => [m.reason.kind, ...m.items.map((i) => i.reason.kind)]))

describe('the personalization switch', () => {
  it('serves the bank’s default plus the service reminders, says personalized:false and why, from the next request', async () => {
    const before = await layout({ customerId: due.no, mode: 'standard' })
    expect(before).toMatchObject({ known: true, personalized: true, personalizedReason: null })
    expect(before.modules.some((m) => m.reason.kind === 'tag')).toBe(true)

    expect((await turn(false, new Date(Date.now() - 1000).toISOString())).statusCode).toBe(200)
    const off = await layout({ customerId: due.no, mode: 'standard' })
    expect(off).toMatchObject({ known: true, personalized: false, personalizedReason: 'personalization_off', experiment: null })
    // Nothing chosen by the customer's tags, segments or model: rules, the bank's popularity,
    // and the service reminders, marked as such.
    for (const k of kinds(off)) expect(['rule', 'popularity', 'service']).toContain(k)
    const reminders = off.modules.find((m) => m.id === 'reminders')
    expect(reminders?.items.map((i) => [i.id, i.reason.kind])).toContainEqual(['reminder.loan_due', 'service'])
    expect(reminders!.items.every((i) => i.reason.kind === 'service')).toBe(true)
    // Everything else is what an unknown visitor gets, but for caps: they limit how often the
    // customer sees an item rather than choose it for them, so they hold with the switch off.
    const anonymous = await layout({ mode: 'standard' })
    expect(anonymous).toMatchObject({ known: false, personalized: false, personalizedReason: 'unknown_customer' })
    const rest = (l: Layout, capped?: string) =>
      l.modules
        .filter((m) => m.id !== 'reminders')
        .map((m) => [m.id, m.items.map((i) => i.id).filter((id) => id !== capped)] as const)
        .filter(([, items]) => items.length > 0)
    // promo.digital (at most 2 a day) is not at the customer's cap yet.
    expect(rest(off)).toEqual(rest(anonymous))
    let capped = off
    for (let i = 0; i < 3 && capped.modules.some((m) => m.items.some((it) => it.id === 'promo.digital')); i++) capped = await layout({ customerId: due.no, mode: 'standard' })
    expect(rest(capped)).toEqual(rest(anonymous, 'promo.digital'))
    expect(rest(anonymous)).not.toEqual(rest(anonymous, 'promo.digital'))
    // Elder mode comes from the elder tag only while personalization is on.
    expect((await layout({ customerId: due.no })).elder).toBe(false)
  })

  it('turns personalization back on with a newer decision, and ignores an older one', async () => {
    expect((await turn(true, new Date(Date.now() - 60_000).toISOString())).statusCode).toBe(409)
    expect((await layout({ customerId: due.no })).personalized).toBe(false)
    expect((await turn(true, new Date().toISOString())).statusCode).toBe(200)
    const on = await layout({ customerId: due.no })
    expect(on).toMatchObject({ personalized: true, personalizedReason: null, elder: true })
  })
})
