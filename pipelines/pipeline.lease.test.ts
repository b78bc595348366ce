import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { z } from 'zod'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { chDateTime } from '../core/time.js'
import { createTenantService, type Tenant, type TenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createPipelineRunner, type PipelineRunner } from './pipeline.runner.js'
import { createRunStore } from './pipeline.runs.js'

/**
 * A run longer than its lease keeps it: the holder renews it while the run lasts, so another
 * process (or the next cron tick elsewhere) cannot start the same pipeline for the same bank
 * beside it; a run that finds its lease taken stops at its next step and is not recorded done.
 * The lease here is 2.5 s long, the work stubbed: what is under test is the lease. A renewal is
 * due every third of it, so a renewal may come more than a second late (the engine busy with
 * other test files) before the lease lapses.
 */

const LEASE_MS = 2_500
const countRow = z.object({ n: z.coerce.number() })

let e: TestEngine
let tenants: TenantService
let tenant: Tenant
const runners: PipelineRunner[] = []
// Opened after each test, so a failed assertion does not leave a run waiting.
const gates: (() => void)[] = []

beforeAll(async () => {
  e = await openTestEngine()
  tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  tenant = await tenants.create({ slug: 'lease-bank', name: 'Lease bank' })
}, 60_000)
afterEach(async () => {
  for (const open of gates.splice(0)) open()
  for (const r of runners.splice(0)) await r.stop()
  await e.db.forTenant(tenant.id).command('DELETE FROM pipeline_locks WHERE tenant_id = {tenant:UInt16}')
})
afterAll(async () => e?.close())

function newRunner(metrics: Metrics = createMetrics({ collectDefault: false })): PipelineRunner {
  const r = createPipelineRunner({ db: e.db, tenants, log: e.log, metrics, options: { retries: 2, retryBaseMs: 20, leaseMs: LEASE_MS } })
  runners.push(r)
  return r
}

function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  gates.push(open)
  return { opened, open }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Starts a tags run whose work waits at a gate; resolves once the work has begun. */
async function startHeldRun(runner: ReturnType<typeof newRunner>, rows: number) {
  const hold = gate()
  let started = false
  runner.register('tags', async () => {
    started = true
    await hold.opened
    return { rows, details: {} }
  })
  const run = await runner.start({ tenantId: tenant.id, trigger: 'api' })
  await vi.waitFor(() => expect(started).toBe(true), { timeout: 20_000 })
  return { hold, run }
}

/** The erasure's own question (privacy/erasure.job.ts): does a run of the bank hold its lease? */
async function leasesHeld(): Promise<number> {
  const [r] = await e.db.forTenant(tenant.id).query(`SELECT count() AS n FROM pipeline_locks WHERE tenant_id = {tenant:UInt16} AND expires_at > now64(3)`, {}, countRow)
  return r?.n ?? 0
}

async function lostCount(m: Metrics): Promise<number> {
  const metric = m.registry.getSingleMetric('qianmian_pipeline_leases_lost_total')
  return metric ? (await metric.get()).values.reduce((s, v) => s + v.value, 0) : 0
}

