import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import type { TestEngine } from '../test/engine.js'
import { LONG_AGO, TAG_TEST_AS_OF, TAG_TEST_TZ, tagReads, testTagDef } from '../test/fixtures.js'
import { loginEvent, openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'

/**
 * A full run checks what raw data feeds before it recomputes: event tags keep their values when
 * the day builds of their window (checked against the events), the customers they start from
 * and the date are what they were when they were last computed; rules over profile and stock
 * data are recomputed for everyone; tags computed from other tags alone follow what the run
 * found for those (kept, or recomputed for the customers they changed for). `recompute`
 * recomputes everything. Run time 2026-03-15T04:00Z, local date 03-15 in Shanghai; the window is
 * 7 days.
 */

const KEYS = Array.from({ length: 20 }, (_, i) => i + 1)

let engine: TestEngine
let repo: TagRepository
let T: number

const db = () => engine.db.forTenant(T)
const { staged, holders } = tagReads(db)
async function run(o: { recompute?: boolean; only?: string[]; asOf?: Date; mode?: 'full' | 'incremental' } = {}) {
  const runId = newRunId()
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId, watermarkSlackMs: 0, ...o })
  return { ...r, runId }
}
/** Every current value, as `tag|customer|value|num`. */
async function snapshot(): Promise<string[]> {
  const rows = await db().query(
    `SELECT toString(tag) AS tag, customer_key AS k, value, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0 ORDER BY tag, k`,
    {},
    z.object({ tag: z.string(), k: z.coerce.number(), value: z.string(), num: z.coerce.number() }),
  )
  return rows.map((r) => `${r.tag}|${r.k}|${r.value}|${r.num}`)
}
const login = loginEvent

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-d', timeZone: TAG_TEST_TZ, keys: KEYS }))
  await repo.save(T, testTagDef('login_days_7d', 'number', { kind: 'window', events: ['login'], measure: 'days', days: 7 }), 'test')
  // From a tag alone (a rule and a score), and from a tag and a profile feature.
  await repo.save(T, testTagDef('frequent', 'boolean', { kind: 'rule', when: { tag: 'logins_7d', op: 'gte', value: 2 } }), 'test')
  await repo.save(T, testTagDef('login_rank', 'number', { kind: 'score', method: 'quantile', input: { tag: 'logins_7d' }, buckets: 4 }), 'test')
  await repo.save(
    T,
    testTagDef('frequent_elder', 'boolean', { kind: 'rule', when: { all: [{ tag: 'logins_7d', op: 'gte', value: 2 }, { feature: 'elder_mode_chosen', op: 'eq', value: true }] } }),
    'test',
  )
})
afterAll(async () => engine?.close())

