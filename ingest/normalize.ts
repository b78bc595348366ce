import type { ErrorCode } from '../core/errors.js'
import { traitDigestKind, type Pii } from '../core/pii.js'
import { createValueScanner, type PiiKind, type ValueScanner } from '../core/pii.scan.js'
import { jsonLargerThan } from './event-size.js'
import { fastMessage } from './segment.fast.js'
import { EVENT_TYPES, MAX_DEPTH, MAX_EVENT_BYTES, MAX_KEYS, MAX_MESSAGE_DEPTH, MAX_STORABLE_MS, MESSAGE_SCHEMAS, MIN_STORABLE_MS, type EventType } from './segment.schema.js'
import { cutText, isWellFormed, wellFormed } from './well-formed.js'

/**
 * Turns one Segment message into a row for the events table, or a rejection naming the field at
 * fault. Here the privacy rules apply ("minimum necessary"): C3 secrets are dropped wherever they
 * appear, sensitive traits never reach the events table and reach the profile only as keyed
 * digests, and the context keeps device and app facts but not the IP address.
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

/**
 * Names that only ever hold C3 data (JR/T 0171-2020): never received into storage. Tested with
 * separators removed, so `sms_code`, `pay-password` and `loginPwd` are caught like `smscode`.
 */
const C3_NAMES = /^(password|passwd|pwd|pin|pincode|otp|otpcode|cvv|cvv2|cvc|cvn|cvn2|smscode|verificationcode|verifycode|securitycode|biometric|fingerprint|faceimage|paymentpassword|paypassword|paypwd|loginpassword|loginpwd|tradepassword|transactionpassword|withdrawpassword)$/i
const isC3Name = (k: string) => C3_NAMES.test(k.length > 40 ? k : k.replace(/[_\-\s.]/g, ''))
/**
 * The answer per key name, remembered: an app sends the same few hundred property names in every
 * event, and the two regular expressions per key cost more than the rest of the walk over it.
 * Bounded in names and in their length: past the limit (names made up per event) it starts over.
 */
const C3_SEEN = new Map<string, boolean>()
const C3_SEEN_MAX = 10_000
const C3_KEYS = {
  test(k: string): boolean {
    if (k.length > 64) return isC3Name(k)
    let c3 = C3_SEEN.get(k)
    if (c3 === undefined) {
      c3 = isC3Name(k)
      if (C3_SEEN.size >= C3_SEEN_MAX) C3_SEEN.clear()
      C3_SEEN.set(k, c3)
    }
    return c3
  },
}
/** Context fields kept: what the app and device are, not where or who the person is. */
const CONTEXT_KEEP = new Set(['app', 'device', 'os', 'locale', 'timezone', 'library', 'screen', 'network', 'page', 'campaign', 'userAgent', 'channel', 'sessionId'])
const DEVICE_DROP = new Set(['advertisingId', 'adTrackingEnabled', 'token', 'id'])

const reject = (code: ErrorCode, field: string, message: string, messageId?: string): Normalized => ({
  ok: false,
  rejection: { code, field, message, ...(messageId ? { messageId } : {}) },
})

interface Scrubbed {
  value: Record<string, unknown>
  error?: { field: string; message: string; code: ErrorCode }
}

interface WalkState {
  keys: number
  error: string | undefined
  code?: ErrorCode
  path: string[]
  scan: ValueScanner | undefined
  /** Paths where the scan replaced an identifier (the sender should stop sending it). */
  found: string[]
}

/** At most this many paths are listed per event; the metric counts them all. */
const MAX_FOUND_PATHS = 20
function noteFound(st: WalkState) {
  if (st.found.length < MAX_FOUND_PATHS) st.found.push(`personal_data:${st.path.join('.')}`)
}
/** Text repaired where it was, listed like a find: the sender has a string-cutting bug to fix. */
function noteRepaired(st: WalkState) {
  if (st.found.length < MAX_FOUND_PATHS) st.found.push(`unpaired_surrogate:${st.path.join('.')}`)
}

/** The message's ids: kept exactly as sent, so one holding half a character is refused, never repaired. */
const ID_FIELDS = ['messageId', 'userId', 'anonymousId', 'previousId', 'groupId'] as const
const UNPAIRED_ID = 'holds an unpaired UTF-16 surrogate (half of a character, such as \\ud83d without its pair), which UTF-8 cannot carry; ids are kept exactly as sent, so it cannot be repaired'

/**
 * Beyond 2^53 a JSON number has already lost digits when parsed, and one beyond the double range
 * (1e400) parses as Infinity and would be stored as null: both are refused (send them as text).
 */
const unsafeNumber = (v: number) => !Number.isFinite(v) || Math.abs(v) > Number.MAX_SAFE_INTEGER

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

/**
 * One pass over a properties/traits/context object: depth and key limits, C3 keys dropped,
 * sensitive top-level keys moved out into `moved`. A module-level recursion with an explicit
 * state (rather than a closure per call) because it runs for every event on the ingest path.
 */
