import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { inHoldout } from '../core/holdout.js'
import { seedDemoBank, serviceItem } from '../test/demo.js'
import { openTestApp, type TestApp } from '../test/app.js'
import type { Layout } from './layout.service.js'

/**
 * Reasons over HTTP on a small demo bank: what they name for which key (a high-sensitivity tag,
 * a risk flag, only for a key that may read personal data), and which branch of a condition
 * words them for the customer (one that holds for them).
 */

const HOLDOUT = 500
let t: TestApp
let tenantId: number
/** The app gateway; a console key without personal data; the bank's administrator. */
const keys = { gateway: '', desk: '', admin: '' }
let high: string[]
let customers: { no: string; tags: Record<string, string> }[]

/** The bank's own entries chosen by risk flags: a module and its service, and a tip of two signals. */
const OWN = {
  holdoutPerMille: HOLDOUT,
  modules: [
    { id: 'protect_zone', title: { zh: '安心专区', en: 'Peace of mind' }, priority: 850, maxItems: 4, when: { tag: 'vulnerable', op: 'eq', value: true } },
    { id: 'safety_zone', title: { zh: '安全提醒', en: 'Safety' }, priority: 840, maxItems: 2 },
  ],
  items: [
    serviceItem('svc.protect', { module: 'protect_zone', when: { tag: 'vulnerable', op: 'eq', value: true } }),
    serviceItem('tip.transfers', { module: 'safety_zone', type: 'tip', when: { any: [{ tag: 'large_transfers_7d', op: 'gte', value: 1 }, { tag: 'new_device_signins_7d', op: 'gte', value: 1 }] } }),
  ],
}

beforeAll(async () => {
  t = await openTestApp()
  tenantId = (await seedDemoBank(t, { customers: 600, days: 14, seed: 5 })).id
  keys.gateway = (await t.keys.issue(tenantId, { roles: ['layout'], holder: 'test gateway' })).key
  keys.desk = (await t.keys.issue(tenantId, { roles: ['layout', 'analyst', 'marketer'], holder: 'test console' })).key
  keys.admin = (await t.keys.issue(tenantId, { roles: ['admin'], holder: 'test admin' })).key
  const put = await t.app.inject({ method: 'PUT', url: '/v1/layout/catalog', headers: { authorization: `Bearer ${keys.admin}` }, payload: OWN })
  expect(put.statusCode, put.body).toBe(201)
  const run = await t.tags.runner.run({ tenantId, pipeline: 'recommend', trigger: 'api' })
  expect(run.status, run.error).toBe('succeeded')
  high = (await t.tags.repo.list(tenantId)).filter((d) => d.sensitivity === 'high').map((d) => d.name)
  const rows = await t.engine.db.forTenant(tenantId).query(
    `SELECT c.customer_no AS no, groupArrayIf((tv.tag, if(tv.value != '', tv.value, toString(tv.num))), tv.tag != '') AS tags
     FROM customers AS c FINAL
     LEFT JOIN (SELECT customer_key, tag, value, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0) AS tv ON tv.customer_key = c.customer_key
     WHERE c.tenant_id = {tenant:UInt16} AND c.deleted = 0 GROUP BY no ORDER BY no`,
    {},
    z.object({ no: z.string(), tags: z.array(z.tuple([z.string(), z.string()])) }),
  )
  customers = rows.map((r) => ({ no: r.no, tags: Object.fromEntries(r.tags) }))
}, 300_000)
afterAll(async () => t?.close())

const truthy = (c: { tags: Record<string, string> }, tag: string) => c.tags[tag] === 'true' || Number(c.tags[tag] ?? 0) >= 1
const held = (c: { no: string }) => inHoldout(tenantId, c.no, HOLDOUT)
const get = (url: string, key: string) => t.app.inject({ url, headers: { authorization: `Bearer ${key}` } })
/** One customer of the sample: the first that `pick` takes (the test says which it needs). */
const one = (what: string, pick: (c: { no: string; tags: Record<string, string> }) => boolean) => {
  const c = customers.find(pick)
  expect(c, what).toBeDefined()
  return c!.no
}
// The reminder of an overdue loan is the catalogue's own item (`reminder.loan_overdue`, code
// `loan_overdue`): customers with it are left out, so every high tag's name can be looked for.
const calm = (c: { tags: Record<string, string> }) => !truthy(c, 'loan_overdue')

