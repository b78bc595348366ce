import cron, { type ScheduledTask } from 'node-cron'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { errText } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { chDateTime } from '../core/time.js'
import type { PrivacySettings } from './privacy.schema.js'
import type { TenantService } from './tenants.service.js'

/**
 * Enforces each bank's retention. A TTL cannot do it: TTL clauses are per table, and the engine
 * refuses a TTL that reads the bank's setting from a dictionary ("TTL expression cannot contain
 * non-deterministic functions", checked on the embedded engine), and partitions hold every
 * bank's rows, so none can be dropped for one bank. So a daily job deletes, for each bank, what is
 * older than its setting (lightweight DELETE: rows vanish from reads at once, space comes back
 * at the next merge). The engine TTLs of exposures and push outcomes (400 days) stay as the
 * ceiling. Every statement is idempotent: a run that stops half-way is completed by the next.
 */

export interface RetentionResult {
  tenantId: number
  /** Rows deleted per table (counted before the delete). */
  deleted: Record<string, number>
  /** Milliseconds per table, the count and the delete together, shared with the banks of the same cutoff (logged; the benchmark reads them). */
  ms: Record<string, number>
  /** What failed for this bank (its settings, or a table's statement), each logged; empty when all went through. */
  errors: string[]
}

/** The table, its time column and which setting applies: names from this list only. */
const TARGETS = [
  { table: 'events', column: 'timestamp', setting: 'eventsDays' },
  { table: 'layout_exposures', column: 'served_at', setting: 'exposuresDays' },
  { table: 'push_outcomes', column: 'at', setting: 'pushOutcomesDays' },
] as const

export interface RetentionJob {
  run(tenantId: number): Promise<RetentionResult>
  /**
   * Every tenant together (one statement per table and cutoff), whatever its status: a disabled
   * bank's keys stop working, its data still ages out. A bank whose settings cannot be read, or a
   * failing statement, is logged and counted in its banks' `errors`; the others still run.
   */
  runAll(): Promise<RetentionResult[]>
  /** Runs `runAll` on a cron schedule (UTC) until stopped. */
  start(schedule: string): { stop(): void }
}

const countRow = z.object({ t: z.coerce.number(), n: z.string() })

export function createRetentionJob(deps: { db: Db; tenants: TenantService; log: Logger; now?: () => Date }): RetentionJob {
  const now = deps.now ?? (() => new Date())
  const cutoff = (days: number) => chDateTime(new Date(now().getTime() - days * 86_400_000))

  /**
   * Every bank of the list, one statement per table for all the banks whose setting gives the
   * same cutoff. A DELETE is a mutation, and a mutation makes a new version of every part of the
   * table whether the part holds a matching row or not: with events in one partition per day,
   * about a tenth of a second per part on two cores (`npm run bench retention`), so minutes for
   * one day's rows. Run bank by bank, a group of banks paid that once each, every day; run for
   * the banks together, it is paid once per table and distinct setting. Through the system
   * handle for that reason, each statement filtered by the listed banks' ids.
   */
  async function runMany(tenantIds: readonly number[]): Promise<{ results: RetentionResult[]; errors: unknown[] }> {
    const results = new Map<number, RetentionResult>(tenantIds.map((id) => [id, { tenantId: id, deleted: {}, ms: {}, errors: [] }]))
    const settings = new Map<number, PrivacySettings>()
    const errors: unknown[] = []
    for (const id of tenantIds) {
      try {
        settings.set(id, await deps.tenants.privacy(id))
      } catch (err) {
        errors.push(err)
        results.get(id)!.errors.push(`settings: ${errText(err)}`)
        deps.log.error({ err, tenantId: id }, 'retention skipped for this bank: its settings could not be read; the others still run')
      }
    }
    // Without its settings a bank's cutoffs are unknown: it waits for the next run.
    const banks = tenantIds.filter((id) => settings.has(id))
    const sys = deps.db.system
    // Tag history answers "what was the value on day D": a value older than the cutoff that is
    // still in effect (no later change before the cutoff) is kept, only superseded ones go.
    const jobs = [
      ...TARGETS.map((t) => ({ table: t.table, setting: t.setting, where: `${t.column} < {cutoff:DateTime64(3, 'UTC')}` })),
      {
        table: 'tag_history',
        setting: 'tagHistoryDays' as const,
        where: `valid_from < {cutoff:DateTime64(3, 'UTC')}
          AND (tenant_id, tag, customer_key, valid_from) NOT IN (
            SELECT tenant_id, tag, customer_key, max(valid_from) FROM tag_history
            WHERE tenant_id IN {ids:Array(UInt16)} AND valid_from < {cutoff:DateTime64(3, 'UTC')} GROUP BY tenant_id, tag, customer_key)`,
      },
    ]
    for (const j of jobs) {
      const groups = new Map<string, number[]>()
      for (const id of banks) {
        const c = cutoff(settings.get(id)![j.setting])
        groups.set(c, [...(groups.get(c) ?? []), id])
      }
      for (const [c, ids] of groups) {
        const t0 = performance.now()
        try {
          const params = { cutoff: c, ids }
          const where = `tenant_id IN {ids:Array(UInt16)} AND ${j.where}`
          const counts = await sys.query(`SELECT tenant_id AS t, toString(count()) AS n FROM ${j.table} WHERE ${where} GROUP BY tenant_id`, params, countRow)
          const found = new Map(counts.map((r) => [r.t, Number(r.n)]))
          const withRows = ids.filter((id) => found.get(id))
          if (withRows.length) await sys.command(`DELETE FROM ${j.table} WHERE ${where}`, { ...params, ids: withRows })
          const ms = Math.round(performance.now() - t0)
          for (const id of ids) {
            const r = results.get(id)!
            r.deleted[j.table] = found.get(id) ?? 0
            r.ms[j.table] = ms
          }
        } catch (err) {
          errors.push(err)
          for (const id of ids) results.get(id)!.errors.push(`${j.table}: ${errText(err)}`)
          deps.log.error({ err, table: j.table, tenants: ids }, 'retention failed for these banks and table; the others still run')
        }
      }
    }
    return { results: tenantIds.map((id) => results.get(id)!), errors }
  }

  async function runAll() {
    const ids = (await deps.tenants.list()).map((t) => t.id)
    const { results: out } = await runMany(ids)
    for (const r of out) {
      if (r.errors.length) deps.log.warn({ tenantId: r.tenantId, deleted: r.deleted, errors: r.errors }, 'retention applied in part')
      else deps.log.info({ tenantId: r.tenantId, deleted: r.deleted, ms: r.ms }, 'retention applied')
    }
    const failed = out.filter((r) => r.errors.length).length
    if (failed) deps.log.error({ banks: out.length, failed }, 'retention failed for some banks; the next daily run tries them again')
    return out
  }

  return {
    async run(tenantId) {
      const { results, errors } = await runMany([tenantId])
      if (errors.length) throw errors[0]
      return results[0]!
    },
    runAll,
    start(schedule) {
      let running = false
      const task: ScheduledTask = cron.schedule(
        schedule,
        () => {
          if (running) return
          running = true
          void runAll()
            .catch((err: unknown) => deps.log.error({ err }, 'retention did not run: the banks could not be listed; the next daily run tries again'))
            .finally(() => (running = false))
        },
        { timezone: 'UTC' },
      )
      return { stop: () => void task.stop() }
    },
  }
}
