import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { Db, SystemDb } from '../core/db.js'
import { isAppError } from '../core/errors.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { dedupDigests, dedupKey } from '../core/dedup-digest.js'
import { DEDUP_LOOKUP } from './dedup-index.js'
import { eventTime } from './event-row.js'
import { createEventWriter, type EventWriter, type EventWriterOptions } from './event-writer.js'
import { createIdentityService } from './identity.service.js'
import { createKeyAllocator } from './key-allocator.js'
import type { PendingEvent } from './normalize.js'
import { pendingEvent } from '../test/fixtures.js'

/**
 * The writer's own guarantee, below validation: when the engine refuses values in a coalesced
 * insert, only the events at fault are refused; the rest are stored once; an engine that is down
 * is still a 503 for everyone.
 */

let engine: TestEngine
beforeAll(async () => {
  engine = await openTestEngine()
})
afterAll(async () => engine?.close())

/** Year -1: its text form (-000001-01-01) is one the engine refuses to parse. */
const YEAR_M1 = Date.UTC(-1, 0, 1)
const event = (over: Partial<PendingEvent> = {}): PendingEvent =>
  pendingEvent({ messageId: crypto.randomUUID(), event: 'product_viewed', userId: 'C0001', ...over })

/** A Db whose system handle inserts (and probes) through the given overrides. */
function wrapDb(db: Db, over: Partial<Pick<SystemDb, 'insertTsv' | 'query'>>): Db {
  const system = Object.create(db.system) as SystemDb
  if (over.insertTsv) system.insertTsv = over.insertTsv
  if (over.query) system.query = over.query as SystemDb['query']
  const wrapped: Db = { system, forTenant: (t) => db.forTenant(t), laneName: db.laneName, lane: () => wrapped }
  return wrapped
}

function writer(db: Db, options: Partial<EventWriterOptions> = {}, metrics: Metrics = createMetrics({ collectDefault: false })): EventWriter {
  const identities = createIdentityService({ db, allocator: createKeyAllocator({ system: db.system }) })
  return createEventWriter({ db, identities, log: engine.log, metrics, options: { flushRows: 100_000, flushMs: 30, maxQueueEvents: 100_000, ...options } })
}

/** A metric's values by label value (one label) or its single value. */
async function metricValues(m: Metrics, name: string): Promise<Record<string, number>> {
  const metric = m.registry.getSingleMetric(name)
  const values = metric ? (await metric.get()).values : []
  return Object.fromEntries(values.map((v) => [Object.entries(v.labels).find(([k]) => k !== 'app')?.[1] ?? '', v.value]))
}

async function countIds(ids: string[]) {
  const r = await engine.db.system.query<{ m: string; n: string }>('SELECT message_id AS m, count() AS n FROM events WHERE message_id IN {ids:Array(String)} GROUP BY m', { ids })
  return new Map(r.map((x) => [x.m, Number(x.n)]))
}

