import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../core/errors.js'
import { compileSegment, explain } from './segment.compile.js'
import { keys, members, setupFixture, UNIVERSE, type Fixture } from './segment.fixture.js'
import { parseSegment } from './segment.schema.js'

/** Each operator against memberships worked out from the fixture's formulas (segment.fixture.ts). */

let fx: Fixture
beforeAll(async () => {
  fx = await setupFixture()
})
afterAll(async () => fx?.engine.close())

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i)
const m = (rule: unknown, purpose?: string) => members(fx, rule, purpose)

describe('number tags over bucketed bitmaps (score = k, absent when k % 10 = 0)', () => {
  it('eq, ne, in, not_in', async () => {
    expect(await m({ tag: 'score', op: 'eq', value: 15 })).toEqual([15])
    expect(await m({ tag: 'score', op: 'eq', value: 20 })).toEqual([])
    // Absent values are "not equal": 10, 20 ... are in ne.
    expect(await m({ tag: 'score', op: 'ne', value: 15 })).toEqual(keys((k) => k !== 15))
    expect(await m({ tag: 'score', op: 'in', value: [1, 2, 10, 149.5] })).toEqual([1, 2])
    expect(await m({ tag: 'score', op: 'not_in', value: [1, 2, 10] })).toEqual(keys((k) => k > 2))
  })

  it('gt, gte, lt, lte, between: whole buckets plus exact edges; the deleted customer 150 is never in', async () => {
    expect(await m({ tag: 'score', op: 'gt', value: 140 })).toEqual(range(141, 149))
    expect(await m({ tag: 'score', op: 'gte', value: 140 })).toEqual(range(141, 149))
    expect(await m({ tag: 'score', op: 'lt', value: 5 })).toEqual([1, 2, 3, 4])
    expect(await m({ tag: 'score', op: 'lte', value: 5 })).toEqual([1, 2, 3, 4, 5])
    expect(await m({ tag: 'score', op: 'between', value: [10, 25] })).toEqual([...range(11, 19), ...range(21, 25)])
    expect(await m({ tag: 'score', op: 'between', value: [33.5, 47.2] })).toEqual([...range(34, 39), ...range(41, 47)])
    expect(await m({ tag: 'score', op: 'gt', value: 1000 })).toEqual([])
    expect(await m({ tag: 'score', op: 'lte', value: 1000 })).toEqual(keys((k) => k % 10 !== 0))
  })

  it('exists and not_exists', async () => {
    expect(await m({ tag: 'score', op: 'exists' })).toEqual(keys((k) => k % 10 !== 0))
    expect(await m({ tag: 'score', op: 'not_exists' })).toEqual(range(1, 14).map((i) => i * 10))
  })

  it('exact-valued numbers (small = k % 5), 0 being a stored value', async () => {
    expect(await m({ tag: 'small', op: 'eq', value: 0 })).toEqual(keys((k) => k % 5 === 0))
    expect(await m({ tag: 'small', op: 'gt', value: 2 })).toEqual(keys((k) => k % 5 > 2))
    expect(await m({ tag: 'small', op: 'between', value: [1, 2] })).toEqual(keys((k) => k % 5 === 1 || k % 5 === 2))
    expect(await m({ tag: 'small', op: 'not_in', value: [0, 4] })).toEqual(keys((k) => k % 5 !== 0 && k % 5 !== 4))
  })
})

describe('date tags (birth = 2026-01-01 + k for k <= 100)', () => {
  it('compares local dates', async () => {
    expect(await m({ tag: 'birth', op: 'eq', value: '2026-02-01' })).toEqual([31])
    expect(await m({ tag: 'birth', op: 'lt', value: '2026-01-05' })).toEqual([1, 2, 3])
    // 2026-03-01 is 2026-01-01 + 59.
    expect(await m({ tag: 'birth', op: 'gte', value: '2026-03-01' })).toEqual(range(59, 100))
    expect(await m({ tag: 'birth', op: 'between', value: ['2026-01-10', '2026-01-20'] })).toEqual(range(9, 19))
    expect(await m({ tag: 'birth', op: 'not_exists' })).toEqual(range(101, 149))
  })
})

