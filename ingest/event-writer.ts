import type { Db } from '../core/db.js'
import { dedupKey } from '../core/dedup-digest.js'
import { AppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { createDedupIndex } from './dedup-index.js'
import { EVENT_COLUMNS, fieldOf, toRow } from './event-row.js'
import { nextInsert, type FlushPolicy } from './flush-policy.js'
import { createIdentityStage, type DropCheck, type Owner } from './event-writer.identity.js'
import type { IdentityService } from './identity.service.js'
import type { PendingEvent } from './normalize.js'
import { insertIsolating } from './row-isolation.js'
import { stageByRequest } from './stage-isolation.js'

/**
 * Coalesces concurrent ingest requests into large inserts and answers each request only after
 * the insert holding its events was acknowledged. One flush runs at a time (the engine
 * serializes queries anyway), so deduplication against earlier flushes is exact. Memory is
 * bounded: past `maxQueueEvents` waiting events, new requests get 503 with Retry-After.
 */

export interface WriteResult {
  stored: number
  duplicates: number
  /**
   * Events the storage engine refused on their own (found by splitting a failed shared insert):
   * their position in the submitted list, the API field at fault, and why. Every other event of
   * the flush was stored.
   */
  refused?: { position: number; field: string; message: string }[]
  /** Events of erased customers (tombstoned customer numbers or app ids): dropped, neither stored nor refused. */
  dropped?: number
}

/** The erasure check the composition root injects, applied in the identity stage (event-writer.identity.ts). */
export type { DropCheck }

export interface SubmitOptions {
  /**
   * Also look for the events in the events table, not only in the dedup index. The index is
   * written by a materialized view after the events part is committed, so a process killed in
   * between leaves events stored but unindexed; a source that may deliver those again (a Kafka
   * partition's first messages after an assignment) asks for this slower check.
   */
  verifyStored?: boolean
}

export interface EventWriter {
  submit(tenantId: number, events: PendingEvent[], actor: string, opts?: SubmitOptions): Promise<WriteResult>
  /** Events waiting for a flush. */
  readonly queued: number
  /**
   * Says a request's events are on their way (being read, parsed, normalized): while any are,
   * the writer waits for them rather than start a small insert (flush-policy.ts). Call the
   * returned function once they were submitted, or will not be; calling it again does nothing.
   */
  announce(): () => void
  /** Flushes what is queued and stops accepting; waits at most `deadlineMs`. */
  close(deadlineMs?: number): Promise<void>
  /**
   * Calls `listener` with each tenant's events once their insert succeeded (event triggers act
   * on stored events only). A listener's failure is logged, never the writer's.
   */
  onStored(listener: StoredListener): void
}

export interface StoredEvent {
  event: string
  userId: string
  customerKey: number
  timestamp: number
}
export type StoredListener = (tenantId: number, events: StoredEvent[]) => Promise<unknown> | void

const unavailable = (cause: unknown) => new AppError('STORAGE_UNAVAILABLE', 'The events could not be stored; retry.', { cause, headers: { 'retry-after': '1' } })
/** The identity stage failed on a request's events while the engine answered: not the engine's state, so not a 503. */
const failedOn = (cause: unknown) => new AppError('INTERNAL', 'The events could not be stored: the server failed on them while the storage engine was answering.', { cause })

interface Submission {
  tenantId: number
  events: PendingEvent[]
  actor: string
  verifyStored: boolean
  resolve(r: WriteResult): void
  reject(e: unknown): void
}

export interface EventWriterOptions {
  /** When inserts start: flush-policy.ts (flushGapMs is its gapMs, default 0). */
  flushRows: number
  flushMs: number
  flushGapMs?: number
  maxQueueEvents: number
  /** The share (0..1] of maxQueueEvents one tenant may hold, so one tenant's flood cannot fill the queue for all. */
  tenantQueueShare?: number
}

export function createEventWriter(deps: { db: Db; identities: IdentityService; log: Logger; metrics: Metrics; options: EventWriterOptions; dropped?: DropCheck | undefined }): EventWriter {
  const { db, identities, log, metrics, options } = deps
  const dedup = createDedupIndex(db)
  const outcome = metrics.counter('qianmian_ingest_events_total', 'Events by outcome', ['outcome'])
  const flushRows = metrics.histogram('qianmian_ingest_flush_rows', 'Events per insert', [], [1, 10, 100, 1000, 5000, 10_000, 20_000, 50_000, 100_000])
  const flushSeconds = metrics.histogram('qianmian_ingest_flush_seconds', 'Flush duration (dedup, identities, insert)', [], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])
  const phaseSeconds = metrics.counter('qianmian_ingest_flush_phase_seconds_total', 'Time spent in each phase of the flushes', ['phase'])
  const queueGauge = metrics.gauge('qianmian_ingest_queue_events', 'Events waiting for a flush')
  const incomingGauge = metrics.gauge('qianmian_ingest_incoming_requests', 'Requests announced to the writer (being read, parsed, normalized) and not yet submitted: the next insert waits for them')
  const flushStarts = metrics.counter(
    'qianmian_ingest_flush_starts_total',
    'Inserts started, by what started them (ingest/flush-policy.ts): rows (flushRows waiting), batch (a tenth of flushRows, the gap passed), idle (nothing more on its way, the gap passed), waited (an event waited flushMs), closing',
    ['reason'],
  )
  const isolated = metrics.counter('qianmian_ingest_isolated_inserts_total', 'Failed shared inserts split to isolate the rows the engine refused')
  const overShare = metrics.counter('qianmian_ingest_tenant_queue_full_total', 'Requests refused because their tenant held its share of the queue', ['tenant'])
  const tenantCap = Math.max(1, Math.floor(options.maxQueueEvents * (options.tenantQueueShare ?? 1)))
  const queuedByTenant = new Map<number, number>()
  const visible = metrics.histogram(
    'qianmian_ingest_visible_seconds',
    'From receipt at the edge to the row written in ClickHouse (includes the Kafka hop when there is one)',
    [],
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  )

  const listeners: StoredListener[] = []
  let pending: Submission[] = []
  let queued = 0
  let timer: NodeJS.Timeout | undefined
  let timerAt = Infinity
  let flushing: Promise<void> | undefined
  let closed = false
  let recovered: Promise<void> | undefined
  /** When the last insert started, and when the oldest waiting submission came (performance.now()). */
  let lastStart = -Infinity
  let oldestAt = 0
  /** Requests announced and not yet submitted. */
  let incoming = 0
  const policy: FlushPolicy = { flushRows: options.flushRows, flushMs: options.flushMs, gapMs: options.flushGapMs ?? 0 }

  /** Starts the next insert when flush-policy.ts says so, or looks again when it says. */
  function schedule() {
    if (flushing || !pending.length) return
    const next = nextInsert(policy, { closed, waiting: queued, oldestAt, lastStart, incoming }, performance.now())
    if ('at' in next) {
      arm(next.at)
      return
    }
    disarm()
    flushStarts.inc({ reason: next.start })
    flushing = runFlush()
  }

  function arm(at: number) {
    if (timer && timerAt <= at) return
    disarm()
    timerAt = at
    timer = setTimeout(
      () => {
        timer = undefined
        timerAt = Infinity
        schedule()
      },
      Math.max(0, at - performance.now()),
    )
  }

  function disarm() {
    if (timer) clearTimeout(timer)
    timer = undefined
    timerAt = Infinity
  }

  async function runFlush() {
    try {
      const batch = pending
      pending = []
      lastStart = performance.now()
      const n = batch.reduce((a, s) => a + s.events.length, 0)
      try {
        const results = await flush(batch)
        batch.forEach((s, i) => {
          const r = results[i]!
          if (r instanceof Error) s.reject(r)
          else s.resolve(r)
        })
      } catch (e) {
        log.error({ err: e, events: n }, 'ingest flush failed; requests answered 503')
        const err = unavailable(e)
        for (const s of batch) s.reject(err)
      } finally {
        queued -= n
        for (const s of batch) {
          const left = (queuedByTenant.get(s.tenantId) ?? 0) - s.events.length
          if (left > 0) queuedByTenant.set(s.tenantId, left)
          else queuedByTenant.delete(s.tenantId)
        }
        queueGauge.set(queued)
        flushRows.observe(n)
        flushSeconds.observe((performance.now() - lastStart) / 1000)
      }
    } finally {
      flushing = undefined
      schedule()
    }
  }

  async function flush(batch: Submission[]): Promise<(WriteResult | Error)[]> {
    const results: (WriteResult | Error)[] = batch.map(() => ({ stored: 0, duplicates: 0 }))
    const ok = (i: number) => results[i] as WriteResult
    // 1. Duplicates inside this flush (a retry racing its original), then against storage.
    const seen = new Set<string>()
    const keys: string[] = []
    for (const s of batch) for (const e of s.events) keys.push(dedupKey(s.tenantId, e.messageId))
    let mark = performance.now()
    const phase = (name: string) => {
      const now = performance.now()
      phaseSeconds.inc({ phase: name }, (now - mark) / 1000)
      mark = now
    }
    await (recovered ??= dedup.recover().catch((e: unknown) => {
      recovered = undefined
      throw e
    }))
    const stored = await dedup.stored(keys)
    for (const s of batch) if (s.verifyStored) for (const k of await dedup.storedEvents(s.tenantId, s.events)) stored.add(k)
    phase('dedup')
    const byTenant = new Map<number, Owner[]>()
    let at = 0
    batch.forEach((s, i) => {
      s.events.forEach((e, position) => {
        const k = keys[at++]!
        if (seen.has(k) || stored.has(k)) {
          ok(i).duplicates++
          return
        }
        seen.add(k)
        let list = byTenant.get(s.tenantId)
        if (!list) byTenant.set(s.tenantId, (list = []))
        list.push({ sub: i, position, tenantId: s.tenantId, key: 0, e })
      })
    })
    // 2. Identities and traits, tenant by tenant (event-writer.identity.ts): a failure here stays with the tenant's requests
    // at fault (stage-isolation.ts), and the others' events go on to the insert.
    const rows: unknown[][] = []
    const owners: Owner[] = []
    for (const [tenantId, all] of byTenant) {
      const { done, failed } = await stageByRequest(all, (list) => identify(tenantId, list, batch[list[0]!.sub]!.actor), engineAnswers)
      for (const f of failed) {
        log.error({ err: f.cause, tenant: tenantId, transient: f.transient }, f.transient ? "ingest identities failed; this tenant's requests answered 503" : 'ingest identities failed on a request while the engine answered; that request refused')
        results[f.sub] = f.transient ? unavailable(f.cause) : failedOn(f.cause)
      }
      for (const staged of done) {
        for (const x of staged.erased) ok(x.sub).dropped = (ok(x.sub).dropped ?? 0) + 1
        if (staged.erased.length) outcome.inc({ outcome: 'erased' }, staged.erased.length)
        for (const { x, field, message } of staged.refused) (ok(x.sub).refused ??= []).push({ position: x.position, field, message })
        if (staged.refused.length) {
          outcome.inc({ outcome: 'refused' }, staged.refused.length)
          log.warn({ tenant: tenantId, refused: staged.refused.length, first: staged.refused[0]!.message }, 'the engine refused trait values; their events refused, the others stored')
        }
        for (const x of staged.keep) {
          rows.push(toRow(tenantId, x.key, x.e))
          owners.push(x)
        }
      }
    }
    phase('identity')
    // 3. One insert; if the engine refuses values in it, split it so only their rows fail.
    const { refused, inserts } = await insertIsolating(rows.length, {
      insert: (idx) => db.system.insertTsv('events', EVENT_COLUMNS, idx.length === rows.length ? rows : idx.map((i) => rows[i]!)),
      alreadyStored: async (idx) => {
        const have = await dedup.stored(idx.map((i) => dedupKey(owners[i]!.tenantId, owners[i]!.e.messageId)))
        return new Set(idx.filter((i) => have.has(dedupKey(owners[i]!.tenantId, owners[i]!.e.messageId))))
      },
      probe: async () => {
        await db.system.query('SELECT 1')
      },
    })
    phase('insert')
    if (inserts > 1) isolated.inc()
    const now = Date.now()
    const storedByTenant = new Map<number, StoredEvent[]>()
    let storedRows = 0
    owners.forEach((x, i) => {
      const r = results[x.sub]
      if (r instanceof Error) return
      const no = refused.get(i)
      if (no) {
        ;(r!.refused ??= []).push({ position: x.position, field: fieldOf(no.column, x.e), message: no.message })
        return
      }
      r!.stored++
      storedRows++
      visible.observe((now - x.e.receivedAt) / 1000)
      if (x.e.type !== 'track') return
      let done = storedByTenant.get(x.tenantId)
      if (!done) storedByTenant.set(x.tenantId, (done = []))
      done.push({ event: x.e.event, userId: x.e.userId, customerKey: x.key, timestamp: x.e.timestamp })
    })
    for (const [tenantId, evs] of storedByTenant) {
      for (const l of listeners) {
        void Promise.resolve()
          .then(() => l(tenantId, evs))
          .catch((err: unknown) => log.warn({ tenant: tenantId, err }, 'a stored-events listener failed'))
      }
    }
    if (refused.size) log.warn({ refused: refused.size, first: [...refused.values()][0]!.message }, 'the engine refused rows of a shared insert; the other rows were stored')
    let dup = 0
    for (const r of results) if (!(r instanceof Error)) dup += r.duplicates
    outcome.inc({ outcome: 'stored' }, storedRows)
    if (dup) outcome.inc({ outcome: 'duplicate' }, dup)
    if (refused.size) outcome.inc({ outcome: 'refused' }, refused.size)
    return results
  }

  const probe = async () => {
    await db.system.query('SELECT 1')
  }
  const engineAnswers = () => probe().then(
    () => true,
    () => false,
  )
  const { identify } = createIdentityStage({ db, identities, log, dropped: deps.dropped, probe })

  return {
    onStored(listener) {
      listeners.push(listener)
    },
    submit(tenantId, events, actor, opts = {}) {
      if (closed) return Promise.reject(new AppError('SHUTTING_DOWN', undefined, { headers: { 'retry-after': '5' } }))
      if (!events.length) return Promise.resolve({ stored: 0, duplicates: 0 })
      // A submission larger than the whole queue is taken when nothing waits: refused, it would be
      // refused again on every retry (a Kafka worker's tenant group is redelivered as it was).
      if (queued > 0 && queued + events.length > options.maxQueueEvents) {
        outcome.inc({ outcome: 'overloaded' }, events.length)
        return Promise.reject(new AppError('OVERLOADED', 'The ingest queue is full; retry shortly.', { headers: { 'retry-after': '1' } }))
      }
      const mine = queuedByTenant.get(tenantId) ?? 0
      if (mine > 0 && mine + events.length > tenantCap) {
        // This tenant alone holds its share of the shared queue: it waits, the others get in.
        outcome.inc({ outcome: 'tenant_queue_full' }, events.length)
        overShare.inc({ tenant: String(tenantId) })
        return Promise.reject(new AppError('RATE_LIMITED', "This tenant's events already fill its share of the ingest queue; retry shortly.", { headers: { 'retry-after': '1' } }))
      }
      return new Promise<WriteResult>((resolve, reject) => {
        if (!pending.length) oldestAt = performance.now()
        pending.push({ tenantId, events, actor, verifyStored: opts.verifyStored === true, resolve, reject })
        queued += events.length
        queuedByTenant.set(tenantId, mine + events.length)
        queueGauge.set(queued)
        schedule()
      })
    },
    get queued() {
      return queued
    },
    announce() {
      incomingGauge.set(++incoming)
      let done = false
      return () => {
        if (done) return
        done = true
        incomingGauge.set(--incoming)
        if (incoming === 0) schedule()
      }
    },
    async close(deadlineMs = 10_000) {
      closed = true
      disarm()
      const deadline = Date.now() + deadlineMs
      while ((pending.length || flushing) && Date.now() < deadline) {
        if (!flushing && pending.length) flushing = runFlush()
        await Promise.race([flushing, new Promise((r) => setTimeout(r, 50))])
      }
    },
  }
}
