import { describe, expect, it } from 'vitest'
import { isAppError, type ErrorIssue } from '../core/errors.js'
import { expandReferences } from './segment.references.js'
import { MAX_DEPTH, parseSegment } from './segment.schema.js'

/**
 * Rules that crashed with a 500: all / any nested ~1,400 deep (reference expansion recursed on
 * the raw JSON first) and numbers beyond ±2^53 (the engine refuses to bind them). Each is now
 * a coded 400 naming the node.
 */

const leaf = { tag: 'flag', op: 'exists' }
const nest = (n: number, key: 'all' | 'any' | 'not'): unknown => {
  let c: unknown = leaf
  for (let i = 1; i < n; i++) c = key === 'not' ? { not: c } : { [key]: [c] }
  return c
}
async function refusal(run: () => unknown): Promise<ErrorIssue[]> {
  try {
    await run()
  } catch (e) {
    if (!isAppError(e)) throw e
    expect(e.code).toBe('VALIDATION_FAILED')
    return [...(e.issues ?? [])]
  }
  throw new Error('accepted')
}
const noRefs = async () => undefined

describe('segment depth', () => {
  it.each([['all', 1_400], ['any', 5_000], ['not', 3_000]] as const)('refuses %s nested %i deep before expanding references', async (key, n) => {
    const path = key === 'not' ? '.not' : `.${key}.0`
    const issues = await refusal(() => expandReferences(nest(n, key), noRefs))
    expect(issues).toEqual([expect.objectContaining({ field: `rule${path.repeat(MAX_DEPTH)}`, code: 'too_deep' })])
    const parsed = await refusal(() => parseSegment({ purpose: 'marketing', rule: nest(n, key) }))
    expect(parsed[0]).toMatchObject({ field: `rule${path.repeat(MAX_DEPTH)}`, code: 'too_deep' })
  })

  it('accepts the documented depth', async () => {
    const rule = nest(MAX_DEPTH, 'all')
    expect(await expandReferences(rule, noRefs)).toEqual(rule)
    expect(parseSegment({ purpose: 'marketing', rule }).purpose).toBe('marketing')
  })

  it('refuses a deep tree a referenced segment brings in, below the reference', async () => {
    // The expanded tree is checked again as a whole when it is parsed; the scan keeps the
    // expansion itself from recursing into a stored tree of any depth.
    const issues = await refusal(() => expandReferences({ all: [leaf, { segment: 'deep' }] }, async () => nest(2_000, 'any')))
    expect(issues[0]).toMatchObject({ field: `rule.all.1${'.any.0'.repeat(MAX_DEPTH)}`, code: 'too_deep' })
  })
})

describe('segment numbers', () => {
  it.each([
    [{ attribute: 'age', op: 'gte', value: 2 ** 53 + 2 }, 'rule.value'],
    [{ attribute: 'age', op: 'between', value: [1, 1e300] }, 'rule.value.1'],
    [{ tag: 'score', op: 'in', value: [1, -(2 ** 60)] }, 'rule.value.1'],
    [{ event: { names: ['a'] }, measure: 'count', op: 'gte', value: 2 ** 64, window: { lastDays: 7 } }, 'rule.value'],
    [{ event: { names: ['a'], where: [{ property: 'amount', op: 'gt', value: 1e20 }] }, measure: 'count', op: 'gte', value: 1, window: { lastDays: 7 } }, 'rule.event.where.0.value'],
  ])('refuses %j naming %s', async (rule, field) => {
    const issues = await refusal(() => parseSegment({ purpose: 'marketing', rule }))
    expect(issues).toEqual([expect.objectContaining({ field })])
  })
})

describe('segment depth when saving', () => {
  it('is measured when the segment being saved is part of the chain (a saved segment names itself)', async () => {
    const issues = await refusal(() => expandReferences(nest(1_400, 'any'), noRefs, ['deep']))
    expect(issues[0]).toMatchObject({ field: `rule${'.any.0'.repeat(MAX_DEPTH)}`, code: 'too_deep' })
  })
})
