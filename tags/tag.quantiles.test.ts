import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newRunId } from '../core/run-id.js'
import type { TestEngine } from '../test/engine.js'
import { LONG_AGO, TAG_TEST_AS_OF, TAG_TEST_TZ, tagReads, testTagDef } from '../test/fixtures.js'
import { loginEvent, openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import { cutBands } from './tag.quantiles.js'
import type { TagRepository } from './tag.repository.js'

/**
 * Quantile scores recomputed only for the customers whose bucket can change: those whose input
 * changed in the run, and those whose input lies where a cut point moved. 30 customers: 1-3 log
 * in on 03-12 and 03-13, 4-20 on 03-12, 21-30 never (no value of logins_7d, which counts as 0;
 * last_login is missing). Four buckets: the cut points are the inputs ranked 8th, 15th and 23rd.
 * Every run is checked against a recomputation of every tag.
 */

let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)
const { staged, nums: buckets } = tagReads(db)
const SCORES = ['q_up', 'q_down', 'q_last']

async function run(o: { recompute?: boolean } = {}) {
  const runId = newRunId()
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: TAG_TEST_AS_OF, runId, watermarkSlackMs: 0, ...o })
  return { ...r, runId }
}

/** The score's buckets for customers `keys`, as one string (e.g. '1-3:4 4-9:3'). */
async function of(tag: string, groups: Record<string, number[]>): Promise<string> {
  const b = await buckets(tag)
  return Object.entries(groups)
    .map(([name, keys]) => `${name}:${[...new Set(keys.map((k) => b[k]))].join('/')}`)
    .join(' ')
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i)

/** The run's values are what recomputing every tag gives: a recompute changes nothing. */
async function expectRecomputeAgrees() {
  const again = await run({ recompute: true })
  expect(again.changed).toBe(0)
}

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-q', timeZone: TAG_TEST_TZ, keys: range(1, 20) }))
  await db().insert('customers', range(21, 30).map((k) => ({ customer_key: k, customer_no: `C${k}`, opened_at: LONG_AGO, updated_at: LONG_AGO, elder_mode: 0 })))
  await repo.save(T, testTagDef('last_login', 'date', { kind: 'window', events: ['login'], measure: 'last_time', days: 7 }), 'test')
  await repo.save(T, testTagDef('q_up', 'number', { kind: 'score', method: 'quantile', input: { tag: 'logins_7d' }, buckets: 4 }), 'test')
  await repo.save(T, testTagDef('q_down', 'number', { kind: 'score', method: 'quantile', input: { tag: 'logins_7d' }, buckets: 4, descending: true }), 'test')
  await repo.save(T, testTagDef('q_last', 'number', { kind: 'score', method: 'quantile', input: { tag: 'last_login' }, buckets: 4 }), 'test')
  // Negative inputs beside missing ones: -2 for 1-3, -1 for 4-20, none for 21-30.
  await repo.save(T, testTagDef('minus_logins', 'number', { kind: 'sql', sql: `SELECT customer_key, -count() AS value FROM $events WHERE event = 'login' GROUP BY customer_key` }), 'test')
  await repo.save(T, testTagDef('q_neg', 'number', { kind: 'score', method: 'quantile', input: { tag: 'minus_logins' }, buckets: 4 }), 'test')
  await run()
})
afterAll(async () => engine?.close())

