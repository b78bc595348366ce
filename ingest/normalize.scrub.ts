import type { ErrorCode } from '../core/errors.js'
import type { PiiKind, ValueScanner } from '../core/pii.scan.js'
import { MAX_DEPTH, MAX_KEYS } from './segment.schema.js'
import { isWellFormed, wellFormed } from './well-formed.js'

/**
 * The privacy scrub of a message's objects (properties, traits, context) on the ingest path:
 * C3 secrets dropped wherever they appear, sensitive traits moved out, identifiers found by value
 * replaced by the tenant's policy, text UTF-8 cannot carry repaired, and the context cut to device
 * and app facts. Every find and repair is listed as a violation path of the event.
 */

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

/**
 * Beyond 2^53 a JSON number has already lost digits when parsed, and one beyond the double range
 * (1e400) parses as Infinity and would be stored as null: both are refused (send them as text).
 */
const unsafeNumber = (v: number) => !Number.isFinite(v) || Math.abs(v) > Number.MAX_SAFE_INTEGER

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
export function scrub(
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
export function scanField(s: string, where: string, scan: ValueScanner | undefined, foundPaths: string[]): string {
  if (!s) return s
  const text = wellFormed(s)
  if (text !== s && foundPaths.length < MAX_FOUND_PATHS) foundPaths.push(`unpaired_surrogate:${where}`)
  if (!scan) return text
  const r = scan.text(text)
  if (r !== text && foundPaths.length < MAX_FOUND_PATHS) foundPaths.push(`personal_data:${where}`)
  return r
}

/** The context fields kept, the device's without its advertising id, push token and id. */
export function minimizeContext(ctx: Record<string, unknown>): Record<string, unknown> {
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
