import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Db, SystemDb, TenantDb } from '../core/db.js'
import { isAppError } from '../core/errors.js'
import { createMetrics } from '../core/metrics.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { pendingEvent } from '../test/fixtures.js'
import { createEventWriter, type EventWriter, type EventWriterOptions, type WriteResult } from './event-writer.js'
import { createIdentityService, type IdentityService } from './identity.service.js'
import { createKeyAllocator } from './key-allocator.js'
import type { PendingEvent } from './normalize.js'

/**
 * The writer's identity and traits stage, below validation: a value the engine refuses fails
 * only its event, a failure the engine is not to blame for fails only the request at fault, and
 * neither reaches another request of the same tenant or another tenant. An engine that is down
 * is still a 503 (retry).
 */

let engine: TestEngine
beforeAll(async () => {
  engine = await openTestEngine()
})
afterAll(async () => engine?.close())

const identify = (userId: string, traits: Record<string, string>, over: Partial<PendingEvent> = {}): PendingEvent =>
  pendingEvent({ messageId: crypto.randomUUID(), type: 'identify', event: '', userId, traits: { plain: traits, hashed: {} }, ...over })
const track = (userId: string): PendingEvent => pendingEvent({ messageId: crypto.randomUUID(), event: 'product_viewed', userId })

interface Faults {
  /** The tenant handle's insert into customer_traits. */
  traitsInsert?: (rows: readonly Record<string, unknown>[]) => void
  /** The identity service's resolve. */
  resolve?: (tenantId: number, refs: readonly { userId?: string | undefined }[]) => void
  /** The engine's health probe. */
  down?: () => boolean
}

function writer(faults: Faults = {}, options: Partial<EventWriterOptions> = {}): EventWriter {
  const base = engine.db
  const system = Object.create(base.system) as SystemDb
  system.query = (async (sql: string, ...rest: unknown[]) => {
    if (faults.down?.()) throw new Error('connect ECONNREFUSED 127.0.0.1:8123')
    return (base.system.query as (...a: unknown[]) => Promise<unknown>)(sql, ...rest)
  }) as SystemDb['query']
  const forTenant = (t: number): TenantDb => {
    const tdb = base.forTenant(t)
    const wrapped = Object.create(tdb) as TenantDb
    wrapped.insert = async (table, rows) => {
      if (table === 'customer_traits') faults.traitsInsert?.(rows)
      return tdb.insert(table, rows)
    }
    return wrapped
  }
  const db: Db = { system, forTenant, laneName: base.laneName, lane: () => db }
  const real = createIdentityService({ db: base, allocator: createKeyAllocator({ system: base.system }) })
  const identities = Object.create(real) as IdentityService
  identities.resolve = async (tenantId, refs) => {
    faults.resolve?.(tenantId, refs)
    return real.resolve(tenantId, refs)
  }
  return createEventWriter({ db, identities, log: engine.log, metrics: createMetrics({ collectDefault: false }), options: { flushRows: 100_000, flushMs: 30, maxQueueEvents: 100_000, ...options } })
}

type Settled = PromiseSettledResult<WriteResult>
/** Submits three requests in one flush (all announced first), and settles each. */
async function together(w: EventWriter, reqs: [[number, PendingEvent[]], [number, PendingEvent[]], [number, PendingEvent[]]]): Promise<[Settled, Settled, Settled]> {
  const done = reqs.map(() => w.announce())
  const all = Promise.allSettled(reqs.map(([t, evs]) => w.submit(t, evs, 'k')))
  for (const d of done) d()
  const [a, b, c] = await all
  return [a!, b!, c!]
}

const stored = async (events: PendingEvent[]) => {
  const [r] = await engine.db.system.query<{ n: string }>('SELECT count() AS n FROM events WHERE message_id IN {ids:Array(String)}', { ids: events.map((e) => e.messageId) })
  return Number(r!.n)
}
const trait = async (tenant: number, name: string) => {
  const r = await engine.db.system.query<{ v: string }>('SELECT value AS v FROM customer_traits FINAL WHERE tenant_id = {t:UInt16} AND trait = {n:String}', { t: tenant, n: name })
  return r.map((x) => x.v)
}
const codeOf = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' ? (isAppError(r.reason) ? r.reason.code : String(r.reason)) : 'ok')

