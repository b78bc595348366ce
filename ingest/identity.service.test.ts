import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { resolvedEventsSql } from '../core/identity.sql.js'
import { createIdentityService } from './identity.service.js'
import { createKeyAllocator } from './key-allocator.js'

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'bank-a')
})
afterAll(async () => t?.close())

const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const send = async (batch: Record<string, unknown>[]) => {
  const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch: batch.map((b) => ({ messageId: crypto.randomUUID(), ...b })) } })
  expect(res.statusCode, res.body).toBe(200)
  return res.json()
}

/** Events per resolved customer key, as tag pipelines will read them. */
async function resolvedCounts(): Promise<Record<number, number>> {
  const rows = await t.engine.db
    .forTenant(bank.tenant.id)
    .query<{ k: number; n: string }>(`SELECT customer_key AS k, count() AS n FROM ${resolvedEventsSql(['anonymous_id', 'message_id'])} GROUP BY k ORDER BY k`)
  return Object.fromEntries(rows.map((r) => [Number(r.k), Number(r.n)]))
}

async function keyOf(customerNo: string): Promise<number> {
  return (await t.ingest.identities.keysFor(bank.tenant.id, [customerNo], 'test'))[0]!
}

describe('identity resolution', () => {
  it('attributes events sent before identify once the link is known, and undoes the link', async () => {
    await send([
      { type: 'screen', name: 'home', anonymousId: 'dev-1' },
      { type: 'track', event: 'product_viewed', anonymousId: 'dev-1' },
    ])
    expect((await resolvedCounts())[0]).toBe(2)
    await send([{ type: 'identify', anonymousId: 'dev-1', userId: 'C1001' }])
    const key = await keyOf('C1001')
    const counts = await resolvedCounts()
    expect(counts[key]).toBe(3)
    expect(counts[0]).toBeUndefined()
    // Later anonymous events from the linked device carry the key directly.
    await send([{ type: 'track', event: 'transfer_completed', anonymousId: 'dev-1' }])
    const [r] = await t.engine.db.system.query<{ k: number }>("SELECT customer_key AS k FROM events WHERE event = 'transfer_completed' AND anonymous_id = 'dev-1'")
    expect(Number(r!.k)).toBe(key)

    const changes = (await t.app.inject({ url: `/v1/identities/changes?customerKey=${key}`, headers: auth(bank.admin) })).json().changes
    expect(changes).toEqual([expect.objectContaining({ action: 'link', idKind: 'anonymous_id', idValue: 'dev-1', fromKey: 0, intoKey: key, reason: 'identify', undoneAt: null })])
    expect(changes[0].actor).toMatch(/^[0-9a-f]{16}$/)
    const undo = await t.app.inject({ method: 'POST', url: `/v1/identities/changes/${changes[0].changeId}/undo`, headers: auth(bank.admin) })
    expect(undo.statusCode).toBe(200)
    expect(undo.json().undoneAt).not.toBeNull()
    const after = await resolvedCounts()
    expect(after[0]).toBe(2) // the events sent before identify are anonymous again
    expect(after[key]).toBe(2) // identify itself and the event that arrived with the key
    const again = await t.app.inject({ method: 'POST', url: `/v1/identities/changes/${changes[0].changeId}/undo`, headers: auth(bank.admin) })
    expect(again.statusCode).toBe(409)
  })

  it('merges two customers (an administrator, with a reason), never on an alias event, and undoes the merge', async () => {
    await send([
      { type: 'track', event: 'a', userId: 'C2001' },
      { type: 'track', event: 'b', userId: 'C2002' },
      { type: 'track', event: 'c', userId: 'C2002' },
    ])
    const [k1, k2] = [await keyOf('C2001'), await keyOf('C2002')]
    // The app's key may not merge two customers: the alias is refused in the answer, nothing stored.
    const alias = await send([{ type: 'alias', previousId: 'C2001', userId: 'C2002' }, { type: 'track', event: 'd', userId: 'C2002' }])
    expect(alias.rejected).toEqual([expect.objectContaining({ index: 0, code: 'ALIAS_MERGE_FORBIDDEN', field: 'previousId' })])
    await expect(t.ingest.identities.alias(bank.tenant.id, 'C2001', 'C2002', { id: 'k', reason: 'alias' })).rejects.toMatchObject({ code: 'ALIAS_MERGE_FORBIDDEN' })
    expect((await resolvedCounts())[k1]).toBe(1)
    await t.ingest.identities.merge(bank.tenant.id, 'C2001', 'C2002', { id: 'Li Wei', reason: 'same person, confirmed at the branch' })
    const merged = await resolvedCounts()
    expect(merged[k1]).toBeUndefined()
    expect(merged[k2]).toBe(4) // a, b, c, d
    const [change] = await t.ingest.identities.changes(bank.tenant.id, { key: k1 })
    expect(change).toMatchObject({ action: 'merge', fromKey: k1, intoKey: k2, actor: 'Li Wei', reason: 'same person, confirmed at the branch' })
    await t.ingest.identities.undo(bank.tenant.id, change!.changeId, 'test')
    const split = await resolvedCounts()
    expect(split[k1]).toBe(1)
    expect(split[k2]).toBe(3)
  })

  it.each([
    ['a JSON number', 10001, '10002'],
    ['a number for both ids', 10001, 10002],
    ['surrounding spaces', ' 10001', '10002'],
    ['a trailing newline', '10001\n', ' 10002 '],
  ])('refuses an alias that would merge two customers when previousId is sent as %s, in the worker and in this thread', async (_how, previousId, userId) => {
    await send([
      { type: 'track', event: 'a', userId: '10001' },
      { type: 'track', event: 'b', userId: '10002' },
    ])
    const [k1, k2] = [await keyOf('10001'), await keyOf('10002')]
    const alias = () => ({ type: 'alias', messageId: crypto.randomUUID(), previousId, userId })
    // The route (a worker thread normalizes the body) ...
    expect(t.ingest.pool).toBeDefined()
    const viaRoute = await send([alias(), { type: 'track', event: 'c', userId: '10002' }])
    expect(viaRoute).toMatchObject({ accepted: 1, rejected: [expect.objectContaining({ index: 0, code: 'ALIAS_MERGE_FORBIDDEN', field: 'previousId' })] })
    // ... and the service's own entry, in this thread.
    const inThread = await t.ingest.service.ingest({ tenantId: bank.tenant.id, actor: 'test', messages: [alias(), { type: 'track', messageId: crypto.randomUUID(), event: 'd', userId: '10002' }], envelope: {}, single: false })
    expect(inThread).toMatchObject({ accepted: 1, rejected: [expect.objectContaining({ index: 0, code: 'ALIAS_MERGE_FORBIDDEN', field: 'previousId' })] })
    await expect(t.ingest.service.ingest({ tenantId: bank.tenant.id, actor: 'test', messages: [alias()], envelope: { type: 'alias' }, single: true })).rejects.toMatchObject({ code: 'ALIAS_MERGE_FORBIDDEN' })
    // The check itself reads raw ids as the schema does.
    expect(await t.ingest.identities.mergingAliases(bank.tenant.id, [{ type: 'alias', previousId, userId }, { type: 'alias', previousId: 'dev-unknown', userId }])).toEqual(new Set([0]))
    // Nothing merged: each customer keeps its own events.
    expect(await t.ingest.identities.changes(bank.tenant.id, { key: k1 })).toEqual([])
    const counts = await resolvedCounts()
    expect(counts[k1]).toBeGreaterThan(0)
    expect(counts[k2]).toBeGreaterThan(0)
  })

  it('a merge undone, and a device linked twice, within one millisecond: the later write holds', async () => {
    // A clock that stands still: every write of this service falls in the same millisecond.
    const still = new Date()
    const ids = createIdentityService({ db: t.engine.db, allocator: createKeyAllocator({ system: t.engine.db.system }), now: () => still })
    await send([
      { type: 'track', event: 'e', userId: 'C4001' },
      { type: 'track', event: 'f', userId: 'C4002' },
      { type: 'track', event: 'g', anonymousId: 'dev-4' },
    ])
    const [k1, k2] = [await keyOf('C4001'), await keyOf('C4002')]
    const merge = await ids.merge(bank.tenant.id, 'C4001', 'C4002', { id: 'test', reason: 'test' })
    await ids.undo(bank.tenant.id, merge!.changeId, 'test')
    await ids.link(bank.tenant.id, 'dev-4', 'C4001', { id: 'test', reason: 'identify' })
    await ids.link(bank.tenant.id, 'dev-4', 'C4002', { id: 'test', reason: 'identify' })
    const counts = await resolvedCounts()
    expect(counts[k1]).toBe(1) // e: the merge is undone
    expect(counts[k2]).toBe(2) // f, and g through the device's last link
  })

  it('refuses to undo a change of another tenant', async () => {
    const other = await tenantWithKeys(t, 'bank-z')
    const [change] = await t.ingest.identities.changes(bank.tenant.id)
    const res = await t.app.inject({ method: 'POST', url: `/v1/identities/changes/${change!.changeId}/undo`, headers: auth(other.admin) })
    expect(res.statusCode).toBe(404)
  })

  it('gives one customer number one key, whatever the batch', async () => {
    await send([
      { type: 'track', event: 'x', userId: 'C3001' },
      { type: 'track', event: 'y', userId: 'C3001' },
    ])
    await send([{ type: 'track', event: 'z', userId: 'C3001' }])
    const keys = await t.engine.db.system.query<{ k: number }>("SELECT DISTINCT customer_key AS k FROM events WHERE user_id = 'C3001'")
    expect(keys).toHaveLength(1)
  })
})

