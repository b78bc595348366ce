import { chDateTime, chEpoch } from '../core/time.js'
import type { PendingEvent } from './normalize.js'
import { MAX_STORABLE_MS, MIN_STORABLE_MS } from './segment.schema.js'

/**
 * An event as a row of the events table: the columns in insert order, the encoding of each
 * value, and the API field a refused row is reported under. The writer inserts these rows; the
 * ingest benchmarks build the same rows for the raw insert they compare with.
 */

export const EVENT_COLUMNS = [
  'tenant_id',
  'customer_key',
  'timestamp',
  'type',
  'event',
  'message_id',
  'anonymous_id',
  'user_id',
  'session_id',
  'properties',
  'context',
  'sent_at',
  'received_at',
  'violations',
] as const

/**
 * An instant as DateTime64(3) text. Seconds since the epoch are the cheap form, but the engine
 * reads a number as an epoch only with 9 or 10 integer digits (1973-03-03 to 2286-11-20);
 * outside that, the date-time form, which holds the column's whole range.
 */
export function eventTime(ms: number): string {
  return ms >= 1e11 && ms < 1e13 ? chEpoch(ms) : chDateTime(ms)
}

export function toRow(tenantId: number, key: number, e: PendingEvent): unknown[] {
  return [
    tenantId,
    key,
    eventTime(e.timestamp),
    e.type,
    e.event,
    e.messageId,
    e.anonymousId,
    e.userId,
    e.sessionId,
    e.properties,
    e.context,
    eventTime(e.sentAt),
    eventTime(e.receivedAt),
    e.violations,
  ]
}

/** The events table's columns, as the API's field names (what a refused event's answer names). */
const API_FIELD: Record<string, string> = {
  timestamp: 'timestamp',
  sent_at: 'sentAt',
  received_at: 'receivedAt',
  message_id: 'messageId',
  anonymous_id: 'anonymousId',
  user_id: 'userId',
  session_id: 'sessionId',
  properties: 'properties',
  context: 'context',
  event: 'event',
  type: 'type',
}

/**
 * The field to name for a refused row: the column the engine named, or else the first of the
 * event's times outside what the columns hold, or the event as a whole.
 */
export function fieldOf(column: string | undefined, e: PendingEvent): string {
  if (column && API_FIELD[column]) return API_FIELD[column]
  for (const [f, v] of [['timestamp', e.timestamp], ['sentAt', e.sentAt], ['receivedAt', e.receivedAt]] as const) {
    if (!(v >= MIN_STORABLE_MS && v <= MAX_STORABLE_MS)) return f
  }
  return '(event)'
}