describe('trait values', () => {
  it('stores an identify whose trait is cut at 1,000 units across an emoji, cut before the emoji', async () => {
    const w = writer()
    const e = identify('E1', { bio: `${'a'.repeat(999)}😀 and more` })
    await expect(w.submit(31, [e], 'k')).resolves.toMatchObject({ stored: 1 })
    expect(await trait(31, 'bio')).toEqual(['a'.repeat(999)])
    await w.close()
  })

  it('stores a trait holding half of a character (queued by an edge that did not repair it) as U+FFFD', async () => {
    const w = writer()
    const e = identify('E2', { nick: 'x\ud83d', ['k\udc00']: 'v' })
    await expect(w.submit(32, [e], 'k')).resolves.toMatchObject({ stored: 1 })
    expect(await trait(32, 'nick')).toEqual(['x\ufffd'])
    expect(await trait(32, 'k\ufffd')).toEqual(['v'])
    await w.close()
  })

  it('a value the engine refuses fails only its event: the tenant’s other requests and events and the other tenants are stored', async () => {
    const w = writer({
      traitsInsert: (rows) => {
        if (rows.some((r) => r.value === 'poison')) throw new Error('Code: 25. DB::Exception: Cannot parse escape sequence: missing second part of surrogate pair. (CANNOT_PARSE_ESCAPE_SEQUENCE)')
      },
    })
    const bad = [track('P1'), identify('P2', { nick: 'fine', bio: 'poison' }), identify('P3', { nick: 'also fine' })]
    const mine = [track('P4'), identify('P5', { nick: 'mine' })]
    const other = [identify('Q1', { nick: 'other' })]
    const [a, b, c] = await together(w, [
      [33, bad],
      [33, mine],
      [34, other],
    ])
    expect(a).toMatchObject({ status: 'fulfilled', value: { stored: 2 } })
    expect(a.status === 'fulfilled' && a.value.refused).toEqual([{ position: 1, field: 'traits.bio', message: expect.stringMatching(/CANNOT_PARSE_ESCAPE_SEQUENCE/) as unknown }])
    expect(b).toMatchObject({ status: 'fulfilled', value: { stored: 2 } })
    expect(c).toMatchObject({ status: 'fulfilled', value: { stored: 1 } })
    expect(await stored([...bad, ...mine, ...other])).toBe(5)
    expect((await trait(33, 'nick')).sort()).toEqual(['also fine', 'fine', 'mine'])
    await w.close()
  })
})

describe('an identity stage that fails otherwise', () => {
  it('with the engine answering, fails only the request at fault, with an error that is not a 503 to retry forever', async () => {
    const w = writer({
      resolve: (_t, refs) => {
        if (refs.some((r) => r.userId === 'BROKEN')) throw new TypeError("Cannot read properties of undefined (reading 'key')")
      },
    })
    const bad = [track('R1'), track('BROKEN')]
    const mine = [track('R2')]
    const other = [track('S1')]
    const [a, b, c] = await together(w, [
      [35, bad],
      [35, mine],
      [36, other],
    ])
    expect(codeOf(a)).toBe('INTERNAL')
    expect(b).toMatchObject({ status: 'fulfilled', value: { stored: 1 } })
    expect(c).toMatchObject({ status: 'fulfilled', value: { stored: 1 } })
    expect(await stored([...bad, ...mine, ...other])).toBe(2)
    await w.close()
  })

  it('with the engine down, answers that tenant 503 (retry) and blames nothing on its events', async () => {
    let down = false
    const w = writer({
      down: () => down,
      resolve: (t) => {
        if (t === 37) {
          down = true
          throw new Error('connect ECONNREFUSED 127.0.0.1:8123')
        }
      },
    })
    const [a, b, c] = await together(w, [
      [37, [track('T1')]],
      [37, [track('T2')]],
      [38, [track('U1')]],
    ])
    down = false
    expect([codeOf(a), codeOf(b)]).toEqual(['STORAGE_UNAVAILABLE', 'STORAGE_UNAVAILABLE'])
    expect(c).toMatchObject({ status: 'fulfilled', value: { stored: 1 } })
    await w.close()
  })
})

describe('the queue limit', () => {
  it('takes a submission larger than the whole queue when nothing waits (a Kafka group would be refused on every redelivery), and bounds what waits behind it', async () => {
    const w = writer({}, { maxQueueEvents: 100, flushMs: 200 })
    const big = Array.from({ length: 250 }, (_, i) => track(`V${i % 7}`))
    const first = w.submit(39, big, 'k')
    // Queued behind it: the limit holds.
    const second = w.submit(40, [track('W1')], 'k').then(
      () => 'taken',
      (e: { code?: string }) => e.code,
    )
    await expect(first).resolves.toMatchObject({ stored: 250 })
    expect(await second).toBe('OVERLOADED')
    await w.close()
  })
})
