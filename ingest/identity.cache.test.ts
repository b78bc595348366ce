import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { createIdentityService, type IdentityService } from './identity.service.js'
import { createKeyAllocator } from './key-allocator.js'

/**
 * Two identity services on one engine, as two processes writing events (API processes in
 * cluster mode, ingest workers beside an import): each caches links, and what the other one
 * linked or undid must not be overruled by that cache.
 */

let engine: TestEngine
let T: number
beforeAll(async () => {
  engine = await openTestEngine()
  T = (await createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' }).create({ slug: 'bank-c', name: 'bank-c' })).id
})
afterAll(async () => engine?.close())

const actor = { id: 'app', reason: 'identify' }

/** A process: its own service (own cache) on the shared engine, with a clock the test moves ahead. */
function processOf(linkRefreshMs = 2_000) {
  let ahead = 0
  const ids = createIdentityService({ db: engine.db.lane('ingest'), allocator: createKeyAllocator({ system: engine.db.system }), now: () => new Date(Date.now() + ahead), linkRefreshMs })
  return { ids, later: (by: number) => (ahead += by) }
}

/** The device's link as readers see it. */
async function linked(anon: string): Promise<number> {
  const [r] = await engine.db
    .forTenant(T)
    .query<{ k: number }>("SELECT argMax(customer_key, updated_at) AS k FROM identities WHERE tenant_id = {tenant:UInt16} AND id_kind = 'anonymous_id' AND id_value = {anon:String}", { anon })
  return Number(r?.k ?? 0)
}

const stamp = async (ids: IdentityService, anon: string) => (await ids.resolve(T, [{ anonymousId: anon }]))[0]

describe('identity caches of several processes', () => {
  it('stops stamping a link undone by another process within the refresh interval', async () => {
    const one = processOf()
    const two = processOf()
    const link = await one.ids.link(T, 'dev-a', 'CA-1', actor)
    expect(await stamp(one.ids, 'dev-a')).toBe(link!.intoKey)
    await two.ids.undo(T, link!.changeId, 'admin')
    // Until its next refresh the cached link may still be stamped on the device's new events ...
    one.later(1_000)
    expect(await stamp(one.ids, 'dev-a')).toBe(link!.intoKey)
    // ... and no longer after it.
    one.later(1_001)
    expect(await stamp(one.ids, 'dev-a')).toBe(0)
  })

  it('stamps a link made by another process after the refresh interval', async () => {
    const one = processOf()
    const two = processOf()
    await one.ids.link(T, 'dev-b', 'CB-1', actor)
    const relink = await two.ids.link(T, 'dev-b', 'CB-2', actor)
    one.later(2_001)
    expect(await stamp(one.ids, 'dev-b')).toBe(relink!.intoKey)
  })

  it('records a link from where the device really was, whatever this process cached', async () => {
    const one = processOf()
    const two = processOf()
    const first = await one.ids.link(T, 'dev-c', 'CC-1', actor)
    const second = await two.ids.link(T, 'dev-c', 'CC-2', actor)
    expect(second).toMatchObject({ fromKey: first!.intoKey })
    // At once, to a third customer: undoing it must give the device back to CC-2, not CC-1.
    const third = await one.ids.link(T, 'dev-c', 'CC-3', actor)
    expect(third).toMatchObject({ fromKey: second!.intoKey })
    await two.ids.undo(T, third!.changeId, 'admin')
    expect(await linked('dev-c')).toBe(second!.intoKey)
  })

  it('links a device back to a customer after another process linked it elsewhere', async () => {
    const one = processOf()
    const two = processOf()
    const first = await one.ids.link(T, 'dev-e', 'CE-1', actor)
    const second = await two.ids.link(T, 'dev-e', 'CE-2', actor)
    // The device is back with CE-1, in the first process, whose cache said CE-1 all along: once
    // the refresh has seen the relink, the event's link is written.
    one.later(2_001)
    const back = await one.ids.linkMany(T, [['dev-e', 'CE-1']], actor)
    expect(back).toEqual([expect.objectContaining({ fromKey: second!.intoKey, intoKey: first!.intoKey })])
    expect(await linked('dev-e')).toBe(first!.intoKey)
  })

  it('undoes a link only while it is the current one, whichever process linked since', async () => {
    const one = processOf()
    const two = processOf()
    const first = await one.ids.link(T, 'dev-d', 'CD-1', actor)
    const second = await two.ids.link(T, 'dev-d', 'CD-2', actor)
    // The first process's cache says CD-1, but the device is CD-2's now: the first link is not undone ...
    await expect(one.ids.undo(T, first!.changeId, 'admin')).rejects.toMatchObject({ code: 'CONFLICT' })
    expect(await linked('dev-d')).toBe(second!.intoKey)
    // ... the second is, through either process, and the device goes back to CD-1.
    await one.ids.undo(T, second!.changeId, 'admin')
    expect(await linked('dev-d')).toBe(first!.intoKey)
    expect(await stamp(one.ids, 'dev-d')).toBe(first!.intoKey)
  })
})
