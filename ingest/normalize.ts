import type { ErrorCode } from '../core/errors.js'
import { traitDigestKind, type Pii } from '../core/pii.js'
import { createValueScanner, type PiiKind, type ValueScanner } from '../core/pii.scan.js'
import { jsonLargerThan } from './event-size.js'
import { minimizeContext, scanField, scrub } from './normalize.scrub.js'
import { fastMessage } from './segment.fast.js'
import { EVENT_TYPES, MAX_DEPTH, MAX_EVENT_BYTES, MAX_MESSAGE_DEPTH, MAX_STORABLE_MS, MESSAGE_SCHEMAS, MIN_STORABLE_MS, type EventType } from './segment.schema.js'
import { cutText, isWellFormed } from './well-formed.js'

/**
 * Turns one Segment message into a row for the events table, or a rejection naming the field at
 * fault. Here the privacy rules apply ("minimum necessary"): C3 secrets are dropped wherever they
 * appear, sensitive traits never reach the events table and reach the profile only as keyed
 * digests, and the context keeps device and app facts but not the IP address (the walk over
 * properties, traits and context: normalize.scrub.ts).
 *
 * Every string stored is text UTF-8 can carry (well-formed.ts): half of a character (an unpaired
 * surrogate) in text is repaired to U+FFFD and listed in the event's violations; in an id it is
 * refused, since two ids repaired alike would become one customer or one event.
 */

export interface NormalizeOptions {
  receivedAt: number
  backdateMs: number
  maxFutureMs: number
  sensitiveTraits: ReadonlySet<string>
  pii: Pii
  /**
   * Finds phone, identity and card numbers and e-mail addresses by value in every string (and
   * long integer) of properties, traits and context, and masks or digests them by the tenant's
   * policy (core/pii.scan.ts); by default digests under the tenant's key. `false` only to measure
   * what the scan costs.
   */
  scan?: ValueScanner | false | undefined
}

export interface PendingEvent {
  messageId: string
  type: EventType
  event: string
  userId: string
  anonymousId: string
  sessionId: string
  properties: string
  context: string
  timestamp: number
  sentAt: number
  receivedAt: number
  /** identify/group traits: plain values (C1) and digests of sensitive ones (C2). */
  traits?: { plain: Record<string, string>; hashed: Record<string, string> }
  previousId?: string
  groupId?: string
  violations: string[]
}

export interface Rejection {
  code: ErrorCode
  field: string
  message: string
  messageId?: string
}

/** `properties` is the scrubbed object behind `event.properties`, for checks that need it parsed. */
export type Normalized = { ok: true; event: PendingEvent; properties: Record<string, unknown> } | { ok: false; rejection: Rejection }

const reject = (code: ErrorCode, field: string, message: string, messageId?: string): Normalized => ({
  ok: false,
  rejection: { code, field, message, ...(messageId ? { messageId } : {}) },
})

/** The message's ids: kept exactly as sent, so one holding half a character is refused, never repaired. */
const ID_FIELDS = ['messageId', 'userId', 'anonymousId', 'previousId', 'groupId'] as const
const UNPAIRED_ID = 'holds an unpaired UTF-16 surrogate (half of a character, such as \\ud83d without its pair), which UTF-8 cannot carry; ids are kept exactly as sent, so it cannot be repaired'

/**
 * The path of the first object or array nested `limit` levels below `root`, or undefined. An
 * explicit stack, no recursion: a body nested 100,000 levels deep (500 KB of brackets) must be
 * refused here, before anything recursive (JSON.stringify, the scrub walk) overflows on it.
 */
export function tooDeep(root: unknown, limit: number): string[] | undefined {
  interface Node {
    v: object
    depth: number
    key: string
    up: Node | undefined
  }
  if (root === null || typeof root !== 'object') return undefined
  const stack: Node[] = [{ v: root, depth: 0, key: '', up: undefined }]
  while (stack.length) {
    const n = stack.pop()!
    if (n.depth >= limit) {
      const path: string[] = []
      for (let x: Node | undefined = n; x?.up; x = x.up) path.push(x.key)
      return path.reverse()
    }
    const v = n.v as Record<string, unknown>
    for (const k in v) {
      const c = v[k]
      if (c !== null && typeof c === 'object') stack.push({ v: c, depth: n.depth + 1, key: k, up: n })
    }
  }
  return undefined
}

