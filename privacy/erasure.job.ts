import { z } from 'zod'
import type { Db, TenantDb, TenantTable } from '../core/db.js'
import { DEDUP_DIGEST_SQL } from '../core/dedup-digest.js'
import type { Logger } from '../core/log.js'
import { chDateTime } from '../core/time.js'
import { OUTSIDE, PLACES, placeOrder, type Place } from './erasure.places.js'

/**
 * Runs one erasure job, place by place (erasure.places.ts). Each step is idempotent (a delete by
 * the customer's keys and ids, a bitmap state rewritten without the keys) and its row counts
 * before and after are persisted with the job, so a job interrupted anywhere resumes at its first
 * step not done. At the end every place is read again for the customer's keys and numbers; what
 * a concurrent writer slipped in meanwhile is erased once more, and the re-read is the proof.
 */

export interface Subject {
  customerNos: string[]
  keys: number[]
  /** Linked app (anonymous) ids and device ids. */
  anonymousIds: string[]
  deviceIds: string[]
  /** Keyed digests of the customer numbers, in the order of customerNos (the audit trail gets them). */
  digests: string[]
}

export interface Step {
  table: TenantTable
  label: string
  before: number | null
  after: number | null
  done: boolean
}

export interface ErasureJob {
  tenantId: number
  jobId: string
  status: 'running' | 'done' | 'failed'
  digests: string[]
  customers: number
  subject: Subject
  reason: string
  requestedBy: string
  keyId: string
  steps: Step[]
  proof: Proof | null
  error: string
  createdAt: string
  updatedAt: string
}

export interface Proof {
  checkedAt: string
  verified: boolean
  places: { table: string; label: string; before: number; after: number; remaining: number }[]
  notHeld: { table: string; why: string }[]
  outside: { place: string; note: string }[]
}

export interface ErasedId {
  kind: 'customer_no' | 'anonymous_id' | 'device_id'
  value: string
}

/** Called with the erased keys and identifiers as soon as the job starts and again when it ends (in-memory structures); in other processes by the erasure watch. */
export type ForgetHook = (tenantId: number, keys: ReadonlySet<number>, ids: readonly ErasedId[]) => void

/**
 * Calls every hook with the job's keys and identifiers; a hook that throws is logged and the
 * others still run (the job, or the watch in another process, goes on either way).
 */
export function callForget(hooks: readonly ForgetHook[], log: Logger, tenantId: number, jobId: string, subject: Subject): void {
  const keys = new Set(subject.keys)
  const ids = erasedIds(subject)
  for (const f of hooks) {
    try {
      f(tenantId, keys, ids)
    } catch (err) {
      log.warn({ err, tenant: tenantId, job: jobId }, 'an in-memory structure could not drop erased customers')
    }
  }
}

export function erasedIds(s: Subject): ErasedId[] {
  return [
    ...s.customerNos.map((value) => ({ kind: 'customer_no' as const, value })),
    ...s.anonymousIds.map((value) => ({ kind: 'anonymous_id' as const, value })),
    ...s.deviceIds.map((value) => ({ kind: 'device_id' as const, value })),
  ]
}

const countRow = z.object({ n: z.coerce.number() })
const detailRow = z.object({ detail: z.string() })

/**
 * The customer's rows in a place, as a WHERE fragment over bound parameters only: `ks` keys,
 * `nos` customer numbers, `ids` every identifier (numbers, app and device ids), `anons` app ids.
 * Table and column names come from code (PLACES), never from input.
 */
/** A column holding one of the customer's keys (bound as `ks`). */
const KEY_IN = 'IN (SELECT arrayJoin({ks:Array(UInt32)}))'