describe('a shared insert the engine refuses', () => {
  it('stores every other row once and names the refused events by position and field', async () => {
    const w = writer(engine.db)
    const good = Array.from({ length: 300 }, () => event())
    const bad = [event({ sentAt: YEAR_M1 }), event({ timestamp: YEAR_M1 })]
    const mixed = [event(), bad[0]!, event(), bad[1]!]
    // Both requests announced: the writer waits for the second, so one insert holds both.
    const [a, b] = [w.announce(), w.announce()]
    const both = Promise.all([w.submit(1, mixed, 'k1'), w.submit(2, good, 'k2')])
    a()
    b()
    const [ra, rb] = await both
    expect(rb).toMatchObject({ stored: 300, duplicates: 0 })
    expect(rb.refused ?? []).toEqual([])
    expect(ra.stored).toBe(2)
    expect(ra.refused?.map((r) => [r.position, r.field])).toEqual([
      [1, 'sentAt'],
      [3, 'timestamp'],
    ])
    expect(ra.refused![0]!.message).toMatch(/CANNOT_PARSE_DATETIME/)
    const counts = await countIds([...good, ...mixed].map((e) => e.messageId))
    expect([...counts.values()].every((n) => n === 1)).toBe(true)
    expect(counts.size).toBe(302)
    expect(counts.has(bad[0]!.messageId)).toBe(false)
    // A retry of the whole request: the stored ones are duplicates, the bad ones refused again.
    const again = await w.submit(1, mixed, 'k1')
    expect(again).toMatchObject({ stored: 0, duplicates: 2 })
    expect(again.refused).toHaveLength(2)
    await w.close()
  })

  it('writes the whole DateTime64 range: 1970 and 2286 as date-times, not epoch numbers the engine misreads', async () => {
    expect(eventTime(0)).toBe('1970-01-01 00:00:00.000')
    expect(eventTime(Date.UTC(2286, 10, 21))).toBe('2286-11-21 00:00:00.000')
    const w = writer(engine.db)
    const es = [event({ sentAt: 0 }), event({ sentAt: Date.UTC(2286, 10, 21) }), event({ sentAt: Date.UTC(1900, 0, 1) })]
    expect(await w.submit(1, es, 'k1')).toMatchObject({ stored: 3 })
    const r = await engine.db.system.query<{ s: string }>('SELECT toString(sent_at) AS s FROM events WHERE message_id IN {ids:Array(String)} ORDER BY sent_at', { ids: es.map((e) => e.messageId) })
    expect(r.map((x) => x.s)).toEqual(['1900-01-01 00:00:00.000', '1970-01-01 00:00:00.000', '2286-11-21 00:00:00.000'])
    await w.close()
  })

  it('does not write twice the rows a failed insert had already written', async () => {
    let calls = 0
    const db = wrapDb(engine.db, {
      async insertTsv(table, columns, rows) {
        // The first insert writes its first 40 rows, then fails on a value (as a large insert
        // does when a later block holds the bad row).
        if (table === 'events' && calls++ === 0) {
          await engine.db.system.insertTsv(table, columns, rows.slice(0, 40))
          throw new Error('Code: 41. DB::Exception: Cannot read DateTime: (at row 41) (CANNOT_PARSE_DATETIME)')
        }
        return engine.db.system.insertTsv(table, columns, rows)
      },
    })
    const w = writer(db)
    const es = Array.from({ length: 41 }, () => event())
    const r = await w.submit(1, es, 'k1')
    expect(r).toMatchObject({ stored: 41 })
    expect(r.refused ?? []).toEqual([])
    const counts = await countIds(es.map((e) => e.messageId))
    expect(counts.size).toBe(41)
    expect([...counts.values()].every((n) => n === 1)).toBe(true)
    await w.close()
  })

  it('answers 503 to everyone when the engine is down, not a refusal of the rows', async () => {
    const down = new Error('Code: 210. DB::Exception: Connection refused (NETWORK_ERROR)')
    const w1 = writer(wrapDb(engine.db, { insertTsv: () => Promise.reject(down) }))
    const held = w1.announce()
    const settled = Promise.allSettled([w1.submit(1, [event()], 'k1'), w1.submit(2, [event({ sentAt: YEAR_M1 })], 'k2')])
    held()
    const results = await settled
    for (const r of results) {
      expect(r.status).toBe('rejected')
      const e = (r as PromiseRejectedResult).reason
      expect(isAppError(e) && e.code).toBe('STORAGE_UNAVAILABLE')
    }
    await w1.close()
    // A parse error from an engine that then fails its health probe is not blamed on the row.
    let inserts = 0
    const sick = wrapDb(engine.db, {
      insertTsv: () => {
        inserts++
        return Promise.reject(new Error('Code: 41. DB::Exception: Cannot read DateTime (CANNOT_PARSE_DATETIME)'))
      },
      // The health probe fails; the dedup lookup before the insert still answers.
      query: ((sql: string, ...rest: never[]) =>
        sql === 'SELECT 1' ? Promise.reject(new Error('Code: 210. DB::Exception: Connection refused (NETWORK_ERROR)')) : engine.db.system.query(sql, ...rest)) as SystemDb['query'],
    })
    const w2 = writer(sick)
    const r2 = await w2.submit(1, [event(), event()], 'k1').catch((e: unknown) => e)
    expect(isAppError(r2) && r2.code).toBe('STORAGE_UNAVAILABLE')
    expect(inserts).toBeGreaterThan(1)
    await w2.close()
  })
})

describe('an insert whose dedup entry was never written (a kill between the two)', () => {
  // The dedup index is written by a materialized view after the events part is committed: a
  // process killed in between leaves the events stored and unindexed. Kafka then delivers them
  // again (their offsets were not committed), and the index alone would store them twice.
  async function storedWithoutIndex(es: PendingEvent[]) {
    const w = writer(engine.db)
    expect(await w.submit(5, es, 'k5')).toMatchObject({ stored: es.length })
    await w.close()
    await engine.db.system.command('DELETE FROM ingest_dedup WHERE message_id IN {ids:Array(String)}', { ids: es.map((e) => e.messageId) })
    await engine.db.system.command('DELETE FROM ingest_dedup_digests WHERE message_id IN {ids:Array(String)}', { ids: es.map((e) => e.messageId) })
  }

  it('finds them in the events themselves when the submission asks to verify, and stores only the rest', async () => {
    const day = Date.UTC(2026, 10, 20, 8)
    const es = Array.from({ length: 5 }, (_, i) => event({ timestamp: day + i * 3_600_000 }))
    await storedWithoutIndex(es)
    const fresh = event({ timestamp: day + 1000 })
    const w = writer(engine.db)
    const r = await w.submit(5, [...es, fresh], 'k5', { verifyStored: true })
    expect(r).toMatchObject({ stored: 1, duplicates: 5 })
    // Another bank's event with the same message id is not its duplicate.
    expect(await w.submit(6, [{ ...es[0]! }], 'k6', { verifyStored: true })).toMatchObject({ stored: 1, duplicates: 0 })
    await w.close()
    const counts = await countIds([...es, fresh].map((e) => e.messageId))
    expect([...counts.entries()].filter(([id]) => id !== es[0]!.messageId).every(([, n]) => n === 1)).toBe(true)
    expect(counts.get(es[0]!.messageId)).toBe(2) // tenant 5's and tenant 6's
  })

  it('without verification the index alone decides (the fast path of every other flush)', async () => {
    const es = [event()]
    await storedWithoutIndex(es)
    const w = writer(engine.db)
    expect(await w.submit(5, es, 'k5')).toMatchObject({ stored: 1, duplicates: 0 })
    await w.close()
  })
})