describe('labels: booleans, enums, lists', () => {
  it('booleans: stored only when true, false is the complement', async () => {
    const three = keys((k) => k % 3 === 0)
    expect(await m({ tag: 'flag', op: 'eq', value: true })).toEqual(three)
    expect(await m({ tag: 'flag', op: 'eq', value: false })).toEqual(keys((k) => k % 3 !== 0))
    expect(await m({ tag: 'flag', op: 'ne', value: true })).toEqual(keys((k) => k % 3 !== 0))
    expect(await m({ tag: 'flag', op: 'in', value: [true, false] })).toEqual(UNIVERSE)
    expect(await m({ tag: 'flag', op: 'not_in', value: [false] })).toEqual(three)
    expect(await m({ tag: 'flag', op: 'exists' })).toEqual(three)
  })

  it('enums (tier by k % 3, absent when k % 7 = 0)', async () => {
    expect(await m({ tag: 'tier', op: 'eq', value: 'gold' })).toEqual(keys((k) => k % 3 === 0 && k % 7 !== 0))
    expect(await m({ tag: 'tier', op: 'ne', value: 'gold' })).toEqual(keys((k) => k % 3 !== 0 || k % 7 === 0))
    expect(await m({ tag: 'tier', op: 'in', value: ['gold', 'silver'] })).toEqual(keys((k) => k % 3 !== 2 && k % 7 !== 0))
    expect(await m({ tag: 'tier', op: 'not_in', value: ['gold', 'silver'] })).toEqual(keys((k) => k % 3 === 2 || k % 7 === 0))
    expect(await m({ tag: 'tier', op: 'not_exists' })).toEqual(keys((k) => k % 7 === 0))
  })

  it('lists: eq is "contains", in is "any of"', async () => {
    expect(await m({ tag: 'kinds', op: 'eq', value: 'even' })).toEqual(keys((k) => k % 2 === 0))
    expect(await m({ tag: 'kinds', op: 'in', value: ['even', 'three'] })).toEqual(keys((k) => k % 2 === 0 || k % 3 === 0))
    expect(await m({ tag: 'kinds', op: 'ne', value: 'three' })).toEqual(keys((k) => k % 3 !== 0))
    expect(await m({ tag: 'kinds', op: 'exists' })).toEqual(keys((k) => k % 2 === 0 || k % 3 === 0))
  })
})

describe('window counts: absent is 0 (views_30d = k % 5 + 1 for k % 4 = 1)', () => {
  const views = (k: number) => (k % 4 === 1 ? (k % 5) + 1 : 0)
  it('comparisons that hold at 0 include customers without a value', async () => {
    expect(await m({ tag: 'views_30d', op: 'eq', value: 0 })).toEqual(keys((k) => views(k) === 0))
    expect(await m({ tag: 'views_30d', op: 'lt', value: 3 })).toEqual(keys((k) => views(k) < 3))
    expect(await m({ tag: 'views_30d', op: 'gte', value: 4 })).toEqual(keys((k) => views(k) >= 4))
    expect(await m({ tag: 'views_30d', op: 'ne', value: 0 })).toEqual(keys((k) => views(k) !== 0))
    expect(await m({ tag: 'views_30d', op: 'in', value: [0, 5] })).toEqual(keys((k) => views(k) === 0 || views(k) === 5))
    expect(await m({ tag: 'views_30d', op: 'exists' })).toEqual(keys((k) => views(k) !== 0))
  })
})