export function predicate(table: TenantTable, place: Place): string {
  const keys = KEY_IN
  switch (place.by) {
    case 'key':
      if (table === 'identities') return `(customer_key ${keys} OR id_value IN {ids:Array(String)})`
      if (table === 'customers' || table === 'push_targets' || table === 'consent_history') return `(customer_key ${keys} OR customer_no IN {nos:Array(String)})`
      return `customer_key ${keys}`
    case 'keyAndRef':
      return `(customer_key ${keys} OR ${place.ref} ${keys})`
    case 'keyPair': {
      const [a, b] = place.columns
      return table === 'identity_changes' ? `(${a} ${keys} OR ${b} ${keys} OR id_value IN {ids:Array(String)})` : `(${a} ${keys} OR ${b} ${keys})`
    }
    case 'events':
      // By app id only the events stored without a key: one stored under another customer's key
      // (who used the device before or after) is theirs.
      return `(customer_key ${keys} OR user_id IN {nos:Array(String)} OR (customer_key = 0 AND anonymous_id IN {anons:Array(String)}))`
    case 'dedup':
      return `message_id IN (SELECT message_id FROM events WHERE tenant_id = {tenant:UInt16} AND ${predicate('events', PLACES.events)})`
    case 'dedupKeys':
      // The key index finds rows by key only: by message id it read all of it (62 s at 26M ids).
      return `digest IN (SELECT ${DEDUP_DIGEST_SQL} FROM events WHERE tenant_id = {tenant:UInt16} AND ${predicate('events', PLACES.events)})`
    case 'bitmap':
      return 'bitmapHasAny(keys, bitmapBuild({ks:Array(UInt32)}))'
    case 'digest':
      // An entry may also name a customer in its detail (the number a merge went into): as a JSON
      // string, quoted, so a longer number holding this one is not taken for it.
      return "(customer_no IN {nos:Array(String)} OR (object_kind = 'customer' AND object_id IN {nos:Array(String)}) OR arrayExists(q -> position(detail, q) > 0, {qnos:Array(String)}))"
    default:
      throw new Error(`${table} holds no customer rows`)
  }
}

function params(s: Subject) {
  return { ks: s.keys, nos: s.customerNos, qnos: s.customerNos.map((n) => JSON.stringify(n)), anons: s.anonymousIds, ids: [...s.customerNos, ...s.anonymousIds, ...s.deviceIds] }
}

/**
 * An audit entry's detail (JSON written by the audit service) with every string value that is one
 * of the numbers (and every key that is one) replaced by its digest label, at any depth. Rewritten here, not in SQL, so the
 * JSON stays exactly what the audit service writes (its escaping, its key order).
 */
export function digestDetail(detail: string, labels: ReadonlyMap<string, string>): string {
  let parsed: unknown
  try {
    parsed = JSON.parse(detail)
  } catch {
    return detail
  }
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return labels.get(v) ?? v
    if (Array.isArray(v)) return v.map(walk)
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [labels.get(k) ?? k, walk(x)]))
    return v
  }
  return JSON.stringify(walk(parsed))
}

export async function countIn(db: TenantDb, table: TenantTable, s: Subject): Promise<number> {
  const [r] = await db.query(`SELECT count() AS n FROM ${table} WHERE tenant_id = {tenant:UInt16} AND ${predicate(table, PLACES[table])}`, params(s), countRow)
  return r?.n ?? 0
}

