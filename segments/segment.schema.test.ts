import { describe, expect, it } from 'vitest'
import { AppError } from '../core/errors.js'
import { leavesOf, MAX_DEPTH, MAX_LEAVES, parseSegment } from './segment.schema.js'

/** The segment language's validation: every problem with its node path, a code and a message. */

const issues = (input: unknown) => {
  try {
    parseSegment(input)
  } catch (e) {
    expect(e).toBeInstanceOf(AppError)
    expect((e as AppError).code).toBe('VALIDATION_FAILED')
    return (e as AppError).issues as { field: string; code: string; message: string }[]
  }
  throw new Error('accepted')
}
const seg = (rule: unknown, purpose = 'marketing') => ({ purpose, rule })
const tag = { tag: 'flag', op: 'exists' }

describe('segment schema', () => {
  it('accepts trees of tag, event and sequence leaves', () => {
    const s = parseSegment(
      seg({
        all: [
          { tag: 'score', op: 'between', value: [1, 5] },
          { any: [{ not: tag }, { event: { names: ['login'], types: ['track'], where: [{ property: 'os', op: 'in', value: ['ios'] }] }, measure: 'count', op: 'gte', value: 2, window: { lastDays: 30 } }] },
          { sequence: [{ event: { names: ['a'] } }, { event: { names: ['b'] } }], withinDays: 7 },
        ],
      }),
    )
    expect(s.purpose).toBe('marketing')
    expect(leavesOf(s.rule).map((l) => l.path)).toEqual(['rule.all.0', 'rule.all.1.any.0.not', 'rule.all.1.any.1', 'rule.all.2'])
  })

  it('points at the node: rule.all.2.any.0.value', () => {
    const is = issues(seg({ all: [tag, tag, { any: [{ tag: 'score', op: 'eq', value: [1, 2] }] }] }))
    expect(is).toEqual([{ field: 'rule.all.2.any.0.value', code: 'custom', message: 'eq needs one value' }])
  })

  it('reports every problem, with zod codes', () => {
    const is = issues(
      seg({
        any: [
          { tag: 'Bad-Name', op: 'exists' },
          { tag: 'x1', op: 'like', value: 1 },
          { tag: 'x1', op: 'in', value: 3 },
          { tag: 'x1', op: 'between', value: [1] },
          { tag: 'x1', op: 'exists', value: 1 },
        ],
      }),
    )
    expect(is.map((i) => [i.field, i.code])).toEqual([
      ['rule.any.0.tag', 'invalid_format'],
      ['rule.any.1.op', 'invalid_value'],
      ['rule.any.2.value', 'custom'],
      ['rule.any.3.value', 'custom'],
      ['rule.any.4.value', 'custom'],
    ])
  })

  it('event leaves: measure, property, window, filters', () => {
    const ev = { event: { names: ['x'] }, measure: 'sum', op: 'gt', value: 1, window: { lastDays: 30 } }
    expect(issues(seg(ev))).toEqual([{ field: 'rule.property', code: 'custom', message: 'sum needs the property it measures' }])
    expect(issues(seg({ ...ev, property: 'amount', window: { lastDays: 0 } }))[0]!.field).toMatch(/^rule\.window/)
    expect(issues(seg({ ...ev, property: 'amount', window: { from: '2026-03-02', to: '2026-03-01' } }))[0]!.field).toBe('rule.window.to')
    expect(issues(seg({ ...ev, measure: 'count', property: 'amount' }))[0]!.field).toBe('rule.property')
    expect(issues(seg({ ...ev, measure: 'count', value: 'a' }))[0]!.field).toBe('rule.value')
    expect(issues(seg({ ...ev, measure: 'count', event: { where: [{ property: 'a b', op: 'eq', value: 1 }] } }))[0]!.field).toBe('rule.event.where.0.property')
    expect(issues(seg({ ...ev, measure: 'count', event: { where: [{ property: 'a', op: 'eq' }] } }))[0]!.field).toBe('rule.event.where.0.value')
    expect(issues(seg({ sequence: [{ event: {} }], withinDays: 3 }))[0]!.field).toBe('rule.sequence')
  })

  it('refuses window days that do not exist or that no event can hold, naming the field', () => {
    const ev = (window: object) => seg({ event: { names: ['x'] }, measure: 'count', op: 'gte', value: 1, window })
    const fieldsOf = (input: unknown) => issues(input).map((i) => i.field)
    // 30 February used to roll over to 2 March; 2026 is not a leap year.
    expect(fieldsOf(ev({ from: '2026-02-30', to: '2026-03-05' }))).toEqual(['rule.window.from'])
    expect(fieldsOf(ev({ from: '2026-02-29', to: '2026-03-05' }))).toEqual(['rule.window.from'])
    expect(fieldsOf(ev({ from: '2026-04-01', to: '2026-04-31' }))).toEqual(['rule.window.to'])
    expect(fieldsOf(ev({ from: '0001-01-01', to: '2026-01-01' }))).toEqual(['rule.window.from'])
    expect(fieldsOf(ev({ from: '2026-01-01', to: '9999-12-31' }))).toEqual(['rule.window.to'])
    const sequence = { sequence: [{ event: { names: ['a'] } }, { event: { names: ['b'] } }], withinDays: 3, window: { from: '2026-02-30', to: '2026-03-01' } }
    expect(fieldsOf(seg(sequence))).toEqual(['rule.window.from'])
    expect(() => parseSegment(ev({ from: '2024-02-29', to: '2024-03-01' }))).not.toThrow()
  })

  it('envelope: purpose and rule', () => {
    expect(issues({ purpose: 'fun', rule: tag })[0]!.field).toBe('purpose')
    expect(issues({ purpose: 'service' })[0]!.field).toBe('rule')
    expect(issues({ purpose: 'service', rule: tag, extra: 1 })[0]!.code).toBe('unrecognized_keys')
    expect(issues(seg({ all: [] }))[0]!.field).toBe('rule.all')
    expect(issues(seg({ all: [tag], any: [tag] }))[0]!.field).toBe('rule')
    expect(issues(seg({ foo: 1 }))[0]!).toMatchObject({ field: 'rule', code: 'invalid_union' })
    expect(issues(seg([tag]))[0]!).toMatchObject({ field: 'rule', code: 'invalid_type' })
  })

  it('limits: depth and leaves', () => {
    let deep: unknown = tag
    for (let i = 1; i < MAX_DEPTH; i++) deep = { not: deep }
    expect(() => parseSegment(seg(deep))).not.toThrow()
    const tooDeep = issues(seg({ not: deep }))
    expect(tooDeep[0]).toMatchObject({ field: `rule${'.not'.repeat(MAX_DEPTH)}`, code: 'too_deep' })
    const many = (n: number) => seg({ any: Array.from({ length: n }, () => tag) })
    expect(() => parseSegment(many(MAX_LEAVES))).not.toThrow()
    expect(issues(many(MAX_LEAVES + 1))[0]).toMatchObject({ field: 'rule.any', code: 'too_big' })
    const spread = seg({ any: Array.from({ length: 3 }, () => ({ all: Array.from({ length: 40 }, () => tag) })) })
    expect(issues(spread)[0]).toMatchObject({ field: 'rule.any.2.all.20', code: 'too_big' })
  })
})
