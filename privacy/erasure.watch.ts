import { z } from 'zod'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import { chDateTime } from '../core/time.js'
import { callForget, type ForgetHook, type Subject } from './erasure.job.js'

/**
 * Erasures another process ran, applied to this process's memory. The job calls the `forget`
 * hooks (bitmaps, layout snapshots, push leases, identity cache) only where it runs; an API pod
 * beside the worker that ran it would keep serving the customer from memory until its next
 * refresh. So every process reads the erasure jobs every `intervalMs` (one small query over all
 * tenants) and calls the same hooks for each job it has not applied yet: once when it first sees
 * the job running (its in-clear identifiers are still on the row then), and once more when it
 * sees it finished (the bitmaps were rewritten by then, so a reload is clean). Calling a hook
 * twice changes nothing, so overlap and repeats are safe.
 */

export interface ErasureWatch {
  /** Reads the jobs changed since the last look and applies the new ones; answers how many hook rounds ran. */
  poll(): Promise<number>
  /** This process ran the hooks itself for the job (its own runner): the watch skips it. */
  noteApplied(tenantId: number, jobId: string, final: boolean): void
  start(): void
  stop(): Promise<void>
}

const row = z.object({
  tenant_id: z.coerce.number(),
  job_id: z.string(),
  status: z.enum(['running', 'done', 'failed']),
  subject: z.string(),
})

// What a job row's subject holds; a finished job keeps only keys (and digests).
const subjectSchema = z.object({
  customerNos: z.array(z.string()).default([]),
  keys: z.array(z.number()).default([]),
  anonymousIds: z.array(z.string()).default([]),
  deviceIds: z.array(z.string()).default([]),
  digests: z.array(z.string()).default([]),
})

export function createErasureWatch(deps: {
  db: Db
  log: Logger
  forget: readonly ForgetHook[]
  intervalMs?: number
  /**
   * How far back each look reaches before the previous one began: rows are stamped with the
   * writing process's clock and become visible when its insert lands, so a window that only
   * moved forward from the last look could step over a row of a skewed or slow writer.
   */
  overlapMs?: number
  now?: () => number
}): ErasureWatch {
  const intervalMs = deps.intervalMs ?? 5000
  const overlapMs = deps.overlapMs ?? 10 * 60_000
  const now = deps.now ?? Date.now
  const log = deps.log.child({ component: 'erasure-watch' })
  // tenant:job -> whether the finished job's round ran (false: only the running round).
  const applied = new Map<string, { final: boolean; at: number }>()
  let lastLook = now()
  let timer: NodeJS.Timeout | undefined
  let inFlight: Promise<number> | undefined
  const id = (tenantId: number, jobId: string) => `${tenantId}:${jobId}`

  async function look(): Promise<number> {
    const started = now()
    const since = chDateTime(lastLook - overlapMs)
    // Running jobs come back whatever their age (a job resumed after a restart may be old);
    // of each job only its newest version counts.
    const rows = await deps.db.system.query(
      `SELECT tenant_id, toString(job_id) AS job_id, toString(status) AS status, subject FROM erasure_jobs
       WHERE updated_at >= {since:DateTime64(3, 'UTC')} OR status = 'running'
       ORDER BY updated_at DESC LIMIT 1 BY tenant_id, job_id`,
      { since },
      row,
    )
    let rounds = 0
    for (const r of rows) {
      const key = id(r.tenant_id, r.job_id)
      const final = r.status !== 'running'
      const seen = applied.get(key)
      if (seen && (seen.final || !final)) continue
      const parsed = subjectSchema.safeParse(safeJson(r.subject))
      if (!parsed.success) {
        log.warn({ tenant: r.tenant_id, job: r.job_id }, 'an erasure job row holds an unreadable subject; its customers are not dropped from memory here')
        applied.set(key, { final, at: started })
        continue
      }
      callForget(deps.forget, log, r.tenant_id, r.job_id, parsed.data as Subject)
      applied.set(key, { final, at: started })
      rounds++
      log.info({ tenant: r.tenant_id, job: r.job_id, status: r.status, keys: parsed.data.keys.length }, 'erasure run elsewhere applied to memory')
    }
    // A finished job older than the next window should not come back (if a skewed writer's
    // clock brings it back, its round runs once more, which changes nothing): its entry can go.
    const horizon = started - overlapMs
    for (const [k, v] of applied) if (v.final && v.at < horizon) applied.delete(k)
    lastLook = started
    return rounds
  }

  function poll(): Promise<number> {
    // One look at a time: a slow engine must not pile looks up behind each other.
    inFlight ??= look().finally(() => (inFlight = undefined))
    return inFlight
  }

  return {
    poll,
    noteApplied(tenantId, jobId, final) {
      const key = id(tenantId, jobId)
      if (!applied.get(key)?.final) applied.set(key, { final, at: now() })
    },
    start() {
      if (timer) return
      timer = setInterval(() => {
        poll().catch((err: unknown) => log.warn({ err }, 'erasure jobs could not be read; the next look covers the gap'))
      }, intervalMs)
      timer.unref()
    },
    async stop() {
      if (timer) clearInterval(timer)
      timer = undefined
      await inFlight?.catch(() => undefined)
    },
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
