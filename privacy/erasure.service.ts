import crypto from 'node:crypto'
import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { createKeyedLock, type KeyedLock } from '../core/keyed-lock.js'
import { AppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { chDateTime } from '../core/time.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { createErasureRunner, erasedIds, newSteps, type ErasureJob, type ForgetHook, type Step, type Subject } from './erasure.job.js'
import { withMergedKeys } from './merged-keys.js'
import type { Tombstones } from './tombstones.js'

/**
 * Erasure requests: find everything that identifies the customers (keys, merged keys, linked
 * app and device ids), refuse a second request while one runs, write the job and the
 * tombstones, then run the job in the background (erasure.job.ts). Jobs left running by a
 * stopped process are resumed by `resume()` (the scheduler role calls it at start).
 */

export interface Requester {
  keyId: string
  holder: string
}

export interface ErasureService {
  /** Starts a job for these customer numbers; answers once the job and its tombstones are written. */
  start(tenantId: number, input: { customers: readonly string[]; reason: unknown }, by: Requester, opts?: { wait?: boolean }): Promise<ErasureJob>
  get(tenantId: number, jobId: string): Promise<ErasureJob>
  /** Runs every job left running (after a restart). Returns how many were resumed. */
  resume(): Promise<number>
  /** Jobs running in this process (tests and shutdown wait on them). */
  idle(): Promise<void>
}

const jobRow = z.object({
  job_id: z.string(),
  status: z.enum(['running', 'done', 'failed']),
  digests: z.array(z.string()),
  customers: z.coerce.number(),
  subject: z.string(),
  reason: z.string(),
  requested_by: z.string(),
  key_id: z.string(),
  steps: z.string(),
  proof: z.string(),
  error: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
})
const JOB_COLUMNS = 'job_id, status, digests, customers, subject, reason, requested_by, key_id, steps, proof, error, created_at, updated_at'

const reasonSchema = z.string().trim().min(1, 'a reason is required').max(1000)

export function createErasureService(deps: {
  db: Db
  /** One erasure step of a tenant at a time (one is made when absent). */
  lock?: KeyedLock
  tenants: TenantService
  tombstones: Tombstones
  log: Logger
  forget: readonly ForgetHook[]
  /** Told after each round of forget hooks this process ran (the erasure watch skips those jobs). */
  forgotten?: (job: ErasureJob, final: boolean) => void
  beforeStep?: (job: ErasureJob, step: Step) => void
}): ErasureService {
  const log = deps.log.child({ component: 'erasure' })
  const running = new Set<Promise<unknown>>()
  // Shared by every API process when there are several (core/cluster-locks.ts).
  const locks = deps.lock ?? createKeyedLock()

  async function save(job: ErasureJob) {
    const db = deps.db.forTenant(job.tenantId)
    await db.insert('erasure_jobs', [
      {
        job_id: job.jobId,
        status: job.status,
        digests: job.digests,
        customers: job.customers,
        subject: JSON.stringify(job.subject),
        reason: job.reason,
        requested_by: job.requestedBy,
        key_id: job.keyId,
        steps: JSON.stringify(job.steps),
        proof: job.proof ? JSON.stringify(job.proof) : '',
        error: job.error,
        created_at: job.createdAt,
        updated_at: job.updatedAt,
      },
    ])
    // Older versions of a finished job's row still hold the identifiers in clear.
    if (job.status !== 'running') {
      await db.command(`DELETE FROM erasure_jobs WHERE tenant_id = {tenant:UInt16} AND job_id = {id:UUID} AND updated_at < {at:DateTime64(3, 'UTC')}`, { id: job.jobId, at: job.updatedAt })
    }
  }

  const runner = createErasureRunner({
    db: deps.db,
    log,
    save,
    forget: deps.forget,
    ...(deps.forgotten ? { forgotten: deps.forgotten } : {}),
    ...(deps.beforeStep ? { beforeStep: deps.beforeStep } : {}),
  })

  function toJob(tenantId: number, r: z.infer<typeof jobRow>): ErasureJob {
    return {
      tenantId,
      jobId: r.job_id,
      status: r.status,
      digests: r.digests,
      customers: r.customers,
      subject: JSON.parse(r.subject) as Subject,
      reason: r.reason,
      requestedBy: r.requested_by,
      keyId: r.key_id,
      steps: JSON.parse(r.steps) as Step[],
      proof: r.proof ? (JSON.parse(r.proof) as ErasureJob['proof']) : null,
      error: r.error,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    }
  }

  async function jobs(db: TenantDb, where: string, params: Record<string, unknown>) {
    // The newest version of each job: what FINAL would keep, without waiting for a merge.
    const rows = await db.query(
      `SELECT ${JOB_COLUMNS} FROM erasure_jobs WHERE tenant_id = {tenant:UInt16} ${where} ORDER BY updated_at DESC LIMIT 1 BY job_id`,
      params,
      jobRow,
    )
    return rows.map((r) => toJob(db.tenantId, r))
  }

  function launch(job: ErasureJob): Promise<ErasureJob> {
    const p = runner.run(job)
    const tracked = p.catch(() => undefined).finally(() => running.delete(tracked))
    running.add(tracked)
    return p
  }

  /** The customers' keys and every identifier linked to them; a number never seen is a 404. */
  async function subjectOf(db: TenantDb, customers: readonly string[], digest: (no: string) => string): Promise<Subject> {
    const found = await db.query(
      `SELECT id_value AS no, customer_key AS k FROM identities FINAL
       WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value IN {nos:Array(String)}
       UNION ALL
       SELECT customer_no AS no, customer_key AS k FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND customer_no IN {nos:Array(String)}`,
      { nos: customers },
      z.object({ no: z.string(), k: z.coerce.number() }),
    )
    const known = new Set(found.map((r) => r.no))
    const missing = customers.filter((c) => !known.has(c))
    if (missing.length) {
      throw new AppError('NOT_FOUND', `No customer ${missing[0]} in this tenant.`, { issues: missing.slice(0, 20).map((m) => ({ field: 'id', message: `unknown customer ${m}` })) })
    }
    const keys = await withMergedKeys(db, new Set(found.map((r) => r.k).filter((k) => k > 0)))
    // Every identifier linked to those keys now. A merged key's own customer number belongs to the
    // same person: it is erased, tombstoned and digested in the audit trail like the numbers asked
    // for. An app id is the customer's only while it is linked to them: one that appears on their
    // events but is linked to someone else now (a phone passed on, a shared device) is that
    // person's, as every reader resolves it, and stays theirs.
    const ids = await db.query(
      `SELECT toString(id_kind) AS kind, id_value AS v FROM identities FINAL
       WHERE tenant_id = {tenant:UInt16} AND customer_key IN (SELECT arrayJoin({ks:Array(UInt32)}))`,
      { ks: [...keys] },
      z.object({ kind: z.string(), v: z.string() }),
    )
    const customerNos = [...new Set([...customers, ...ids.filter((i) => i.kind === 'customer_no').map((i) => i.v)])]
    const anonymousIds = [...new Set(ids.filter((i) => i.kind !== 'device_id' && i.kind !== 'customer_no').map((i) => i.v))]
    const deviceIds = [...new Set(ids.filter((i) => i.kind === 'device_id').map((i) => i.v))]
    return { customerNos, keys: [...keys].sort((a, b) => a - b), anonymousIds, deviceIds, digests: customerNos.map(digest) }
  }

  /**
   * The numbers of the customers' loans, which the job deletes: tombstoned (digests) so that the
   * bank's next full schedule file, still listing them, counts their rows as erased instead of
   * refusing them as schedules of an unknown loan.
   */
  async function loansOf(db: TenantDb, keys: readonly number[]): Promise<{ kind: 'loan_no'; value: string }[]> {
    if (!keys.length) return []
    const rows = await db.query(
      `SELECT DISTINCT loan_no FROM loans WHERE tenant_id = {tenant:UInt16} AND customer_key IN {ks:Array(UInt32)}`,
      { ks: [...keys] },
      z.object({ loan_no: z.string() }),
    )
    return rows.map((r) => ({ kind: 'loan_no' as const, value: r.loan_no }))
  }

  /** One start at a time per tenant: the running-job check and the job's write are one step. */
  const serial = <T>(tenantId: number, fn: () => Promise<T>): Promise<T> => locks.run(tenantId, fn)

  return {
    async start(tenantId, input, by, opts = {}) {
      const reason = reasonSchema.safeParse(input.reason)
      if (!reason.success) throw new AppError('VALIDATION_FAILED', 'reason: an erasure needs a reason.', { issues: [{ field: 'reason', message: reason.error.issues[0]?.message ?? 'invalid' }] })
      const customers = [...new Set(input.customers)]
      if (!customers.length || customers.some((c) => !c || c.length > 64)) {
        throw new AppError('VALIDATION_FAILED', 'customers: one or more customer numbers of at most 64 characters.', { issues: [{ field: 'customers', message: 'invalid' }] })
      }
      const db = deps.db.forTenant(tenantId)
      const digest = (no: string) => deps.tombstones.digest(tenantId, 'customer_no', no)
      const job = await serial(tenantId, async () => {
        const digests = customers.map(digest)
        const [busy] = await jobs(db, '', {}).then((all) => all.filter((j) => j.status === 'running' && j.digests.some((d) => digests.includes(d))))
        if (busy) {
          throw new AppError('ERASURE_RUNNING', `An erasure of this customer is already running: job ${busy.jobId}.`, { issues: [{ field: 'id', message: 'erasure running', jobId: busy.jobId }] })
        }
        const subject = await subjectOf(db, customers, digest)
        const now = chDateTime(Date.now())
        const j: ErasureJob = {
          tenantId,
          jobId: crypto.randomUUID(),
          status: 'running',
          digests,
          customers: customers.length,
          subject,
          reason: reason.data,
          requestedBy: by.holder,
          keyId: by.keyId,
          steps: newSteps(),
          proof: null,
          error: '',
          createdAt: now,
          updatedAt: now,
        }
        await save(j)
        // Before any row goes: from here on, nothing new about them is stored.
        await deps.tombstones.add(tenantId, j.jobId, [...erasedIds(subject), ...(await loansOf(db, subject.keys))], by.holder)
        runner.forgetAll(j)
        return j
      })
      log.info({ tenant: tenantId, job: job.jobId, customers: job.customers, keys: job.subject.keys.length }, 'erasure started')
      const p = launch(job)
      if (opts.wait) return p
      p.catch(() => undefined)
      return job
    },

    async get(tenantId, jobId) {
      if (!z.uuid().safeParse(jobId).success) throw new AppError('VALIDATION_FAILED', 'id: an erasure job id is a UUID.', { issues: [{ field: 'id', message: 'not a UUID' }] })
      const [job] = await jobs(deps.db.forTenant(tenantId), 'AND job_id = {id:UUID}', { id: jobId })
      if (!job) throw new AppError('NOT_FOUND', `No erasure job ${jobId}.`)
      return job
    },

    async resume() {
      let n = 0
      for (const t of await deps.tenants.list()) {
        const left = (await jobs(deps.db.forTenant(t.id), '', {})).filter((j) => j.status === 'running')
        for (const job of left) {
          log.info({ tenant: t.id, job: job.jobId }, 'erasure resumed')
          n++
          await launch(job).catch(() => undefined)
        }
      }
      return n
    },

    async idle() {
      while (running.size) await Promise.all([...running])
    },
  }
}