describe('quantile scores by cut points', () => {
  it('buckets as ranks do: ties share a bucket, absent counts go first as 0, missing dates first', async () => {
    // logins_7d: 0 x10 (21-30), 1 x17 (4-20), 2 x3 (1-3). Ascending cut points 0, 1, 1.
    expect(await of('q_up', { absent: range(21, 30), once: range(4, 20), twice: [1, 2, 3] })).toBe('absent:1 once:2 twice:4')
    // Descending (2, 2, 2, 1 ...): cut points 1, 1, 0; the zeros rank 21st: 1 + 20 * 4 div 30 = 3.
    expect(await of('q_down', { absent: range(21, 30), once: range(4, 20), twice: [1, 2, 3] })).toBe('absent:3 once:1 twice:1')
    // last_login: missing x10, 03-12 x17, 03-13 x3: cut points NULL, 03-12, 03-12.
    expect(await of('q_last', { absent: range(21, 30), d12: range(4, 20), d13: [1, 2, 3] })).toBe('absent:1 d12:2 d13:4')
    // minus_logins: missing x10, -2 x3, -1 x17: cut points NULL, -1, -1. Every input is beyond
    // the NULL one, negative or not: -2 ranks 11th (1 + 10 * 4 div 30 = 2), -1 14th (2).
    expect(await of('q_neg', { absent: range(21, 30), once: range(4, 20), twice: [1, 2, 3] })).toBe('absent:1 once:2 twice:2')
    await expectRecomputeAgrees()
  })

  it('a cut point that moves recomputes the customers it crossed, whose inputs did not change', async () => {
    await db().insert('events', range(4, 9).map((k) => loginEvent(k, '2026-03-14 10:00')))
    const r = await run()
    for (const t of SCORES) expect(r.tags[t]?.changedInputs, t).toHaveLength(1)
    // logins_7d: 0 x10, 1 x11 (10-20), 2 x9 (1-9). Ascending cut points 0, 1, 2: the third moved
    // from 1 to 2, so 1-3 (input 2, unchanged) go from 4 to 3 with 4-9.
    expect(await staged(r.runId, 'q_up')).toBe(9)
    expect(await of('q_up', { absent: range(21, 30), once: range(10, 20), twice: range(1, 9) })).toBe('absent:1 once:2 twice:3')
    // Descending cut points 2, 1, 0: the first moved from 1 to 2, so 10-20 (input 1, unchanged)
    // go from 1 to 2; 4-9 are recomputed and stay 1.
    expect(await staged(r.runId, 'q_down')).toBe(17)
    expect(r.tags.q_down?.changed).toBe(11)
    expect(await of('q_down', { absent: range(21, 30), once: range(10, 20), twice: range(1, 9) })).toBe('absent:3 once:2 twice:1')
    // last_login: missing x10, 03-12 x11, 03-13 x3, 03-14 x6: cut points NULL, 03-12, 03-13: 1-3
    // (03-13, unchanged) go from 4 to 3.
    expect(await staged(r.runId, 'q_last')).toBe(9)
    expect(await of('q_last', { absent: range(21, 30), d12: range(10, 20), d13: [1, 2, 3], d14: range(4, 9) })).toBe('absent:1 d12:2 d13:3 d14:4')
    await expectRecomputeAgrees()
  })

  it('a cut point leaving 0 or a missing input reaches the customers without a value', async () => {
    await db().insert('events', range(21, 27).map((k) => loginEvent(k, '2026-03-14 11:00')))
    const r = await run()
    // logins_7d: 0 x3 (28-30), 1 x18 (10-27), 2 x9. Descending cut points 2, 1, 1: the third
    // moved from 0 to 1, so 28-30, with no value of logins_7d at all, go from 3 to 4.
    expect(await of('q_down', { absent: range(28, 30), once: range(10, 27), twice: range(1, 9) })).toBe('absent:4 once:2 twice:1')
    expect(await staged(r.runId, 'q_down')).toBe(7 + 3)
    // Ascending cut points 1, 1, 2: the first moved from 0 to 1, so 10-20 go from 2 to 1.
    expect(await of('q_up', { absent: range(28, 30), once: range(10, 27), twice: range(1, 9) })).toBe('absent:1 once:1 twice:3')
    // last_login: missing x3, 03-12 x11, 03-13 x3, 03-14 x13: cut points 03-12, 03-13, 03-14.
    // The first was NULL (among the missing): 10-20 go from 2 to 1; 1-3 from 3 to 2; 4-9 from 4 to 3.
    expect(await of('q_last', { absent: range(28, 30), d12: range(10, 20), d13: [1, 2, 3], d14: [...range(4, 9), ...range(21, 27)] })).toBe('absent:1 d12:1 d13:2 d14:3')
    expect(await staged(r.runId, 'q_last')).toBe(7 + 11 + 3 + 6)
    await expectRecomputeAgrees()
  })

  it('values written after the cut points were recorded: the score is ranked for every customer again', async () => {
    // As a run cut short after writing its changes would leave them: a value newer than the
    // state's cut points (customer 30's q_up, 1 -> 2).
    await db().insert('tag_values', [{ tag: 'q_up', customer_key: 30, value: '2', num: 2, list: [], run_id: newRunId(), is_deleted: 0 }])
    await db().insert('events', [loginEvent(10, '2026-03-14 12:00')])
    const r = await run()
    expect(r.tags.q_up?.changedInputs).toBeUndefined()
    expect(await staged(r.runId, 'q_up')).toBe(30)
    expect((await buckets('q_up'))[30]).toBe(1)
    // The other scores' values are those of their cut points: still narrowed.
    expect(r.tags.q_down?.changedInputs).toEqual(['logins_7d'])
    await expectRecomputeAgrees()
  })
})

describe('cutBands', () => {
  it.each([
    { was: [1, 2], now: [1, 2], desc: false, lo: [], hi: [] },
    { was: [1, 2], now: [1, 3], desc: false, lo: [2], hi: [3] },
    { was: [1, 3], now: [1, 2], desc: false, lo: [2], hi: [3] },
    { was: [null, 2], now: [5, 2], desc: false, lo: [null], hi: [5] },
    { was: [5, 2], now: [null, 2], desc: false, lo: [null], hi: [5] },
    { was: [null, 2], now: [5, 2], desc: true, lo: [5], hi: [null] },
    { was: [4, 0], now: [4, 1], desc: true, lo: [0], hi: [1] },
  ])('$was -> $now (descending: $desc)', ({ was, now, desc, lo, hi }) => {
    expect(cutBands(was, now, desc)).toEqual({ lo, hi })
  })
})