describe('customer key allocation', () => {
  it('never hands the same key to two writers racing on one tenant', async () => {
    const tenant = (await t.tenants.create({ slug: 'race', name: 'race' })).id
    const a = createKeyAllocator({ system: t.engine.db.system, blockSize: 7, owner: 'writer-a' })
    const b = createKeyAllocator({ system: t.engine.db.system, blockSize: 7, owner: 'writer-b' })
    const work = Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).allocate(tenant, 1 + (i % 5)))
    const all = (await Promise.all(work)).flat()
    expect(new Set(all).size).toBe(all.length)
    expect(Math.min(...all)).toBeGreaterThanOrEqual(1)
    // A restarted writer (new owner, empty memory) continues past every claimed block.
    const c = createKeyAllocator({ system: t.engine.db.system, blockSize: 7, owner: 'writer-c' })
    const more = await c.allocate(tenant, 3)
    expect(Math.min(...more)).toBeGreaterThan(Math.max(...all))
  })

  it('starts past keys already present in the customers table (imported or generated)', async () => {
    const tenant = (await t.tenants.create({ slug: 'preloaded', name: 'p' })).id
    await t.engine.db.forTenant(tenant).insert('customers', [{ customer_key: 500, customer_no: 'X', opened_at: '2020-01-01 00:00:00', updated_at: '2020-01-01 00:00:00' }])
    const [k] = await createKeyAllocator({ system: t.engine.db.system }).allocate(tenant, 1)
    expect(k).toBe(501)
  })
})