describe('the dedup index as key lookups (ingest_dedup_digests)', () => {
  it('a flush’s dedup question reads its keys, not the index (a scan grew with the index: 750 ms a flush at 26M ids)', async () => {
    const keys = Array.from({ length: 5000 }, (_, i) => dedupKey(1 + (i % 3), crypto.randomUUID()))
    const plan = await engine.db.system.query<{ explain: string }>(`EXPLAIN actions = 1 ${DEDUP_LOOKUP}`, { digests: dedupDigests(keys) })
    const text = plan.map((r) => r.explain).join('\n')
    expect(text).toMatch(/ReadFromEmbeddedRocksDB/)
    expect(text).toMatch(/ReadType: GetKeys/)
  })

  it('holds every stored event by tenant and message id, and another bank’s same id is not a duplicate', async () => {
    const es = [event(), event(), event()]
    const w = writer(engine.db)
    expect(await w.submit(7, es, 'k7')).toMatchObject({ stored: 3 })
    expect(await w.submit(7, [es[1]!, event()], 'k7')).toMatchObject({ stored: 1, duplicates: 1 })
    expect(await w.submit(8, [{ ...es[0]! }], 'k8')).toMatchObject({ stored: 1, duplicates: 0 })
    await w.close()
    const keys = [...es.map((e) => dedupKey(7, e.messageId)), dedupKey(8, es[0]!.messageId)]
    const rows = await engine.db.system.query(DEDUP_LOOKUP, { digests: dedupDigests(keys) }, z.object({ tenant_id: z.coerce.number(), message_id: z.string() }))
    expect(rows.map((r) => dedupKey(r.tenant_id, r.message_id)).sort()).toEqual([...keys].sort())
    // The engine's digest (the index's view) is the writer's, byte for byte.
    const [hex] = await engine.db.system.query(
      `SELECT groupArray(lower(hex(reinterpretAsFixedString(digest)))) AS h FROM
         (SELECT digest FROM ingest_dedup_digests WHERE digest IN (SELECT reinterpretAsUInt64(unhex(substring({d:String}, number * 16 + 1, 16))) FROM numbers(intDiv(length({d:String}), 16))) ORDER BY message_id, tenant_id)`,
      { d: dedupDigests(keys) },
      z.object({ h: z.array(z.string()) }),
    )
    const byId = [...keys].sort((a, b) => (a.split(':')[1]! < b.split(':')[1]! ? -1 : a.split(':')[1]! > b.split(':')[1]! ? 1 : Number(a.split(':')[0]) - Number(b.split(':')[0])))
    expect(hex!.h).toEqual(byId.map((k) => dedupDigests([k])))
  })

  it('a digest shared by two ids finds only the one stored under it: the other event is stored, not dropped', async () => {
    const e = event()
    // Another id stored under this event's digest: what a collision of the 64-bit digests would leave.
    await engine.db.system.command(
      `INSERT INTO ingest_dedup_digests SELECT reinterpretAsUInt64(unhex({d:String})), 7, 'another-id', now64(3)`,
      { d: dedupDigests([dedupKey(7, e.messageId)]) },
    )
    const w = writer(engine.db)
    expect(await w.submit(7, [e], 'k7')).toMatchObject({ stored: 1, duplicates: 0 })
    await w.close()
  })

  it('a kill between the two indexes: the next writer puts the last hour’s ids back before its first flush', async () => {
    const es = [event(), event()]
    const w = writer(engine.db)
    expect(await w.submit(9, es, 'k9')).toMatchObject({ stored: 2 })
    await w.close()
    // In ingest_dedup, not in the key index: what a process killed between the two writes leaves.
    await engine.db.system.command('DELETE FROM ingest_dedup_digests WHERE message_id IN {ids:Array(String)}', { ids: es.map((e) => e.messageId) })
    const again = writer(engine.db)
    expect(await again.submit(9, es, 'k9')).toMatchObject({ stored: 0, duplicates: 2 })
    await again.close()
    const counts = await countIds(es.map((e) => e.messageId))
    expect([...counts.values()]).toEqual([1, 1])
  })
})

