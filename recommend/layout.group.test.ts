import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, type TestApp } from '../test/app.js'

/**
 * A group's key used to get 400 from /v1/layout and /v1/layout/model ("tag loan_due_7d is not
 * defined"): the built-in catalogue's conditions name the member banks' tags, which a group does
 * not define. A group holds no customer rows of its own (its members' customers are theirs), so
 * it is served its own catalogue with every condition holding for nobody: the default layout.
 */

let t: TestApp
let groupKey: string
const auth = (key: string) => ({ authorization: `Bearer ${key}` })

beforeAll(async () => {
  t = await openTestApp()
  const group = await t.tenants.create({ slug: 'group-hq', name: 'Group', kind: 'group' })
  await t.tenants.create({ slug: 'member-a', name: 'Member A', kind: 'member', parent: 'group-hq' })
  groupKey = (await t.keys.issue(group.id, { roles: ['layout', 'analyst', 'admin'], holder: 'group console' })).key
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
