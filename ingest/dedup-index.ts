import { z } from 'zod'
import type { Db } from '../core/db.js'
import { DEDUP_DIGEST_SQL, dedupDigests, dedupKey } from '../core/dedup-digest.js'
import type { PendingEvent } from './normalize.js'

/**
 * The event writer's questions to the dedup index (sql/005, sql/024): which of a flush's message
 * ids are stored already, and the index put right after a crash.
 */

/**
 * The flush's dedup question: which of the digests in `{digests}` (core/dedup-digest.ts) are stored,
 * with the ids stored under them (a read per key, not a scan; sql/024_ingest_dedup_digests.sql).
 * The digests travel as one string of 16 hex digits each: bound as an Array of the ids themselves
 * they took ~8 times as long to pass.
 */
export const DEDUP_LOOKUP = `SELECT tenant_id, message_id FROM ingest_dedup_digests
  WHERE digest IN (SELECT reinterpretAsUInt64(unhex(substring({digests:String}, number * 16 + 1, 16))) FROM numbers(intDiv(length({digests:String}), 16)))`

const dedupRow = z.object({ tenant_id: z.coerce.number(), message_id: z.string() })

export interface DedupIndex {
  /**
   * Which of these keys (`dedupKey`) the dedup index holds. One round trip per flush for every
   * tenant in it; each key is one RocksDB read, so the cost follows the flush, not the index
   * (sql/024_ingest_dedup_digests.sql). A row counts only under the tenant and message id it
   * was stored with, so a digest two ids share finds the one stored, never the other.
   */
  stored(keys: string[]): Promise<Set<string>>
  /**
   * The events already in the events table, as `dedupKey`s. Bounded by the tenant and
   * the events' time range, so the engine reads only their days' parts of that tenant's range
   * (the table has no index on message ids); used only where verification was asked for.
   */
  storedEvents(tenantId: number, events: PendingEvent[]): Promise<string[]>
  /**
   * Before the first flush: the last hour's ids put into the key index again from ingest_dedup.
   * The key index is fed from ingest_dedup by a view, so a process killed between the two writes
   * leaves ids in the one and not the other; putting a key again overwrites it, so this is safe to
   * repeat (each process, each start). An hour covers any insert that was in flight at a crash.
   */
  recover(): Promise<void>
}

export function createDedupIndex(db: Db): DedupIndex {
  return {
    async storedEvents(tenantId: number, events: PendingEvent[]): Promise<string[]> {
      if (!events.length) return []
      let lo = Infinity
      let hi = -Infinity
      for (const e of events) {
        lo = Math.min(lo, e.timestamp)
        hi = Math.max(hi, e.timestamp)
      }
      const rows = await db.system.query(
        `SELECT DISTINCT message_id FROM events
         WHERE tenant_id = {tenant:UInt16}
           AND timestamp BETWEEN fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND fromUnixTimestamp64Milli({hi:Int64}, 'UTC')
           AND message_id IN (SELECT arrayJoin({ids:Array(String)}))`,
        { tenant: tenantId, lo, hi, ids: events.map((e) => e.messageId) },
        z.object({ message_id: z.string() }),
      )
      return rows.map((r) => dedupKey(tenantId, r.message_id))
    },
    async stored(keys: string[]): Promise<Set<string>> {
      if (!keys.length) return new Set()
      const rows = await db.system.query(DEDUP_LOOKUP, { digests: dedupDigests(keys) }, dedupRow)
      return new Set(rows.map((r) => dedupKey(r.tenant_id, r.message_id)))
    },
    async recover(): Promise<void> {
      await db.system.command(
        `INSERT INTO ingest_dedup_digests
         SELECT ${DEDUP_DIGEST_SQL}, tenant_id, message_id, received_at FROM ingest_dedup
         WHERE received_at >= now64(3) - INTERVAL 1 HOUR`,
      )
    },
  }
}
