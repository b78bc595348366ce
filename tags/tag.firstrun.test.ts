import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { LONG_AGO, localEvent, TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { runTags } from './tag.pipeline.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * A tag with no value stored yet (its first run) takes its staged values as its changes: they are
 * written to history and current values as staged, with no diff and no row in tag_changes. What
 * reads tag_changes (bitmap updates, rules narrowed to the customers whose inputs changed) must
 * then not take such a tag's missing rows there for "nothing changed".
 * Run time 2026-03-15T04:00Z, local date 03-15 in Shanghai.
 */

const TZ = TAG_TEST_TZ
const AS_OF = TAG_TEST_AS_OF
const NEXT_DAY = new Date(AS_OF.getTime() + 86_400_000)
const KEYS = Array.from({ length: 40 }, (_, i) => i + 1)
/** Customer k born (30 + k) years before 2026-01-01: ages 31-70 on the run dates. */
const born = (k: number) => `${2026 - 30 - k}-01-01`

let engine: TestEngine
let repo: TagRepository
let T: number
const db = () => engine.db.forTenant(T)
const TAGS = ['logins_7d', 'years', 'senior']

async function run(mode: 'full' | 'incremental', asOf = AS_OF) {
  const runId = newRunId()
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TZ, defs: await repo.list(T), mode, asOf, runId, watermarkSlackMs: 0 })
  return { ...r, runId }
}
const count = z.object({ tag: z.string(), n: z.coerce.number() })
async function perTag(sql: string, params: Record<string, unknown> = {}): Promise<Record<string, number>> {
  return Object.fromEntries((await db().query(sql, params, count)).map((r) => [r.tag, r.n]))
}
async function values(tag: string): Promise<string[]> {
  const rows = await db().query(
    `SELECT concat(toString(customer_key), '=', value, '/', toString(num)) AS v FROM tag_values FINAL
     WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY customer_key`,
    { tag },
    z.object({ v: z.string() }),
  )
  return rows.map((r) => r.v)
}
/** The customers of each value of a tag's current bitmap build, as `value:key,key`. */
async function bitmaps(tag: string): Promise<string[]> {
  const rows = await db().query(
    `SELECT concat(b.value, '|', toString(b.lo), ':', arrayStringConcat(arraySort(bitmapToArray(b.keys)), ',')) AS v FROM tag_bitmaps AS b
     INNER JOIN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16}) AS s ON s.tag = toString(b.tag) AND s.build = b.build
     WHERE b.tenant_id = {tenant:UInt16} AND b.tag = {tag:String} ORDER BY v`,
    { tag },
    z.object({ v: z.string() }),
  )
  return rows.map((r) => r.v)
}
/** What the bitmaps of `years` must hold given its values: one per age, and `*` for everyone with one. */
async function expectedYearBitmaps(): Promise<string[]> {
  const byAge = new Map<number, number[]>()
  for (const v of await values('years')) {
    const [k, rest] = v.split('=')
    const age = Number(rest!.split('/')[1])
    byAge.set(age, [...(byAge.get(age) ?? []), Number(k)])
  }
  const all = [...byAge.values()].flat().sort((a, b) => a - b)
  return [...[...byAge].map(([age, ks]) => `${age}|${age}:${ks.sort((a, b) => a - b).join(',')}`), `*|0:${all.join(',')}`].sort()
}

beforeAll(async () => {
  engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  T = (await tenants.create({ slug: 'bank-f', name: 'F', timeZone: TZ })).id
  repo = createTagRepository({ db: engine.db })
  await db().insert('customers', KEYS.map((k) => ({ customer_key: k, customer_no: `C${k}`, birth_date: born(k), opened_at: LONG_AGO, updated_at: LONG_AGO })))
  await db().insert('events', KEYS.filter((k) => k % 3 === 0).map((k) => localEvent(k, '2026-03-12 10:00', 'login')))
  await repo.save(T, testTagDef('logins_7d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 7 }), 'test')
  await repo.save(T, testTagDef('years', 'number', { kind: 'rule', from: { feature: 'age' } }), 'test')
  // Reads a tag only: an incremental run narrows it to the customers whose `years` changed.
  await repo.save(T, testTagDef('senior', 'boolean', { kind: 'rule', when: { tag: 'years', op: 'gte', value: 60 } }), 'test')
})
afterAll(async () => engine?.close())

describe('a tag without stored values', () => {
  it('on its first run writes its staged values once to history and to current values, through no diff', async () => {
    const first = await run('full')
    const inRun = { run: first.runId, tags: TAGS }
    const staged = await perTag(`SELECT toString(tag) AS tag, count() AS n FROM tag_stage WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} GROUP BY tag`, inRun)
    expect(staged).toEqual({ logins_7d: 13, years: 40, senior: 11 })
    expect(await perTag(`SELECT toString(tag) AS tag, count() AS n FROM tag_changes WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} GROUP BY tag`, inRun)).toEqual({})
    expect(await perTag(`SELECT toString(tag) AS tag, count() AS n FROM tag_history WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND removed = 0 GROUP BY tag`, inRun)).toEqual(staged)
    expect(await perTag(`SELECT toString(tag) AS tag, count() AS n FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0 GROUP BY tag`)).toEqual(staged)
    expect(Object.fromEntries(TAGS.map((t) => [t, first.tags[t]!.changed]))).toEqual(staged)
    expect(first.changed).toBe(13 + 40 + 11)
    expect(await values('senior')).toEqual(KEYS.filter((k) => k >= 30).map((k) => `${k}=true/1`))
    expect(await bitmaps('years')).toEqual(await expectedYearBitmaps())

    // A second run compares with what the first stored (a diff now): nothing differs.
    const second = await run('full')
    expect(second.changed).toBe(0)
  })

  it('is rebuilt, and a rule reading it recomputed for everyone, when its values are gone and its inputs moved', async () => {
    const before = await bitmaps('years')
    // Every value of `years` removed (as erasing its every holder would), then customer 7's birth
    // date corrected: 37 years old becomes 70, so `years` and `senior` change for that customer.
    await db().command(`DELETE FROM tag_values WHERE tenant_id = {tenant:UInt16} AND tag = 'years'`)
    await db().insert('customers', [{ customer_key: 7, customer_no: 'C7', birth_date: '1955-06-01', opened_at: LONG_AGO, updated_at: '2026-03-15 00:00:00.000' }])
    const next = await run('incremental', NEXT_DAY)
    expect(next.mode).toBe('incremental')
    expect(next.tags.years!.changed).toBe(40)
    // Narrowed to the customers whose `years` changed, `senior` would have read none of them in
    // tag_changes and missed customer 7.
    expect(next.tags.senior!.changedInputs).toBeUndefined()
    expect(await values('senior')).toEqual(KEYS.filter((k) => k >= 30 || k === 7).map((k) => `${k}=true/1`))
    // The bitmaps follow the values: rebuilt, not updated from changes tag_changes does not hold.
    const after = await bitmaps('years')
    expect(after).not.toEqual(before)
    expect(after).toEqual(await expectedYearBitmaps())

    // And all of it equals a full recompute.
    expect((await run('full', NEXT_DAY)).changed).toBe(0)
  })
})