async function eraseIn(db: TenantDb, table: TenantTable, s: Subject): Promise<void> {
  const place = PLACES[table]
  const where = `tenant_id = {tenant:UInt16} AND ${predicate(table, place)}`
  if (place.by === 'bitmap') {
    const size = table === 'tag_bitmaps' ? 'cardinality' : 'size'
    const rest = 'bitmapAndnot(keys, bitmapBuild({ks:Array(UInt32)}))'
    await db.command(`ALTER TABLE ${table} UPDATE keys = ${rest}, ${size} = bitmapCardinality(${rest}) WHERE ${where} SETTINGS mutations_sync = 2`, params(s))
  } else if (place.by === 'digest') {
    await db.command(
      `ALTER TABLE ${table} UPDATE customer_no = transform(customer_no, {nos:Array(String)}, {ds:Array(String)}, customer_no),
         object_id = if(object_kind = 'customer', transform(object_id, {nos:Array(String)}, {ds:Array(String)}, object_id), object_id)
       WHERE ${where} SETTINGS mutations_sync = 2`,
      { ...params(s), ds: s.digests.map((d) => `erased:${d}`) },
    )
    // Details naming a number: few entries (a merge's), rewritten value by value.
    const named = await db.query(
      `SELECT DISTINCT detail FROM ${table} WHERE tenant_id = {tenant:UInt16} AND arrayExists(q -> position(detail, q) > 0, {qnos:Array(String)})`,
      params(s),
      detailRow,
    )
    const labels = new Map(s.customerNos.map((n, i) => [n, `erased:${s.digests[i]!}`]))
    const olds = named.map((r) => r.detail)
    const news = olds.map((d) => digestDetail(d, labels))
    if (olds.length) {
      await db.command(`ALTER TABLE ${table} UPDATE detail = transform(detail, {olds:Array(String)}, {news:Array(String)}, detail) WHERE tenant_id = {tenant:UInt16} AND detail IN {olds:Array(String)} SETTINGS mutations_sync = 2`, {
        olds,
        news,
      })
    }
  } else if (place.by === 'dedupKeys') {
    // A DELETE reads every key of the index unless its keys are given as values (60 s against
    // 3 ms at 26M ids): read them first, then delete them by name.
    const found = await db.query(`SELECT toString(digest) AS digest FROM ${table} WHERE ${where}`, params(s), digestRow)
    for (let i = 0; i < found.length; i += 10_000) {
      await db.command(`DELETE FROM ${table} WHERE tenant_id = {tenant:UInt16} AND digest IN {digests:Array(UInt64)}`, { digests: found.slice(i, i + 10_000).map((r) => BigInt(r.digest)) })
    }
  } else if (place.by === 'keyAndRef') {
    await db.command(`DELETE FROM ${table} WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEY_IN}`, params(s))
    // A mutation only where another customer's row names the key (most customers pay no one's bills).
    const named = `tenant_id = {tenant:UInt16} AND ${place.ref} ${KEY_IN}`
    const [r] = await db.query(`SELECT count() AS n FROM ${table} WHERE ${named}`, params(s), countRow)
    if (r?.n) await db.command(`ALTER TABLE ${table} UPDATE ${place.ref} = 0 WHERE ${named} SETTINGS mutations_sync = 2`, params(s))
  } else {
    await db.command(`DELETE FROM ${table} WHERE ${where}`, params(s))
  }
  await stampStock(db, table)
}

/**
 * A deletion feeds no materialized view, so the tag runs' feed of stock table changes
 * (stock_changes, one row per table that ever received rows) would not see an erasure, and a rule
 * over other customers' rows (what a payer paid for the erased customer) would keep its value
 * until a full run: the job stamps the stock tables it changed, as an import does.
 */
async function stampStock(db: TenantDb, table: TenantTable): Promise<void> {
  await db.command(
    `INSERT INTO stock_changes (tenant_id, source, changed_at)
     SELECT {tenant:UInt16}, source, now64(3) FROM stock_changes WHERE tenant_id = {tenant:UInt16} AND source = {table:String} GROUP BY source`,
    { table },
  )
}

const digestRow = z.object({ digest: z.string() })

export function newSteps(): Step[] {
  return placeOrder().map((table) => {
    const p = PLACES[table]
    return { table, label: 'label' in p ? p.label : table, before: null, after: null, done: false }
  })
}