describe('full runs derive the tags computed from other tags', () => {
  it('with nothing changed: event tags and tags from tags alone kept, rules over profile data recomputed', async () => {
    const first = await run()
    expect(await staged(first.runId, 'frequent')).toBe(3)
    expect(await holders('frequent')).toEqual([1, 2, 3])
    const before = await snapshot()

    const second = await run()
    expect(second.changed).toBe(0)
    expect(second.tags.frequent).toMatchObject({ skipped: true, changed: 0, customers: 3 })
    expect(second.tags.login_rank).toMatchObject({ skipped: true, changed: 0, customers: 20 })
    expect(await staged(second.runId, 'frequent')).toBe(0)
    expect(await staged(second.runId, 'login_rank')).toBe(0)
    // The days of the window were checked against their events, and the customers and the date
    // are those of the first run.
    expect(second.reusedDays).toBe(7)
    expect(second.tags.logins_7d).toMatchObject({ skipped: true, changed: 0, customers: 20 })
    expect(await staged(second.runId, 'logins_7d')).toBe(0)
    // Stock data is read afresh, whatever its change feed says.
    expect(second.tags.frequent_elder?.skipped).toBeUndefined()
    expect(await staged(second.runId, 'frequent_elder')).toBe(3)
    expect(await snapshot()).toEqual(before)
  })

  it('an input changed for one customer: the rule is recomputed for that customer, the score for everyone, and both equal a recompute', async () => {
    await db().insert('events', [login(7, '2026-03-14 09:00')])
    const r = await run()
    expect(r.tags.logins_7d?.changed).toBe(1)
    expect(r.tags.frequent?.changedInputs).toEqual(['logins_7d'])
    expect(await staged(r.runId, 'frequent')).toBe(1)
    expect(r.tags.frequent?.changed).toBe(1)
    expect(await holders('frequent')).toEqual([1, 2, 3, 7])
    // A score ranks every customer: any change of its input recomputes it for all of them.
    expect(r.tags.login_rank?.skipped).toBeUndefined()
    expect(await staged(r.runId, 'login_rank')).toBe(20)
    const derived = await snapshot()

    const again = await run({ recompute: true })
    expect(again.changed).toBe(0)
    for (const t of ['frequent', 'login_rank', 'frequent_elder', 'logins_7d']) expect(again.tags[t]?.skipped, t).toBeUndefined()
    expect(await staged(again.runId, 'frequent')).toBe(4)
    expect(await snapshot()).toEqual(derived)
  })

  it('a value changed outside any run stays until a recompute puts it right', async () => {
    // As a stray write would leave it: customer 1's value of frequent deleted.
    await db().insert('tag_values', [{ tag: 'frequent', customer_key: 1, value: '', num: 0, list: [], run_id: newRunId(), is_deleted: 1 }])
    expect(await holders('frequent')).toEqual([2, 3, 7])
    const derived = await run()
    expect(derived.tags.frequent?.skipped).toBe(true)
    expect(await holders('frequent')).toEqual([2, 3, 7])
    const repaired = await run({ recompute: true })
    expect(repaired.tags.frequent?.changed).toBe(1)
    expect(await holders('frequent')).toEqual([1, 2, 3, 7])
  })

  it('a new customer: event tags and every rule and score over the customers recomputed, then kept again', async () => {
    await db().insert('customers', [{ customer_key: 21, customer_no: 'C21', opened_at: LONG_AGO, updated_at: LONG_AGO, elder_mode: 0 }])
    const r = await run()
    for (const t of ['logins_7d', 'login_days_7d', 'frequent', 'login_rank']) expect(r.tags[t]?.skipped, t).toBeUndefined()
    // Without logins the new customer has no count, and ranks in the lowest quarter.
    expect(r.tags.login_rank?.changed).toBe(1)
    expect(await holders('login_rank')).toContain(21)
    const again = await run()
    for (const t of ['logins_7d', 'frequent', 'login_rank']) expect(again.tags[t]?.skipped, t).toBe(true)
    expect(again.changed).toBe(0)
  })

  it('a new customer gets the scores and rules over other tags from the next incremental run too', async () => {
    await db().insert('customers', [{ customer_key: 22, customer_no: 'C22', opened_at: LONG_AGO, updated_at: chDateTime(new Date()), elder_mode: 0 }])
    const inc = await run({ mode: 'incremental' })
    expect(inc.mode).toBe('incremental')
    expect(inc.tags.login_rank?.skipped).toBeUndefined()
    expect(await holders('login_rank')).toContain(22)
    expect((await run({ recompute: true })).changed).toBe(0)
  })

  it('a day rebuilt by a run that did not compute an event tag makes the next full run recompute it', async () => {
    await db().insert('events', [login(8, '2026-03-14 09:00')])
    // This run rebuilds the day for the other window tag alone.
    const other = await run({ only: ['login_days_7d'] })
    expect(other.rebuiltDays).toEqual(['2026-03-14'])
    expect(other.tags.login_days_7d?.changed).toBe(1)
    expect(await holders('frequent')).toEqual([1, 2, 3, 7])
    const r = await run()
    expect(r.rebuiltDays).toEqual([])
    expect(r.tags.logins_7d?.skipped).toBeUndefined()
    expect(r.tags.logins_7d?.changed).toBe(1)
    expect(await holders('frequent')).toEqual([1, 2, 3, 7, 8])
    expect((await run({ recompute: true })).changed).toBe(0)
  })

  it('after an incremental run on the next day, a full run keeps the event tags it computed', async () => {
    // 03-16 holds no event: the incremental run computes the window with it empty.
    const next = new Date(TAG_TEST_AS_OF.getTime() + 86_400_000)
    const inc = await run({ mode: 'incremental', asOf: next })
    expect(inc.mode).toBe('incremental')
    const full = await run({ asOf: next })
    expect(full.rebuiltDays).toEqual([])
    expect(full.tags.logins_7d?.skipped).toBe(true)
    expect(full.changed).toBe(0)
  })

  it('event tags are recomputed on another day: their windows moved', async () => {
    // 03-20: the window [03-14, 03-20] keeps the logins of 03-14 alone.
    const later = new Date(TAG_TEST_AS_OF.getTime() + 5 * 86_400_000)
    const r = await run({ asOf: later })
    expect(r.tags.logins_7d?.skipped).toBeUndefined()
    expect(r.tags.logins_7d?.changed).toBeGreaterThan(0)
    expect(await holders('frequent')).toEqual([])
    expect((await run({ recompute: true, asOf: later })).changed).toBe(0)
  })
})
