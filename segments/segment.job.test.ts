import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isAppError } from '../core/errors.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { chDateTime } from '../core/time.js'
import { createPipelineRunner, type PipelineName, type PipelineRunner } from '../pipelines/pipeline.runner.js'
import type { RunRecord } from '../pipelines/pipeline.runs.js'
import { registerTagPipeline } from '../tags/tag.job.js'
import { createTagRepository, type TagRepository } from '../tags/tag.repository.js'
import { createTenantService, type Tenant } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { testTagDef } from '../test/fixtures.js'
import { segmentFailures } from './segment.job.js'
import { createSegmentsModule, type SegmentsModule } from './segments.module.js'

/**
 * A segment that cannot be materialized (here one reading a tag retired before such retirements
 * were refused) used to fail the whole segments run: a 4xx, so not retried, and the layout model,
 * which follows the segments and has no schedule of its own, stopped rebuilding. Now the other
 * segments are materialized, the run is `partial` naming the failure (its error, details, a
 * metric), and what follows the segments still runs.
 */

let e: TestEngine
let tenant: Tenant
let runner: PipelineRunner
let metrics: Metrics
let tags: TagRepository
let segments: SegmentsModule
let layoutBuilds = 0
const OLD = '2020-01-01 00:00:00.000'

/** The newest run of `pipeline` started by the chain, once it has ended, after `seen` of them. */
async function followed(pipeline: PipelineName, seen: number): Promise<RunRecord> {
  for (let i = 0; i < 200; i++) {
    const runs = (await runner.runs(tenant.id, { pipeline, limit: 20 })).filter((r) => r.trigger === 'after-tags')
    if (runs.length > seen && runs[0]!.status !== 'running') return runs[0]!
    await new Promise((res) => setTimeout(res, 50))
  }
  throw new Error(`no ${pipeline} run followed`)
}

async function layoutBuildsReach(n: number): Promise<number> {
  for (let i = 0; i < 200 && layoutBuilds < n; i++) await new Promise((res) => setTimeout(res, 50))
  return layoutBuilds
}

beforeAll(async () => {
  e = await openTestEngine()
  const tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  tenant = await tenants.create({ slug: 'segment-job-bank', name: 'Segment job bank' })
  await e.db.forTenant(tenant.id).insert('customers', [1, 2, 3].map((k) => ({
    customer_key: k, customer_no: `C${k}`, gender: 'female', birth_date: k === 3 ? '2001-01-01' : '1950-01-01', opened_at: OLD, updated_at: OLD,
  })))
  tags = createTagRepository({ db: e.db })
  metrics = createMetrics({ collectDefault: false })
  runner = createPipelineRunner({ db: e.db, tenants, log: e.log, metrics, options: { retries: 2, retryBaseMs: 10, leaseMs: 60_000 } })
  registerTagPipeline(runner, { db: e.db, repo: tags })
  segments = createSegmentsModule({ db: e.db, tenants, tags, runner })
  // The layout model's place in the chain: it follows the segments.
  runner.register('recommend', async () => ({ rows: ++layoutBuilds, details: {} }), { after: 'segments' })

  const young = testTagDef('young', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'lt', value: 30 } }, {}, ['marketing'])
  await tags.save(tenant.id, testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }, {}, ['marketing']), 'test')
  await tags.save(tenant.id, young, 'test')
  await segments.repo.save(tenant.id, 'elders', { name: 'Elders', purpose: 'marketing', rule: { tag: 'elder', op: 'eq', value: true } }, 'test')
  await segments.repo.save(tenant.id, 'youngs', { name: 'Youngs', purpose: 'marketing', rule: { tag: 'young', op: 'eq', value: true } }, 'test')
  // Retired as it was before a segment's use refused it: stored directly.
  await e.db.forTenant(tenant.id).insert('tag_definitions', [
    { name: 'young', version: 2, definition: JSON.stringify({ sensitivity: 'low', schedule: '15 * * * *', ...young }), retired: 1, created_by: 'legacy', created_at: chDateTime(new Date()) },
  ])
}, 60_000)

afterAll(async () => {
  await runner?.stop()
  await e?.close()
})

describe('a segments run with a segment that cannot be materialized', () => {
  it('materializes the others and ends partial (not retried), naming the failed segment, and the layout model still follows', async () => {
    const t = await runner.run({ tenantId: tenant.id, trigger: 'api', mode: 'full' })
    expect(t.status).toBe('succeeded')
    const r = await followed('segments', 0)
    expect(r).toMatchObject({ status: 'partial', trigger: 'after-tags', attempt: 1 })
    expect(r.error).toBe('youngs: VALIDATION_FAILED: tag young is not defined')
    const details = r.details as { segments: { segmentId: string; size: number }[]; failures: { segmentId: string; code: string; message: string }[] }
    expect(details.segments.map((s) => [s.segmentId, s.size])).toEqual([['elders', 2]])
    expect(details.failures).toEqual([{ segmentId: 'youngs', code: 'VALIDATION_FAILED', message: 'tag young is not defined' }])
    expect(await layoutBuildsReach(1)).toBe(1)
    expect((await followed('recommend', 0)).status).toBe('succeeded')
  }, 60_000)

  it('counts the failed segment in a metric of its own, not among the failed tags', async () => {
    const failed = await metrics.registry.getSingleMetric('qianmian_segment_failures_total')?.get()
    expect(failed?.values).toEqual([expect.objectContaining({ labels: { tenant: String(tenant.id) }, value: 1 })])
    expect((await metrics.registry.getSingleMetric('qianmian_tag_failures_total')!.get()).values).toEqual([])
  })

  it('a run whose every segment fails on its definition is partial too: a retry cannot cure it, and the chain goes on', async () => {
    await segments.repo.retire(tenant.id, 'elders', 'test')
    await runner.run({ tenantId: tenant.id, trigger: 'api', mode: 'full' })
    const r = await followed('segments', 1)
    expect(r).toMatchObject({ status: 'partial', attempt: 1, rows: 0, error: 'youngs: VALIDATION_FAILED: tag young is not defined' })
    expect(await layoutBuildsReach(2)).toBe(2)
  }, 60_000)
})

describe('segmentFailures', () => {
  const ok = { segmentId: 'elders', size: 2, entered: 2, exited: 0, build: '1', version: 1, skipped: false }
  const bad = (code: string) => ({ segmentId: 'youngs', code, message: 'boom' })

  it('names each failed segment with its code', () => {
    expect(segmentFailures({ results: [ok], errors: [bad('INTERNAL')] })).toEqual([{ name: 'youngs', error: 'INTERNAL: boom' }])
    expect(segmentFailures({ results: [ok], errors: [] })).toEqual([])
  })

  it('fails the run (retried) when every segment failed and the engine is among the causes', () => {
    for (const code of ['INTERNAL', 'QUERY_MEMORY_LIMIT', 'STORAGE_UNAVAILABLE']) {
      let thrown: unknown
      try {
        segmentFailures({ results: [], errors: [bad('VALIDATION_FAILED'), { ...bad(code), segmentId: 'elders' }] })
      } catch (err) {
        thrown = err
      }
      expect(isAppError(thrown) && thrown.status >= 500, code).toBe(true)
      expect((thrown as Error).message).toMatch(/^Every segment failed: youngs \(VALIDATION_FAILED: boom\); elders/)
    }
  })
})
