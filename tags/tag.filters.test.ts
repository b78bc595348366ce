import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { isAppError, type ErrorIssue } from '../core/errors.js'
import { newRunId } from '../core/run-id.js'
import type { TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { dryRunTag } from './tag.dryrun.js'
import { loginEvent, openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import { parseDefinition, type TagRepository } from './tag.repository.js'
import type { StoredTag, TagDefinition } from './tag.schema.js'

/**
 * A window tag's property filter without a value (`{property: channel, op: eq}`) used to pass
 * the schema and the dry run (which never built the daily aggregate), be saved, and then stop
 * every run that rebuilt a day: the daily aggregate of all window tags threw 'eq needs a value'
 * before any tag was staged, so the whole run failed and was retried. Now the schema refuses it
 * naming the field, the dry run builds the daily aggregate, and a definition saved before (kept
 * as it was) fails alone: the other tags are computed and the run ends partial.
 */

let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)

const valueless = testTagDef('web_logins_7d', 'number', { kind: 'window', events: ['login'], where: [{ property: 'channel', op: 'eq' }], measure: 'count', days: 7, offsetDays: 0 })
/** A definition as stored before the schema refused it: no check runs over it. */
const stored = (def: Record<string, unknown>, extra: Record<string, unknown> = {}): StoredTag =>
  ({ sensitivity: 'low', schedule: '15 * * * *', version: 1, createdBy: 'legacy', createdAt: '2026-01-01 00:00:00.000', ...def, ...extra }) as unknown as StoredTag

async function refusal(fn: () => unknown): Promise<{ code: string; issues: ErrorIssue[] }> {
  try {
    await fn()
  } catch (err) {
    if (!isAppError(err)) throw err
    return { code: err.code, issues: [...(err.issues ?? [])] }
  }
  throw new Error('accepted')
}

const values = async (tag: string) =>
  Object.fromEntries(
    (
      await db().query(
        `SELECT customer_key AS k, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY k`,
        { tag },
        z.object({ k: z.coerce.number(), num: z.coerce.number() }),
      )
    ).map((r) => [r.k, r.num]),
  )

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-filters', timeZone: TAG_TEST_TZ, keys: [1, 2, 3] }))
  await repo.save(T, testTagDef('elder_chosen', 'boolean', { kind: 'rule', when: { feature: 'elder_mode_chosen', op: 'eq', value: true } }), 'test')
  await repo.save(T, testTagDef('regular', 'boolean', { kind: 'rule', when: { tag: 'logins_7d', op: 'gte', value: 2 } }), 'test')
}, 60_000)
afterAll(async () => engine?.close())

describe('property filters without a value', () => {
  it.each(['eq', 'ne', 'in', 'not_in', 'gt', 'gte', 'lt', 'lte'])('the schema refuses %s without a value, naming the field', async (op) => {
    const def = testTagDef('web_logins_7d', 'number', { kind: 'window', events: ['login'], where: [{ property: 'app', op: 'exists' }, { property: 'channel', op }], measure: 'count', days: 7, offsetDays: 0 })
    const r = await refusal(() => parseDefinition(def))
    expect(r.code).toBe('VALIDATION_FAILED')
    expect(r.issues).toEqual([expect.objectContaining({ field: 'rule.where.1.value' })])
    expect((await refusal(() => repo.save(T, def, 'test'))).issues.map((i) => i.field)).toEqual(['rule.where.1.value'])
  })

  it('exists takes none', () => {
    expect(() => parseDefinition(testTagDef('has_channel_7d', 'number', { kind: 'window', where: [{ property: 'channel', op: 'exists' }], measure: 'count', days: 7 }))).not.toThrow()
  })

  it('the dry run builds the daily aggregate, so a filter the run cannot compile is refused at save', async () => {
    const r = await refusal(() => dryRunTag(db(), valueless as unknown as TagDefinition, []))
    expect(r.issues).toEqual([expect.objectContaining({ field: 'rule.where' })])
  })

  it('a definition saved with one fails alone: the other tags are computed and the run is partial', async () => {
    const defs = [...(await repo.list(T)), stored(valueless)]
    const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs, mode: 'full', asOf: TAG_TEST_AS_OF, runId: newRunId() })
    expect(r.failures).toEqual([{ tag: 'web_logins_7d', error: expect.stringMatching(/eq needs a value/) }])
    expect(r.tags.web_logins_7d).toMatchObject({ failed: true, changed: 0 })
    // Every other tag, window tags included, is computed.
    expect(await values('logins_7d')).toEqual({ 1: 2, 2: 2, 3: 2 })
    expect(Object.keys(await values('elder_chosen'))).toEqual(['1', '2', '3'])
    expect(Object.keys(await values('regular'))).toEqual(['1', '2', '3'])
    expect(await values('web_logins_7d')).toEqual({})
    // The next run, incremental, fails it alone again.
    const next = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs, mode: 'incremental', asOf: new Date(TAG_TEST_AS_OF.getTime() + 3_600_000), runId: newRunId() })
    expect(next.mode).toBe('incremental')
    expect(next.failures.map((f) => f.tag)).toEqual(['web_logins_7d'])
  })

  it('any other failure preparing the daily aggregates fails the event tags: rules, scores and SQL tags are computed', async () => {
    await db().insert('customers', [{ customer_key: 4, customer_no: 'C4', opened_at: '2020-01-01 00:00:00.000', updated_at: '2020-01-01 00:00:00.000', elder_mode: 1 }])
    await db().insert('events', [loginEvent(4, '2026-03-14 09:00')])
    await repo.save(T, testTagDef('loyal', 'number', { kind: 'score', method: 'quantile', input: { feature: 'tenure_days' }, buckets: 2 }), 'test')
    await repo.save(T, testTagDef('known', 'boolean', { kind: 'sql', sql: 'SELECT customer_key, 1 AS value FROM $customers' }), 'test')
    // The engine refuses the day rebuild (the table of its builds is away), as it may refuse any statement.
    await engine.db.system.command('RENAME TABLE tag_event_days TO tag_event_days_away')
    let r
    try {
      r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: new Date(TAG_TEST_AS_OF.getTime() + 7_200_000), runId: newRunId() })
    } finally {
      await engine.db.system.command('RENAME TABLE tag_event_days_away TO tag_event_days')
    }
    expect(r.failures).toEqual([{ tag: 'logins_7d', error: expect.stringMatching(/daily event aggregates/) }])
    expect(r.blocked).toEqual([{ tag: 'regular', reason: 'reads tag logins_7d, which failed' }])
    expect(Object.keys(await values('elder_chosen'))).toEqual(['1', '2', '3', '4'])
    expect(Object.keys(await values('loyal'))).toEqual(['1', '2', '3', '4'])
    expect(Object.keys(await values('known'))).toEqual(['1', '2', '3', '4'])
    // The event tags keep what the last good run left; the next run computes them.
    expect(await values('logins_7d')).toEqual({ 1: 2, 2: 2, 3: 2 })
    const next = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: 'full', asOf: new Date(TAG_TEST_AS_OF.getTime() + 7_200_000), runId: newRunId() })
    expect(next.failures).toEqual([])
    expect(await values('logins_7d')).toEqual({ 1: 2, 2: 2, 3: 2, 4: 1 })
  })
})