describe('event conditions and sequences (one pass over resolved events)', () => {
  const viewed = { names: ['product_viewed'] }
  it('count, sum, distinct over windows', async () => {
    expect(await m({ event: viewed, measure: 'count', op: 'gte', value: 3, window: { lastDays: 30 } })).toEqual(keys((k) => k % 4 === 1 && k % 5 >= 2))
    // A customer without events has a count of 0.
    expect(await m({ event: { names: ['login'] }, measure: 'count', op: 'eq', value: 0, window: { lastDays: 30 } })).toEqual(UNIVERSE)
    expect(await m({ event: { names: ['login'] }, measure: 'count', op: 'gte', value: 1, window: { lastDays: 60 } })).toEqual(keys((k) => k % 6 === 0))
    expect(await m({ event: { names: ['purchase'] }, measure: 'sum', property: 'amount', op: 'gt', value: 100, window: { lastDays: 7 } })).toEqual(
      keys((k) => k % 4 === 1 && k % 3 === 0 && k > 100),
    )
    expect(await m({ event: viewed, measure: 'distinct', property: 'page', op: 'eq', value: 2, window: { lastDays: 30 } })).toEqual(keys((k) => k % 4 === 1 && k % 5 >= 1))
    expect(await m({ event: { names: ['purchase'] }, measure: 'count', op: 'eq', value: 1, window: { from: '2026-03-11', to: '2026-03-11' } })).toEqual([])
    expect(await m({ event: { names: ['purchase'] }, measure: 'count', op: 'eq', value: 1, window: { from: '2026-03-12', to: '2026-03-13' } })).toEqual(
      keys((k) => k % 4 === 1 && k % 3 === 0),
    )
  })

  it('property filters', async () => {
    const where = [{ property: 'page', op: 'eq', value: 'p1' }]
    expect(await m({ event: { names: ['product_viewed'], where }, measure: 'count', op: 'gte', value: 1, window: { lastDays: 30 } })).toEqual(keys((k) => k % 4 === 1 && k % 5 >= 1))
  })

  it('A then B within N days', async () => {
    const seq = (within: number, a = 'product_viewed', b = 'purchase') => ({ sequence: [{ event: { names: [a] } }, { event: { names: [b] } }], withinDays: within })
    // Views at 2026-03-10 00:00-04:00 local, purchases at 2026-03-12 10:00: 2.25 to 2.4 days apart.
    expect(await m(seq(3))).toEqual(keys((k) => k % 4 === 1 && k % 3 === 0))
    expect(await m(seq(2))).toEqual([])
    expect(await m(seq(30, 'purchase', 'product_viewed'))).toEqual([])
    expect(await m({ not: seq(3) })).toEqual(keys((k) => !(k % 4 === 1 && k % 3 === 0)))
  })

  it('mixed trees combine tag bitmaps and event bitmaps', async () => {
    const rule = {
      all: [
        { any: [{ tag: 'tier', op: 'eq', value: 'gold' }, { tag: 'score', op: 'lt', value: 20 }] },
        { not: { event: { names: ['login'] }, measure: 'count', op: 'gt', value: 0, window: { lastDays: 60 } } },
      ],
    }
    expect(await m(rule)).toEqual(keys((k) => ((k % 3 === 0 && k % 7 !== 0) || (k < 20 && k % 10 !== 0)) && k % 6 !== 0))
    const plan = explain(parseSegment({ purpose: 'marketing', rule }), fx.opts)
    expect(plan).toMatchObject({ eventScans: 1, bitmapLeaves: 2, eventLeaves: 1 })
    expect(plan.root.strategy).toBe('bitmap')
    const kids = plan.root.children!
    expect(kids[0]!.children!.map((c) => [c.path, c.node, c.strategy])).toEqual([
      ['rule.all.0.any.0', 'tag', 'bitmap'],
      ['rule.all.0.any.1', 'tag', 'bitmap'],
    ])
    expect(kids[1]!.children!.map((c) => [c.path, c.node, c.strategy])).toEqual([['rule.all.1.not', 'event', 'event_scan']])
    // A tag-only tree reads no events.
    const tagsOnly = compileSegment(parseSegment({ purpose: 'marketing', rule: { tag: 'flag', op: 'exists' } }), fx.opts)
    expect(tagsOnly.plan.eventScans).toBe(0)
    expect(tagsOnly.sql).not.toMatch(/\bevents\b/)
  })
})

describe('refusals', () => {
  const refuse = (rule: unknown, purpose = 'marketing') => {
    try {
      compileSegment(parseSegment({ purpose, rule }), fx.opts)
    } catch (e) {
      expect(e).toBeInstanceOf(AppError)
      const a = e as AppError
      return { code: a.code, field: a.issues?.[0]?.field, message: a.message }
    }
    throw new Error('not refused')
  }

  it('a tag whose purposes exclude the segment purpose', async () => {
    const r = refuse({ all: [{ tag: 'flag', op: 'exists' }, { tag: 'risky', op: 'eq', value: true }] })
    expect(r).toMatchObject({ code: 'VALIDATION_FAILED', field: 'rule.all.1.tag' })
    expect(r.message).toMatch(/risk/)
    // The same tag is fine in a risk segment.
    const seg = parseSegment({ purpose: 'risk', rule: { tag: 'risky', op: 'eq', value: true } })
    expect(() => compileSegment(seg, fx.opts)).not.toThrow()
  })

  it('unknown tags, ops that do not fit the type, values of the wrong type', () => {
    expect(refuse({ any: [{ tag: 'flag', op: 'exists' }, { tag: 'nope', op: 'exists' }] })).toMatchObject({ field: 'rule.any.1.tag' })
    expect(refuse({ tag: 'tier', op: 'gt', value: 'gold' })).toMatchObject({ field: 'rule.op' })
    expect(refuse({ tag: 'flag', op: 'between', value: [true, false] })).toMatchObject({ field: 'rule.op' })
    expect(refuse({ tag: 'tier', op: 'eq', value: 'platinum' })).toMatchObject({ field: 'rule.value' })
    expect(refuse({ not: { tag: 'score', op: 'in', value: [1, 'x'] } })).toMatchObject({ field: 'rule.not.value.1' })
    expect(refuse({ tag: 'birth', op: 'eq', value: '2026-13-45' })).toMatchObject({ field: 'rule.value' })
    expect(refuse({ tag: 'flag', op: 'eq', value: 'yes' })).toMatchObject({ field: 'rule.value' })
    expect(refuse({ tag: 'score', op: 'between', value: [5, 1] })).toMatchObject({ field: 'rule.value' })
  })
})
