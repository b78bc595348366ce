import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { LONG_AGO, localEvent, TAG_TEST_AS_OF, TAG_TEST_TZ, tagReads, testTagDef } from '../test/fixtures.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { runTags } from './tag.pipeline.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * A full run recomputes every customer, but re-aggregates a day only when that day's events or
 * the identities they resolve to changed since its build: checked against the events themselves
 * (count and fingerprint), so changes the change feed never saw (an event stored more than
 * three days after it was received, as a bulk load of history is; a deletion) are found too. Run time 2026-03-15T04:00Z, local date 03-15 in Shanghai;
 * the 7-day window is [03-09, 03-15].
 */

const TZ = TAG_TEST_TZ
const AS_OF = TAG_TEST_AS_OF
const OLD = LONG_AGO

let engine: TestEngine
let repo: TagRepository
let T: number

const db = () => engine.db.forTenant(T)
const { nums: values } = tagReads(db)
const run = async (mode: 'full' | 'incremental' = 'full', timeZone = TZ) =>
  runTags({ db: engine.db }, { tenantId: T, timeZone, defs: await repo.list(T), mode, asOf: AS_OF, runId: newRunId(), watermarkSlackMs: 0 })

beforeAll(async () => {
  engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  T = (await tenants.create({ slug: 'bank-r', name: 'R', timeZone: TZ })).id
  repo = createTagRepository({ db: engine.db })
  await db().insert('customers', [1, 2, 3].map((k) => ({ customer_key: k, customer_no: `C${k}`, opened_at: OLD, updated_at: OLD })))
  await db().insert('events', [
    localEvent(1, '2026-03-10 10:00', 'login'),
    localEvent(1, '2026-03-12 10:00', 'login'),
    localEvent(2, '2026-03-12 11:00', 'login'),
    localEvent(1, '2026-03-14 10:00', 'login'),
    // An anonymous device, linked to customer 3 later on.
    { ...localEvent(0, '2026-03-13 09:00', 'login'), anonymous_id: 'dev-x', user_id: '' },
  ])
  await repo.save(T, testTagDef('logins_7d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 7 }), 'test')
  await repo.save(T, testTagDef('login_days_7d', 'number', { kind: 'window', events: ['login'], measure: 'days', days: 7 }), 'test')
})
afterAll(async () => engine?.close())

describe('full runs reuse day builds whose events did not change', () => {
  it('the first full run builds the days holding events; a second one rebuilds none and changes nothing', async () => {
    const first = await run()
    expect(first.mode).toBe('full')
    expect(first.reusedDays).toBe(0)
    expect(first.rebuiltDays).toHaveLength(7)
    expect(await values('logins_7d')).toEqual({ 1: 3, 2: 1 })
    const second = await run()
    expect(second.rebuiltDays).toEqual([])
    expect(second.reusedDays).toBe(7)
    expect(second.changed).toBe(0)
    expect(second.steps.map((s) => s.step)).toContain('check_days')
  })

  it('a full run with nothing changed compares each tag as a whole and joins none of them row by row', async () => {
    const statements: string[] = []
    const recording = new Proxy(engine.db, {
      get(target, key) {
        if (key !== 'forTenant') return Reflect.get(target, key)
        return (id: number) =>
          new Proxy(target.forTenant(id), {
            get(t, k) {
              const v = Reflect.get(t, k) as unknown
              if (k !== 'command' || typeof v !== 'function') return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v
              return (sql: string, params?: Record<string, unknown>) => {
                statements.push(sql)
                return (v as (s: string, p?: Record<string, unknown>) => Promise<void>).call(t, sql, params)
              }
            },
          })
      },
    })
    // A recompute: a full run that derives would keep these event tags without comparing them.
    const r = await runTags({ db: recording }, { tenantId: T, timeZone: TZ, defs: await repo.list(T), mode: 'full', asOf: AS_OF, runId: newRunId(), watermarkSlackMs: 0, recompute: true })
    expect(r.changed).toBe(0)
    expect(statements.some((q) => q.includes('INSERT INTO tag_stage'))).toBe(true)
    expect(statements.filter((q) => q.includes('INSERT INTO tag_changes'))).toEqual([])
  })

  it('an event stored days after it was received (the change feed skips it) is found by the next full run', async () => {
    await db().insert('events', [{ ...localEvent(2, '2026-03-11 08:00', 'login'), received_at: chDateTime(new Date('2026-03-11T00:00:00Z')) }])
    // The feed takes events received in the last three days only, so the incremental run,
    // which trusts it, sees nothing.
    const inc = await run('incremental')
    expect(inc.mode).toBe('incremental')
    expect(inc.rebuiltDays).toEqual([])
    expect((await values('logins_7d'))[2]).toBe(1)
    const full = await run()
    expect(full.rebuiltDays).toEqual(['2026-03-11'])
    expect(full.reusedDays).toBe(6)
    expect(await values('logins_7d')).toEqual({ 1: 3, 2: 2 })
    expect((await values('login_days_7d'))[2]).toBe(2)
  })

  it('a deleted event makes its day stale', async () => {
    await db().command(`DELETE FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = 1 AND timestamp = {ts:DateTime64(3, 'UTC')}`, {
      ts: chDateTime(new Date('2026-03-10T10:00:00+08:00')),
    })
    const full = await run()
    expect(full.rebuiltDays).toEqual(['2026-03-10'])
    expect((await values('logins_7d'))[1]).toBe(2)
  })

  it('an event moved to another customer makes its day stale although the count is the same', async () => {
    // The key is part of the sort key, so a move is a delete and an insert of the same event.
    const ts = chDateTime(new Date('2026-03-14T10:00:00+08:00'))
    const [moved] = await db().query(
      `SELECT * FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = 1 AND timestamp = {ts:DateTime64(3, 'UTC')}`,
      { ts },
      z.record(z.string(), z.unknown()),
    )
    await db().command(`DELETE FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = 1 AND timestamp = {ts:DateTime64(3, 'UTC')}`, { ts })
    const { tenant_id: _t, ...row } = moved!
    await db().insert('events', [{ ...row, customer_key: 2 }])
    const full = await run()
    expect(full.rebuiltDays).toEqual(['2026-03-14'])
    expect(await values('logins_7d')).toEqual({ 1: 1, 2: 3 })
  })

  it('an identity link after the build makes the days of the linked events stale', async () => {
    const now = chDateTime(new Date())
    await db().insert('identities', [{ id_kind: 'anonymous_id', id_value: 'dev-x', customer_key: 3, source: 'test', created_at: now, updated_at: now }])
    await db().insert('identity_changes', [
      { change_id: '00000000-0000-4000-8000-00000000000a', action: 'link', id_kind: 'anonymous_id', id_value: 'dev-x', from_key: 0, into_key: 3, actor: 'test', reason: 'identify', message_id: '', created_at: now, undone_at: null, undone_by: '', updated_at: now },
    ])
    const full = await run()
    expect(full.rebuiltDays).toEqual(['2026-03-13'])
    expect((await values('logins_7d'))[3]).toBe(1)
  })

  it('a day cut in another time zone is rebuilt', async () => {
    const utc = await run('full', 'UTC')
    expect(utc.reusedDays).toBe(0)
    expect(utc.rebuiltDays).toHaveLength(7)
    const back = await run('full', TZ)
    expect(back.reusedDays).toBe(0)
    expect(back.rebuiltDays).toHaveLength(7)
    expect(await values('logins_7d')).toEqual({ 1: 1, 2: 3, 3: 1 })
  })

  it('values after reused days equal a recompute from raw events alone', async () => {
    const reused = await run()
    expect(reused.reusedDays).toBe(7)
    const before = { logins: await values('logins_7d'), days: await values('login_days_7d') }
    // Builds with no record of what they read are never reused.
    await db().command(`DELETE FROM tag_event_days WHERE tenant_id = {tenant:UInt16}`)
    const scratch = await run()
    expect(scratch.reusedDays).toBe(0)
    expect(scratch.changed).toBe(0)
    expect({ logins: await values('logins_7d'), days: await values('login_days_7d') }).toEqual(before)
  })

  it('a merge of a customer makes the days of the devices linked to that customer stale, and so does its undo', async () => {
    // Customer 3's only login is the linked device's, customer_key 0 in the events.
    const at = new Date()
    const merge = { change_id: '00000000-0000-4000-8000-00000000000b', action: 'merge', id_kind: 'customer_no', id_value: 'C3', from_key: 3, into_key: 2, actor: 'test', reason: 'test', message_id: '' }
    await db().insert('customer_merges', [{ from_key: 3, into_key: 2, change_id: merge.change_id, active: 1, updated_at: chDateTime(at) }])
    await db().insert('identity_changes', [{ ...merge, created_at: chDateTime(at), undone_at: null, undone_by: '', updated_at: chDateTime(at) }])
    const full = await run()
    expect(full.rebuiltDays).toContain('2026-03-13')
    expect(await values('logins_7d')).toEqual({ 1: 1, 2: 4 })
    // The undo, seen by an incremental run.
    const undone = new Date(Math.max(Date.now(), at.getTime() + 1))
    await db().insert('customer_merges', [{ from_key: 3, into_key: 2, change_id: merge.change_id, active: 0, updated_at: chDateTime(undone) }])
    await db().insert('identity_changes', [{ ...merge, created_at: chDateTime(at), undone_at: chDateTime(undone), undone_by: 'test', updated_at: chDateTime(undone) }])
    const inc = await run('incremental')
    expect(inc.mode).toBe('incremental')
    expect(inc.rebuiltDays).toContain('2026-03-13')
    expect(await values('logins_7d')).toEqual({ 1: 1, 2: 3, 3: 1 })
  })
})
