import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import type { PendingEvent } from '../ingest/normalize.js'

/** Row builders shared by the tag and segment tests. */

let seq = 0

/** An event row at a local time ('YYYY-MM-DD HH:MM[:SS.mmm]') with the given UTC offset. */
export function localEvent(k: number, local: string, name: string, props: Record<string, unknown> = {}, type = 'track', offset = '+08:00') {
  const ts = chDateTime(new Date(`${local.replace(' ', 'T')}${offset}`))
  return {
    customer_key: k, timestamp: ts, type, event: name, message_id: `m${++seq}`, anonymous_id: `a${k}`, user_id: `C${k}`,
    session_id: 's', properties: JSON.stringify(props), context: '{}', sent_at: ts, received_at: ts,
  }
}

/**
 * The tag tests' clock: runs at 2026-03-15T04:00Z, 12:00 in Shanghai (local date 03-15), over
 * customers opened long before.
 */
export const TAG_TEST_TZ = 'Asia/Shanghai'
export const TAG_TEST_AS_OF = new Date('2026-03-15T04:00:00Z')
export const LONG_AGO = '2020-01-01 00:00:00.000'

/** A tag definition with test metadata; `extra` adds fields (values, sensitivity, purpose ...). */
export function testTagDef(name: string, type: string, rule: Record<string, unknown>, extra: Record<string, unknown> = {}, purpose: string[] = ['service']) {
  return { name, type, rule, description: { zh: name, en: name }, owner: 'test', purpose, ...extra }
}

/** A normalized track event as the edge hands it to the writer or to Kafka, stamped now. */
/** What the tag tests read back of a tenant's runs. */
export function tagReads(db: () => TenantDb) {
  return {
    /** Customers a run staged a value of `tag` for. */
    async staged(runId: string, tag: string): Promise<number> {
      const [r] = await db().query(`SELECT count() AS n FROM tag_stage WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND tag = {tag:String}`, { run: runId, tag }, z.object({ n: z.coerce.number() }))
      return r!.n
    },
    /** The customers holding a value of `tag`, by key. */
    async holders(tag: string): Promise<number[]> {
      const rows = await db().query(
        `SELECT customer_key AS k FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY k`,
        { tag },
        z.object({ k: z.coerce.number() }),
      )
      return rows.map((r) => r.k)
    },
    /** The current numeric values of `tag`, as customer -> num. */
    async nums(tag: string): Promise<Record<number, number>> {
      const rows = await db().query(
        `SELECT customer_key AS k, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND is_deleted = 0 ORDER BY k`,
        { tag },
        z.object({ k: z.coerce.number(), num: z.coerce.number() }),
      )
      return Object.fromEntries(rows.map((r) => [r.k, r.num]))
    },
  }
}

export function pendingEvent(over: Partial<PendingEvent> = {}): PendingEvent {
  const now = Date.now()
  return {
    messageId: 'm1',
    type: 'track',
    event: 'x',
    userId: 'U1',
    anonymousId: '',
    sessionId: '',
    properties: '{}',
    context: '{}',
    timestamp: now,
    sentAt: now,
    receivedAt: now,
    violations: [],
    ...over,
  }
}

/**
 * An event-triggered security push (a new-device sign-in, then a large transfer within 30
 * minutes): the campaign the privacy tests wake to put a customer into push targets.
 */
export const antiFraudCampaign = {
  name: 'Anti-fraud tip',
  purpose: 'security',
  priority: 'critical',
  channel: 'push',
  schedule: {
    kind: 'event',
    steps: [
      { event: { names: ['signed_in'], where: [{ property: 'new_device', op: 'eq', value: true }] } },
      { event: { names: ['transfer_completed'], where: [{ property: 'amount', op: 'gte', value: 50_000 }] } },
    ],
    withinMinutes: 30,
  },
  message: { body: { zh: '谨防诈骗', en: 'Beware of fraud' } },
} as const

/** A seeded stream of numbers in [0, 1) (mulberry32). */
export function seededRandom(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
