import { describe, expect, it } from 'vitest'
import { diff, shortValue } from './diff.js'

describe('diff between two versions', () => {
  it('names each path added, removed or changed, with the values', () => {
    const v1 = { name: '长辈', purpose: 'marketing', rule: { all: [{ tag: 'elder', op: 'eq', value: true }, { tag: 'aum_tier', op: 'in', value: ['mass'] }] } }
    const v2 = { name: '长辈客群', purpose: 'marketing', rule: { all: [{ tag: 'elder', op: 'eq', value: true }, { tag: 'aum_tier', op: 'in', value: ['mass', 'affluent'] }] }, schedule: '0 9 * * *' }
    expect(diff(v1, v2)).toEqual([
      { path: 'name', kind: 'changed', before: '长辈', after: '长辈客群' },
      { path: 'rule.all.1.value.1', kind: 'added', after: 'affluent' },
      { path: 'schedule', kind: 'added', after: '0 9 * * *' },
    ])
    expect(diff(v2, v1).map((c) => `${c.kind} ${c.path}`)).toEqual(['changed name', 'removed rule.all.1.value.1', 'removed schedule'])
  })

  it('says nothing for equal versions, and a change of kind (object to list) as one change', () => {
    expect(diff({ a: [1, { b: null }] }, { a: [1, { b: null }] })).toEqual([])
    expect(diff({ rule: { tag: 'x' } }, { rule: [1] })).toEqual([{ path: 'rule', kind: 'changed', before: { tag: 'x' }, after: [1] }])
    expect(diff(1, 2)).toEqual([{ path: '', kind: 'changed', before: 1, after: 2 }])
  })

  it('shortens long values', () => {
    expect(shortValue('abc')).toBe('abc')
    expect(shortValue({ a: 1 })).toBe('{"a":1}')
    expect(shortValue('x'.repeat(200), 10)).toBe(`${'x'.repeat(9)}…`)
  })
})
