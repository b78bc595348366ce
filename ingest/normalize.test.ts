import { describe, expect, it } from 'vitest'
import { createPii } from '../core/pii.js'
import { normalizeMessage, tooDeep, type NormalizeOptions } from './normalize.js'
import { MAX_DEPTH } from './segment.schema.js'

const opts = (): NormalizeOptions => ({
  receivedAt: Date.now(),
  backdateMs: 30 * 86_400_000,
  maxFutureMs: 86_400_000,
  sensitiveTraits: new Set(['phone']),
  pii: createPii('test-secret-test-secret-test-secret'),
})
const track = (over: Record<string, unknown> = {}) => ({ type: 'track', messageId: 'm1', userId: 'C1', event: 'e', ...over })
const norm = (m: unknown) => normalizeMessage(m, 1, {}, opts())

/** `{"d":{"d":…}}` n levels deep, built without recursion. */
function nest(n: number, leaf: unknown = 1): Record<string, unknown> {
  let v: unknown = leaf
  for (let i = 0; i < n; i++) v = { d: v }
  return v as Record<string, unknown>
}

describe('device clocks', () => {
  it('keeps a sentAt the column holds (a reset clock in 1970 too) and refuses one it does not', () => {
    for (const sentAt of ['1970-01-01T00:00:00Z', '1900-01-01T00:00:00Z', '2286-11-21T00:00:00Z', '2299-12-31T23:59:59.999Z']) {
      const n = norm(track({ sentAt }))
      expect(n.ok, sentAt).toBe(true)
      if (n.ok) expect(n.event.sentAt).toBe(Date.parse(sentAt))
    }
    for (const sentAt of ['0000-01-01T00:00:00Z', '1899-12-31T23:59:59.999Z', '2300-01-01T00:00:00Z', '9999-12-31T00:00:00Z', '-000001-01-01T00:00:00Z']) {
      const n = norm(track({ sentAt }))
      expect(n.ok, sentAt).toBe(false)
      if (!n.ok) expect(n.rejection).toMatchObject({ code: 'TIMESTAMP_OUT_OF_RANGE', field: 'sentAt' })
    }
  })

  it('corrects a whole clock in the wrong century (timestamp and sentAt both year 1970) to the receive time', () => {
    const o = opts()
    const n = normalizeMessage(track({ sentAt: '1970-01-01T00:00:10Z', originalTimestamp: '1970-01-01T00:00:00Z' }), 1, {}, o)
    expect(n.ok && n.event.timestamp).toBe(o.receivedAt - 10_000)
  })
})

describe('nesting', () => {
  it('refuses a message nested 4,100 or 100,000 levels deep with a coded error naming the path, without overflowing', () => {
    for (const depth of [4_100, 100_000]) {
      const n = norm(track({ properties: nest(depth) }))
      expect(n.ok).toBe(false)
      if (!n.ok) {
        expect(n.rejection.code).toBe('NESTING_TOO_DEEP')
        expect(n.rejection.field).toBe(`properties${'.d'.repeat(MAX_DEPTH)}`)
      }
    }
    // Arrays too, and in traits and context.
    let arr: unknown = 1
    for (let i = 0; i < 100_000; i++) arr = [arr]
    expect(norm({ type: 'identify', userId: 'C1', traits: { a: arr } })).toMatchObject({ ok: false, rejection: { code: 'NESTING_TOO_DEEP', field: `traits.a${'.0'.repeat(MAX_DEPTH - 1)}` } })
    expect(norm(track({ context: nest(50) }))).toMatchObject({ ok: false, rejection: { code: 'NESTING_TOO_DEEP' } })
  })

  it('takes properties nested up to the limit', () => {
    expect(norm(track({ properties: nest(MAX_DEPTH) })).ok).toBe(true)
    expect(norm(track({ properties: nest(MAX_DEPTH + 1) })).ok).toBe(false)
  })

  it('finds the first too-deep path iteratively', () => {
    expect(tooDeep({ a: 1, b: { c: [{ d: {} }] } }, 3)).toEqual(['b', 'c', '0'])
    expect(tooDeep({ a: { b: {} } }, 3)).toBeUndefined()
    expect(tooDeep('text', 0)).toBeUndefined()
  })
})

