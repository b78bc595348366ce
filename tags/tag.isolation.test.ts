import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { chDateTime } from '../core/time.js'
import { createSegmentRepository } from '../segments/segment.repository.js'
import { createTagRepository } from './tag.repository.js'
import { createTenantService, type Tenant } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { testTagDef } from '../test/fixtures.js'
import { createPipelineRunner, type PipelineRunner } from '../pipelines/pipeline.runner.js'
import { newRunId } from '../core/run-id.js'
import { runTags } from './tag.pipeline.js'
import { registerTagPipeline } from './tag.job.js'
import { registerSegmentPipeline } from '../segments/segment.job.js'

/**
 * One bad tag used to stop a bank's whole tag run (3 attempts, then nothing: no segments, no
 * layout model, no push). Now the run completes what it can: the failed tag is recorded with
 * its error, the tags that read it are skipped with the reason, the others are computed and the
 * run is `partial`, followed by the segments as usual. Definitions that fail are stored here
 * directly, as ones saved before save-time checks existed would be.
 */

let e: TestEngine
let tenant: Tenant
let runner: PipelineRunner
let metrics: Metrics
const repo = () => createTagRepository({ db: e.db })
const AS_OF = new Date('2026-03-15T04:00:00Z')
const OLD = '2020-01-01 00:00:00.000'

/** Stores a definition as it is, without the checks `save` makes. */
async function storeUnchecked(def: Record<string, unknown>) {
  const full = { sensitivity: 'low', schedule: '15 * * * *', ...def }
  await e.db.forTenant(tenant.id).insert('tag_definitions', [
    { name: def.name, version: 1, definition: JSON.stringify(full), retired: 0, created_by: 'legacy', created_at: chDateTime(new Date()) },
  ])
}
let deep: unknown = { feature: 'age', op: 'gte', value: 60 }
for (let i = 0; i < 1000; i++) deep = { not: deep }

const values = async (tag: string) =>
  (
    await e.db.forTenant(tenant.id).query(
      `SELECT customer_key AS k FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY k`,
      { tag },
      z.object({ k: z.coerce.number() }),
    )
  ).map((r) => r.k)

beforeAll(async () => {
  e = await openTestEngine()
  const tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  tenant = await tenants.create({ slug: 'isolation-bank', name: 'Isolation bank' })
  await e.db.forTenant(tenant.id).insert('customers', [1, 2, 3].map((k) => ({
    customer_key: k, customer_no: `C${k}`, gender: 'female', birth_date: k === 3 ? '1990-01-01' : '1950-01-01', opened_at: OLD, updated_at: OLD,
  })))
  const r = repo()
  await r.save(tenant.id, testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }), 'test')
  await r.save(tenant.id, testTagDef('active_7d', 'boolean', { kind: 'window', measure: 'count', days: 7, threshold: { op: 'gte', value: 1 } }), 'test')
  await r.save(tenant.id, testTagDef('female', 'boolean', { kind: 'sql', sql: "SELECT customer_key, gender = 'female' AS value FROM $customers" }), 'test')
  await storeUnchecked(testTagDef('scalar_probe', 'boolean', { kind: 'sql', sql: "SELECT customer_key, __getScalar('x') AS value FROM $customers" }))
  await storeUnchecked(testTagDef('bad_cast', 'boolean', { kind: 'sql', sql: "SELECT customer_key, toUInt8('not a number') AS value FROM $customers" }))
  await storeUnchecked(testTagDef('too_deep', 'boolean', { kind: 'rule', when: deep }))
  // Rules sharing one pass with the good `elder` and reading the failed ones.
  await storeUnchecked(testTagDef('elder_cast', 'boolean', { kind: 'rule', when: { all: [{ tag: 'elder', op: 'eq', value: true }, { tag: 'bad_cast', op: 'eq', value: true }] } }))
  await storeUnchecked(testTagDef('elder_cast_female', 'boolean', { kind: 'rule', when: { all: [{ tag: 'elder_cast', op: 'eq', value: true }, { tag: 'female', op: 'eq', value: true }] } }))
  await storeUnchecked(testTagDef('elder_female', 'boolean', { kind: 'rule', when: { all: [{ tag: 'elder', op: 'eq', value: true }, { tag: 'female', op: 'eq', value: true }] } }))
  metrics = createMetrics({ collectDefault: false })
  runner = createPipelineRunner({ db: e.db, tenants, log: e.log, metrics, options: { retries: 2, retryBaseMs: 10, leaseMs: 60_000 } })
  registerTagPipeline(runner, { db: e.db, repo: r })
  registerSegmentPipeline(runner, { db: e.db, segments: createSegmentRepository({ db: e.db }), tags: r })
}, 60_000)

