import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createMetrics } from '../core/metrics.js'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import { createPipelineRunner, type PipelineRunner } from '../pipelines/pipeline.runner.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { LONG_AGO, TAG_TEST_AS_OF, TAG_TEST_TZ, testTagDef } from '../test/fixtures.js'
import { createTenantService, type TenantService } from '../tenants/tenants.service.js'
import { atInstant } from './customers.routes.js'
import { createTagCatalog } from './tag.catalog.js'
import { loginEvent } from './tag.fixture.js'
import { registerTagPipeline } from './tag.job.js'
import { runTags } from './tag.pipeline.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * A backfill writes the values as of the end of a past day into history. It used to write them
 * there and nothing after, so where the value that followed in history was "no value" (the live
 * run after that day found none, and wrote nothing, as nothing had changed for it) no later row
 * closed the backfilled value: history, `?at=` and the history endpoint answered it forever.
 * Now for each value a backfill changes, history returns to what it held after that day: at the
 * tag's first live computation after the day (from the run records and tag_state), unless a
 * later row of the customer comes first; with no live computation since, at the backfill's own
 * time, from which history agrees with the current values.
 *
 * Customers 1-3 log in on 03-12 and 03-13, 4 on 03-06 and 03-12, 5 on 03-06 only. logins_7d on
 * 03-12 (03-06..03-12): 1-3: 1, 4: 2, 5: 1; on 03-13 (03-07..03-13): 1-3: 2, 4: 1, 5: none; on
 * 03-15 (03-09..03-15): 1-3: 2, 4: 1, 5: none.
 */

let engine: TestEngine
let tenants: TenantService
let repo: TagRepository
let runner: PipelineRunner
const BACKFILL_0312 = new Date('2026-03-12T15:59:59.999Z') // the end of 03-12 in Shanghai
const local = (s: string) => chDateTime(new Date(`${s}+08:00`))

async function loginBank(slug: string): Promise<number> {
  const T = (await tenants.create({ slug, name: slug, timeZone: TAG_TEST_TZ })).id
  const db = engine.db.forTenant(T)
  await db.insert('customers', [1, 2, 3, 4, 5].map((k) => ({ customer_key: k, customer_no: `C${k}`, opened_at: LONG_AGO, updated_at: LONG_AGO })))
  await db.insert('events', [
    ...[1, 2, 3, 4].map((k) => loginEvent(k, '2026-03-12 10:00')),
    ...[1, 2, 3].map((k) => loginEvent(k, '2026-03-13 10:00')),
    ...[4, 5].map((k) => loginEvent(k, '2026-03-06 10:00')),
  ])
  await repo.save(T, testTagDef('logins_7d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 7 }), 'test')
  return T
}

const run = async (T: number, mode: 'full' | 'backfill', asOf: Date) => {
  const r = await runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode, asOf, runId: newRunId() })
  expect(r.failures).toEqual([])
  return r
}

/** logins_7d per customer as history says at a time, or now (current values). */
async function logins(T: number, at?: string): Promise<Record<number, number>> {
  const catalog = createTagCatalog({ db: engine.db, repo })
  const out: Record<number, number> = {}
  for (const k of [1, 2, 3, 4, 5]) {
    const t = (await catalog.customerTags(T, k, true, at)).find((x) => x.name === 'logins_7d')
    if (t) out[k] = t.value as number
  }
  return out
}
const history = async (T: number, k: number) =>
  (await createTagCatalog({ db: engine.db, repo }).history(T, k, 'logins_7d', true)).map((h) => `${h.validFrom} ${h.removed ? 'removed' : h.value}`)

const engineNow = async () => {
  const [r] = await engine.db.system.query(`SELECT toString(now64(3)) AS t`, {}, z.object({ t: z.string() }))
  return r!.t
}

beforeAll(async () => {
  engine = await openTestEngine()
  tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  repo = createTagRepository({ db: engine.db })
  runner = createPipelineRunner({ db: engine.db, tenants, log: engine.log, metrics: createMetrics({ collectDefault: false }), options: { retries: 0, retryBaseMs: 10, leaseMs: 60_000 } })
  registerTagPipeline(runner, { db: engine.db, repo })
}, 60_000)
afterAll(async () => {
  await runner?.stop()
  await engine?.close()
})

