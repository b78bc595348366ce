import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { createMetrics } from '../core/metrics.js'
import { addDays, localDate } from '../core/time.js'
import { createTenantService, type Tenant, type TenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createPipelineRunner, type PipelineName, type PipelineRunner } from './pipeline.runner.js'

/**
 * What follows a run when it cannot start at once (a run of it in progress, here or in another
 * process), tenants whose schedules cannot be read, and backfills that name no past day. The
 * pipelines' work is stubbed: what is under test is when the runner starts it.
 */

let e: TestEngine
let tenants: TenantService
let tenant: Tenant
const runners: PipelineRunner[] = []

beforeAll(async () => {
  e = await openTestEngine()
  tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  tenant = await tenants.create({ slug: 'follow-bank', name: 'Follow bank' })
}, 60_000)
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop()
})
afterAll(async () => e?.close())

/** A runner as one process has it; several on one engine are several processes sharing the leases. */
function newRunner(): PipelineRunner {
  const r = createPipelineRunner({ db: e.db, tenants, log: e.log, metrics: createMetrics({ collectDefault: false }), options: { retries: 0, retryBaseMs: 20, leaseMs: 60_000 } })
  runners.push(r)
  return r
}

function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { opened, open }
}

/** Registers stub jobs that log `pipeline/trigger/tag runs done so far`; `hold` keeps the first run of a pipeline going until opened. */
function stubs(runner: PipelineRunner, seen: string[], counter: { tagRuns: number }, hold: Partial<Record<PipelineName, Promise<void>>> = {}) {
  const job = (pipeline: PipelineName) => async ({ options }: { options: { trigger: string } }) => {
    seen.push(`${pipeline}/${options.trigger}/${counter.tagRuns}`)
    const wait = hold[pipeline]
    delete hold[pipeline]
    await wait
    if (pipeline === 'tags') counter.tagRuns++
    return { rows: 0, details: {} }
  }
  runner.register('tags', job('tags'))
  runner.register('segments', job('segments'), { after: 'tags' })
  runner.register('recommend', job('recommend'), { after: 'segments' })
}

const settled = (runner: PipelineRunner) => vi.waitFor(() => expect(runner.running(tenant.id)).toEqual([]), { timeout: 20_000 })

describe('a follow-up that cannot start at once', () => {
  it('runs once the segments run in progress in this process ends, and the layout model follows it', async () => {
    const runner = newRunner()
    const seen: string[] = []
    const hold = gate()
    stubs(runner, seen, { tagRuns: 0 }, { segments: hold.opened })
    const scheduled = await runner.start({ tenantId: tenant.id, pipeline: 'segments', trigger: 'schedule' })
    await vi.waitFor(() => expect(seen).toEqual(['segments/schedule/0']), { timeout: 20_000 })
    expect((await runner.run({ tenantId: tenant.id, trigger: 'cli' })).status).toBe('succeeded')
    hold.open()
    await scheduled.done
    await vi.waitFor(() => expect(seen).toEqual(['segments/schedule/0', 'tags/cli/0', 'segments/after-tags/1', 'recommend/after-tags/1']), { timeout: 20_000 })
    await settled(runner)
    const runs = await runner.runs(tenant.id, { pipeline: 'segments', limit: 2 })
    expect(runs.map((r) => `${r.trigger}/${r.status}`)).toEqual(['after-tags/succeeded', 'schedule/succeeded'])
  })

  it('in another process: the lease loser records it skipped, and the lease holder sees that as its run ends and runs once more', async () => {
    const holder = newRunner()
    const other = newRunner()
    const held: string[] = []
    const elsewhere: string[] = []
    const hold = gate()
    stubs(holder, held, { tagRuns: 0 }, { segments: hold.opened })
    stubs(other, elsewhere, { tagRuns: 0 })
    const scheduled = await holder.start({ tenantId: tenant.id, pipeline: 'segments', trigger: 'schedule' })
    await vi.waitFor(() => expect(held).toEqual(['segments/schedule/0']), { timeout: 20_000 })
    // The other process's tag run ends; its segments run loses the lease.
    expect((await other.run({ tenantId: tenant.id, trigger: 'cli' })).status).toBe('succeeded')
    await vi.waitFor(async () => expect((await other.runs(tenant.id, { pipeline: 'segments', limit: 1 }))[0]).toMatchObject({ trigger: 'after-tags', status: 'skipped' }), { timeout: 20_000 })
    await settled(other)
    expect(elsewhere).toEqual(['tags/cli/0'])
    hold.open()
    await scheduled.done
    await vi.waitFor(() => expect(held).toEqual(['segments/schedule/0', 'segments/after-tags/0', 'recommend/after-tags/0']), { timeout: 20_000 })
    await settled(holder)
    // Once: the run it added started after the marker, so the marker is behind it.
    expect(held.filter((s) => s.startsWith('segments/'))).toHaveLength(2)
  })
})

describe('schedules and backfills', () => {
  it("one tenant whose schedules cannot be read keeps the others' schedules", async () => {
    const broken = await tenants.create({ slug: 'broken-schedules', name: 'Broken' })
    const runner = newRunner()
    runner.register('tags', async () => ({ rows: 0, details: {} }), {
      schedules: async (tenantId) => {
        if (tenantId === broken.id) throw new Error('definitions unreadable (simulated)')
        return [{ cron: '15 3 * * *', name: 'elder' }]
      },
    })
    await runner.startScheduler()
    expect(runner.schedules(tenant.id)).toMatchObject([{ pipeline: 'tags', cron: '15 3 * * *', tags: ['elder'] }])
    expect(runner.schedules(broken.id)).toEqual([])
  })

  it("refuses a backfill of the bank's today or a later day, naming the field: a backfill recomputes the past", async () => {
    const runner = newRunner()
    runner.register('tags', async () => ({ rows: 0, details: {} }))
    const today = localDate(new Date(), tenant.timeZone)
    const untilToday = runner.start({ tenantId: tenant.id, trigger: 'api', backfill: { from: addDays(today, -2), to: today } })
    await expect(untilToday).rejects.toMatchObject({ code: 'VALIDATION_FAILED', status: 400, issues: [{ field: 'backfill.to' }] })
    const future = runner.start({ tenantId: tenant.id, trigger: 'api', backfill: { from: addDays(today, 1), to: addDays(today, 3) } })
    await expect(future).rejects.toMatchObject({ issues: [{ field: 'backfill.from' }, { field: 'backfill.to' }] })
    expect((await runner.run({ tenantId: tenant.id, trigger: 'api', backfill: { from: addDays(today, -2), to: addDays(today, -1) } })).status).toBe('succeeded')
  })
})
