import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createPii } from '../core/pii.js'
import { newRunId } from '../core/run-id.js'
import { addDays, chDateTime, localDate } from '../core/time.js'
import { generateDemo } from '../demo/demo.generator.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createKeyService } from '../tenants/keys.service.js'
import { createTenantService, type Tenant } from '../tenants/tenants.service.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from './tag.pack.js'
import { eventMeasures } from './tag.measures.js'
import { runTags, type TagRunResult } from './tag.pipeline.js'
import { windowStage } from './tag.queries.js'
import { rangeParams, splitKeys } from './tag.ranges.js'
import { createTagRepository } from './tag.repository.js'

/**
 * A tag run split into customer-key ranges computes exactly what one range over the whole bank
 * computes, and the split window staging stays under a memory cap that the unsplit statement
 * exceeds.
 */

const T0 = new Date('2026-03-10T04:00:00Z')
const CUSTOMERS = 24_000
/** Keys per range of the split runs: the bank of this demo (12,000 customers) in 8 ranges. */
const RANGE = 1500
/**
 * Engine memory per statement that one range of the window staging fits in and all keys do not.
 * Measured on this data with one thread: the unsplit statement needs 35 MB, a range of 700 keys
 * 16 MB (most of it the reading of the daily rows, which does not shrink with the range).
 */
const CAP_MB = 26

let e: TestEngine
let tenant: Tenant
const repo = () => createTagRepository({ db: e.db })

async function run(keyRange: number, runId: string): Promise<TagRunResult> {
  return runTags({ db: e.db }, { tenantId: tenant.id, timeZone: tenant.timeZone, defs: await repo().list(tenant.id), mode: 'full', asOf: T0, runId, keyRange, recompute: true })
}

const sumRow = z.object({ n: z.coerce.number(), h: z.string() })
/** Count and order-free checksum of every staged value of a run, or of the current values. */
async function stageSum(runId: string, tags?: readonly string[]) {
  const [r] = await e.db.forTenant(tenant.id).query(
    `SELECT count() AS n, toString(groupBitXor(cityHash64(tag, customer_key, value, num, list))) AS h FROM tag_stage
     WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND (empty({tags:Array(String)}) OR has({tags:Array(String)}, toString(tag)))`,
    { run: runId, tags: tags ?? [] },
    sumRow,
  )
  return r!
}
async function valuesSum() {
  const [r] = await e.db.forTenant(tenant.id).query(
    `SELECT count() AS n, toString(groupBitXor(cityHash64(tag, customer_key, value, num, list))) AS h FROM tag_values FINAL
     WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0`,
    {},
    sumRow,
  )
  return r!
}

let split: TagRunResult
const splitRun = newRunId()
let splitValues: { n: number; h: string }

beforeAll(async () => {
  // Read buffers grow with threads: one, so the figures above hold on a larger machine too.
  e = await openTestEngine({ env: { LANE_PIPELINE_MAX_MEMORY_MB: String(CAP_MB), LANE_PIPELINE_MAX_THREADS: '1' } })
  const tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  const keys = createKeyService({ system: e.db.system, tenants, cacheTtlMs: 60_000 })
  await generateDemo({ db: e.db, tenants, keys, pii: createPii('p'.repeat(40)), log: e.log }, { customers: CUSTOMERS, days: 30, seed: 7, now: T0 })
  tenant = await tenants.get('demo-qingshan')
  await applyDefinitions(repo(), tenant.id, readDefinitionFiles(BANKING_PACK), 'test')
  split = await run(RANGE, splitRun)
  splitValues = await valuesSum()
  // Generation and the split run take about a minute alone, and five on a machine at load 30.
}, 600_000)

afterAll(async () => {
  await e?.close()
})

describe('key ranges', () => {
  it('split keys 0..max into ranges of the size asked, the last one open-ended', () => {
    expect(splitKeys(10, 4)).toEqual([{ lo: 0, hi: 4 }, { lo: 5, hi: 8 }, { lo: 9, hi: 2 ** 32 - 1 }])
    expect(splitKeys(0, 0)).toEqual([{ lo: 0, hi: 2 ** 32 - 1 }])
    // Derived: equal ranges of at most a million keys.
    expect(splitKeys(2_500_000, 0).map((r) => r.lo)).toEqual([0, 833_335, 1_666_669])
    expect(splitKeys(999_999, 0)).toHaveLength(1)
  })

  it('a run over several ranges stages and stores exactly what one range over all keys does', async () => {
    expect(split.keyRanges).toBeGreaterThan(5)
    expect(split.failures).toEqual([])
    expect(splitValues.n).toBeGreaterThan(10_000)
    const wholeRun = newRunId()
    const whole = await run(0, wholeRun)
    expect(whole.keyRanges).toBe(1)
    expect(whole.failures).toEqual([])
    expect(whole.changed).toBe(0)
    expect(await stageSum(wholeRun)).toEqual(await stageSum(splitRun))
    expect(await valuesSum()).toEqual(splitValues)
  }, 300_000)

  it(`the window staging of one range stays under ${CAP_MB} MB, which the unsplit statement exceeds`, async () => {
    const defs = (await repo().list(tenant.id)).filter((d) => d.rule.kind === 'window' || d.rule.kind === 'lifecycle')
    const { layout, span } = eventMeasures(defs)
    const today = localDate(T0, tenant.timeZone)
    const q = windowStage(defs, { scoped: false, windowFrom: addDays(today, -(span - 1)), layout })
    const lane = e.db.lane('pipeline').forTenant(tenant.id)
    const params = { ...q.params, run: newRunId(), today, tz: tenant.timeZone, asOf: chDateTime(T0) }
    // Its own run id: a failed insert may leave blocks behind.
    await expect(lane.command(q.sql, { ...params, run: newRunId(), ...rangeParams() })).rejects.toThrow(/memory limit/i)
    for (const r of splitKeys(CUSTOMERS, RANGE)) await lane.command(q.sql, { ...params, ...rangeParams(r) })
    const names = defs.map((d) => d.name)
    const staged = await stageSum(params.run)
    expect(staged.n).toBeGreaterThan(1000)
    expect(staged).toEqual(await stageSum(splitRun, names))
  }, 120_000)
})