describe('a backfill after live runs', () => {
  let T: number
  it('leaves history after the live run answering the live values', async () => {
    T = await loginBank('bank-backfill-after')
    await run(T, 'full', TAG_TEST_AS_OF)
    const bf = await run(T, 'backfill', BACKFILL_0312)
    expect(bf.tags.logins_7d?.changed).toBe(5)
    expect(await logins(T, local('2026-03-12T23:59:59.999'))).toEqual({ 1: 1, 2: 1, 3: 1, 4: 2, 5: 1 })
    // After the live run (12:00 on 03-15), as now: 5 has no value.
    const now = { 1: 2, 2: 2, 3: 2, 4: 1 }
    expect(await logins(T)).toEqual(now)
    expect(await logins(T, local('2026-03-15T13:00:00'))).toEqual(now)
    expect(await history(T, 5)).toEqual(['2026-03-12 15:59:59.999 1', '2026-03-15 04:00:00.000 removed'])
    // A later row of the customer (the live run's) needed nothing more.
    expect(await history(T, 4)).toEqual(['2026-03-12 15:59:59.999 2', '2026-03-15 04:00:00.000 1'])
  })

  it('run again for the same day, writes nothing more', async () => {
    const again = await run(T, 'backfill', BACKFILL_0312)
    expect(again.changed).toBe(0)
    expect(await history(T, 5)).toEqual(['2026-03-12 15:59:59.999 1', '2026-03-15 04:00:00.000 removed'])
  })

  it('an earlier day backfilled next ends where the later backfill begins', async () => {
    // 03-11 (03-05..03-11): 4 and 5 have 1, the others none.
    await run(T, 'backfill', new Date('2026-03-11T15:59:59.999Z'))
    expect(await history(T, 5)).toEqual(['2026-03-11 15:59:59.999 1', '2026-03-12 15:59:59.999 1', '2026-03-15 04:00:00.000 removed'])
    expect(await history(T, 4)).toEqual(['2026-03-11 15:59:59.999 1', '2026-03-12 15:59:59.999 2', '2026-03-15 04:00:00.000 1'])
    expect(await logins(T, local('2026-03-15T13:00:00'))).toEqual({ 1: 2, 2: 2, 3: 2, 4: 1 })
  })
})

describe('a backfill through the pipeline runner, after several live runs', () => {
  it('returns to the live values at the first live run after the day, not at the last', async () => {
    const T = await loginBank('bank-backfill-runs')
    for (const asOf of ['2026-03-13T04:00:00Z', '2026-03-15T04:00:00Z']) {
      expect(await runner.run({ tenantId: T, trigger: 'api', mode: 'full', asOf: new Date(asOf), follow: false })).toMatchObject({ status: 'succeeded' })
    }
    const r = await runner.run({ tenantId: T, trigger: 'cli', backfill: { from: '2026-03-11', to: '2026-03-12' } })
    expect(r).toMatchObject({ status: 'succeeded', mode: 'backfill' })
    expect(await logins(T, local('2026-03-12T23:59:59.999'))).toEqual({ 1: 1, 2: 1, 3: 1, 4: 2, 5: 1 })
    // On 03-14, between the two live runs, what the 03-13 run computed holds.
    expect(await logins(T, local('2026-03-14T12:00:00'))).toEqual({ 1: 2, 2: 2, 3: 2, 4: 1 })
    expect(await history(T, 5)).toEqual(['2026-03-11 15:59:59.999 1', '2026-03-13 04:00:00.000 removed'])
  })
})

describe('a backfill before any live run', () => {
  it('leaves history agreeing with the current values from its own time on', async () => {
    const T = await loginBank('bank-backfill-first')
    const before = await engineNow()
    await run(T, 'backfill', BACKFILL_0312)
    expect(await logins(T, local('2026-03-12T23:59:59.999'))).toEqual({ 1: 1, 2: 1, 3: 1, 4: 2, 5: 1 })
    // Nothing is computed live yet: nothing holds now, and history says so from the backfill on.
    expect(await logins(T)).toEqual({})
    expect(await logins(T, chDateTime(Date.parse(`${await engineNow()}Z`) + 1))).toEqual({})
    const [, restored] = await history(T, 5)
    expect(restored!.endsWith(' removed') && restored! >= before).toBe(true)
  })
})

describe('a backfilled day in a zone whose clocks skip midnight', () => {
  it('ends at the last instant of that day, as `?at=<date>` reads it', async () => {
    // Havana goes from 00:00 to 01:00 on 2026-03-08: 03-07 ends at 23:59:59.999 CST (-05).
    const H = (await tenants.create({ slug: 'bank-havana', name: 'H', timeZone: 'America/Havana' })).id
    await engine.db.forTenant(H).insert('customers', [{ customer_key: 1, customer_no: 'C1', opened_at: LONG_AGO, updated_at: LONG_AGO, elder_mode: 1 }])
    await repo.save(H, testTagDef('elder_chosen', 'boolean', { kind: 'rule', when: { feature: 'elder_mode_chosen', op: 'eq', value: true } }), 'test')
    expect(await runner.run({ tenantId: H, trigger: 'cli', backfill: { from: '2026-03-07', to: '2026-03-07' } })).toMatchObject({ status: 'succeeded' })
    const rows = await createTagCatalog({ db: engine.db, repo }).history(H, 1, 'elder_chosen', true)
    expect(rows[0]).toMatchObject({ validFrom: '2026-03-08 04:59:59.999', removed: false })
    expect(atInstant('2026-03-07', 'America/Havana').toISOString()).toBe('2026-03-08T04:59:59.999Z')
    const at = await createTagCatalog({ db: engine.db, repo }).customerTags(H, 1, true, chDateTime(atInstant('2026-03-07', 'America/Havana')))
    expect(at.map((t) => t.name)).toEqual(['elder_chosen'])
  })
})
