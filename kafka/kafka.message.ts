import { z } from 'zod'
import { EVENT_TYPES, MAX_STORABLE_MS, MIN_STORABLE_MS } from '../ingest/segment.schema.js'
import type { PendingEvent } from '../ingest/normalize.js'

/**
 * The Kafka message between the HTTP edge and the ingest workers: one validated event, keyed by
 * tenant and customer (per-customer order within a partition). `v` lets the format evolve: a
 * worker refuses (dead-letters) a version it does not know rather than guess.
 */
export const MESSAGE_VERSION = 1

/** An instant the events table holds: a message from an edge that did not check is refused here, not by the insert. */
const instant = z.number().int().min(MIN_STORABLE_MS, { message: 'before 1900-01-01' }).max(MAX_STORABLE_MS, { message: 'after 2299-12-31' })

const pendingEvent = z.object({
  messageId: z.string().min(1),
  type: z.enum(EVENT_TYPES),
  event: z.string(),
  userId: z.string(),
  anonymousId: z.string(),
  sessionId: z.string(),
  properties: z.string(),
  context: z.string(),
  timestamp: instant,
  sentAt: instant,
  receivedAt: instant,
  traits: z.object({ plain: z.record(z.string(), z.string()), hashed: z.record(z.string(), z.string()) }).optional(),
  previousId: z.string().optional(),
  groupId: z.string().optional(),
  violations: z.array(z.string()),
})

export const eventMessage = z.object({
  v: z.literal(MESSAGE_VERSION),
  tenant: z.number().int().min(1).max(65535),
  actor: z.string(),
  event: pendingEvent,
})
export type EventMessage = z.infer<typeof eventMessage>

export function encodeEvent(tenant: number, actor: string, event: PendingEvent): { key: string; value: string } {
  const who = event.userId || event.anonymousId || event.messageId
  return { key: `${tenant}:${who}`, value: JSON.stringify({ v: MESSAGE_VERSION, tenant, actor, event }) }
}

export type Decoded = { ok: true; message: EventMessage } | { ok: false; reason: string }

export function decodeEvent(value: Buffer | null): Decoded {
  if (!value) return { ok: false, reason: 'empty message' }
  let json: unknown
  try {
    json = JSON.parse(value.toString('utf8'))
  } catch {
    return { ok: false, reason: 'not JSON' }
  }
  const v = (json as { v?: unknown })?.v
  if (v !== MESSAGE_VERSION) return { ok: false, reason: `unknown message version ${JSON.stringify(v)}` }
  const r = eventMessage.safeParse(json)
  if (!r.success) {
    const i = r.error.issues[0]!
    return { ok: false, reason: `invalid ${i.path.join('.')}: ${i.message}` }
  }
  return { ok: true, message: r.data as EventMessage }
}
