import type { EventType } from './segment.schema.js'

/**
 * The accept path of the message schemas (segment.schema.ts), checked field by field without
 * zod: on the ingest path zod's interpreted parse of every message was a third of normalizing
 * it (profile in the ingest benchmark). This answers only "certainly valid, and this is what zod
 * would output", or `undefined`; `undefined` sends the message through zod, which stays the one
 * source of every rejection and its message. So a case this file does not know (a trimmed id,
 * a number as an id, a prototype other than Object's) costs the zod parse and nothing else.
 * segment.fast.test.ts checks, over generated and edge-case messages, that whatever this
 * accepts zod accepts with the same output.
 *
 * Why not a schema compiler (ajv and the like): the schemas transform as they check (ids sent as
 * numbers become strings, names are trimmed), which JSON Schema cannot say, and the error
 * messages the API answers with are zod's.
 */

type Fields = Record<string, unknown>

/** The keys each message type keeps (zod strips the rest). */
const COMMON = ['messageId', 'userId', 'anonymousId', 'timestamp', 'originalTimestamp', 'sentAt', 'context', 'integrations', 'receivedAt', 'version', '_metadata', 'writeKey'] as const
const OWN: Record<EventType, readonly string[]> = {
  track: ['event', 'properties'],
  identify: ['traits'],
  page: ['name', 'category', 'properties'],
  screen: ['name', 'category', 'properties'],
  group: ['groupId', 'traits'],
  alias: ['previousId'],
}

/** Thrown-free sentinel: the field is not certainly valid. */
const NO = Symbol('no')

/** A string id: 1..200 characters, with nothing trim() would remove at either end. */
function plainId(v: unknown): string | typeof NO {
  if (typeof v !== 'string') return NO
  const n = v.length
  if (n === 0 || n > 200) return NO
  // Any code unit trim() might remove at an edge (whitespace, line terminators, BOM) sends it to zod.
  if (v.charCodeAt(0) <= 32 || v.charCodeAt(n - 1) <= 32 || v.charCodeAt(0) >= 0x80 || v.charCodeAt(n - 1) >= 0x80) return NO
  return v
}

function isoTime(v: unknown): boolean {
  return typeof v === 'string' && v.length <= 64 && !Number.isNaN(Date.parse(v))
}

/**
 * An object zod's record would take as it is, as JSON.parse makes them. One holding an own
 * `__proto__` key, or without Object's prototype, goes to zod, whose copy treats it its own way. Handed on without a copy, unlike zod: nothing after
 * the parse changes these objects.
 */
function plainObject(v: unknown): boolean {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  return Object.getPrototypeOf(v) === Object.prototype && !Object.hasOwn(v, '__proto__')
}

/** Present and not null. */
const given = (v: unknown) => v !== undefined && v !== null

/**
 * What `MESSAGE_SCHEMAS[type].safeParse({ ...item, type })` outputs when it succeeds, or
 * `undefined` when this cannot tell (the caller then asks zod).
 */
export function fastMessage(type: EventType, item: Fields): Fields | undefined {
  if (Object.getPrototypeOf(item) !== Object.prototype) return undefined
  const out: Fields = { type }
  // Ids: optional and nullable, except where the type requires them.
  for (const k of ['messageId', 'userId', 'anonymousId'] as const) {
    const v = item[k]
    if (v === undefined) {
      // zod keeps an optional key that is there with no value.
      if (k in item) out[k] = undefined
      continue
    }
    if (v === null) {
      if (k === 'messageId') return undefined
      if (k === 'userId' && type === 'alias') return undefined
      out[k] = null
      continue
    }
    const s = plainId(v)
    if (s === NO) return undefined
    out[k] = s
  }
  for (const k of ['timestamp', 'originalTimestamp', 'sentAt'] as const) if (!keep(item, out, k, isoTime)) return undefined
  for (const k of ['context', 'integrations'] as const) if (!keep(item, out, k, plainObject)) return undefined
  for (const k of ['receivedAt', 'version', '_metadata', 'writeKey'] as const) if (k in item) out[k] = item[k]

  switch (type) {
    case 'track': {
      const e = plainId(item.event)
      if (e === NO || !keep(item, out, 'properties', plainObject)) return undefined
      out.event = e
      break
    }
    case 'identify':
      if (!keep(item, out, 'traits', plainObject)) return undefined
      break
    case 'page':
    case 'screen':
      if (!keep(item, out, 'name', (n) => plainId(n) !== NO)) return undefined
      if (!keep(item, out, 'category', (c) => typeof c === 'string' && c.length <= 200)) return undefined
      if (!keep(item, out, 'properties', plainObject)) return undefined
      break
    case 'group': {
      const g = plainId(item.groupId)
      if (g === NO || !keep(item, out, 'traits', plainObject)) return undefined
      out.groupId = g
      break
    }
    case 'alias': {
      const p = plainId(item.previousId)
      if (p === NO || out.userId === undefined || out.userId === null) return undefined
      out.previousId = p
      return out
    }
  }
  // Every type but alias needs a userId or an anonymousId.
  if (!given(out.userId) && !given(out.anonymousId)) return undefined
  return out
}

/**
 * An optional, nullable field, kept as it is when `ok` takes it (zod keeps an optional key that
 * is there with no value); false when it is there and `ok` does not take it.
 */
function keep(item: Fields, out: Fields, k: string, ok: (v: unknown) => boolean): boolean {
  const v = item[k]
  if (v === undefined) {
    if (k in item) out[k] = undefined
    return true
  }
  if (v !== null && !ok(v)) return false
  out[k] = v
  return true
}

/** For the tests: the keys zod keeps for each type. */
export const KEPT_KEYS: Readonly<Record<EventType, readonly string[]>> = {
  track: ['type', ...COMMON, ...OWN.track],
  identify: ['type', ...COMMON, ...OWN.identify],
  page: ['type', ...COMMON, ...OWN.page],
  screen: ['type', ...COMMON, ...OWN.screen],
  group: ['type', ...COMMON, ...OWN.group],
  alias: ['type', ...COMMON, ...OWN.alias],
}
