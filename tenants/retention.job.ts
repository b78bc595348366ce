import cron, { type ScheduledTask } from 'node-cron'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import { chDateTime } from '../core/time.js'
import type { TenantService } from './tenants.service.js'

/**
 * Enforces each bank's retention. A TTL cannot do it: TTL clauses are per table, and the engine
 * refuses a TTL that reads the bank's setting from a dictionary ("TTL expression cannot contain
 * non-deterministic functions", checked on the embedded engine), and partitions hold every
 * bank's rows, so none can be dropped for one bank. So a daily job deletes, bank by bank, what is
 * older than its setting (lightweight DELETE: rows vanish from reads at once, space comes back
 * at the next merge). The engine TTLs of exposures and push outcomes (400 days) stay as the
 * ceiling. Every statement is idempotent: a run that stops half-way is completed by the next.
 */

export interface RetentionResult {
  tenantId: number
  /** Rows deleted per table (counted before the delete). */
  deleted: Record<string, number>
}

/** The table, its time column and which setting applies: names from this list only. */
const TARGETS = [
  { table: 'events', column: 'timestamp', setting: 'eventsDays' },
  { table: 'layout_exposures', column: 'served_at', setting: 'exposuresDays' },
  { table: 'push_outcomes', column: 'at', setting: 'pushOutcomesDays' },
] as const

export interface RetentionJob {
  run(tenantId: number): Promise<RetentionResult>
  /** Every active tenant, one after the other; a failing tenant is logged and the others still run. */
  runAll(): Promise<RetentionResult[]>
  /** Runs `runAll` on a cron schedule (UTC) until stopped. */
  start(schedule: string): { stop(): void }
}

export function createRetentionJob(deps: { db: Db; tenants: TenantService; log: Logger; now?: () => Date }): RetentionJob {
  const now = deps.now ?? (() => new Date())
  const cutoff = (days: number) => chDateTime(new Date(now().getTime() - days * 86_400_000))

  async function run(tenantId: number): Promise<RetentionResult> {
    const settings = await deps.tenants.privacy(tenantId)
    const db = deps.db.forTenant(tenantId)
    const deleted: Record<string, number> = {}
    const count = async (sql: string, params: Record<string, unknown>) =>
      Number((await db.query<{ n: string }>(`SELECT toString(count()) AS n FROM ${sql}`, params))[0]?.n ?? 0)
    for (const t of TARGETS) {
      const params = { cutoff: cutoff(settings[t.setting]) }
      const where = `tenant_id = {tenant:UInt16} AND ${t.column} < {cutoff:DateTime64(3, 'UTC')}`
      deleted[t.table] = await count(`${t.table} WHERE ${where}`, params)
      if (deleted[t.table]) await db.command(`DELETE FROM ${t.table} WHERE ${where}`, params)
    }
    // Tag history answers "what was the value on day D": a value older than the cutoff that is
    // still in effect (no later change before the cutoff) is kept, only superseded ones go.
    const params = { cutoff: cutoff(settings.tagHistoryDays) }
    const superseded = `tenant_id = {tenant:UInt16} AND valid_from < {cutoff:DateTime64(3, 'UTC')}
      AND (tag, customer_key, valid_from) NOT IN (
        SELECT tag, customer_key, max(valid_from) FROM tag_history
        WHERE tenant_id = {tenant:UInt16} AND valid_from < {cutoff:DateTime64(3, 'UTC')} GROUP BY tag, customer_key)`
    deleted.tag_history = await count(`tag_history WHERE ${superseded}`, params)
    if (deleted.tag_history) await db.command(`DELETE FROM tag_history WHERE ${superseded}`, params)
    return { tenantId, deleted }
  }

  async function runAll() {
    const out: RetentionResult[] = []
    for (const t of await deps.tenants.list()) {
      if (t.status !== 'active') continue
      try {
        const r = await run(t.id)
        out.push(r)
        deps.log.info({ tenantId: t.id, deleted: r.deleted }, 'retention applied')
      } catch (err) {
        deps.log.error({ err, tenantId: t.id }, 'retention failed for a tenant; the others still run')
      }
    }
    return out
  }

  return {
    run,
    runAll,
    start(schedule) {
      let running = false
      const task: ScheduledTask = cron.schedule(
        schedule,
        () => {
          if (running) return
          running = true
          void runAll().finally(() => (running = false))
        },
        { timezone: 'UTC' },
      )
      return { stop: () => void task.stop() }
    },
  }
}