describe('numbers', () => {
  it('refuses numbers beyond ±2^53 or not finite, naming the path; keeps the safe ones', () => {
    for (const v of [2 ** 53 + 2, -(2 ** 53) - 2, 1e300, Infinity, -Infinity, NaN]) {
      const n = norm(track({ properties: { amount: v } }))
      expect(n.ok, String(v)).toBe(false)
      if (!n.ok) expect(n.rejection).toMatchObject({ code: 'VALIDATION_FAILED', field: 'properties.amount' })
    }
    // 1e400 in the JSON text parses as Infinity.
    const parsed = JSON.parse('{"type":"track","userId":"C1","event":"e","properties":{"x":{"y":[1e400]}}}') as unknown
    expect(norm(parsed)).toMatchObject({ ok: false, rejection: { field: 'properties.x.y.0' } })
    const ok = norm(track({ properties: { amount: 2 ** 53 - 1, small: -(2 ** 53) + 1, f: 0.1 } }))
    expect(ok.ok && JSON.parse(ok.event.properties)).toEqual({ amount: 2 ** 53 - 1, small: -(2 ** 53) + 1, f: 0.1 })
  })
})

/**
 * Half of a character (an unpaired UTF-16 surrogate: a `\ud83d` JSON escape, or a client that
 * cut a string between an emoji's two halves) has no UTF-8 form: the engine refuses it in a JSON
 * insert and a TabSeparated body turns it into U+FFFD. Text is repaired at the edge; an id is
 * refused, since two ids repaired alike would become one.
 */
describe('unpaired surrogates', () => {
  const LONE = '\ud83d'
  const parse = (text: string) => JSON.parse(text) as unknown
  const lone = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/
  /** Every key and string value at any depth. */
  const strings = (v: unknown, out: string[] = []): string[] => {
    if (typeof v === 'string') out.push(v)
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        out.push(k)
        strings(x, out)
      }
    }
    return out
  }

  it('repairs them to U+FFFD in values and keys of properties, traits and context, and in event and page names, and says where', () => {
    const sent = parse(
      '{"type":"track","messageId":"m1","userId":"C1","event":"buy\\ud83d","properties":{"note":"a\\ud83db","k\\udc00":1,"list":["x\\udc00"],"ok":"\\ud83d\\ude00"},"context":{"app":{"name":"app\\ud83d"}}}',
    )
    const n = norm(sent)
    expect(n.ok).toBe(true)
    if (!n.ok) return
    expect(n.event.event).toBe('buy\ufffd')
    expect(parse(n.event.properties)).toEqual({ note: 'a\ufffdb', 'k\ufffd': 1, list: ['x\ufffd'], ok: '😀' })
    expect(parse(n.event.context)).toEqual({ app: { name: 'app\ufffd' } })
    expect(n.event.properties).not.toMatch(/\\ud[89a-f]/)
    expect(n.event.violations).toEqual(expect.arrayContaining(['unpaired_surrogate:properties.note', 'unpaired_surrogate:properties.k\ufffd', 'unpaired_surrogate:context.app.name', 'unpaired_surrogate:event']))

    const id = norm({ type: 'identify', userId: 'C1', traits: { nick: `x${LONE}`, [`t${LONE}`]: 'v', nested: { a: `\udc00` } } })
    expect(id.ok).toBe(true)
    if (id.ok) {
      expect(id.event.traits?.plain).toEqual({ nick: 'x\ufffd', 't\ufffd': 'v', nested: '{"a":"\ufffd"}' })
      for (const s of strings(id.event)) expect(lone.test(s), s).toBe(false)
    }
    const page = norm({ type: 'page', userId: 'C1', name: `home${LONE}`, category: `\udc00cat` })
    expect(page.ok && [page.event.event, parse(page.event.properties)]).toEqual(['home\ufffd', { category: '\ufffdcat' }])
  })

  it('repairs them with the value scan off too', () => {
    const n = normalizeMessage(track({ properties: { note: `a${LONE}` } }), 1, {}, { ...opts(), scan: false })
    expect(n.ok && parse(n.event.properties)).toEqual({ note: 'a\ufffd' })
  })

  it('refuses an id holding one with a coded 400 naming the field', () => {
    const cases: [Record<string, unknown>, string][] = [
      [track({ userId: `C${LONE}` }), 'userId'],
      [track({ userId: undefined, anonymousId: `\udc00a` }), 'anonymousId'],
      [track({ messageId: `m${LONE}` }), 'messageId'],
      [{ type: 'alias', previousId: `p${LONE}`, userId: 'C1' }, 'previousId'],
      [{ type: 'group', userId: 'C1', groupId: `g${LONE}` }, 'groupId'],
    ]
    for (const [m, field] of cases) {
      const n = norm(m)
      expect(n.ok, field).toBe(false)
      if (!n.ok) {
        expect(n.rejection).toMatchObject({ code: 'INVALID_ENCODING', field })
        expect(n.rejection.message).toMatch(/unpaired UTF-16 surrogate/)
      }
    }
  })

  it('cuts a session id between characters, never inside one', () => {
    const n = norm(track({ properties: { session_id: `${'s'.repeat(199)}😀` } }))
    expect(n.ok && n.event.sessionId).toBe('s'.repeat(199))
  })
})
