import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { resolvedEventsSql } from '../core/identity.sql.js'
import { chDateTime } from '../core/time.js'
import { customerKeyOf } from '../tags/customers.lookup.js'
import { identityChangedDays } from '../tags/event-daily.js'

/**
 * Merges into customers that are merged in turn: readers resolve a merge in one step, so every
 * merge into a customer follows it to the end of its chain, and an undo sends each back to the
 * customer its administrator named.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'bank-m')
})
afterAll(async () => t?.close())

const admin = { id: 'Li Wei', reason: 'same person' }
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const ids = () => t.ingest.identities

/** Customers with one event each (named after them) and, for some, an anonymous event of their device. */
async function customers(...nos: string[]): Promise<number[]> {
  const batch = nos.flatMap((no) => [
    { type: 'track', event: `ev-${no}`, userId: no },
    { type: 'track', event: `anon-${no}`, anonymousId: `dev-${no}` },
    { type: 'identify', anonymousId: `dev-${no}`, userId: no },
  ])
  const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch: batch.map((b) => ({ messageId: crypto.randomUUID(), ...b })) } })
  expect(res.statusCode, res.body).toBe(200)
  return ids().keysFor(bank.tenant.id, nos, 'test')
}

/** Who owns each customer's events (their own, and their device's anonymous one) as every reader sees them. */
async function owners(...nos: string[]): Promise<number[]> {
  const rows = await t.engine.db
    .forTenant(bank.tenant.id)
    .query<{ k: number; e: string }>(`SELECT customer_key AS k, event AS e FROM ${resolvedEventsSql(['event', 'message_id'])} WHERE event != ''`)
  const by = new Map(rows.map((r) => [r.e, Number(r.k)]))
  return Promise.all(
    nos.map(async (no) => {
      const [own, anon, lookup] = [by.get(`ev-${no}`), by.get(`anon-${no}`), await customerKeyOf(t.engine.db, bank.tenant.id, no)]
      // Events, the device's anonymous events and the customer API agree, or the test says where not.
      expect({ anon, lookup }, no).toEqual({ anon: own, lookup: own })
      return own!
    }),
  )
}

