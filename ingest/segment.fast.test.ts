import { describe, expect, it } from 'vitest'
import { createRng, type Rng } from '../demo/demo.random.js'
import { fastMessage, KEPT_KEYS } from './segment.fast.js'
import { EVENT_TYPES, MESSAGE_SCHEMAS, type EventType } from './segment.schema.js'

/**
 * The hand-checked accept path against zod, the schemas' one definition: on every message, when
 * the fast path answers, zod accepts the same message and outputs the same value. Messages are
 * drawn (seeded) from values at and around every rule's edge.
 */

const long = (n: number) => 'x'.repeat(n)
const ID_VALUES: unknown[] = [
  undefined, null, 'C0000000001', 'dev-1', ' C1', 'C1 ', '\tC1', 'C1\n', '\u00a0C1', 'C1\u2028', '\ufeffC1', 'C1\u3000', '', ' ', long(200), long(201), ` ${long(200)}`,
  '中文编号', 'é', 0, 1, -1, 1.5, 1e21, Number.NaN, Number.POSITIVE_INFINITY, true, false, [], ['C1'], {}, { id: 'C1' },
]
const TIME_VALUES: unknown[] = [
  undefined, null, '2026-12-01T08:00:00.000Z', '2026-12-01', '2026-12-01T08:00:00+08:00', 'not a time', '', long(65), `2026-12-01T08:00:00.000Z${' '.repeat(40)}`,
  1764576000000, true, {}, [],
]
const OBJECT_VALUES: unknown[] = [
  undefined, null, {}, { a: 1, b: 'x', c: { d: [1, 2] } }, [], [1], 'text', 3, true, Object.create(null) as object,
  Object.assign(Object.create(null) as object, { a: 1 }), JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}') as object, new Date(0),
]
const NAME_VALUES: unknown[] = [undefined, null, 'product_viewed', ' viewed', 'viewed ', '', ' ', long(200), long(201), '转账', 7, {}, []]
const CATEGORY_VALUES: unknown[] = [undefined, null, 'home', '', ' spaced ', long(200), long(201), 5, {}]
const ANY_VALUES: unknown[] = [undefined, null, 'x', 1, {}, [], true]

function pickField(r: Rng, values: unknown[]): unknown {
  return values[r.int(0, values.length - 1)]
}

const FIELDS: [string, unknown[]][] = [
  ...['messageId', 'userId', 'anonymousId', 'groupId', 'previousId'].map((k): [string, unknown[]] => [k, ID_VALUES]),
  ...['timestamp', 'originalTimestamp', 'sentAt'].map((k): [string, unknown[]] => [k, TIME_VALUES]),
  ...['context', 'integrations', 'properties', 'traits'].map((k): [string, unknown[]] => [k, OBJECT_VALUES]),
  ['event', NAME_VALUES],
  ['name', NAME_VALUES],
  ['category', CATEGORY_VALUES],
  ...['receivedAt', 'version', '_metadata', 'writeKey', 'extra', 'type'].map((k): [string, unknown[]] => [k, ANY_VALUES]),
]

/** Half: an SDK's message with up to three fields set to edge values; half: fields drawn at random. */
function message(r: Rng, type: EventType, i: number): Record<string, unknown> {
  if (r.chance(0.5)) {
    const m = typical(type, i)
    for (let n = r.int(0, 3); n > 0; n--) {
      const [k, values] = FIELDS[r.int(0, FIELDS.length - 1)]!
      const v = pickField(r, values)
      if (v === undefined && r.chance(0.5)) delete m[k]
      else m[k] = v
    }
    return m
  }
  const m: Record<string, unknown> = {}
  const set = (k: string, values: unknown[], p = 0.7) => {
    if (!r.chance(p)) return
    const v = pickField(r, values)
    if (v !== undefined || r.chance(0.3)) m[k] = v
  }
  for (const k of ['messageId', 'userId', 'anonymousId', 'groupId', 'previousId']) set(k, ID_VALUES, k === 'groupId' || k === 'previousId' ? 0.5 : 0.7)
  for (const k of ['timestamp', 'originalTimestamp', 'sentAt']) set(k, TIME_VALUES, 0.5)
  for (const k of ['context', 'integrations', 'properties', 'traits']) set(k, OBJECT_VALUES, 0.6)
  set('event', NAME_VALUES, type === 'track' ? 0.9 : 0.2)
  set('name', NAME_VALUES, 0.4)
  set('category', CATEGORY_VALUES, 0.3)
  for (const k of ['receivedAt', 'version', '_metadata', 'writeKey', 'extra', 'type']) set(k, ANY_VALUES, 0.2)
  return m
}