afterAll(async () => {
  await runner?.stop()
  await e?.close()
})

describe('a tag run with failing tags', () => {
  it('records each failed tag with its error, skips its dependants with the reason and commits the rest', async () => {
    const r = await runTags({ db: e.db }, { tenantId: tenant.id, timeZone: tenant.timeZone, defs: await repo().list(tenant.id), mode: 'full', asOf: AS_OF, runId: newRunId() })
    expect(r.failures.map((f) => f.tag).sort()).toEqual(['bad_cast', 'scalar_probe', 'too_deep'])
    expect(r.tags.scalar_probe).toMatchObject({ failed: true, changed: 0, error: expect.stringMatching(/__getScalar/) })
    expect(r.tags.bad_cast).toMatchObject({ failed: true, error: expect.stringMatching(/bad_cast/) })
    expect(r.tags.too_deep?.failed).toBe(true)
    expect(r.blocked).toEqual([
      { tag: 'elder_cast', reason: 'reads tag bad_cast, which failed' },
      { tag: 'elder_cast_female', reason: 'reads tag elder_cast, which was skipped (reads tag bad_cast, which failed)' },
    ])
    expect(r.tags.elder_cast).toMatchObject({ skipped: true, reason: 'reads tag bad_cast, which failed' })
    // The good tags, in the same levels and passes as the failed ones, are computed.
    expect(await values('elder')).toEqual([1, 2])
    expect(await values('female')).toEqual([1, 2, 3])
    expect(await values('elder_female')).toEqual([1, 2])
    for (const t of ['scalar_probe', 'bad_cast', 'too_deep', 'elder_cast', 'elder_cast_female']) expect(await values(t), t).toEqual([])
    const states = await e.db.forTenant(tenant.id).query(`SELECT tag FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY tag`, {}, z.object({ tag: z.string() }))
    expect(states.map((s) => s.tag)).toEqual(['active_7d', 'elder', 'elder_female', 'female'])
  }, 60_000)

  it('ends partial (not retried), with the failures in the run history and a metric per tenant, and the segments still follow', async () => {
    await createSegmentRepository({ db: e.db }).save(tenant.id, 'elders', { name: 'Elders', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } }, 'test')
    const r = await runner.run({ tenantId: tenant.id, trigger: 'api', mode: 'full' })
    expect(r).toMatchObject({ status: 'partial', attempt: 1 })
    expect(r.error).toMatch(/scalar_probe: .*__getScalar/)
    const [last] = await runner.runs(tenant.id, { pipeline: 'tags', limit: 1 })
    expect(last).toMatchObject({ runId: r.runId, status: 'partial' })
    expect((last!.details as { failures: { tag: string }[] }).failures.map((f) => f.tag).sort()).toEqual(['bad_cast', 'scalar_probe', 'too_deep'])
    expect((last!.details as { blocked: { tag: string }[] }).blocked.map((f) => f.tag)).toEqual(['elder_cast', 'elder_cast_female'])
    const metric = await metrics.registry.getSingleMetric('qianmian_tag_failures_total')!.get()
    expect(metric.values).toEqual([expect.objectContaining({ labels: { tenant: String(tenant.id) }, value: 3 })])
    // The segments pipeline follows a partial run as it follows a succeeded one.
    let seg
    for (let i = 0; i < 100 && !seg; i++) {
      ;[seg] = (await runner.runs(tenant.id, { pipeline: 'segments', limit: 1 })).filter((x) => x.status !== 'running')
      if (!seg) await new Promise((res) => setTimeout(res, 100))
    }
    expect(seg).toMatchObject({ status: 'succeeded', trigger: 'after-tags' })
    expect(await runner.runs(tenant.id, { status: 'partial', limit: 5 })).toHaveLength(1)
  }, 60_000)

  it('a run of named rule tags works beside event tags ("reading \'watermark\'" before)', async () => {
    const r = await runner.run({ tenantId: tenant.id, trigger: 'api', tags: ['elder'], follow: false })
    expect(r).toMatchObject({ status: 'succeeded', error: '' })
    expect(Object.keys((r.details as { tags: object }).tags)).toEqual(['elder'])
  }, 60_000)

  it('a run in which every tag fails is a failed run, retried', async () => {
    const r = await runner.run({ tenantId: tenant.id, trigger: 'api', tags: ['bad_cast'], follow: false })
    expect(r).toMatchObject({ status: 'failed', attempt: 3 })
    expect(r.error).toMatch(/Every tag failed: bad_cast/)
  }, 60_000)
})
