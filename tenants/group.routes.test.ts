import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { issueKey, openTestApp, type TestApp } from '../test/app.js'

/** A group sees its member banks' aggregate counts, and nothing of their customers. */
let t: TestApp
let groupKey: string
let memberAdmin: string
const bearer = (k: string) => ({ authorization: `Bearer ${k}` })

beforeAll(async () => {
  t = await openTestApp()
  const group = await t.tenants.create({ slug: 'grp', name: 'Group', kind: 'group' })
  const a = await t.tenants.create({ slug: 'bank-a', name: 'Bank A', parent: 'grp' })
  await t.tenants.create({ slug: 'bank-b', name: 'Bank B', parent: 'grp' })
  await t.tenants.create({ slug: 'elsewhere', name: 'Not in the group' })
  groupKey = await issueKey(t.keys, group.id, 'analyst')
  memberAdmin = await issueKey(t.keys, a.id, 'admin')
  const now = new Date().toISOString().replace('T', ' ').replace('Z', '')
  await t.engine.db.forTenant(a.id).insert(
    'customers',
    [1, 2, 3].map((k) => ({ customer_key: k, customer_no: `A00${k}`, opened_at: now, updated_at: now, deleted: k === 3 ? 1 : 0 })),
  )
  const ingest = await issueKey(t.keys, a.id, 'ingest')
  const batch = [
    { type: 'track', userId: 'A001', event: 'app_opened' },
    { type: 'track', userId: 'A001', event: 'product_viewed' },
    { type: 'track', anonymousId: 'anon-1', event: 'app_opened' },
  ]
  const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: bearer(ingest), payload: { batch } })
  expect(res.statusCode, res.body).toBe(200)
}, 120_000)
afterAll(async () => t?.close())

describe('GET /v1/group/members', () => {
  it("answers each member bank's counts to the group's key", async () => {
    const res = await t.app.inject({ url: '/v1/group/members', headers: bearer(groupKey) })
    expect(res.statusCode, res.body).toBe(200)
    const body = res.json()
    expect(body.group).toBe('grp')
    expect(body.members.map((m: { slug: string }) => m.slug).sort()).toEqual(['bank-a', 'bank-b'])
    const a = body.members.find((m: { slug: string }) => m.slug === 'bank-a')
    expect(a).toMatchObject({ customers: 2, activeCustomers30d: 1, events30d: 3 })
    expect(body.members.find((m: { slug: string }) => m.slug === 'bank-b')).toMatchObject({ customers: 0, events30d: 0 })
    // Counts only: no customer number leaves.
    expect(res.body).not.toContain('A001')
  })

  it("is not a member bank's route, and gives the group no member's customer rows", async () => {
    const member = await t.app.inject({ url: '/v1/group/members', headers: bearer(memberAdmin) })
    expect(member.statusCode).toBe(404)
    expect(member.json().error.code).toBe('NOT_FOUND')
    const groupAdmin = await issueKey(t.keys, (await t.tenants.get('grp')).id, 'admin')
    expect((await t.app.inject({ url: '/v1/customers/A001', headers: bearer(groupAdmin) })).statusCode).toBe(404)
  })
})