/** A message as the SDKs send it: the fast path must take these itself. */
function typical(type: EventType, i: number): Record<string, unknown> {
  const base = {
    messageId: `m-${i}`,
    userId: `C${String(i).padStart(10, '0')}`,
    anonymousId: `dev-${i}`,
    timestamp: '2026-12-01T08:00:00.000Z',
    sentAt: '2026-12-01T08:00:01.000Z',
    context: { app: { version: '4.0.3' }, locale: 'zh-CN' },
    integrations: {},
    _metadata: { nodeVersion: '20' },
  }
  switch (type) {
    case 'track':
      return { ...base, event: 'product_viewed', properties: { product_id: 'wm-1', amount: 1.5 } }
    case 'identify':
      return { ...base, traits: { age_band: '30-39' } }
    case 'page':
    case 'screen':
      return { ...base, name: 'home', category: 'main', properties: { path: '/' } }
    case 'group':
      return { ...base, groupId: 'g-1', traits: { name: 'branch' } }
    case 'alias':
      return { ...base, previousId: `dev-${i}` }
  }
}

describe('the fast accept path of the message schemas', () => {
  it('accepts only what zod accepts, and outputs what zod outputs', () => {
    const r = createRng(20261203, 0)
    let taken = 0
    let rejectedByZod = 0
    for (let i = 0; i < 30_000; i++) {
      const type = EVENT_TYPES[i % EVENT_TYPES.length]!
      const item = message(r, type, i)
      const fast = fastMessage(type, item)
      const zod = MESSAGE_SCHEMAS[type].safeParse({ ...item, type })
      if (!zod.success) rejectedByZod++
      if (fast === undefined) continue
      taken++
      if (!zod.success) throw new Error(`fast path took what zod refuses: ${type} ${JSON.stringify(item)}: ${zod.error.issues[0]?.message}`)
      expect(fast, `${type} ${JSON.stringify(item)}`).toStrictEqual(zod.data)
    }
    // Both sides of the comparison were exercised.
    expect(taken).toBeGreaterThan(1_000)
    expect(rejectedByZod).toBeGreaterThan(10_000)
  })

  it('takes the messages the SDKs send, keeping only the keys zod keeps', () => {
    for (const type of EVENT_TYPES) {
      for (let i = 0; i < 50; i++) {
        const item = { ...typical(type, i), unknownKey: 'dropped' }
        const fast = fastMessage(type, item)
        expect(fast, type).toBeDefined()
        expect(fast).toStrictEqual(MESSAGE_SCHEMAS[type].safeParse({ ...item, type }).data)
        for (const k of Object.keys(fast!)) expect(KEPT_KEYS[type]).toContain(k)
      }
    }
  })

  it('leaves to zod every edge it does not decide: trimmed ids, ids sent as numbers, own __proto__ keys', () => {
    const base = typical('track', 1)
    for (const edge of [{ userId: ' C1' }, { userId: 42 }, { event: 'viewed\u00a0' }, { properties: JSON.parse('{"__proto__": {"x": 1}}') as object }]) {
      const item = { ...base, ...edge }
      expect(fastMessage('track', item), JSON.stringify(edge)).toBeUndefined()
      expect(MESSAGE_SCHEMAS.track.safeParse({ ...item, type: 'track' }).success).toBe(true)
    }
  })
})
