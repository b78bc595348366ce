import { describe, expect, it } from 'vitest'
import { isAppError, type ErrorIssue } from '../core/errors.js'
import { parseDefinition } from './tag.repository.js'
import { MAX_CONDITION_DEPTH } from './tag.limits.js'

/**
 * Definitions that used to be accepted at save and then failed (or crashed) every run: a `when`
 * nested past any sensible depth, a six-field cron, numbers the engine cannot bind exactly.
 * Each is refused at save with a coded issue naming the field.
 */

const base = { name: 'deep', type: 'boolean', description: { zh: '深', en: 'deep' }, owner: 'qa', purpose: ['service'] }
const leaf = { feature: 'age', op: 'gte', value: 60 }
const nest = (n: number, key: 'not' | 'all' | 'any' = 'not'): unknown => {
  let c: unknown = leaf
  for (let i = 1; i < n; i++) c = key === 'not' ? { not: c } : { [key]: [c] }
  return c
}

function refusal(input: unknown): ErrorIssue[] {
  try {
    parseDefinition(input)
  } catch (e) {
    if (!isAppError(e)) throw e
    expect(e.code).toBe('VALIDATION_FAILED')
    return [...(e.issues ?? [])]
  }
  throw new Error('accepted')
}

describe('condition depth', () => {
  it(`accepts a when ${MAX_CONDITION_DEPTH} levels deep and refuses one level more, naming the first node past the limit`, () => {
    expect(MAX_CONDITION_DEPTH).toBe(32)
    expect(parseDefinition({ ...base, rule: { kind: 'rule', when: nest(MAX_CONDITION_DEPTH) } }).name).toBe('deep')
    const issues = refusal({ ...base, rule: { kind: 'rule', when: nest(MAX_CONDITION_DEPTH + 1) } })
    expect(issues).toEqual([expect.objectContaining({ field: `rule.when${'.not'.repeat(MAX_CONDITION_DEPTH)}`, code: 'too_deep' })])
  })

  it.each([1_000, 1_250, 5_000])('refuses a not nested %i deep with a coded issue (no stack overflow)', (n) => {
    const issues = refusal({ ...base, rule: { kind: 'rule', when: nest(n) } })
    expect(issues[0]).toMatchObject({ field: `rule.when${'.not'.repeat(MAX_CONDITION_DEPTH)}`, code: 'too_deep' })
  })

  it('counts all and any levels the same way, in cases too, with the file prefix', () => {
    const issues = refusal({ ...base, rule: { kind: 'rule', when: nest(2_000, 'all') } })
    expect(issues[0]!.field).toBe(`rule.when${'.all.0'.repeat(MAX_CONDITION_DEPTH)}`)
    try {
      parseDefinition({ ...base, type: 'enum', values: ['a'], rule: { kind: 'rule', cases: [{ when: leaf, value: 'a' }, { when: nest(40, 'any'), value: 'a' }] } }, '3.')
      expect.unreachable()
    } catch (e) {
      expect(isAppError(e) && e.issues?.[0]?.field).toBe(`3.rule.cases.1.when${'.any.0'.repeat(MAX_CONDITION_DEPTH)}`)
    }
  })

  it('refuses deep nesting anywhere in the definition, not only in conditions', () => {
    let v: unknown = 1
    for (let i = 0; i < 3_000; i++) v = [v]
    const issues = refusal({ ...base, rule: { kind: 'rule', when: { feature: 'age', op: 'in', value: v } } })
    expect(issues[0]).toMatchObject({ code: 'too_deep' })
    expect(String(issues[0]!.field)).toMatch(/^rule\.when\.value(\.0)+$/)
  })
})

describe('schedule and numbers', () => {
  it('refuses a six-field cron (node-cron reads seconds) naming schedule', () => {
    const issues = refusal({ ...base, schedule: '0 15 * * * *', rule: { kind: 'rule', when: leaf } })
    expect(issues).toEqual([expect.objectContaining({ field: 'schedule' })])
    expect(parseDefinition({ ...base, schedule: '5 0 * * *', rule: { kind: 'rule', when: leaf } }).schedule).toBe('5 0 * * *')
  })

  it('refuses values beyond ±2^53 naming the value', () => {
    const issues = refusal({ ...base, rule: { kind: 'rule', when: { all: [leaf, { feature: 'aum', op: 'gte', value: 2 ** 53 + 2 }] } } })
    expect(issues).toEqual([expect.objectContaining({ field: 'rule.when.all.1.value' })])
    expect(refusal({ ...base, rule: { kind: 'rule', when: { feature: 'aum', op: 'between', value: [-1e300, 5] } } })[0]!.field).toBe('rule.when.value.0')
  })
})
