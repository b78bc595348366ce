import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createMetrics } from '../core/metrics.js'
import { chDateTime } from '../core/time.js'
import { createTagRepository } from '../tags/tag.repository.js'
import { createTenantService, type Tenant } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { zonedMidnight } from '../core/time.js'
import { createPipelineRunner, type PipelineRunner } from './pipeline.runner.js'
import { createRunStore } from './pipeline.runs.js'
import { createSegmentRepository } from '../segments/segment.repository.js'
import { registerSegmentPipeline } from '../segments/segment.job.js'
import { registerTagPipeline } from '../tags/tag.job.js'

/** Leases, retries with backoff, run history and schedules of the pipeline runner. */

let e: TestEngine
let tenant: Tenant
let runner: PipelineRunner
const repo = () => createTagRepository({ db: e.db })

const base = { type: 'boolean', description: { zh: '测试', en: 'test' }, owner: 'qa', purpose: ['service'] }

beforeAll(async () => {
  e = await openTestEngine()
  const tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  tenant = await tenants.create({ slug: 'runner-bank', name: 'Runner bank' })
  const now = chDateTime(new Date())
  await e.db.forTenant(tenant.id).insert('customers', [
    { customer_key: 1, customer_no: 'A', gender: 'male', birth_date: '1950-01-01', region_code: 'r', branch_code: 'b', occupation: 'o', phone_hash: '', name_masked: '', opened_at: now, updated_at: now },
  ])
  await repo().save(tenant.id, { ...base, name: 'elder', rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } }, 'test')
  runner = createPipelineRunner({ db: e.db, tenants, log: e.log, metrics: createMetrics({ collectDefault: false }), options: { retries: 2, retryBaseMs: 20, leaseMs: 60_000 } })
  // The pipelines register as the server's modules register them.
  registerTagPipeline(runner, { db: e.db, repo: repo() })
  registerSegmentPipeline(runner, { db: e.db, segments: createSegmentRepository({ db: e.db }), tags: repo() })
}, 60_000)

afterAll(async () => {
  await runner?.stop()
  await e?.close()
})

