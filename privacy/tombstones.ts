import { z } from 'zod'
import type { Db } from '../core/db.js'
import type { Metrics } from '../core/metrics.js'
import type { Pii } from '../core/pii.js'
import { chDateTime } from '../core/time.js'

/**
 * Tombstones of erased customers: keyed digests of their customer numbers, app (anonymous) ids,
 * linked device ids and the numbers of the loans the erasure deleted (for the bulk import only). Ingest asks `dropped()` for every flush (through a callback it owns), so a late event, a
 * retry or a Kafka replay of an erased customer is dropped and counted instead of re-creating
 * them. Held per tenant in memory; re-read every `refreshMs` so that another process's erasures
 * apply here too.
 */

export type IdKind = 'customer_no' | 'anonymous_id' | 'device_id' | 'loan_no'

/** What identifies an event's sender once ingest normalized it (context.device.id is never kept). */
export interface TombstoneEvent {
  userId: string
  anonymousId: string
  /** An alias's earlier identifier: linking it would bring an erased number or app id back. */
  previousId?: string | undefined
}

export interface Tombstones {
  /** The tenant's keyed digest of an identifier, exact (no normalization): what tombstones and the audit trail keep. */
  digest(tenantId: number, kind: IdKind, value: string): string
  /** Writes tombstones (active) for these identifiers; effective in this process at once. */
  add(tenantId: number, jobId: string, ids: readonly { kind: IdKind; value: string }[], by: string): Promise<void>
  /** Whether the customer number is tombstoned (an export answers 410). */
  erased(tenantId: number, customerNo: string): Promise<boolean>
  /**
   * Which of these customer numbers (or loan numbers, `kind`) are tombstoned (the bulk import
   * hook): one query per call, read from the table rather than the cache, so an erasure by
   * another process counts at once.
   */
  erasedAmong(tenantId: number, values: readonly string[], kind?: 'customer_no' | 'loan_no'): Promise<Set<string>>
  /** The bank re-registers a number: its events are accepted again. False when it was not tombstoned. */
  reregister(tenantId: number, customerNo: string, by: string): Promise<boolean>
  /** Per event, true when it belongs to an erased identifier (the ingest hook). */
  /** `count: false`: a second look at events already counted (the consent they carry). */
  dropped(tenantId: number, events: readonly TombstoneEvent[], opts?: { count?: boolean }): Promise<boolean[]>
}

interface Held {
  at: number
  ids: Set<string>
}

const row = z.object({ id_kind: z.string(), id_digest: z.string() })

export function createTombstones(deps: { db: Db; pii: Pii; metrics: Metrics; refreshMs?: number }): Tombstones {
  const refreshMs = deps.refreshMs ?? 5000
  const held = new Map<number, Held>()
  const loading = new Map<number, Promise<Held>>()
  const droppedTotal = deps.metrics.counter('qianmian_erasure_dropped_events_total', 'Events of erased customers dropped at ingest, by tenant', ['tenant'])
  // The value goes in hex: the digest function normalizes case, identifiers here are exact.
  const digest = (tenantId: number, kind: IdKind, value: string) => deps.pii.hash('name', `erased:${kind}:${Buffer.from(value, 'utf8').toString('hex')}`, tenantId)
  const slot = (kind: string, d: string) => `${kind}:${d}`

  async function load(tenantId: number): Promise<Held> {
    const rows = await deps.db.forTenant(tenantId).query(
      `SELECT id_kind, id_digest FROM erasure_tombstones FINAL WHERE tenant_id = {tenant:UInt16} AND active = 1`,
      {},
      row,
    )
    const h: Held = { at: Date.now(), ids: new Set(rows.map((r) => slot(r.id_kind, r.id_digest))) }
    held.set(tenantId, h)
    return h
  }

  async function current(tenantId: number): Promise<Held> {
    const h = held.get(tenantId)
    if (h && Date.now() - h.at < refreshMs) return h
    let p = loading.get(tenantId)
    if (!p) {
      p = load(tenantId).finally(() => loading.delete(tenantId))
      loading.set(tenantId, p)
    }
    return p
  }

  async function write(tenantId: number, rows: { kind: IdKind; d: string; jobId: string; active: 0 | 1; by: string }[]) {
    const now = chDateTime(Date.now())
    await deps.db.forTenant(tenantId).insert(
      'erasure_tombstones',
      rows.map((r) => ({ id_kind: r.kind, id_digest: r.d, job_id: r.jobId, active: r.active, changed_by: r.by, updated_at: now })),
    )
    const h = await current(tenantId)
    for (const r of rows) {
      if (r.active) h.ids.add(slot(r.kind, r.d))
      else h.ids.delete(slot(r.kind, r.d))
    }
  }

  return {
    digest,
    async add(tenantId, jobId, ids, by) {
      if (!ids.length) return
      await write(tenantId, ids.map((i) => ({ kind: i.kind, d: digest(tenantId, i.kind, i.value), jobId, active: 1, by })))
    },
    async erased(tenantId, customerNo) {
      return (await current(tenantId)).ids.has(slot('customer_no', digest(tenantId, 'customer_no', customerNo)))
    },
    async erasedAmong(tenantId, values, kind = 'customer_no') {
      const out = new Set<string>()
      if (!values.length) return out
      // The tenant's tombstoned digests come to this side (few: erasures are rare) rather than a
      // file's digests going to the engine (up to millions, too many for a bound parameter).
      const rows = await deps.db.forTenant(tenantId).query(
        `SELECT id_digest FROM erasure_tombstones FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = {kind:String} AND active = 1`,
        { kind },
        z.object({ id_digest: z.string() }),
      )
      if (!rows.length) return out
      const digests = new Set(rows.map((r) => r.id_digest))
      for (const v of values) if (digests.has(digest(tenantId, kind, v))) out.add(v)
      return out
    },
    async reregister(tenantId, customerNo, by) {
      const d = digest(tenantId, 'customer_no', customerNo)
      if (!(await current(tenantId)).ids.has(slot('customer_no', d))) return false
      await write(tenantId, [{ kind: 'customer_no', d, jobId: '00000000-0000-0000-0000-000000000000', active: 0, by }])
      return true
    },
    async dropped(tenantId, events, opts = {}) {
      const h = await current(tenantId)
      if (!h.ids.size) return events.map(() => false)
      let n = 0
      const anyKind = (v: string) =>
        h.ids.has(slot('customer_no', digest(tenantId, 'customer_no', v))) ||
        h.ids.has(slot('anonymous_id', digest(tenantId, 'anonymous_id', v))) ||
        h.ids.has(slot('device_id', digest(tenantId, 'device_id', v)))
      const out = events.map((e) => {
        const hit =
          (e.userId !== '' && h.ids.has(slot('customer_no', digest(tenantId, 'customer_no', e.userId)))) ||
          // An app may send a device id linked to the customer as its anonymous id.
          (e.anonymousId !== '' &&
            (h.ids.has(slot('anonymous_id', digest(tenantId, 'anonymous_id', e.anonymousId))) || h.ids.has(slot('device_id', digest(tenantId, 'device_id', e.anonymousId))))) ||
          // An alias from an erased identifier (of any kind: an alias links it as an app id when
          // no customer holds it, and an erased number has none).
          (e.previousId !== undefined && e.previousId !== '' && anyKind(e.previousId))
        if (hit) n++
        return hit
      })
      if (n && opts.count !== false) droppedTotal.inc({ tenant: String(tenantId) }, n)
      return out
    },
  }
}