describe('merge chains', () => {
  it('a customer merged into one merged later follows it to the end, and is recorded so', async () => {
    const [a, b, c, d] = await customers('CH-A', 'CH-B', 'CH-C', 'CH-D')
    // An event of A's on a day when B and C have none.
    const old = new Date(Date.now() - 3 * 86_400_000)
    const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch: [{ type: 'track', messageId: crypto.randomUUID(), event: 'old', userId: 'CH-A', timestamp: old.toISOString() }] } })
    expect(res.statusCode, res.body).toBe(200)
    const ab = await ids().merge(bank.tenant.id, 'CH-A', 'CH-B', admin)
    expect(await owners('CH-A', 'CH-B')).toEqual([b, b])
    const since = chDateTime(new Date())
    const bc = await ids().merge(bank.tenant.id, 'CH-B', 'CH-C', { id: 'Wang Fang', reason: 'one household' })
    expect(await owners('CH-A', 'CH-B', 'CH-C')).toEqual([c, c, c])
    // ... and again one further: the whole chain ends at D.
    const cd = await ids().merge(bank.tenant.id, 'CH-C', 'CH-D', admin)
    expect(await owners('CH-A', 'CH-B', 'CH-C', 'CH-D')).toEqual([d, d, d, d])
    // Each change is what its administrator asked; where a merge was routed on is a change of its
    // own, following the one that caused it (incremental tag runs read these to find moved events).
    const history = (await ids().changes(bank.tenant.id, { key: a })).filter((h) => h.action === 'merge')
    expect(history).toEqual([
      expect.objectContaining({ action: 'merge', fromKey: a, intoKey: d, actor: admin.id, follows: cd!.changeId, undoneAt: null }),
      expect.objectContaining({ action: 'merge', fromKey: a, intoKey: c, actor: 'Wang Fang', follows: bc!.changeId, undoneAt: expect.any(String) }),
      expect.objectContaining({ action: 'merge', fromKey: a, intoKey: b, actor: admin.id, reason: admin.reason, follows: null, undoneAt: null, changeId: ab!.changeId }),
    ])
    // The day of A's old event counts as changed by B's merge into C, though A is neither.
    const days = await identityChangedDays(t.engine.db.forTenant(bank.tenant.id), since, 'UTC', '2000-01-01', '2100-01-01')
    expect(days).toContain(old.toISOString().slice(0, 10))
  })

  it('a merge into a customer already merged is recorded as asked, and follows the chain', async () => {
    const [a, b, c] = await customers('MU-A', 'MU-B', 'MU-C')
    await ids().merge(bank.tenant.id, 'MU-B', 'MU-C', admin)
    const ab = await ids().merge(bank.tenant.id, 'MU-A', 'MU-B', admin)
    expect(ab).toMatchObject({ fromKey: a, intoKey: b, follows: null })
    expect(await owners('MU-A', 'MU-B', 'MU-C')).toEqual([c, c, c])
  })

  it('undoing a merge in the middle sends the merges through it back to the customer their administrator named', async () => {
    const [a, b, c, d] = await customers('UN-A', 'UN-B', 'UN-C', 'UN-D')
    const bc = await ids().merge(bank.tenant.id, 'UN-B', 'UN-C', admin)
    await ids().merge(bank.tenant.id, 'UN-A', 'UN-B', admin)
    await ids().merge(bank.tenant.id, 'UN-D', 'UN-A', admin)
    expect(await owners('UN-A', 'UN-B', 'UN-C', 'UN-D')).toEqual([c, c, c, c])
    const undone = await t.app.inject({ method: 'POST', url: `/v1/identities/changes/${bc!.changeId}/undo`, headers: auth(bank.admin) })
    expect(undone.statusCode, undone.body).toBe(200)
    expect(await owners('UN-A', 'UN-B', 'UN-C', 'UN-D')).toEqual([b, b, c, b])
    // Undone once: a second undo changes nothing.
    const again = await t.app.inject({ method: 'POST', url: `/v1/identities/changes/${bc!.changeId}/undo`, headers: auth(bank.admin) })
    expect(again.statusCode).toBe(409)
    expect(await owners('UN-A', 'UN-B', 'UN-C', 'UN-D')).toEqual([b, b, c, b])
    // What routed D on to C is undone with it; D's own merge stands, routed on to B by the undo.
    const history = (await ids().changes(bank.tenant.id, { key: d })).filter((h) => h.action === 'merge')
    expect(history.filter((h) => !h.undoneAt)).toEqual([
      expect.objectContaining({ fromKey: d, intoKey: b, actor: 'test admin', follows: bc!.changeId }),
      expect.objectContaining({ fromKey: d, intoKey: a, actor: admin.id, follows: null }),
    ])
    expect(history.filter((h) => h.undoneAt)).toEqual([expect.objectContaining({ fromKey: d, intoKey: c })])
    // Merged again: the chain ends at C again.
    await ids().merge(bank.tenant.id, 'UN-B', 'UN-C', admin)
    expect(await owners('UN-A', 'UN-B', 'UN-C', 'UN-D')).toEqual([c, c, c, c])
  })

  it('undoing the first merge of a chain leaves the rest merged', async () => {
    const [, b, c] = await customers('FI-A', 'FI-B', 'FI-C')
    const ab = await ids().merge(bank.tenant.id, 'FI-A', 'FI-B', admin)
    await ids().merge(bank.tenant.id, 'FI-B', 'FI-C', admin)
    await ids().undo(bank.tenant.id, ab!.changeId, 'test')
    const [a] = await ids().keysFor(bank.tenant.id, ['FI-A'], 'test')
    expect(await owners('FI-A', 'FI-B', 'FI-C')).toEqual([a, c, c])
    expect(b).not.toBe(c)
    // Nothing routes A anywhere any more.
    expect((await ids().changes(bank.tenant.id, { key: a! })).filter((h) => h.action === 'merge' && !h.undoneAt)).toEqual([])
  })

  it('refuses a merge that would close a circle, and the undo of a change that only follows another', async () => {
    await customers('CY-A', 'CY-B', 'CY-C')
    await ids().merge(bank.tenant.id, 'CY-A', 'CY-B', admin)
    const bc = await ids().merge(bank.tenant.id, 'CY-B', 'CY-C', admin)
    await expect(ids().merge(bank.tenant.id, 'CY-C', 'CY-A', admin)).rejects.toMatchObject({ code: 'CONFLICT' })
    await expect(ids().merge(bank.tenant.id, 'CY-A', 'CY-C', admin)).rejects.toMatchObject({ code: 'CONFLICT' })
    const [a] = await ids().keysFor(bank.tenant.id, ['CY-A'], 'test')
    const routed = (await ids().changes(bank.tenant.id, { key: a! })).find((h) => h.follows === bc!.changeId)!
    await expect(ids().undo(bank.tenant.id, routed.changeId, 'test')).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringContaining(bc!.changeId) })
  })
})
