import os from 'node:os'
import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'

/**
 * Run history and leases. Every state change of a run is a row (newest wins), so a run that
 * crashed half-way is still visible as `running` with its start time, and a lease that was never
 * released expires on its own.
 */

/** partial: a tag or segments run that completed all but some tags or segments (each failure is in its details). */
export const RUN_STATUSES = ['running', 'succeeded', 'partial', 'failed', 'skipped'] as const
export type RunStatus = (typeof RUN_STATUSES)[number]

export interface RunRecord {
  runId: string
  pipeline: string
  mode: 'full' | 'incremental' | 'backfill'
  trigger: string
  status: RunStatus
  attempt: number
  startedAt: string
  finishedAt: string | null
  asOf: string
  watermark: string
  rows: number
  details: Record<string, unknown>
  error: string
}

const runRow = z.object({
  id: z.string(),
  pipeline: z.string(),
  mode: z.enum(['full', 'incremental', 'backfill']),
  trigger: z.string(),
  status: z.enum(RUN_STATUSES),
  attempt: z.coerce.number(),
  started_at: z.string(),
  finished_at: z.string().nullable(),
  as_of: z.string(),
  watermark: z.string(),
  rows: z.coerce.number(),
  details: z.string(),
  error: z.string(),
})

const toRecord = (r: z.infer<typeof runRow>): RunRecord => ({
  runId: r.id,
  pipeline: r.pipeline,
  mode: r.mode,
  trigger: r.trigger,
  status: r.status,
  attempt: r.attempt,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  asOf: r.as_of,
  watermark: r.watermark,
  rows: r.rows,
  details: r.details ? (JSON.parse(r.details) as Record<string, unknown>) : {},
  error: r.error,
})

export interface RunListOptions {
  pipeline?: string | undefined
  status?: RunStatus | undefined
  limit: number
  /** Runs started before this run id (cursor for the next page). */
  before?: string | undefined
}

export function createRunStore(deps: { db: Db }) {
  const tdb = (t: number): TenantDb => deps.db.forTenant(t)
  return {
    async record(tenantId: number, r: RunRecord): Promise<void> {
      await tdb(tenantId).insert('pipeline_runs', [
        {
          run_id: r.runId,
          pipeline: r.pipeline,
          mode: r.mode,
          trigger: r.trigger,
          status: r.status,
          attempt: r.attempt,
          started_at: r.startedAt,
          finished_at: r.finishedAt,
          as_of: r.asOf,
          watermark: r.watermark,
          rows: r.rows,
          details: JSON.stringify(r.details),
          error: r.error.slice(0, 4000),
          updated_at: chDateTime(new Date()),
        },
      ])
    },
    async list(tenantId: number, o: RunListOptions): Promise<RunRecord[]> {
      const rows = await tdb(tenantId).query(
        `SELECT toString(run_id) AS id, pipeline, mode, trigger, status, attempt, toString(started_at) AS started_at,
                if(finished_at IS NULL, NULL, toString(finished_at)) AS finished_at, toString(as_of) AS as_of,
                toString(watermark) AS watermark, rows, details, error
         FROM pipeline_runs FINAL
         WHERE tenant_id = {tenant:UInt16}
           AND ({pipeline:String} = '' OR pipeline = {pipeline:String})
           AND ({status:String} = '' OR toString(status) = {status:String})
           AND ({before:UInt64} = 0 OR run_id < {before:UInt64})
         ORDER BY pipeline_runs.run_id DESC LIMIT {limit:UInt32}`,
        { pipeline: o.pipeline ?? '', status: o.status ?? '', before: o.before ?? '0', limit: o.limit },
        runRow,
      )
      return rows.map(toRecord)
    },
    /**
     * Whether a follow-up run of the pipeline (trigger `after-…`) was skipped, its lease held
     * elsewhere, after run `runId` began: run ids grow with time, so a newer id asked later.
     */
    async followUpSkipped(tenantId: number, pipeline: string, runId: string): Promise<boolean> {
      const [row] = await tdb(tenantId).query(
        `SELECT count() AS n FROM pipeline_runs FINAL
         WHERE tenant_id = {tenant:UInt16} AND pipeline = {pipeline:String} AND run_id > {run:UInt64}
           AND status = 'skipped' AND startsWith(trigger, 'after-')`,
        { pipeline, run: runId },
        z.object({ n: z.coerce.number() }),
      )
      return (row?.n ?? 0) > 0
    },
    /**
     * Claims the tenant's pipeline for `ttlMs`. The earliest unexpired, unreleased claim wins, so
     * two processes that claim at once agree on one winner; the loser backs off.
     */
    async lease(tenantId: number, pipeline: string, owner: string, ttlMs: number): Promise<boolean> {
      const db = tdb(tenantId)
      await db.insert('pipeline_locks', [{ pipeline, owner, expires_at: chDateTime(Date.now() + ttlMs) }])
      const [winner] = await db.query(
        `SELECT owner FROM pipeline_locks
         WHERE tenant_id = {tenant:UInt16} AND pipeline = {pipeline:String} AND expires_at > now64(3)
         ORDER BY claimed_at LIMIT 1`,
        { pipeline },
        z.object({ owner: z.string() }),
      )
      if (winner?.owner !== owner) await this.release(tenantId, pipeline, owner)
      return winner?.owner === owner
    },
    /**
     * Extends a held lease by `ttlMs` from now: a claim of the same owner, so the earliest
     * unexpired claim is still this owner's. True only when it was held without a break: the
     * owner's claim is the earliest and an older claim of its own had not expired yet (a lease
     * that lapsed, even if nobody holds it now, may have let another run start and end). Leaves
     * its claim in place either way; `release` removes the owner's claims.
     */
    async renew(tenantId: number, pipeline: string, owner: string, ttlMs: number): Promise<boolean> {
      const db = tdb(tenantId)
      await db.insert('pipeline_locks', [{ pipeline, owner, expires_at: chDateTime(Date.now() + ttlMs) }])
      const [held] = await db.query(
        `SELECT argMin(owner, claimed_at) AS winner, countIf(owner = {owner:String}) AS mine FROM pipeline_locks
         WHERE tenant_id = {tenant:UInt16} AND pipeline = {pipeline:String} AND expires_at > now64(3)`,
        { pipeline, owner },
        z.object({ winner: z.string(), mine: z.coerce.number() }),
      )
      return held?.winner === owner && held.mine >= 2
    },
    async release(tenantId: number, pipeline: string, owner: string): Promise<void> {
      await tdb(tenantId).command(
        `DELETE FROM pipeline_locks WHERE tenant_id = {tenant:UInt16} AND pipeline = {pipeline:String} AND owner = {owner:String}`,
        { pipeline, owner },
      )
    },
  }
}

export type RunStore = ReturnType<typeof createRunStore>

/** A lease owner id unique to this process and call. */
export function leaseOwner(): string {
  return `${os.hostname()}:${process.pid}:${newRunId()}`
}