describe('reasons and high-sensitivity tags', () => {
  /** Requests whose answer is chosen by a high tag, and whether a key with personal:read reads its name there. */
  const table: { name: string; url: () => string; shownWithPersonal: boolean }[] = [
    {
      name: 'tips chosen by risk signals (tag reasons, one of a condition with branches)',
      url: () => `/v1/layout?mode=standard&customerId=${one('a personalized customer with a new-device sign-in', (c) => !held(c) && calm(c) && truthy(c, 'new_device_signins_7d'))}`,
      shownWithPersonal: true,
    },
    {
      name: 'the same tips in the holdout (service reasons), in English and elder mode',
      url: () => `/v1/layout?mode=elder&lang=en&customerId=${one('a held customer with a new-device sign-in', (c) => held(c) && calm(c) && truthy(c, 'new_device_signins_7d'))}`,
      shownWithPersonal: true,
    },
    {
      name: 'a module and its item chosen by a risk flag (module and tag reasons)',
      url: () => `/v1/layout?mode=standard&customerId=${one('a personalized vulnerable customer', (c) => !held(c) && calm(c) && truthy(c, 'vulnerable'))}`,
      shownWithPersonal: true,
    },
    // Counts per module and item: no reason in it, for anyone.
    { name: 'the experiments report', url: () => '/v1/layout/experiments', shownWithPersonal: false },
  ]

  for (const row of table) {
    it(`${row.name}: no high tag named to a key without personal:read${row.shownWithPersonal ? ', named to one with it' : ''}`, async () => {
      const url = row.url()
      expect(high.length).toBeGreaterThan(0)
      for (const key of [keys.gateway, keys.desk]) {
        const res = await get(url, key)
        if (res.statusCode === 403) continue
        expect(res.statusCode, res.body).toBe(200)
        for (const name of high) expect(res.body, `${url} ${name}`).not.toContain(name)
      }
      const full = await get(url, keys.admin)
      expect(full.statusCode, full.body).toBe(200)
      expect(high.some((name) => full.body.includes(name)), url).toBe(row.shownWithPersonal)
    })
  }

  it('keeps the reason’s code and customer text, and names the tags the key may see', async () => {
    const vulnerable = one('a personalized vulnerable customer', (c) => !held(c) && calm(c) && truthy(c, 'vulnerable'))
    const signalled = one('a personalized customer with a new-device sign-in', (c) => !held(c) && calm(c) && truthy(c, 'new_device_signins_7d'))
    const reasons = async (no: string, module: string, key: string) => {
      const l = (await get(`/v1/layout?mode=standard&lang=en&customerId=${no}`, key)).json<Layout>()
      const zone = l.modules.find((m) => m.id === module)!
      expect(zone, module).toBeDefined()
      return Object.fromEntries([['module', zone.reason], ...zone.items.map((i) => [i.id, i.reason])]) as Record<string, { code: string; text: string; tags: string[]; detail: string }>
    }
    for (const [no, module] of [[vulnerable, 'protect_zone'], [signalled, 'safety_zone']] as const) {
      const [masked, full] = [await reasons(no, module, keys.gateway), await reasons(no, module, keys.admin)]
      expect(Object.keys(masked)).toEqual(Object.keys(full))
      for (const id of Object.keys(full)) expect([masked[id]!.code, masked[id]!.text], id).toEqual([full[id]!.code, full[id]!.text])
      if (module === 'protect_zone') {
        expect(full.module).toMatchObject({ tags: ['vulnerable'], detail: 'shown because vulnerable holds for the customer' })
        expect(masked.module).toMatchObject({ tags: [], detail: 'shown because its condition holds for the customer' })
        expect(masked['svc.protect']).toMatchObject({ tags: [], detail: 'shown while its condition holds' })
      } else {
        expect(full['tip.transfers']).toMatchObject({ tags: ['large_transfers_7d', 'new_device_signins_7d'], code: 'new_device', detail: 'shown while its condition on large_transfers_7d, new_device_signins_7d holds' })
        expect(masked['tip.transfers']).toMatchObject({ tags: [], code: 'new_device', detail: 'shown while its condition holds' })
      }
    }
  })
})

describe('reasons of a condition with branches', () => {
  /** The reason of a module for a personalized customer, in English. */
  const moduleReason = async (no: string, module: string) => {
    const l = (await get(`/v1/layout?mode=standard&lang=en&customerId=${no}`, keys.gateway)).json<Layout>()
    return l.modules.find((m) => m.id === module)?.reason
  }

  it('are worded from a branch that holds for the customer', async () => {
    const family = one('a family agent who is not elder', (c) => !held(c) && truthy(c, 'family_agent') && !truthy(c, 'elder'))
    expect(await moduleReason(family, 'family_zone')).toMatchObject({ code: 'family', text: 'To help you look after your family' })
    const elder = one('an elder who is not a family agent', (c) => !held(c) && truthy(c, 'elder') && !truthy(c, 'family_agent'))
    expect(await moduleReason(elder, 'family_zone')).toMatchObject({ code: 'elder_care', text: 'Made easier for senior customers' })
    const senior = one('an elder who draws no pension', (c) => !held(c) && truthy(c, 'elder') && !truthy(c, 'pension_recipient'))
    expect(await moduleReason(senior, 'pension_zone')).toMatchObject({ code: 'elder_care' })
    const pensioner = one('a pensioner', (c) => !held(c) && truthy(c, 'pension_recipient'))
    expect(await moduleReason(pensioner, 'pension_zone')).toMatchObject({ code: 'pension', text: 'Pension services for you' })
  })
})
