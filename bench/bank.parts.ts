import os from 'node:os'
import { z } from 'zod'
import type { Db, SystemDb } from '../core/db.js'
import type { Logger } from '../core/log.js'
import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import { localDate, zonedMidnight } from '../core/time.js'
import { DEMO_BANKS } from '../demo/demo.banks.js'
import { createPrivacyModule, createPrivacyTombstones } from '../privacy/privacy.module.js'
import { createApprovals } from '../push/campaign.approval.js'
import { createPushModule } from '../push/push.module.js'
import type { TagRunResult } from '../tags/tag.pipeline.js'
import type { TagRepository } from '../tags/tag.repository.js'
import type { Tenant, TenantService } from '../tenants/tenants.service.js'

/**
 * Pieces of `npm run bench bank` (bank.bench.ts): each measures one part of the product on the
 * bank-scale demo already generated, with wall time, process CPU and the phase's peak memory.
 */

export interface Measured {
  seconds: number
  cpuSeconds: number
}

/** Runs `fn`, timing wall and process CPU (Node and the engine's threads). */
export async function measure<T>(fn: () => Promise<T>): Promise<Measured & { value: T }> {
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  const value = await fn()
  const c = process.cpuUsage(c0)
  return { value, seconds: (performance.now() - t0) / 1000, cpuSeconds: (c.user + c.system) / 1e6 }
}

/** Latency percentiles of `n` calls after `warmup` calls. */
export async function timeRuns<T>(n: number, fn: () => Promise<T>, warmup = 1): Promise<{ p50: number; p99: number; last: T }> {
  let last: T | undefined
  for (let i = 0; i < warmup; i++) last = await fn()
  const ms: number[] = []
  for (let i = 0; i < Math.max(1, n); i++) {
    const t = performance.now()
    last = await fn()
    ms.push(performance.now() - t)
  }
  return { ...percentiles(ms), last: last as T }
}

export function percentiles(ms: number[]): { p50: number; p99: number } {
  const s = [...ms].sort((a, b) => a - b)
  const rank = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN
  return { p50: rank(0.5), p99: rank(0.99) }
}

export interface TableSize {
  table: string
  rows: number
  parts: number
  bytesOnDisk: number
  uncompressed: number
}

/** Active parts per table of the default database: rows, bytes on disk, uncompressed bytes. */
export async function diskSizes(system: SystemDb): Promise<TableSize[]> {
  const rows = await system.query(
    `SELECT table, toString(sum(rows)) AS rows, toString(count()) AS parts, toString(sum(bytes_on_disk)) AS disk, toString(sum(data_uncompressed_bytes)) AS raw
     FROM system.parts WHERE active AND database = currentDatabase() GROUP BY table ORDER BY sum(bytes_on_disk) DESC`,
    {},
    z.object({ table: z.string(), rows: z.coerce.number(), parts: z.coerce.number(), disk: z.coerce.number(), raw: z.coerce.number() }),
  )
  return rows.map((r) => ({ table: r.table, rows: r.rows, parts: r.parts, bytesOnDisk: r.disk, uncompressed: r.raw }))
}

export function diskTable(sizes: TableSize[]): string {
  const mb = (b: number) => (b / 1024 ** 2).toFixed(1)
  return [
    '| table | rows | parts | MB on disk | MB uncompressed | bytes/row on disk |',
    '| --- | --- | --- | --- | --- | --- |',
    ...sizes
      .filter((s) => s.rows > 0)
      .map((s) => `| ${s.table} | ${s.rows.toLocaleString('en-US')} | ${s.parts} | ${mb(s.bytesOnDisk)} | ${mb(s.uncompressed)} | ${(s.bytesOnDisk / s.rows).toFixed(1)} |`),
  ].join('\n')
}

/**
 * The engine's own view of its memory: tracked by queries and merges, and its caches (the
 * embedded engine has no system.asynchronous_metrics; its current metrics carry the cache sizes).
 */