describe('pipeline runner', () => {
  it('records a successful run with its mode, rows and step timings', async () => {
    const r = await runner.run({ tenantId: tenant.id, trigger: 'cli' })
    // No event tags: nothing to be incremental about, the run computes everything.
    expect(r).toMatchObject({ status: 'succeeded', attempt: 1, rows: 1, pipeline: 'tags' })
    expect((r.details as { steps: unknown[] }).steps.length).toBeGreaterThan(0)
    const [last] = await runner.runs(tenant.id, { limit: 1 })
    expect(last).toMatchObject({ runId: r.runId, status: 'succeeded', rows: 1 })
  })

  it('retries a failing run with backoff and records each attempt', async () => {
    // Stored as it is (save would refuse it after a dry run); the only tag of the run, so
    // nothing completes.
    const broken = { ...base, name: 'broken', sensitivity: 'low', schedule: '15 * * * *', rule: { kind: 'sql', sql: "SELECT customer_key, toUInt8(concat('boom', toString(customer_key))) AS value FROM $customers" } }
    await e.db.forTenant(tenant.id).insert('tag_definitions', [{ name: 'broken', version: 1, definition: JSON.stringify(broken), retired: 0, created_by: 'test', created_at: chDateTime(new Date()) }])
    const t0 = Date.now()
    const r = await runner.run({ tenantId: tenant.id, trigger: 'api', mode: 'full', tags: ['broken'] })
    expect(r.status).toBe('failed')
    expect(r.attempt).toBe(3)
    expect(r.error).toMatch(/SQL tag broken.*boom/s)
    // 20 ms, then 80 ms between the three attempts.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100)
    const failed = await runner.runs(tenant.id, { limit: 10, status: 'failed' })
    expect(failed[0]).toMatchObject({ runId: r.runId, attempt: 3 })
    await repo().retire(tenant.id, 'broken', 'test')
  })

  it('skips a run while another process holds the lease, and runs once it is released', async () => {
    const store = createRunStore({ db: e.db })
    expect(await store.lease(tenant.id, 'tags', 'other-process', 60_000)).toBe(true)
    const skipped = await runner.run({ tenantId: tenant.id, trigger: 'schedule' })
    expect(skipped.status).toBe('skipped')
    expect(skipped.error).toMatch(/lease/)
    await store.release(tenant.id, 'tags', 'other-process')
    expect((await runner.run({ tenantId: tenant.id, trigger: 'schedule' })).status).toBe('succeeded')
  })

  it('refuses a second run in this process while one runs, and a bad backfill range', async () => {
    const first = await runner.start({ tenantId: tenant.id, trigger: 'api', mode: 'full' })
    await expect(runner.start({ tenantId: tenant.id, trigger: 'api' })).rejects.toMatchObject({ code: 'CONFLICT' })
    await first.done
    await expect(runner.start({ tenantId: tenant.id, trigger: 'api', backfill: { from: '2026-03-02', to: '2026-03-01' } })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
  })

  it('backfills history for each day of a range without touching current values', async () => {
    const r = await runner.run({ tenantId: tenant.id, trigger: 'cli', backfill: { from: '2026-01-01', to: '2026-01-03' } })
    expect(r).toMatchObject({ status: 'succeeded', mode: 'backfill' })
    expect((r.details as { days: { today: string }[] }).days.map((d) => d.today)).toEqual(['2026-01-01', '2026-01-02', '2026-01-03'])
  })

  it('starts what is registered after segments once a tag run ends: directly while there are no saved segments, else after them; not after a backfill or with follow: false', async () => {
    const seen: string[] = []
    runner.register(
      'recommend',
      async ({ options }) => {
        seen.push(options.trigger)
        return { rows: 0, details: {} }
      },
      { after: 'segments' },
    )
    const settled = () => vi.waitFor(() => expect(runner.running(tenant.id)).toEqual([]), { timeout: 20_000 })
    await runner.run({ tenantId: tenant.id, trigger: 'api', tags: ['elder'] })
    await vi.waitFor(() => expect(seen).toEqual(['after-tags']), { timeout: 20_000 })
    await settled()
    expect(await runner.runs(tenant.id, { pipeline: 'segments', limit: 5 })).toEqual([])

    await runner.run({ tenantId: tenant.id, trigger: 'api', tags: ['elder'], follow: false })
    await runner.run({ tenantId: tenant.id, trigger: 'cli', tags: ['elder'], backfill: { from: '2026-01-04', to: '2026-01-04' } })
    await new Promise((r) => setTimeout(r, 500))
    expect(seen).toEqual(['after-tags'])

    await createSegmentRepository({ db: e.db }).save(tenant.id, 'elders-now', { name: 'Elders now', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } }, 'test')
    await runner.run({ tenantId: tenant.id, trigger: 'api', tags: ['elder'] })
    await vi.waitFor(() => expect(seen).toEqual(['after-tags', 'after-tags']), { timeout: 20_000 })
    await settled()
    const [seg] = await runner.runs(tenant.id, { pipeline: 'segments', limit: 5 })
    const [model] = await runner.runs(tenant.id, { pipeline: 'recommend', limit: 1 })
    expect(seg).toMatchObject({ status: 'succeeded', trigger: 'after-tags' })
    // The model followed the segments' run, not the tag run alone.
    expect(model!.startedAt >= seg!.finishedAt!).toBe(true)
  })

  it('schedules one task per tenant and cron, with its next time, for tags and scheduled segments', async () => {
    await createSegmentRepository({ db: e.db }).save(tenant.id, 'elders', { name: 'Elders', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true }, schedule: '30 2 * * *' }, 'test')
    await runner.startScheduler()
    const s = runner.schedules(tenant.id)
    expect(s).toEqual([
      { pipeline: 'tags', cron: '15 * * * *', timeZone: 'Asia/Shanghai', tags: ['elder'], next: expect.stringMatching(/:15:00\.000Z$/) },
      // 02:30 in Shanghai is 18:30 UTC.
      { pipeline: 'segments', cron: '30 2 * * *', timeZone: 'Asia/Shanghai', tags: ['elders'], next: expect.stringMatching(/T18:30:00\.000Z$/) },
    ])
  })

  it('finds local midnight in a time zone', () => {
    expect(zonedMidnight('2026-03-10', 'Asia/Shanghai').toISOString()).toBe('2026-03-09T16:00:00.000Z')
    expect(zonedMidnight('2026-03-08', 'America/New_York').toISOString()).toBe('2026-03-08T05:00:00.000Z')
    expect(zonedMidnight('2026-03-09', 'America/New_York').toISOString()).toBe('2026-03-09T04:00:00.000Z')
  })
})
