import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import type { TestEngine } from '../test/engine.js'
import { LONG_AGO, TAG_TEST_AS_OF, TAG_TEST_TZ, tagReads, testTagDef } from '../test/fixtures.js'
import { loginEvent, openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'

/**
 * An incremental run recomputes a rule whose only moved inputs are tags this run changed for the
 * customers whose values of those tags changed, and compares only them; anything else it reads
 * moving (a stock table, the date for a date-dependent feature) means every customer again.
 * Run time 2026-03-15T04:00Z, local date 03-15 in Shanghai.
 */

const TZ = TAG_TEST_TZ
const AS_OF = TAG_TEST_AS_OF
const OLD = LONG_AGO
const KEYS = Array.from({ length: 40 }, (_, i) => i + 1)

let engine: TestEngine
let repo: TagRepository
let T: number

const db = () => engine.db.forTenant(T)
const { staged, holders } = tagReads(db)
/** A full run here recomputes every tag (`recompute`): the incremental runs are checked against it. */
async function run(mode: 'full' | 'incremental', asOf = AS_OF) {
  const runId = newRunId()
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TZ, defs: await repo.list(T), mode, asOf, runId, watermarkSlackMs: 0, recompute: mode === 'full' })
  return { ...r, runId }
}
const now = () => chDateTime(new Date())
const login = loginEvent

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-n', timeZone: TZ, keys: KEYS }))
  // Reads a tag only; and one that also reads a profile feature.
  await repo.save(T, testTagDef('frequent', 'boolean', { kind: 'rule', when: { tag: 'logins_7d', op: 'gte', value: 2 } }), 'test')
  await repo.save(
    T,
    testTagDef('frequent_elder', 'boolean', { kind: 'rule', when: { all: [{ tag: 'logins_7d', op: 'gte', value: 2 }, { feature: 'elder_mode_chosen', op: 'eq', value: true }] } }),
    'test',
  )
  // Reads a tag and a stock table beside the customers.
  await repo.save(T, testTagDef('aum_like', 'boolean', { kind: 'rule', when: { all: [{ tag: 'logins_7d', op: 'gte', value: 1 }, { feature: 'aum', op: 'gt', value: 0 }] } }), 'test')
})
afterAll(async () => engine?.close())

describe('rules recomputed for the customers whose inputs changed', () => {
  it('a new event of one customer: the rules are computed for that customer alone and agree with a full run', async () => {
    const first = await run('full')
    expect(first.mode).toBe('full')
    expect(await holders('frequent')).toEqual([1, 2, 3])
    expect(await staged(first.runId, 'frequent')).toBe(3)

    await db().insert('events', [login(7, '2026-03-14 09:00')])
    const inc = await run('incremental')
    expect(inc.mode).toBe('incremental')
    expect(inc.tags.logins_7d?.changed).toBe(1)
    expect(inc.tags.frequent?.changedInputs).toEqual(['logins_7d'])
    expect(inc.tags.frequent_elder?.changedInputs).toEqual(['logins_7d'])
    // Only customer 7 was computed: one staged value, where the whole bank stages four.
    expect(await staged(inc.runId, 'frequent')).toBe(1)
    expect(inc.tags.frequent?.changed).toBe(1)
    expect(await holders('frequent')).toEqual([1, 2, 3, 7])
    expect(await holders('frequent_elder')).toEqual([1, 2, 3])

    const full = await run('full')
    expect(full.changed).toBe(0)
    expect(await staged(full.runId, 'frequent')).toBe(4)
  })

  it('an input that changed without changing the rule writes nothing', async () => {
    await db().command(`DELETE FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = 2 AND timestamp = {ts:DateTime64(3, 'UTC')}`, {
      ts: chDateTime(new Date('2026-03-13T10:00:00+08:00')),
    })
    // The feed does not see deletions: a day rebuilt by the full run, then an event the feed sees.
    expect((await run('full')).changed).toBeGreaterThan(0)
    expect(await holders('frequent')).toEqual([1, 3, 7])
    await db().insert('events', [login(3, '2026-03-14 11:00')])
    const inc = await run('incremental')
    expect(inc.tags.frequent?.changedInputs).toEqual(['logins_7d'])
    expect(await staged(inc.runId, 'frequent')).toBe(1)
    expect(inc.tags.frequent?.changed).toBe(0)
    expect(await holders('frequent')).toEqual([1, 3, 7])
  })

  it('a stock table that changed means every customer for the rules reading it', async () => {
    await db().insert('accounts', [{ customer_key: 7, account_no: 'A7', kind: 'savings', balance: 10, status: 'active', opened_at: '2015-01-01', updated_at: now() }])
    await db().insert('events', [login(9, '2026-03-14 12:00')])
    const inc = await run('incremental')
    expect(inc.tags.frequent?.changedInputs).toEqual(['logins_7d'])
    expect(inc.tags.aum_like?.changedInputs).toBeUndefined()
    // frequent: customer 9 alone (now two logins); aum_like reads accounts: everyone.
    expect(await staged(inc.runId, 'frequent')).toBe(1)
    expect(await holders('frequent')).toEqual([1, 3, 7, 9])
    expect(await holders('aum_like')).toEqual([7])
  })

  it('a profile column that changed means every customer for the rules reading the customers table, and no more', async () => {
    await db().insert('customers', [{ customer_key: 7, customer_no: 'C7', opened_at: OLD, updated_at: now(), elder_mode: 1 }])
    await db().insert('events', [login(10, '2026-03-14 12:00')])
    const inc = await run('incremental')
    // No customer came or went: frequent still follows its input alone (customer 10's new login).
    expect(inc.tags.frequent?.changedInputs).toEqual(['logins_7d'])
    expect(await staged(inc.runId, 'frequent')).toBe(1)
    expect(await holders('frequent')).toEqual([1, 3, 7, 9, 10])
    // frequent_elder reads the elder mode: every holder staged again, 7 for its profile change alone.
    expect(inc.tags.frequent_elder?.changedInputs).toBeUndefined()
    expect(await staged(inc.runId, 'frequent_elder')).toBe(3)
    expect(await holders('frequent_elder')).toEqual([1, 3, 7])
    expect((await run('full')).changed).toBe(0)
  })

  it('days later, the logins leaving the window change the rule for their customers alone', async () => {
    // 03-18: the window [03-12, 03-18] still holds every login.
    const day = (n: number) => new Date(AS_OF.getTime() + n * 86_400_000)
    const inc = await run('incremental', day(3))
    expect(inc.mode).toBe('incremental')
    expect(await holders('frequent')).toEqual([1, 3, 7, 9, 10])
    // 03-19: the logins of 03-12 left; customer 3 still has two (03-13 and 03-14), 9 and 10 one.
    const later = await run('incremental', day(4))
    expect(later.tags.frequent?.changedInputs).toEqual(['logins_7d'])
    expect(await holders('frequent')).toEqual([3])
    expect(await holders('frequent_elder')).toEqual([3])
    expect((await run('full', day(4))).changed).toBe(0)
  })
})