export async function engineMemory(system: SystemDb): Promise<Record<string, number>> {
  const rows = await system.query(
    `SELECT metric, toString(value) AS v FROM system.metrics
     WHERE metric IN ('MemoryTracking', 'MergesMutationsMemoryTracking') OR metric LIKE '%CacheBytes'`,
    {},
    z.object({ metric: z.string(), v: z.coerce.number() }),
  )
  const out: Record<string, number> = { OtherCacheBytes: 0 }
  for (const r of rows) {
    if (ENGINE_MEMORY.includes(r.metric)) out[r.metric] = r.v / 1024 ** 2
    else out.OtherCacheBytes! += r.v / 1024 ** 2
  }
  return out
}
export const ENGINE_MEMORY = ['MemoryTracking', 'MergesMutationsMemoryTracking', 'MarkCacheBytes', 'UncompressedCacheBytes', 'PrimaryIndexCacheBytes', 'OtherCacheBytes']

/**
 * A marketing campaign targeted over every member bank with every policy (consent, quiet hours,
 * the daily pressure budget, dedup, holdout, a 5% control group, elder variants), after a
 * service loan-due reminder that spends the same customers' budget, as push.bench.ts does.
 */
export async function pushTargeting(deps: { db: Db; tenants: TenantService; log: Logger; tags: TagRepository }, members: readonly Tenant[], say: (m: string) => void) {
  const push = createPushModule({ db: deps.db, tenants: deps.tenants, log: deps.log, metrics: createMetrics({ collectDefault: false }), tags: deps.tags, holdoutPerMille: () => 20 })
  // Marketing campaigns run only once a second holder approved them, as in production.
  const approvals = createApprovals({ db: deps.db })
  const out = { loanSeconds: 0, marketingSeconds: 0, marketingCpuSeconds: 0, loanTargets: 0, marketingTargets: 0, queued: 0, suppressed: {} as Record<string, number>, errors: [] as string[] }
  try {
    for (const t of members) {
      // 10:30 local today: after the campaigns' 10:00 occurrence.
      const asOf = new Date(zonedMidnight(localDate(new Date(), t.timeZone), t.timeZone).getTime() + 10.5 * 3_600_000)
      const save = (id: string, body: Record<string, unknown>) => push.campaigns.save(t.id, id, body, 'bench')
      await save('loan-due', {
        name: 'Loan due in 3 days', purpose: 'service', priority: 'high', dateTrigger: { on: 'loan_due', daysBefore: 3 }, schedule: { kind: 'cron', cron: '0 10 * * *' },
        message: { body: { zh: '{{name}}，您的贷款将于{{loan.due_date}}到期，应还{{loan.amount}}元', en: 'Your loan of {{loan.amount}} is due on {{loan.due_date}}' } },
      })
      const { campaign: pick } = await save('wealth-pick', {
        name: 'Wealth pick', purpose: 'marketing', priority: 'low', controlPerMille: 50, schedule: { kind: 'cron', cron: '0 10 * * *' },
        message: { body: { zh: '{{name}}，为您精选稳健理财', en: 'A steady wealth product picked for you' }, elder: { body: { zh: '稳健理财，到网点问问', en: 'Ask at the branch about steady savings' } } },
      })
      await approvals.request(t.id, pick, { holder: 'bench', keyId: 'bench' }, pick.version)
      await approvals.approve(t.id, pick, { holder: 'bench-approver', keyId: 'bench-approver' }, pick.version)
      const loan = await measure(() => push.runTargeting(t.id, { asOf, campaignIds: ['loan-due'] }))
      const main = await measure(() => push.runTargeting(t.id, { asOf, campaignIds: ['wealth-pick'] }))
      out.errors.push(...[...loan.value.errors, ...main.value.errors].map((e) => `${t.slug}: ${JSON.stringify(e)}`))
      const w = main.value.campaigns.find((c) => c.campaignId === 'wealth-pick')
      const l = loan.value.campaigns.find((c) => c.campaignId === 'loan-due')
      // A campaign skipped (not approved, not due) measured nothing: say so rather than report 0 targets.
      for (const c of [l, w]) if (c?.skipped) out.errors.push(`${t.slug}: ${c.campaignId} skipped (${c.skipped})`)
      out.loanSeconds += loan.seconds
      out.marketingSeconds += main.seconds
      out.marketingCpuSeconds += main.cpuSeconds
      out.loanTargets += l?.targeted ?? 0
      out.marketingTargets += w?.targeted ?? 0
      out.queued += w?.queued ?? 0
      for (const [k, v] of Object.entries(w?.suppressed ?? {})) out.suppressed[k] = (out.suppressed[k] ?? 0) + Number(v)
      say(`push ${t.slug}: loan-due ${l?.targeted ?? 0} in ${loan.seconds.toFixed(1)} s, wealth-pick ${w?.targeted ?? 0} in ${main.seconds.toFixed(1)} s`)
    }
  } finally {
    await push.close()
  }
  return out
}