const pickString = (...vals: unknown[]) => {
  for (const v of vals) if ((typeof v === 'string' && v) || typeof v === 'number') return cutText(String(v), 200)
  return ''
}

export function normalizeMessage(
  raw: unknown,
  tenantId: number,
  envelope: { sentAt?: string | null | undefined; context?: Record<string, unknown> | null | undefined; type?: EventType },
  opts: NormalizeOptions,
): Normalized {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return reject('VALIDATION_FAILED', '(event)', 'expected an object')
  const item = raw as Record<string, unknown>
  const rawId = typeof item.messageId === 'string' || typeof item.messageId === 'number' ? String(item.messageId) : undefined
  const deep = tooDeep(item, MAX_MESSAGE_DEPTH)
  if (deep) return reject('NESTING_TOO_DEEP', deep.join('.'), `nested deeper than ${MAX_DEPTH} levels`, rawId)
  // The size of the event's JSON, decided without building it (event-size.ts).
  if (jsonLargerThan(item, MAX_EVENT_BYTES)) return reject('EVENT_TOO_LARGE', '(event)', `larger than ${MAX_EVENT_BYTES} bytes`, rawId)
  const type = (item.type ?? envelope.type) as EventType
  if (!EVENT_TYPES.includes(type)) return reject('VALIDATION_FAILED', 'type', `expected one of ${EVENT_TYPES.join(', ')}`, rawId)
  if (envelope.type && item.type !== undefined && item.type !== envelope.type) {
    return reject('VALIDATION_FAILED', 'type', `this endpoint takes ${envelope.type} messages`, rawId)
  }

  // The common case is decided without zod (segment.fast.ts); zod decides the rest and words every rejection.
  let m = fastMessage(type, item) as (Record<string, unknown> & { type: EventType }) | undefined
  if (!m) {
    const parsed = MESSAGE_SCHEMAS[type].safeParse({ ...item, type })
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!
      return reject('VALIDATION_FAILED', issue.path.map(String).join('.') || '(event)', issue.message, rawId)
    }
    m = parsed.data as Record<string, unknown> & { type: EventType }
  }
  for (const f of ID_FIELDS) {
    const id = m[f]
    if (typeof id === 'string' && !isWellFormed(id)) return reject('INVALID_ENCODING', f, UNPAIRED_ID, rawId)
  }
  const sensitive = opts.sensitiveTraits

  const moved: Record<string, string> = {}
  const foundKinds: Record<string, PiiKind> = {}
  const scan = opts.scan === false ? undefined : (opts.scan ?? createValueScanner('digest', (kind, v) => opts.pii.hash(kind, v, tenantId)))
  const foundPaths: string[] = []
  const props = scrub((m.properties as Record<string, unknown>) ?? {}, 'properties', sensitive, moved, scan, foundPaths)
  if (props.error) return reject(props.error.code, props.error.field, props.error.message, rawId)
  const traits = scrub((m.traits as Record<string, unknown>) ?? {}, 'traits', sensitive, moved, scan, foundPaths, scan?.policy === 'digest' ? foundKinds : undefined)
  if (traits.error) return reject(traits.error.code, traits.error.field, traits.error.message, rawId)
  const ctxIn = { ...(envelope.context ?? {}), ...((m.context as Record<string, unknown>) ?? {}) }
  // Traits that SDKs copy into context.traits are identify data, not event context.
  const ctx = scrub(minimizeContext(ctxIn), 'context', undefined, {}, scan, foundPaths)
  if (ctx.error) return reject(ctx.error.code, ctx.error.field, ctx.error.message, rawId)

  // Clock skew, as the spec describes: the device clock may be wrong, but the gap between when
  // it says the event happened and when it says it sent the batch is right.
  const receivedAt = opts.receivedAt
  const tsText = (m.timestamp ?? m.originalTimestamp) as string | null | undefined
  const ts = tsText ? Date.parse(tsText) : undefined
  const sentRaw = (m.sentAt as string | undefined) ?? envelope.sentAt ?? undefined
  const sent = sentRaw ? Date.parse(sentRaw) : undefined
  // A device clock reset to 1970 is common and harmless (the skew correction below does not
  // care); one the sent_at column cannot hold is refused, never handed to the shared insert.
  if (sent !== undefined && (sent < MIN_STORABLE_MS || sent > MAX_STORABLE_MS)) {
    return reject('TIMESTAMP_OUT_OF_RANGE', 'sentAt', 'outside 1900-01-01 .. 2299-12-31, the range stored', rawId)
  }
  let timestamp = ts === undefined ? receivedAt : sent !== undefined ? receivedAt - (sent - ts) : ts
  if (timestamp > receivedAt) {
    if (timestamp - receivedAt > opts.maxFutureMs) {
      return reject('TIMESTAMP_OUT_OF_RANGE', 'timestamp', `more than ${Math.round(opts.maxFutureMs / 60000)} minutes in the future`, rawId)
    }
    timestamp = receivedAt
  }
  if (receivedAt - timestamp > opts.backdateMs) {
    return reject('TIMESTAMP_OUT_OF_RANGE', 'timestamp', `older than the ${Math.round(opts.backdateMs / 86_400_000)}-day back-dating window`, rawId)
  }

  const properties = props.value
  // The message's own text fields reach the events table too: the event column, and the page
  // category and group id inside properties.
  const isPage = type === 'page' || type === 'screen'
  const eventName = type === 'track' ? scanField(m.event as string, 'event', scan, foundPaths) : isPage ? scanField((m.name as string | undefined) ?? '', 'name', scan, foundPaths) : ''
  const category = isPage && m.category ? scanField(m.category as string, 'category', scan, foundPaths) : ''
  const groupId = type === 'group' ? scanField(m.groupId as string, 'groupId', scan, foundPaths) : undefined
  const messageId =
    (m.messageId as string | undefined) ??
    // No messageId (a hand-written client): a digest of the content makes identical retries
    // deduplicate all the same. Keyed by the bank: the raw content may carry a phone number.
    `qm-${opts.pii.contentDigest(JSON.stringify(item), tenantId).slice(0, 32)}`
  const event: PendingEvent = {
    messageId,
    type,
    event: eventName,
    userId: (m.userId as string | null | undefined) ?? '',
    anonymousId: (m.anonymousId as string | null | undefined) ?? '',
    // From the scrubbed context: the app's session id is its text, and may hold a number.
    sessionId: pickString(properties.session_id, properties.sessionId, ctx.value.sessionId),
    properties: JSON.stringify(isPage ? { ...(category ? { category } : {}), ...properties } : type === 'group' ? { group_id: groupId } : properties),
    context: JSON.stringify(ctx.value),
    timestamp,
    sentAt: sent ?? receivedAt,
    receivedAt,
    violations: foundPaths,
  }
  if (type === 'identify' || type === 'group') {
    const plain: Record<string, string> = {}
    for (const [k, v] of Object.entries(traits.value)) {
      if (v === null || v === undefined) continue
      plain[k] = typeof v === 'object' ? JSON.stringify(v) : String(v)
    }
    const hashed: Record<string, string> = {}
    // An empty one clears what is stored (as an import's empty column does), rather than store
    // the digest of nothing, which every other empty value would match.
    for (const [k, v] of Object.entries(moved)) hashed[k] = v.trim() ? opts.pii.hash(foundKinds[k] ?? traitDigestKind(k, v), v, tenantId) : ''
    event.traits = { plain, hashed }
  }
  if (type === 'alias') event.previousId = m.previousId as string
  if (type === 'group') event.groupId = groupId!
  return { ok: true, event, properties }
}