function walk(v: unknown, depth: number, st: WalkState): unknown {
  if (typeof v === 'number' && unsafeNumber(v)) {
    st.error = 'a number beyond ±2^53 (or not finite) loses digits: send it as a string'
    return undefined
  }
  if (typeof v === 'string') {
    let text = v
    if (!isWellFormed(text)) {
      text = wellFormed(text)
      noteRepaired(st)
    }
    if (!st.scan) return text
    const r = st.scan.text(text)
    if (r !== text) noteFound(st)
    return r
  }
  if (st.scan) {
    // A phone or card number sent as a JSON number: 11 digits at least.
    if (typeof v === 'number' && Number.isInteger(v) && v >= 1e10) {
      const s = String(v)
      const r = st.scan.text(s)
      if (r === s) return v
      noteFound(st)
      return r
    }
  }
  if (v === null || typeof v !== 'object') return v
  if (depth >= MAX_DEPTH) {
    st.error = `nested deeper than ${MAX_DEPTH} levels`
    st.code = 'NESTING_TOO_DEEP'
    return undefined
  }
  if (Array.isArray(v)) {
    st.keys += v.length
    if (st.keys > MAX_KEYS) {
      st.error = `more than ${MAX_KEYS} keys and items`
      return undefined
    }
    const out = new Array<unknown>(v.length)
    for (let i = 0; i < v.length; i++) {
      st.path.push(String(i))
      out[i] = walk(v[i], depth + 1, st)
      if (st.error) return undefined
      st.path.pop()
    }
    return out
  }
  const out: Record<string, unknown> = {}
  let renamed = false
  for (const k in v as Record<string, unknown>) {
    if (++st.keys > MAX_KEYS) {
      st.error = `more than ${MAX_KEYS} keys and items`
      return undefined
    }
    if (C3_KEYS.test(k)) continue
    const key = storedKey(k, out, renamed, st)
    if (key !== k) renamed = true
    out[key] = walk((v as Record<string, unknown>)[k], depth + 1, st)
    if (st.error) return undefined
    st.path.pop()
  }
  return out
}

/**
 * A key as stored, pushed on the path: keys are the app's text too (a contact list keyed by
 * phone number), so an identifier in one is replaced as in a value and listed under the key as
 * stored. Once a key of `out` was replaced, two keys may come out equal (two numbers masked
 * alike): the later one gets a suffix rather than overwrite the other's value.
 */
function storedKey(k: string, out: Record<string, unknown>, renamed: boolean, st: WalkState): string {
  const text = wellFormed(k)
  const scanned = st.scan ? st.scan.text(text) : text
  let key = scanned
  if ((scanned !== k || renamed) && Object.hasOwn(out, key)) {
    let n = 2
    while (Object.hasOwn(out, `${scanned}#${n}`)) n++
    key = `${scanned}#${n}`
  }
  st.path.push(key)
  if (text !== k) noteRepaired(st)
  if (scanned !== text) noteFound(st)
  return key
}

/**
 * `found` collects the top-level values that are wholly one identifier when the policy digests:
 * they move to the hashed traits with the kind found (a trait `tel` holding a mobile number is
 * stored like the sensitive trait `phone`).
 */
function scrub(
  input: Record<string, unknown>,
  field: string,
  sensitive: ReadonlySet<string> | undefined,
  moved: Record<string, string>,
  scan: ValueScanner | undefined,
  foundPaths: string[],
  found?: Record<string, PiiKind>,
): Scrubbed {
  const st: WalkState = { keys: 0, error: undefined, path: [field], scan, found: foundPaths }
  const value: Record<string, unknown> = {}
  let renamed = false
  for (const k in input) {
    if (++st.keys > MAX_KEYS) return { value: {}, error: { field, message: `more than ${MAX_KEYS} keys and items`, code: 'VALIDATION_FAILED' } }
    if (C3_KEYS.test(k)) continue
    const x = input[k]
    if (sensitive?.has(k)) {
      if (x !== null && x !== undefined && typeof x !== 'object') moved[k] = String(x)
      continue
    }
    // The key before the value: `whole` leaves what it read of the value for the `text` after it,
    // and a key scanned in between would throw that away.
    const key = storedKey(k, value, renamed, st)
    if (key !== k) renamed = true
    if (found && typeof x === 'string') {
      const kind = scan!.whole(x)
      if (kind) {
        moved[key] = x
        found[key] = kind
        noteFound(st)
        st.path.pop()
        continue
      }
    }
    value[key] = walk(x, 1, st)
    if (st.error) return { value: {}, error: { field: st.path.join('.'), message: st.error, code: st.code ?? 'VALIDATION_FAILED' } }
    st.path.pop()
  }
  return { value }
}

/** A field of the message itself (an event or page name, a category, a group id), repaired and scanned like a property value. */
function scanField(s: string, where: string, scan: ValueScanner | undefined, foundPaths: string[]): string {
  if (!s) return s
  const text = wellFormed(s)
  if (text !== s && foundPaths.length < MAX_FOUND_PATHS) foundPaths.push(`unpaired_surrogate:${where}`)
  if (!scan) return text
  const r = scan.text(text)
  if (r !== text && foundPaths.length < MAX_FOUND_PATHS) foundPaths.push(`personal_data:${where}`)
  return r
}

function minimizeContext(ctx: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of CONTEXT_KEEP) {
    const v = ctx[k]
    if (v === undefined) continue
    if (k === 'device' && v && typeof v === 'object') {
      const d: Record<string, unknown> = {}
      for (const dk in v as Record<string, unknown>) if (!DEVICE_DROP.has(dk)) d[dk] = (v as Record<string, unknown>)[dk]
      out[k] = d
    } else out[k] = v
  }
  return out
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
