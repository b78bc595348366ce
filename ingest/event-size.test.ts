import { afterEach, describe, expect, it, vi } from 'vitest'
import { createPii } from '../core/pii.js'
import { jsonLargerThan } from './event-size.js'
import { normalizeMessage } from './normalize.js'
import { createRng } from '../demo/demo.random.js'
import { MAX_EVENT_BYTES } from './segment.schema.js'

const exact = (v: unknown) => Buffer.byteLength(JSON.stringify(v))

/** The project's seeded generator: the same values on every run. */
function rng(seed: number): () => number {
  const g = createRng(seed, 0)
  return () => g.float()
}

// Characters whose JSON takes 1, 2, 3, 4 (a pair) and 6 bytes, and the escaped ones.
const PIECES = ['a', 'Z', '7', ' ', 'é', 'ß', '手', '机', '😀', '"', '\\', '\n', '\t', '\u0001', '\u001f', '\ud800', '\udfff', '/', '\u2028']
const NUMBERS = [0, -0, 1, -1, 0.1, 1e21, 1e-7, -1.7976931348623157e308, 5e-324, 123456789012345, 2 ** 53, Infinity, -Infinity]

function value(r: () => number, depth: number): unknown {
  const k = r()
  if (depth > 4 || k < 0.45) {
    const p = r()
    if (p < 0.5) return Array.from({ length: Math.floor(r() * 40) }, () => PIECES[Math.floor(r() * PIECES.length)]).join('')
    if (p < 0.75) return NUMBERS[Math.floor(r() * NUMBERS.length)]! * (r() < 0.5 ? 1 : r())
    if (p < 0.9) return r() < 0.5
    return null
  }
  if (k < 0.7) return Array.from({ length: Math.floor(r() * 6) }, () => value(r, depth + 1))
  const o: Record<string, unknown> = {}
  for (let i = Math.floor(r() * 6); i > 0; i--) o[Array.from({ length: 1 + Math.floor(r() * 8) }, () => PIECES[Math.floor(r() * PIECES.length)]).join('')] = value(r, depth + 1)
  return o
}

afterEach(() => vi.restoreAllMocks())

describe('the per-event size limit without serializing', () => {
  it('gives the answer JSON.stringify gives, at the limit and one byte either side, for random JSON values', () => {
    const r = rng(19)
    for (let i = 0; i < 3000; i++) {
      const v = value(r, 0)
      // Through JSON once, as the parser hands events over (Infinity becomes null, -0 becomes 0 …).
      const parsed = JSON.parse(JSON.stringify({ v })) as unknown
      const size = exact(parsed)
      for (const limit of [size - 1, size, size + 1, 0, 2 * size, Math.floor(size / 6)]) {
        expect(jsonLargerThan(parsed, limit), `${JSON.stringify(parsed)} at ${limit}`).toBe(size > limit)
      }
    }
  })

  it('counts what the parser makes of numbers beyond the double range (Infinity, written null)', () => {
    const parsed = JSON.parse('{"big":1e400,"small":-1e400,"zero":-0}') as unknown
    const size = exact(parsed)
    expect(jsonLargerThan(parsed, size)).toBe(false)
    expect(jsonLargerThan(parsed, size - 1)).toBe(true)
  })

  it('decides at the 32 KB limit exactly: ASCII, three-byte characters, escapes', () => {
    for (const piece of ['a', '手', '\u0001', '"', '😀']) {
      for (const delta of [-1, 0, 1]) {
        const target = MAX_EVENT_BYTES + delta
        let s = piece.repeat(Math.floor((MAX_EVENT_BYTES - exact({ t: '' })) / (exact(piece) - 2)))
        while (exact({ t: s }) > target) s = s.slice(0, -piece.length)
        // Padded with ASCII to land exactly on limit + delta.
        const ev = { t: s + 'x'.repeat(target - exact({ t: s })) }
        expect(exact(ev), piece).toBe(MAX_EVENT_BYTES + delta)
        expect(jsonLargerThan(ev, MAX_EVENT_BYTES), `${JSON.stringify(piece)} ${delta}`).toBe(delta > 0)
      }
    }
  })

  it('builds no JSON for an ordinary event, and does only between the bounds', () => {
    const spy = vi.spyOn(JSON, 'stringify')
    const ev = { type: 'track', messageId: 'm1', userId: 'C1', event: 'product_viewed', properties: { product_id: 'wm-01', note: '手机银行'.repeat(200) }, context: { app: { name: 'bank', version: '9.1' } } }
    expect(jsonLargerThan(ev, MAX_EVENT_BYTES)).toBe(false)
    expect(jsonLargerThan({ s: 'x'.repeat(MAX_EVENT_BYTES) }, MAX_EVENT_BYTES)).toBe(true)
    expect(spy).not.toHaveBeenCalled()
    // 10,000 ASCII characters: between 10 KB and 60 KB by the bounds, so measured.
    expect(jsonLargerThan({ s: 'x'.repeat(10_000) }, MAX_EVENT_BYTES)).toBe(false)
    expect(spy).toHaveBeenCalledTimes(1)
  })

  it('measures exactly what the bounds cannot vouch for (undefined, toJSON)', () => {
    for (const v of [{ a: undefined, b: 'x' }, [undefined, 1], { d: new Date(0) }, { f: () => 1, g: [Symbol('s')] }]) {
      const size = exact(v)
      expect(jsonLargerThan(v, size), JSON.stringify(v)).toBe(false)
      expect(jsonLargerThan(v, size - 1), JSON.stringify(v)).toBe(true)
    }
  })

  it('is what normalization uses: an ordinary message is not serialized whole, one over 32 KB is refused', () => {
    const opts = { receivedAt: Date.now(), backdateMs: 86_400_000, maxFutureMs: 60_000, sensitiveTraits: new Set<string>(), pii: createPii('test-secret-test-secret-test-secret'), scan: false as const }
    const raw = { type: 'track', messageId: 'm-size', userId: 'C1', event: 'e', properties: { a: 1, b: 'two' } }
    const spy = vi.spyOn(JSON, 'stringify')
    expect(normalizeMessage(raw, 1, {}, opts).ok).toBe(true)
    expect(spy.mock.calls.filter((c) => c[0] === raw)).toEqual([])
    spy.mockRestore()
    const big = normalizeMessage({ ...raw, properties: { s: 'x'.repeat(MAX_EVENT_BYTES) } }, 1, {}, opts)
    expect(big).toMatchObject({ ok: false, rejection: { code: 'EVENT_TOO_LARGE', field: '(event)' } })
  })

  it('still digests the content of a message without messageId, as before (retries deduplicate)', () => {
    const opts = { receivedAt: Date.now(), backdateMs: 86_400_000, maxFutureMs: 60_000, sensitiveTraits: new Set<string>(), pii: createPii('test-secret-test-secret-test-secret'), scan: false as const }
    const a = normalizeMessage({ type: 'track', userId: 'C1', event: 'e', properties: { a: 1 } }, 1, {}, opts)
    const b = normalizeMessage({ type: 'track', userId: 'C1', event: 'e', properties: { a: 1 } }, 1, {}, opts)
    const c = normalizeMessage({ type: 'track', userId: 'C1', event: 'e', properties: { a: 2 } }, 1, {}, opts)
    expect(a.ok && b.ok && c.ok).toBe(true)
    if (a.ok && b.ok && c.ok) {
      expect(a.event.messageId).toMatch(/^qm-[0-9a-f]{32}$/)
      expect(a.event.messageId).toBe(b.event.messageId)
      expect(c.event.messageId).not.toBe(a.event.messageId)
    }
  })
})
