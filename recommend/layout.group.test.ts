import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { openTestApp, type TestApp } from '../test/app.js'

/**
 * A group's key used to get 400 from /v1/layout and /v1/layout/model ("tag loan_due_7d is not
 * defined"): the built-in catalogue's conditions name the member banks' tags, which a group does
 * not define. A group holds no customer rows of its own (its members' customers are theirs), so
 * it is served its own catalogue with every condition holding for nobody: the default layout.
 */

let t: TestApp
let groupKey: string
let memberKey: string
let memberId: number
const auth = (key: string) => ({ authorization: `Bearer ${key}` })

beforeAll(async () => {
  t = await openTestApp()
  const group = await t.tenants.create({ slug: 'group-hq', name: 'Group', kind: 'group' })
  const member = await t.tenants.create({ slug: 'member-a', name: 'Member A', kind: 'member', parent: 'group-hq' })
  memberId = member.id
  groupKey = (await t.keys.issue(group.id, { roles: ['layout', 'analyst', 'admin'], holder: 'group console' })).key
  memberKey = (await t.keys.issue(member.id, { roles: ['layout'], holder: 'member gateway' })).key
}, 60_000)

afterAll(async () => {
  await t?.close()
})

describe('a group tenant', () => {
  it('is answered by way of the snapshot load before it is held, and at once after, with the same bytes', async () => {
    const group = await t.tenants.get('group-hq')
    const req = { tenantId: group.id, screen: 'home', lang: 'zh', mode: 'auto' } as const
    const first = t.recommend.layouts.layoutJson(req)
    expect(first).toBeInstanceOf(Promise)
    const loaded = await first
    const held = t.recommend.layouts.layoutJson(req)
    expect(Buffer.isBuffer(held)).toBe(true)
    expect((held as Buffer).equals(loaded)).toBe(true)
    expect(JSON.parse(loaded.toString('utf8'))).toMatchObject({ tenant: group.id, customerId: null, known: false })
  })

  it('gets the default layout of its own catalogue, personal to no one', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/layout?customerId=C0001&lang=en', headers: auth(groupKey) })
    expect(res.statusCode, res.body).toBe(200)
    const body = res.json()
    expect(body.modules.length).toBeGreaterThan(0)
    // No reminder: they are personal (a tag of a customer), and a group has no customers.
    expect(body.modules.flatMap((m: { items: { type: string }[] }) => m.items).some((i: { type: string }) => i.type === 'reminder')).toBe(false)
  })

  it('describes its model: the catalogue it serves and no customers', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/layout/model', headers: auth(groupKey) })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ build: null, customers: 0, indexed: 0 })
    expect(res.json().items).toBeGreaterThan(10)
  })
})

/**
 * A member bank serves its group's catalogue over its own tags. The group's save used to be
 * checked against the group's tags only, and a member's snapshot refused a condition on a tag it
 * does not define: every layout of the member then answered 400, a client error for a server's
 * configuration (a member without the banking tag pack got it from the built-in catalogue).
 */
describe('a member bank and its group’s catalogue', () => {
  const vip = { id: 'svc.vip', module: 'quick_services', type: 'service', title: { zh: '贵宾', en: 'VIP' }, deeplink: 'app://vip', category: 'vip', boost: 100, when: { tag: 'group_vip', op: 'eq', value: true } }
  const memberLayout = async (customerId?: string) => {
    const res = await t.app.inject({ url: `/v1/layout?lang=en&mode=standard${customerId ? `&customerId=${customerId}` : ''}`, headers: auth(memberKey) })
    expect(res.statusCode, res.body).toBe(200)
    return res.json() as { known: boolean; modules: { id: string; items: { id: string; type: string }[] }[] }
  }

  it('without the banking tags, still gets layouts: a condition on a tag it does not define holds for nobody', async () => {
    const l = await memberLayout('C0001')
    expect(l.known).toBe(false)
    expect(l.modules.map((m) => m.id)).toContain('quick_services')
    expect(l.modules.flatMap((m) => m.items).some((i) => i.type === 'reminder')).toBe(false)
  })

  it('refuses a group catalogue whose condition does not compile for a member, naming the member and the field', async () => {
    const tag = { type: 'boolean', description: { zh: '贵宾', en: 'VIP' }, owner: 'qa', purpose: ['service'], sensitivity: 'low', rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } }
    const defined = await t.app.inject({ method: 'PUT', url: '/v1/tags/group_vip', headers: auth(groupKey), payload: tag })
    expect(defined.statusCode, defined.body).toBe(201)
    const res = await t.app.inject({ method: 'PUT', url: '/v1/layout/catalog', headers: auth(groupKey), payload: { items: [vip] } })
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [expect.objectContaining({ field: 'items.0.when.tag', tenant: 'member-a' })] })
    expect(res.json().error.issues[0].message).toMatch(/member-a.*group_vip/)
    // Nothing was saved: the member's layouts are as they were.
    expect((await t.app.inject({ url: '/v1/layout/catalog/versions', headers: auth(groupKey) })).json().versions).toEqual([])
    await memberLayout('C0001')
  })

  it('an entry on a tag the member no longer defines (saved before, or the tag retired since) is hidden; a product rule it cannot check keeps its products from everyone', async () => {
    const db = t.engine.db.forTenant(memberId)
    const now = chDateTime(new Date())
    await db.insert('customers', [{ customer_key: 1, customer_no: 'C0001', gender: 'unknown', region_code: 'r', branch_code: 'b', occupation: 'o', phone_hash: '', name_masked: '', opened_at: '2015-01-01 00:00:00', updated_at: now }])
    const product = (id: string, kind: string) => ({ product_id: id, kind, name_zh: id, name_en: id, category: 'c', risk_level: 1, valid_from: '2020-01-01', valid_to: '2299-12-31', status: 'active', updated_at: now })
    await db.insert('products', [product('dep-1', 'deposit'), product('loan-1', 'loan')])
    // As a group save checked against the group's tags only left it.
    const group = await t.tenants.get('group-hq')
    await t.engine.db.forTenant(group.id).insert('layout_catalogs', [{ version: 1, document: JSON.stringify({ items: [vip] }), created_by: 'an earlier version', created_at: now, change_note: '' }])
    await t.recommend.layouts.reload(memberId)
    const l = await memberLayout('C0001')
    expect(l.known).toBe(true)
    const ids = l.modules.flatMap((m) => m.items.map((i) => i.id))
    expect(ids).not.toContain('svc.vip')
    expect(ids).toContain('svc.transfer')
    // The loan rule reads loan_overdue and vulnerable, which this bank does not define: no loan offer.
    expect(ids).toContain('product:dep-1')
    expect(ids).not.toContain('product:loan-1')
  })
})