describe('when an insert starts', () => {
  /** A Db that records each events insert's message ids. */
  function recording() {
    const inserts: string[][] = []
    const db = wrapDb(engine.db, {
      insertTsv(table, columns, rows) {
        if (table === 'events') inserts.push(rows.map((r) => String(r[columns.indexOf('message_id')])))
        return engine.db.system.insertTsv(table, columns, rows)
      },
    })
    return { db, inserts }
  }
  const tick = (ms = 50) => new Promise((r) => setTimeout(r, ms))
  const HOUR = 3_600_000

  it('a lone request to an idle writer is inserted at once, not after flushMs', async () => {
    const { db, inserts } = recording()
    const w = writer(db, { flushMs: HOUR })
    // With the wait of before (flushMs from the first event) this would not resolve within the test's time.
    await expect(w.submit(1, [event()], 'k1')).resolves.toMatchObject({ stored: 1 })
    await expect(w.submit(1, [event()], 'k1')).resolves.toMatchObject({ stored: 1 })
    expect(inserts.map((i) => i.length)).toEqual([1, 1])
    await w.close()
  })

  it('waits for announced requests, so one insert holds them; a request that never submits does not hold it back', async () => {
    const { db, inserts } = recording()
    const metrics = createMetrics({ collectDefault: false })
    const w = writer(db, { flushMs: HOUR }, metrics)
    const [ea, eb, ec] = [event(), event(), event()]
    const [a, b, c] = [w.announce(), w.announce(), w.announce()]
    const ra = w.submit(1, [ea], 'k1')
    a()
    a() // a second call does nothing: b and c are still on their way
    await tick()
    expect(inserts).toEqual([])
    const rb = w.submit(2, [eb], 'k2')
    b()
    await tick()
    expect(inserts).toEqual([])
    expect(await metricValues(metrics, 'qianmian_ingest_incoming_requests')).toEqual({ '': 1 })
    c() // refused before it submitted anything
    await expect(Promise.all([ra, rb])).resolves.toMatchObject([{ stored: 1 }, { stored: 1 }])
    expect(inserts).toEqual([[ea.messageId, eb.messageId]])
    expect(await metricValues(metrics, 'qianmian_ingest_flush_starts_total')).toEqual({ idle: 1 })
    expect(await metricValues(metrics, 'qianmian_ingest_incoming_requests')).toEqual({ '': 0 })
    // Announced and never released, it holds a waiting event at most flushMs.
    const slowMetrics = createMetrics({ collectDefault: false })
    const slow = writer(db, { flushMs: 200 }, slowMetrics)
    slow.announce()
    const started = performance.now()
    await expect(slow.submit(1, [ec], 'k1')).resolves.toMatchObject({ stored: 1 })
    expect(performance.now() - started).toBeGreaterThanOrEqual(190)
    expect(await metricValues(slowMetrics, 'qianmian_ingest_flush_starts_total')).toEqual({ waited: 1 })
    await Promise.all([w.close(), slow.close()])
  })

  it('starts inserts at least flushGapMs apart unless flushRows wait, and never keeps an event waiting past flushMs', async () => {
    const { db, inserts } = recording()
    const metrics = createMetrics({ collectDefault: false })
    const w = writer(db, { flushGapMs: HOUR, flushMs: 200, flushRows: 50 }, metrics)
    await w.submit(1, [event()], 'k1') // the first: nothing to space it from
    const started = performance.now()
    const small = w.submit(1, [event()], 'k1')
    await tick()
    expect(inserts).toHaveLength(1)
    // flushRows waiting start an insert at once, inside the gap; the small one goes with it.
    await expect(w.submit(2, Array.from({ length: 49 }, () => event()), 'k2')).resolves.toMatchObject({ stored: 49 })
    await expect(small).resolves.toMatchObject({ stored: 1 })
    expect(inserts.map((i) => i.length)).toEqual([1, 50])
    const late = w.submit(1, [event()], 'k1')
    await expect(late).resolves.toMatchObject({ stored: 1 })
    expect(inserts.map((i) => i.length)).toEqual([1, 50, 1])
    expect(performance.now() - started).toBeGreaterThanOrEqual(190)
    expect(await metricValues(metrics, 'qianmian_ingest_flush_starts_total')).toEqual({ idle: 1, rows: 1, waited: 1 })
    await w.close()
  })
})