/** The erasure of one customer (the bank's last key), start to proof, as the API's job runs it. */
export async function eraseOne(deps: { db: Db; tenants: TenantService; log: Logger }, tenant: Tenant, lastKey: number) {
  const metrics = createMetrics({ collectDefault: false })
  const tombstones = createPrivacyTombstones({ db: deps.db, pii: createPii('bench-secret-bench-secret-bench-secret'), metrics })
  const privacy = createPrivacyModule({ db: deps.db, tenants: deps.tenants, log: deps.log, tombstones, forget: [] })
  const bank = DEMO_BANKS.find((b) => b.slug === tenant.slug)!
  const customerNo = bank.customerPrefix + String(lastKey).padStart(10, '0')
  const r = await measure(() => privacy.erasure.start(tenant.id, { customers: [customerNo], reason: 'bench' }, { keyId: 'bench', holder: 'bench' }, { wait: true }))
  const slowest = [...r.value.steps].sort((a, b) => (b.before ?? 0) - (a.before ?? 0)).slice(0, 3)
  return { ...r, status: r.value.status, verified: r.value.proof?.verified === true, places: r.value.steps.length, slowest: slowest.map((s) => `${s.table} (${s.before})`).join(', ') }
}

/** Layouts in this process for `seconds`: random customers of every bank, one at a time. */
export async function layoutLoop(
  layouts: { layoutJson(req: { tenantId: number; customerId?: string; screen: 'home'; lang: 'zh' | 'en'; mode: 'auto' | 'elder' | 'standard' }): Buffer | Promise<Buffer> },
  banks: readonly { tenantId: number; prefix: string; customers: number }[],
  seconds: number,
) {
  const ms: number[] = []
  let bytes = 0
  const end = performance.now() + seconds * 1000
  let i = 0
  while (performance.now() < end) {
    const b = banks[i % banks.length]!
    const key = 1 + (((i * 2_654_435_761) >>> 0) % b.customers)
    // One in ten anonymous, one in ten asks elder mode, as recommend.bench.ts does.
    const customerId = i % 10 === 7 ? undefined : `${b.prefix}${String(key).padStart(10, '0')}`
    const t = performance.now()
    const body = await layouts.layoutJson({ tenantId: b.tenantId, ...(customerId ? { customerId } : {}), screen: 'home', lang: 'zh', mode: i % 10 === 3 ? 'elder' : 'auto' })
    ms.push(performance.now() - t)
    bytes += body.length
    i++
  }
  return { count: ms.length, perSecond: ms.length / seconds, ...percentiles(ms), bytesPerLayout: bytes / Math.max(1, ms.length) }
}

export const loadavg = () => os.loadavg()[0]!

/** Waits until no merge or mutation runs, at most `capS` seconds; returns the seconds waited and whether it settled. */
export async function settleCapped(system: SystemDb, capS: number): Promise<{ seconds: number; settled: boolean }> {
  const t0 = performance.now()
  for (;;) {
    const [r] = await system.query(
      `SELECT (SELECT count() FROM system.merges) + (SELECT count() FROM system.mutations WHERE is_done = 0) AS n`,
      {},
      z.object({ n: z.coerce.number() }),
    )
    const seconds = (performance.now() - t0) / 1000
    if (!r?.n) return { seconds, settled: true }
    if (seconds > capS) return { seconds, settled: false }
    await new Promise((res) => setTimeout(res, 1000))
  }
}

/** Pipeline step seconds summed over tenants, levels folded together (levelN_x counts as x). */
export function stepTotals(results: readonly TagRunResult[], seconds: number): Record<string, number> {
  const by = new Map<string, number>()
  let timed = 0
  for (const r of results) {
    for (const s of r.steps) {
      const group = s.step.replace(/^level\d+_/, '')
      by.set(group, (by.get(group) ?? 0) + s.ms / 1000)
      timed += s.ms / 1000
    }
  }
  by.set('other', seconds - timed)
  return Object.fromEntries(by)
}