describe('a pipeline run longer than its lease', () => {
  it('keeps the lease while it runs: another holder is refused until the run ends, and the erasure sees the run throughout', async () => {
    const runner = newRunner()
    const { hold, run } = await startHeldRun(runner, 0)
    const store = createRunStore({ db: e.db })
    // Three leases' time into the run: the first claim has long expired.
    await sleep(3 * LEASE_MS)
    expect(await store.lease(tenant.id, 'tags', 'other-process', LEASE_MS)).toBe(false)
    expect(await leasesHeld()).toBeGreaterThan(0)
    // The loser's claim is gone, and one more renewal later the holder still holds it.
    await sleep(LEASE_MS)
    expect(await store.lease(tenant.id, 'tags', 'other-process', LEASE_MS)).toBe(false)
    hold.open()
    expect((await run.done).status).toBe('succeeded')
    // Released as the run ended, and not renewed after it.
    expect(await leasesHeld()).toBe(0)
    await sleep(LEASE_MS)
    expect(await leasesHeld()).toBe(0)
    expect(await store.lease(tenant.id, 'tags', 'other-process', LEASE_MS)).toBe(true)
    await store.release(tenant.id, 'tags', 'other-process')
  })

  it('renews only a lease held without a break: not one that lapsed, even with nobody holding it now', async () => {
    const store = createRunStore({ db: e.db })
    expect(await store.lease(tenant.id, 'segments', 'holder', LEASE_MS)).toBe(true)
    expect(await store.renew(tenant.id, 'segments', 'holder', LEASE_MS)).toBe(true)
    expect(await store.renew(tenant.id, 'segments', 'holder', LEASE_MS)).toBe(true)
    await store.release(tenant.id, 'segments', 'holder')
    expect(await store.lease(tenant.id, 'segments', 'holder', LEASE_MS)).toBe(true)
    // Lapsed: another run may have started and ended meanwhile.
    await sleep(LEASE_MS + 200)
    expect(await store.renew(tenant.id, 'segments', 'holder', LEASE_MS)).toBe(false)
    await store.release(tenant.id, 'segments', 'holder')
  })

  it('stops renewing when the run fails', async () => {
    const runner = newRunner()
    runner.register('tags', async () => {
      await sleep(2 * LEASE_MS)
      throw new Error('the step failed (simulated)')
    })
    const r = await runner.run({ tenantId: tenant.id, trigger: 'api' })
    expect(r).toMatchObject({ status: 'failed', attempt: 3 })
    expect(await leasesHeld()).toBe(0)
    await sleep(LEASE_MS)
    expect(await leasesHeld()).toBe(0)
  })

  it('that finds its lease taken by another holder stops at its next step, is recorded failed (not done) and counted lost, and nothing follows it', async () => {
    const metrics = createMetrics({ collectDefault: false })
    const runner = newRunner(metrics)
    const steps: number[] = []
    const followed: string[] = []
    runner.register('tags', async ({ signal }) => {
      for (let i = 0; i < 40; i++) {
        // A step boundary: the work stops here once the lease is gone.
        signal.throwIfAborted()
        steps.push(i)
        await sleep(100)
      }
      return { rows: 0, details: {} }
    })
    runner.register('segments', async () => {
      followed.push('segments')
      return { rows: 0, details: {} }
    }, { after: 'tags' })
    const run = await runner.start({ tenantId: tenant.id, trigger: 'api' })
    await vi.waitFor(() => expect(steps.length).toBeGreaterThan(2), { timeout: 20_000 })
    // Another process holds an older claim: the holder's next renewal finds it the winner (as
    // after a renewal that came too late, once the lease had lapsed and another took it).
    await e.db.forTenant(tenant.id).insert('pipeline_locks', [
      { pipeline: 'tags', owner: 'other-process', claimed_at: chDateTime(Date.now() - 60_000), expires_at: chDateTime(Date.now() + 60_000) },
    ])
    const r = await run.done
    expect(r.status).toBe('failed')
    expect(r.attempt).toBe(1)
    expect(r.error).toMatch(/lease/)
    expect(steps.length).toBeLessThan(40)
    expect(await lostCount(metrics)).toBe(1)
    const [recorded] = await runner.runs(tenant.id, { pipeline: 'tags', limit: 1 })
    expect(recorded).toMatchObject({ runId: r.runId, status: 'failed' })
    // The other holder's claim stays; the loser's own rows are gone.
    const [mine] = await e.db
      .forTenant(tenant.id)
      .query(`SELECT count() AS n FROM pipeline_locks WHERE tenant_id = {tenant:UInt16} AND owner != 'other-process'`, {}, countRow)
    expect(mine!.n).toBe(0)
    await sleep(300)
    expect(followed).toEqual([])
  })

  it('that ignores the lost lease and completes is still not recorded done', async () => {
    const runner = newRunner()
    const { hold, run } = await startHeldRun(runner, 5)
    await e.db.forTenant(tenant.id).insert('pipeline_locks', [
      { pipeline: 'tags', owner: 'other-process', claimed_at: chDateTime(Date.now() - 60_000), expires_at: chDateTime(Date.now() + 60_000) },
    ])
    await sleep(LEASE_MS)
    hold.open()
    const r = await run.done
    expect(r).toMatchObject({ status: 'failed', attempt: 1 })
    expect(r.error).toMatch(/lease/)
  })
})
