import type { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import { AS_OF, keys, setupFixture, TZ, type Fixture } from './segment.fixture.js'
import { materializeAll, materializeSegment, membershipAt, segmentHistory } from './segment.materialize.js'
import { customerSegments, exportSegment, members } from './segment.members.js'
import { createSegmentRepository, type SavedSegment } from './segment.repository.js'

/** Materialization on the real engine: members, enter/exit events with versions, idempotence. */

let fx: Fixture
let db: TenantDb
let repo: ReturnType<typeof createSegmentRepository>
beforeAll(async () => {
  fx = await setupFixture()
  db = fx.engine.db.forTenant(fx.tenant)
  repo = createSegmentRepository({ db: fx.engine.db })
})
afterAll(async () => fx?.engine.close())

const DAY = 86_400_000
const T2 = new Date(AS_OF.getTime() + DAY)
const T3 = new Date(AS_OF.getTime() + 2 * DAY)
const THREE = keys((k) => k % 3 === 0)
const EVEN = keys((k) => k % 2 === 0)
const minus = (a: number[], b: number[]) => a.filter((k) => !b.includes(k))

const save = async (id: string, rule: unknown, purpose = 'marketing') => (await repo.save(fx.tenant, id, { name: id, purpose, rule }, 'test')).segment
const run = (segment: SavedSegment, build: string, asOf: Date, trigger = 'manual') =>
  materializeSegment({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, segment, defs: fx.defs, asOf, build, trigger })

const eventRow = z.object({ customer_key: z.coerce.number(), kind: z.string(), version: z.coerce.number(), build: z.coerce.string(), at: z.string() })
const eventsOf = (sid: string, build: string) =>
  db.query(
    `SELECT e.customer_key AS customer_key, toString(e.kind) AS kind, e.version AS version, toString(e.build) AS build, toString(e.at) AS at FROM segment_events AS e
     WHERE e.tenant_id = {tenant:UInt16} AND e.segment_id = {sid:String} AND e.build = {b:UInt64} ORDER BY e.customer_key`,
    { sid, b: build },
    eventRow,
  )
const count = async (table: 'segment_members' | 'segment_events' | 'segment_runs', sid: string) => {
  const [r] = await db.query(`SELECT count() AS n FROM ${table} WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String}`, { sid }, z.object({ n: z.coerce.number() }))
  return r!.n
}
const storedKeys = async (sid: string, build: string) => {
  const [r] = await db.query(
    `SELECT arraySort(bitmapToArray(keys)) AS keys FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {b:UInt64}`,
    { sid, b: build },
    z.object({ keys: z.array(z.coerce.number()) }),
  )
  return r?.keys
}

describe('materializeSegment', () => {
  const B1 = '1000'
  const B2 = '2000'
  const B3 = '3000'

  it('stores the members of the first build, all of them entering with version 1', async () => {
    const s = await save('kinds', { tag: 'kinds', op: 'in', value: ['three'] })
    expect(s.version).toBe(1)
    const r = await run(s, B1, AS_OF)
    expect(r).toEqual({ size: THREE.length, entered: THREE.length, exited: 0, build: B1, version: 1, skipped: false })
    expect(await storedKeys('kinds', B1)).toEqual(THREE)
    const ev = await eventsOf('kinds', B1)
    expect(ev.map((e) => e.customer_key)).toEqual(THREE)
    expect(new Set(ev.map((e) => `${e.kind}/${e.version}/${e.build}/${e.at}`))).toEqual(new Set([`enter/1/${B1}/${chDateTime(AS_OF)}`]))
    const [runRow] = await db.query(
      `SELECT size, entered, exited, version, trigger, started_at <= finished_at AS ordered FROM segment_runs WHERE tenant_id = {tenant:UInt16} AND segment_id = 'kinds'`,
      {},
      z.object({ size: z.coerce.number(), entered: z.coerce.number(), exited: z.coerce.number(), version: z.coerce.number(), trigger: z.string(), ordered: z.coerce.number() }),
    )
    expect(runRow).toEqual({ size: THREE.length, entered: THREE.length, exited: 0, version: 1, trigger: 'manual', ordered: 1 })
  })

  it('materializing the same build again writes nothing', async () => {
    const s = await repo.get(fx.tenant, 'kinds')
    const r = await run(s, B1, AS_OF)
    expect(r).toEqual({ size: THREE.length, entered: THREE.length, exited: 0, build: B1, version: 1, skipped: true })
    expect(await count('segment_members', 'kinds')).toBe(1)
    expect(await count('segment_events', 'kinds')).toBe(THREE.length)
    expect(await count('segment_runs', 'kinds')).toBe(1)
  })

  it('a new version records who entered and who left, with that version', async () => {
    const s = await save('kinds', { tag: 'kinds', op: 'eq', value: 'even' })
    expect(s.version).toBe(2)
    const entered = minus(EVEN, THREE)
    const exited = minus(THREE, EVEN)
    const r = await run(s, B2, T2)
    expect(r).toEqual({ size: EVEN.length, entered: entered.length, exited: exited.length, build: B2, version: 2, skipped: false })
    expect(await storedKeys('kinds', B2)).toEqual(EVEN)
    const ev = await eventsOf('kinds', B2)
    expect(ev.filter((e) => e.kind === 'enter').map((e) => e.customer_key)).toEqual(entered)
    expect(ev.filter((e) => e.kind === 'exit').map((e) => e.customer_key)).toEqual(exited)
    expect(new Set(ev.map((e) => `${e.version}/${e.at}`))).toEqual(new Set([`2/${chDateTime(T2)}`]))
  })

  it('membershipAt answers from the events before and after each build', async () => {
    const justBefore = (d: Date) => new Date(d.getTime() - 1)
    // 3: in by v1, out by v2.
    expect(await membershipAt(db, 'kinds', 3, justBefore(AS_OF))).toEqual({ member: false })
    expect(await membershipAt(db, 'kinds', 3, AS_OF)).toEqual({ member: true, since: chDateTime(AS_OF), version: 1 })
    expect(await membershipAt(db, 'kinds', 3, justBefore(T2))).toEqual({ member: true, since: chDateTime(AS_OF), version: 1 })
    expect(await membershipAt(db, 'kinds', 3, T2)).toEqual({ member: false, since: chDateTime(T2), version: 2 })
    // 6: in since v1 throughout.
    expect(await membershipAt(db, 'kinds', 6, T2)).toEqual({ member: true, since: chDateTime(AS_OF), version: 1 })
    // 4: in from v2 only.
    expect(await membershipAt(db, 'kinds', 4, AS_OF)).toEqual({ member: false })
    expect(await membershipAt(db, 'kinds', 4, T2)).toEqual({ member: true, since: chDateTime(T2), version: 2 })
    // 1: never.
    expect(await membershipAt(db, 'kinds', 1, T3)).toEqual({ member: false })
    expect(await segmentHistory(db, 'kinds', 3)).toEqual([
      { at: chDateTime(AS_OF), kind: 'enter', version: 1, build: B1 },
      { at: chDateTime(T2), kind: 'exit', version: 2, build: B2 },
    ])
    expect(await segmentHistory(db, 'kinds', 1)).toEqual([])
  })

  it('a change in the data (a deleted customer) is an exit under the same version; a half-written build is redone once', async () => {
    await db.insert('customers', [
      { customer_key: 4, customer_no: 'C4', gender: 'unknown', birth_date: null, opened_at: '2020-01-01 00:00:00.000', updated_at: '2026-03-16 00:00:00.000', deleted: 1 },
    ])
    const s = await repo.get(fx.tenant, 'kinds')
    const r = await run(s, B3, T3)
    expect(r).toMatchObject({ size: EVEN.length - 1, entered: 0, exited: 1, version: 2, skipped: false })
    expect(await eventsOf('kinds', B3)).toEqual([{ customer_key: 4, kind: 'exit', version: 2, build: B3, at: chDateTime(T3) }])
    expect(await membershipAt(db, 'kinds', 4, T3)).toEqual({ member: false, since: chDateTime(T3), version: 2 })
    // A crash before the run row: members and events of B3 are there, the run row is not.
    await db.command(`DELETE FROM segment_runs WHERE tenant_id = {tenant:UInt16} AND segment_id = 'kinds' AND build = {b:UInt64}`, { b: B3 })
    const again = await run(s, B3, T3)
    expect(again).toEqual(r)
    expect(await eventsOf('kinds', B3)).toHaveLength(1)
    expect(await count('segment_members', 'kinds')).toBe(3)
    expect(await count('segment_runs', 'kinds')).toBe(3)
  })

  it('refuses a build id that is not a UInt64', async () => {
    const s = await repo.get(fx.tenant, 'kinds')
    await expect(run(s, '12a', T3)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(run(s, '0', T3)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
  })
})

describe('materializeAll', () => {
  it('runs every segment; one that does not compile is reported and leaves no trace', async () => {
    const good = await save('gold', { tag: 'tier', op: 'eq', value: 'gold' })
    // risky is a risk-only tag: the compiler refuses it in a marketing segment.
    const bad = await save('bad', { tag: 'risky', op: 'eq', value: true })
    const flag = await save('flag', { tag: 'flag', op: 'eq', value: true })
    let n = 10_000
    const out = await materializeAll(
      { db: fx.engine.db },
      { tenantId: fx.tenant, timeZone: TZ, segments: [good, bad, flag], defs: fx.defs, asOf: AS_OF, trigger: 'tag_run', newBuildId: () => String(++n) },
    )
    const gold = keys((k) => k % 3 === 0 && k % 7 !== 0)
    expect(out.results).toEqual([
      { segmentId: 'gold', size: gold.length, entered: gold.length, exited: 0, build: '10001', version: 1, skipped: false },
      { segmentId: 'flag', size: THREE.length, entered: THREE.length, exited: 0, build: '10003', version: 1, skipped: false },
    ])
    expect(out.errors).toHaveLength(1)
    expect(out.errors[0]).toMatchObject({ segmentId: 'bad', code: 'VALIDATION_FAILED' })
    expect(await count('segment_members', 'bad')).toBe(0)
    expect(await count('segment_runs', 'bad')).toBe(0)
    expect(await storedKeys('gold', '10001')).toEqual(gold)
  })

  it('begins no further segment once the run’s lease is lost, and fails with the reason', async () => {
    const lease = new AbortController()
    let n = 30_000
    const newBuildId = () => {
      // Lost while the first segment is being built: it completes, the next is not begun.
      if (n === 30_000) lease.abort(new Error('the segments lease was lost'))
      return String(++n)
    }
    const [a, b] = [await save('lost-a', { tag: 'flag', op: 'eq', value: true }), await save('lost-b', { tag: 'flag', op: 'eq', value: true })]
    await expect(
      materializeAll({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, segments: [a, b], defs: fx.defs, asOf: AS_OF, trigger: 'tag_run', newBuildId, signal: lease.signal }),
    ).rejects.toThrow('the segments lease was lost')
    expect(await count('segment_runs', 'lost-a')).toBe(1)
    expect(await count('segment_runs', 'lost-b')).toBe(0)
  })

  it('expands references to other saved segments before compiling', async () => {
    const s = await save('gold-even', { all: [{ segment: 'gold' }, { tag: 'kinds', op: 'eq', value: 'even' }] })
    const expected = keys((k) => k % 6 === 0 && k % 7 !== 0)
    expect(await run(s, '20000', AS_OF)).toMatchObject({ size: expected.length, entered: expected.length, exited: 0, version: 1 })
    expect(await storedKeys('gold-even', '20000')).toEqual(expected)
  })
})

describe('a materialization that fails half-way', () => {
  // Customer 4 was deleted above: no build from here on holds it.
  const live = (ks: number[]) => ks.filter((k) => k !== 4)
  const refused = 'Code: 210. DB::NetException: Connection refused (simulated)'
  /** The engine handle, refusing the statements `refuse` picks, as an engine at its memory limit or gone would. */
  const failing = (refuse: (statement: string) => boolean): Db =>
    new Proxy(fx.engine.db, {
      get(target, prop, recv) {
        if (prop !== 'forTenant') return Reflect.get(target, prop, recv)
        return (t: number) =>
          new Proxy(target.forTenant(t), {
            get(x, p) {
              const v = Reflect.get(x, p, x) as unknown
              if (typeof v !== 'function') return v
              const call = (...args: unknown[]) => (v as (...a: unknown[]) => unknown).apply(x, args)
              if (p === 'command') return async (sql: string, ...rest: unknown[]) => (refuse(sql) ? Promise.reject(new Error(refused)) : call(sql, ...rest))
              if (p === 'insert') return async (table: string, ...rest: unknown[]) => (refuse(`INSERT INTO ${table}`) ? Promise.reject(new Error(refused)) : call(table, ...rest))
              return call
            },
          })
      },
    }) as Db
  const runOn = (engine: Db, segment: SavedSegment, build: string, asOf: Date) =>
    materializeSegment({ db: engine }, { tenantId: fx.tenant, timeZone: TZ, segment, defs: fx.defs, asOf, build, trigger: 'tag_run' })
  const buildsOf = async (table: 'segment_members' | 'segment_events', sid: string) =>
    (await db.query(`SELECT DISTINCT toString(build) AS b FROM ${table} WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} ORDER BY b`, { sid }, z.object({ b: z.string() }))).map((r) => r.b)
  const csvKeys = async (s: Readable) => {
    let text = ''
    for await (const chunk of s) text += String(chunk)
    return text.trim().split('\n').slice(1).map((line) => Number(line.split(',')[0]))
  }
  const entered = live(minus(EVEN, THREE))
  const exited = live(minus(THREE, EVEN))

  it('leaves no trace of a build whose entries could not be written: the next build diffs against the last complete one', async () => {
    await runOn(fx.engine.db, await save('half', { tag: 'kinds', op: 'in', value: ['three'] }), '5001', AS_OF)
    const v2 = await save('half', { tag: 'kinds', op: 'eq', value: 'even' })
    await expect(runOn(failing((s) => s.includes('INSERT INTO segment_events')), v2, '5002', T2)).rejects.toThrow(/Connection refused/)
    expect(await buildsOf('segment_members', 'half')).toEqual(['5001'])
    expect(await members(db, 'half', { limit: 1000 })).toMatchObject({ build: '5001', keys: live(THREE) })

    expect(await runOn(fx.engine.db, v2, '5003', T3)).toMatchObject({ size: live(EVEN).length, entered: entered.length, exited: exited.length, skipped: false })
    expect(await members(db, 'half', { limit: 1000 })).toMatchObject({ build: '5003', keys: live(EVEN) })
    // 8 entered with version 2, 3 left with it: at the time of the build that recorded it.
    expect(await membershipAt(db, 'half', 8, T3)).toEqual({ member: true, since: chDateTime(T3), version: 2 })
    expect(await membershipAt(db, 'half', 3, T3)).toEqual({ member: false, since: chDateTime(T3), version: 2 })
    expect(await membershipAt(db, 'half', 6, T3)).toEqual({ member: true, since: chDateTime(AS_OF), version: 1 })
  })

  it('when even the clean-up fails, readers keep to the last complete build and the next materialization removes the half-written one', async () => {
    await runOn(fx.engine.db, await save('stuck', { tag: 'kinds', op: 'in', value: ['three'] }), '6001', AS_OF)
    const v2 = await save('stuck', { tag: 'kinds', op: 'eq', value: 'even' })
    // Members and entries of 6002 are written; its run row is not, nor can they be deleted.
    await expect(runOn(failing((s) => s.includes('INSERT INTO segment_runs') || s.trimStart().startsWith('DELETE')), v2, '6002', T2)).rejects.toThrow(/Connection refused/)
    expect(await buildsOf('segment_members', 'stuck')).toEqual(['6001', '6002'])
    expect(await buildsOf('segment_events', 'stuck')).toEqual(['6001', '6002'])

    expect(await members(db, 'stuck', { limit: 1000 })).toMatchObject({ build: '6001', keys: live(THREE) })
    expect(await csvKeys(await exportSegment(db, 'stuck', 'csv'))).toEqual(live(THREE))
    expect(await customerSegments(db, 8)).not.toContain('stuck')
    expect(await customerSegments(db, 3)).toContain('stuck')
    expect(await membershipAt(db, 'stuck', 8, T2)).toEqual({ member: false })
    expect(await membershipAt(db, 'stuck', 3, T2)).toEqual({ member: true, since: chDateTime(AS_OF), version: 1 })
    expect(await segmentHistory(db, 'stuck', 3)).toEqual([{ at: chDateTime(AS_OF), kind: 'enter', version: 1, build: '6001' }])

    expect(await runOn(fx.engine.db, v2, '6003', T3)).toMatchObject({ entered: entered.length, exited: exited.length })
    expect(await buildsOf('segment_members', 'stuck')).toEqual(['6001', '6003'])
    expect(await buildsOf('segment_events', 'stuck')).toEqual(['6001', '6003'])
    expect(await membershipAt(db, 'stuck', 8, T3)).toEqual({ member: true, since: chDateTime(T3), version: 2 })
    expect(await customerSegments(db, 8)).toContain('stuck')
  })
})
