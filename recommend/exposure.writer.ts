import { insertTenantsTsvEncoded, type Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { EXPOSURE_COLUMNS, ExposureLog, LIST_COLUMNS, type Exposure } from './exposure.log.js'
import type { RankedModule } from './layout.rank.js'
import type { LayoutSnapshot } from './model.snapshot.js'

/**
 * Writes the layouts a process serves to `layout_exposures`: per tenant a log of rows as bytes
 * (exposure.log.ts), all tenants' rows in one insert a flush, after the lists they name. Logs
 * whose insert failed wait for the next flush, the oldest dropped beyond MAX_UNWRITTEN_BYTES.
 */

/** Exposures kept while the engine refuses them (a layout's row is about a hundred bytes). */
const MAX_UNWRITTEN_BYTES = 256 * 1024 ** 2
/**
 * Exposures are written every LAYOUT_EXPOSURE_FLUSH_MS (default 5 s), and at once when this many
 * bytes wait, whichever comes first: the bound keeps the bytes held in check at any rate. Each
 * write is an insert, a part the engine merges again and again. 5 s against 1 s on the layout
 * bench, six alternating pairs: the engine's threads took less CPU a layout in five (10-16 µs
 * against 13.5-34), and 5 s served more in four (by 7-12%), less in one, as many in one. What
 * waits is analysis and caps: caps count this process's own exposures before they are written,
 * and a stop writes what waits; a process killed outright loses at most the interval's.
 */
const DEFAULT_FLUSH_MS = 5_000
/** Writes remembered for writtenBefore: at the default interval, hours, longer than a build takes. */
const MAX_WRITES_KEPT = 4096
const FLUSH_BYTES = 64 * 1024 ** 2

export function createExposureWriter(deps: {
  db: Db
  log: Logger
  metrics: Metrics
  flushMs?: number | undefined
  /** Bytes of exposures waiting that start a write before the interval ends (default 64 MB). */
  flushBytes?: number | undefined
}) {
  let pending = new Map<number, ExposureLog>()
  let unwritten: ExposureLog[] = []
  let pendingBytes = 0
  const flushBytes = deps.flushBytes ?? FLUSH_BYTES
  const logOf = (tenant: number) => pending.get(tenant) ?? pending.set(tenant, new ExposureLog(tenant)).get(tenant)!
  let flusher: NodeJS.Timeout | undefined
  // Writes that left nothing unwritten: when each ended, and the time before which every row
  // served had been written by then (rows are appended as they are served, so every row of a
  // write was served before it took them). A model build that read at `t` has counted the
  // exposures served before writtenBefore(t); the serving process keeps counting the rest.
  const written: { at: number; through: number }[] = []
  const wroteAll = (through: number) => {
    if (written.length >= MAX_WRITES_KEPT) written.splice(0, written.length >> 1)
    written.push({ at: Date.now(), through })
  }
  const exposureInserts = deps.metrics.counter(
    'qianmian_layout_exposure_inserts_total',
    'Inserts of served layouts into layout_exposures: shared (every tenant of a flush in one), tenant (one tenant alone, after a shared insert failed), failed (kept for the next flush)',
    ['kind'],
  )

  // One write at a time, and at most one more waiting for it: a stop's flush then waits for the
  // write the interval or the bound started (an API process must not exit, nor the engine close,
  // with an insert of exposures still running), and a bound reached on every layout during a
  // slow write queues one write, not one per layout.
  let writing: Promise<void> | undefined
  let queued: Promise<void> | undefined
  const noop = () => undefined
  function flush(): Promise<void> {
    if (queued) return queued
    const start = (): Promise<void> => (writing = write().finally(() => (writing = undefined)))
    if (!writing) return start()
    const next = writing.then(noop, noop).then(() => {
      queued = undefined
      return start()
    })
    queued = next
    return next
  }

  // The lists this process wrote (tenant:list). A list is written before the first rows that
  // name it, so a reader never meets a row without its list; after a restart, once again.
  const listsWritten = new Set<string>()

  /**
   * Each part's rows of `table` (a tenant's) in one insert: one part of the table a flush, however
   * many banks were served. If that insert is refused, each part alone, so that whatever refused it
   * cannot hold the other banks' rows. Returns whether the one insert took them, and the parts
   * (by index) that are not written.
   */
  async function insertParts(table: 'layout_exposures' | 'layout_exposure_lists', columns: readonly string[], parts: { tenantId: number; body: Buffer }[]): Promise<{ shared: boolean; failed: Set<number> }> {
    const failed = new Set<number>()
    try {
      await insertTenantsTsvEncoded(deps.db, table, columns, parts)
      return { shared: true, failed }
    } catch (shared) {
      deps.log.warn({ table, tenants: parts.length, err: shared }, 'rows of every tenant not written in one insert; writing them tenant by tenant')
      for (const [i, p] of parts.entries()) {
        try {
          await deps.db.forTenant(p.tenantId).insertTsvEncoded(table, columns, p.body)
        } catch (err) {
          // Exposures feed caps and analysis, not the customer's answer: kept for the next flush.
          deps.log.warn({ table, tenant: p.tenantId, err }, 'rows not written; retrying with the next flush')
          failed.add(i)
        }
      }
      return { shared: false, failed }
    }
  }

  /**
   * Writes the lists the rows name that this process has not written. Returns the tenants whose
   * lists are not written: their rows wait with them for the next flush.
   */
  async function writeLists(batch: readonly ExposureLog[]): Promise<Set<number>> {
    const fresh = new Map<number, Map<string, ExposureLog>>()
    for (const log of batch) {
      for (const id of log.lists.keys()) {
        if (listsWritten.has(`${log.tenantId}:${id}`)) continue
        const mine = fresh.get(log.tenantId) ?? fresh.set(log.tenantId, new Map()).get(log.tenantId)!
        if (!mine.has(id)) mine.set(id, log)
      }
    }
    const tenants = [...fresh.keys()]
    if (!tenants.length) return new Set()
    const parts = tenants.map((tenantId) => ({ tenantId, body: Buffer.concat([...fresh.get(tenantId)!].map(([id, log]) => log.listsBody([id]))) }))
    const { failed } = await insertParts('layout_exposure_lists', LIST_COLUMNS, parts)
    tenants.forEach((tenantId, i) => {
      if (!failed.has(i)) for (const id of fresh.get(tenantId)!.keys()) listsWritten.add(`${tenantId}:${id}`)
    })
    return new Set([...failed].map((i) => tenants[i]!))
  }

  async function write(): Promise<void> {
    const through = Date.now()
    if (!pending.size && !unwritten.length) return wroteAll(through)
    const all = [...unwritten, ...pending.values()].filter((l) => l.rows > 0)
    pending = new Map()
    pendingBytes = 0
    unwritten = []
    if (!all.length) return wroteAll(through)
    const unlisted = await writeLists(all)
    const batch = all.filter((l) => !unlisted.has(l.tenantId))
    const held = all.filter((l) => unlisted.has(l.tenantId))
    for (let i = 0; i < held.length; i++) exposureInserts.inc({ kind: 'failed' })
    if (batch.length) {
      const { shared, failed } = await insertParts('layout_exposures', EXPOSURE_COLUMNS, batch.map((l) => ({ tenantId: l.tenantId, body: l.body() })))
      if (shared) exposureInserts.inc({ kind: 'shared' })
      batch.forEach((log, i) => {
        if (shared) return
        exposureInserts.inc({ kind: failed.has(i) ? 'failed' : 'tenant' })
        if (failed.has(i)) held.push(log)
      })
    }
    hold(held)
    if (!unwritten.length) wroteAll(through)
  }

  /** Held while the engine refuses them, within a bound: an outage must not fill the heap. */
  function hold(failed: ExposureLog[]): void {
    let held = failed.reduce((t, l) => t + l.bytes, 0)
    while (held > MAX_UNWRITTEN_BYTES && failed.length > 1) {
      const dropped = failed.shift()!
      held -= dropped.bytes
      deps.log.error({ tenant: dropped.tenantId, rows: dropped.rows }, 'layout exposures dropped: unwritten for too long')
    }
    unwritten = [...failed, ...unwritten]
  }

  return {
    append(tenantId: number, s: LayoutSnapshot, e: Exposure, ranked: readonly RankedModule[]): void {
      const log = logOf(tenantId)
      const before = log.bytes
      log.append(s, e, ranked)
      pendingBytes += log.bytes - before
      if (pendingBytes >= flushBytes) void flush()
    },

    /** Erased customers: their rows not yet written go. */
    forget(tenantId: number, keys: ReadonlySet<number>): void {
      const log = pending.get(tenantId)
      if (log) pending.set(tenantId, log.without(keys))
      unwritten = unwritten.map((l) => (l.tenantId === tenantId ? l.without(keys) : l))
    },

    flush,

    /**
     * A time such that every exposure this process served before it had been written by `t`
     * (0 when that is not known): a reader of `layout_exposures` at `t` or later has them.
     */
    writtenBefore(t: number): number {
      for (let i = written.length - 1; i >= 0; i--) if (written[i]!.at <= t) return written[i]!.through
      return 0
    },

    start(): void {
      flusher = setInterval(() => void flush(), deps.flushMs ?? DEFAULT_FLUSH_MS)
      flusher.unref()
    },

    async close(): Promise<void> {
      if (flusher) clearInterval(flusher)
      await flush()
    },
  }
}

export type ExposureWriter = ReturnType<typeof createExposureWriter>
