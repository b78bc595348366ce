import { describe, expect, it } from 'vitest'
import { fromRule, incomplete, issuesByNode, leaf, reshape, toJson, type GroupNode, type TagNode } from './rule-model.js'

describe('the builder tree and the segment language', () => {
  const rule = {
    all: [
      { tag: 'elder', op: 'eq', value: true },
      { not: { tag: 'aum_tier', op: 'in', value: ['mass'] } },
      { any: [{ attribute: 'age', op: 'gte', value: 60 }, { segment: 'rich' }] },
      { event: { names: ['login'] }, measure: 'count', op: 'gte', value: 3, window: { lastDays: 30 } },
      { sequence: [{ event: { names: ['a'] } }, { event: { names: ['b'] } }], withinDays: 7 },
      { event: { names: ['x'], where: [{ property: 'p', op: 'exists' }] }, measure: 'count', op: 'gte', value: 1, window: { lastDays: 7 } },
    ],
  }

  it('round-trips a rule, keeping what the forms cannot edit as written', () => {
    const tree = fromRule(rule)
    expect(toJson(tree)).toEqual(rule)
    expect(tree.children.map((c) => c.kind)).toEqual(['tag', 'tag', 'group', 'event', 'sequence', 'raw'])
    expect(tree.children[1]!.negated).toBe(true)
  })

  it('wraps a single leaf in a group so conditions can be added', () => {
    const tree = fromRule({ tag: 'elder', op: 'eq', value: true })
    expect(tree.kind).toBe('group')
    expect(toJson(tree)).toEqual({ all: [{ tag: 'elder', op: 'eq', value: true }] })
  })

  it('pins API issues on the node at fault, through NOT', () => {
    const tree = fromRule(rule)
    const paths = new Map<string, string>()
    toJson(tree, 'rule', paths)
    const byNode = issuesByNode(
      [
        { field: 'rule.all.1.not.value.0', message: 'not a value' },
        { field: 'rule.all.2.any.1', message: 'unknown segment' },
        { field: 'rule.all.0.tag', message: 'wrong purpose' },
        { field: 'purpose', message: 'bad purpose' },
      ],
      paths,
    )
    const any = tree.children[2] as GroupNode
    expect(byNode.get(tree.children[1]!.id)).toEqual([{ field: 'value.0', message: 'not a value' }])
    expect(byNode.get(any.children[1]!.id)).toEqual([{ field: '', message: 'unknown segment' }])
    expect(byNode.get(tree.children[0]!.id)).toEqual([{ field: 'tag', message: 'wrong purpose' }])
    expect(byNode.get('')).toEqual([{ field: 'purpose', message: 'bad purpose' }])
  })

  it('holds the count back while a condition has no subject', () => {
    const tree = fromRule(rule)
    const fresh = leaf('tag') as TagNode
    tree.children.push(fresh)
    expect(incomplete(tree)).toEqual([fresh.id])
  })

  it('holds the count back while a category condition has no value chosen', () => {
    const tree = fromRule({ all: [{ tag: 'aum_tier', op: 'in', value: [] }, { tag: 'aum_tier', op: 'not_in', value: ['none'] }] })
    expect(incomplete(tree)).toEqual([tree.children[0]!.id])
  })

  it('reshapes a value for a new operator', () => {
    expect(reshape('a', 'in', 'x')).toEqual(['a'])
    expect(reshape(['a', 'b'], 'eq', 'x')).toBe('a')
    expect(reshape(5, 'between', 0)).toEqual([5, 5])
    expect(reshape(5, 'exists', 0)).toBeUndefined()
  })
})