export function createErasureRunner(deps: {
  db: Db
  log: Logger
  save(job: ErasureJob): Promise<void>
  forget: readonly ForgetHook[]
  /** Told after each round of hooks (`final`: the one after the proof), so the watch (erasure.watch.ts) skips the job here. */
  forgotten?: (job: ErasureJob, final: boolean) => void
  /** Tests: called before each step (a throw there stands for a crash at that point). */
  beforeStep?: (job: ErasureJob, step: Step) => void
  /** How long the last check waits for the tenant's pipeline runs in progress (default 15 minutes). */
  runWaitMs?: number
  /** How often it looks (default 500 ms). */
  runPollMs?: number
}) {
  const runWaitMs = deps.runWaitMs ?? 15 * 60_000
  const runPollMs = deps.runPollMs ?? 500

  /**
   * Waits until no pipeline run of the tenant holds its lease (pipeline_locks: a tag run, a
   * segment or model build, in any process). A run in progress may have read the customer before
   * the steps and write after them; once it has ended, the last check finds what it wrote. A
   * lease of a crashed process expires on its own; past `runWaitMs` the check goes on, and says so.
   */
  async function waitForRuns(db: TenantDb, job: ErasureJob): Promise<void> {
    const t0 = Date.now()
    for (;;) {
      const [r] = await db.query(`SELECT count() AS n FROM pipeline_locks WHERE tenant_id = {tenant:UInt16} AND expires_at > now64(3)`, {}, countRow)
      if (!r?.n) return
      if (Date.now() - t0 >= runWaitMs) {
        deps.log.warn({ tenant: job.tenantId, job: job.jobId, runs: r.n, waitedMs: Date.now() - t0 }, 'pipeline runs still in progress; the erasure checks without waiting longer')
        return
      }
      await new Promise((resolve) => setTimeout(resolve, runPollMs))
    }
  }

  function forgetAll(job: ErasureJob, final = false) {
    callForget(deps.forget, deps.log, job.tenantId, job.jobId, job.subject)
    deps.forgotten?.(job, final)
  }

  async function verify(db: TenantDb, job: ErasureJob) {
    const out: { step: Step; remaining: number }[] = []
    for (const step of job.steps) out.push({ step, remaining: await countIn(db, step.table, job.subject) })
    return out
  }

  return {
    forgetAll,
    /** Runs (or resumes) a job to its end; the job is saved after every step. */
    async run(job: ErasureJob): Promise<ErasureJob> {
      const db = deps.db.forTenant(job.tenantId)
      forgetAll(job)
      const touch = () => {
        // Strictly increasing: the newest version of the row is the one with the latest time.
        job.updatedAt = chDateTime(Math.max(Date.now(), Date.parse(`${job.updatedAt.replace(' ', 'T')}Z`) + 1))
        return deps.save(job)
      }
      try {
        for (const step of job.steps) {
          if (step.done) continue
          deps.beforeStep?.(job, step)
          if (step.before === null) {
            step.before = await countIn(db, step.table, job.subject)
            await touch()
          }
          if (step.before > 0) await eraseIn(db, step.table, job.subject)
          step.after = await countIn(db, step.table, job.subject)
          step.done = true
          await touch()
        }
        // A write racing the job (an event in a flush, an exposure, a tag run) is erased again.
        await waitForRuns(db, job)
        let check = await verify(db, job)
        const left = check.filter((c) => c.remaining > 0)
        if (left.length) {
          deps.log.warn({ tenant: job.tenantId, job: job.jobId, places: left.map((c) => c.step.table) }, 'rows written during the erasure; erasing them again')
          for (const c of left) await eraseIn(db, c.step.table, job.subject)
          check = await verify(db, job)
        }
        const notHeld = (Object.keys(PLACES) as TenantTable[]).flatMap((t) => {
          const p = PLACES[t]
          return p.by === 'none' || p.by === 'kept' ? [{ table: t, why: p.why }] : []
        })
        job.proof = {
          checkedAt: new Date().toISOString(),
          verified: check.every((c) => c.remaining === 0),
          places: check.map((c) => ({ table: c.step.table, label: c.step.label, before: c.step.before ?? 0, after: c.step.after ?? 0, remaining: c.remaining })),
          notHeld,
          outside: OUTSIDE.map((o) => ({ ...o })),
        }
        forgetAll(job, true)
        job.status = job.proof.verified ? 'done' : 'failed'
        if (!job.proof.verified) job.error = 'rows were still found after a second pass; run the erasure again'
        // The in-clear identifiers were needed to find rows; the record keeps keys and digests.
        if (job.status === 'done') job.subject = { customerNos: [], keys: job.subject.keys, anonymousIds: [], deviceIds: [], digests: job.subject.digests }
        await touch()
        return job
      } catch (err) {
        deps.log.error({ err, tenant: job.tenantId, job: job.jobId }, 'erasure step failed; the job resumes at its next start')
        throw err
      }
    },
  }
}

export type ErasureRunner = ReturnType<typeof createErasureRunner>
