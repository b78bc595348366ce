import type { Issue, Scalar } from './types.js'

/**
 * The segment builder's tree, and its translation to and from the segment language
 * (segments/segment.schema.ts). Every node has an id so that the API's error paths
 * (`rule.all.1.value`) can be pinned on the node the marketer sees. NOT is a flag on a node
 * rather than a box of its own: that is how marketers read it ("not elder"), and `{not: x}`
 * round-trips through it.
 */

interface Base {
  id: string
  negated: boolean
}
export type GroupNode = Base & { kind: 'group'; op: 'all' | 'any'; children: RuleNode[] }
export type TagNode = Base & { kind: 'tag'; tag: string; op: string; value: Scalar | Scalar[] | undefined }
export type AttributeNode = Base & { kind: 'attribute'; attribute: string; op: string; value: Scalar | Scalar[] | undefined }
export type EventNode = Base & { kind: 'event'; names: string[]; measure: 'count' | 'sum' | 'distinct'; property: string; op: string; value: number | number[]; lastDays: number }
export type SequenceNode = Base & { kind: 'sequence'; steps: string[][]; withinDays: number; lastDays: number | null }
export type SegmentRefNode = Base & { kind: 'segment'; segment: string }
/** A condition the forms do not edit (an event filter on properties, a date window): kept as written. */
export type RawNode = Base & { kind: 'raw'; json: unknown }
export type RuleNode = GroupNode | TagNode | AttributeNode | EventNode | SequenceNode | SegmentRefNode | RawNode
export type LeafKind = Exclude<RuleNode['kind'], 'group' | 'raw'>

let counter = 0
const newId = () => `n${++counter}`

export function group(op: 'all' | 'any' = 'all', children: RuleNode[] = []): GroupNode {
  return { id: newId(), negated: false, kind: 'group', op, children }
}

export function leaf(kind: LeafKind): RuleNode {
  const base = { id: newId(), negated: false }
  switch (kind) {
    case 'tag':
      return { ...base, kind, tag: '', op: 'eq', value: undefined }
    case 'attribute':
      return { ...base, kind, attribute: 'age', op: 'gte', value: 60 }
    case 'event':
      return { ...base, kind, names: [], measure: 'count', property: '', op: 'gte', value: 1, lastDays: 30 }
    case 'sequence':
      return { ...base, kind, steps: [[], []], withinDays: 7, lastDays: null }
    case 'segment':
      return { ...base, kind, segment: '' }
  }
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)
const onlyKeys = (o: Record<string, unknown>, keys: string[]) => Object.keys(o).every((k) => keys.includes(k))
const namesOnly = (e: unknown): string[] | undefined => (isObject(e) && onlyKeys(e, ['names']) && Array.isArray(e.names) ? e.names.map(String) : undefined)
const lastDaysOf = (w: unknown): number | undefined => (isObject(w) && onlyKeys(w, ['lastDays']) && typeof w.lastDays === 'number' ? w.lastDays : undefined)

/** A saved rule as a builder tree; the root is always a group so conditions can be added to it. */
export function fromRule(rule: unknown): GroupNode {
  const node = fromJson(rule)
  return node.kind === 'group' && !node.negated ? node : group('all', [node])
}

export function fromJson(x: unknown): RuleNode {
  const base = { id: newId(), negated: false }
  if (isObject(x) && onlyKeys(x, ['not']) && 'not' in x) {
    const inner = fromJson(x.not)
    return { ...inner, negated: !inner.negated }
  }
  if (isObject(x) && onlyKeys(x, ['all']) && Array.isArray(x.all)) return { ...base, kind: 'group', op: 'all', children: x.all.map(fromJson) }
  if (isObject(x) && onlyKeys(x, ['any']) && Array.isArray(x.any)) return { ...base, kind: 'group', op: 'any', children: x.any.map(fromJson) }
  if (isObject(x) && typeof x.tag === 'string' && onlyKeys(x, ['tag', 'op', 'value'])) {
    return { ...base, kind: 'tag', tag: x.tag, op: String(x.op), value: x.value as TagNode['value'] }
  }
  if (isObject(x) && typeof x.attribute === 'string' && onlyKeys(x, ['attribute', 'op', 'value'])) {
    return { ...base, kind: 'attribute', attribute: x.attribute, op: String(x.op), value: x.value as AttributeNode['value'] }
  }
  if (isObject(x) && typeof x.segment === 'string' && onlyKeys(x, ['segment'])) return { ...base, kind: 'segment', segment: x.segment }
  if (isObject(x) && 'event' in x && onlyKeys(x, ['event', 'measure', 'property', 'op', 'value', 'window'])) {
    const names = namesOnly(x.event)
    const lastDays = lastDaysOf(x.window)
    if (names && lastDays !== undefined && (x.measure === 'count' || x.measure === 'sum' || x.measure === 'distinct')) {
      return { ...base, kind: 'event', names, measure: x.measure, property: typeof x.property === 'string' ? x.property : '', op: String(x.op), value: x.value as number | number[], lastDays }
    }
  }
  if (isObject(x) && Array.isArray(x.sequence) && onlyKeys(x, ['sequence', 'withinDays', 'window']) && typeof x.withinDays === 'number') {
    const steps = x.sequence.map((s) => (isObject(s) && onlyKeys(s, ['event']) ? namesOnly(s.event) : undefined))
    const lastDays = x.window === undefined ? null : (lastDaysOf(x.window) ?? undefined)
    if (steps.every((s) => s !== undefined) && lastDays !== undefined) return { ...base, kind: 'sequence', steps: steps as string[][], withinDays: x.withinDays, lastDays }
  }
  return { ...base, kind: 'raw', json: x }
}

/** The node as the API reads it, without its NOT. */
function bare(n: RuleNode, path: string, paths: Map<string, string>): unknown {
  switch (n.kind) {
    case 'group':
      return { [n.op]: n.children.map((c, i) => toJson(c, `${path}.${n.op}.${i}`, paths)) }
    case 'tag':
      return n.value === undefined ? { tag: n.tag, op: n.op } : { tag: n.tag, op: n.op, value: n.value }
    case 'attribute':
      return { attribute: n.attribute, op: n.op, value: n.value }
    case 'event':
      return {
        event: { names: n.names },
        measure: n.measure,
        ...(n.measure === 'count' ? {} : { property: n.property }),
        op: n.op,
        value: n.value,
        window: { lastDays: n.lastDays },
      }
    case 'sequence':
      return { sequence: n.steps.map((names) => ({ event: { names } })), withinDays: n.withinDays, ...(n.lastDays ? { window: { lastDays: n.lastDays } } : {}) }
    case 'segment':
      return { segment: n.segment }
    case 'raw':
      return n.json
  }
}

/**
 * The tree in the segment language. `paths` receives the API path of every node (and of its
 * `.not` inner path when negated), which is how error fields find their node.
 */
export function toJson(n: RuleNode, path = 'rule', paths: Map<string, string> = new Map()): unknown {
  paths.set(path, n.id)
  if (!n.negated) return bare(n, path, paths)
  paths.set(`${path}.not`, n.id)
  return { not: bare(n, `${path}.not`, paths) }
}

export type NodeIssues = Map<string, Issue[]>

/**
 * Pins API issues on nodes: an issue belongs to the deepest node whose path starts its field
 * (`rule.all.1.value` → the node at `rule.all.1`, field `value`). Issues outside the rule (the
 * purpose, the name) come back under the empty id.
 */
export function issuesByNode(issues: readonly Issue[], paths: Map<string, string>): NodeIssues {
  const out: NodeIssues = new Map()
  const add = (id: string, i: Issue) => out.set(id, [...(out.get(id) ?? []), i])
  for (const i of issues) {
    const field = i.field ?? ''
    const parts = field.split('.')
    let hit: string | undefined
    let rest = ''
    for (let k = parts.length; k > 0 && !hit; k--) {
      const p = parts.slice(0, k).join('.')
      if (paths.has(p)) {
        hit = paths.get(p)
        rest = parts.slice(k).join('.')
      }
    }
    if (hit) add(hit, { ...i, field: rest })
    else add('', i)
  }
  return out
}

/** Conditions still missing their subject; the live count waits for them. */
export function incomplete(n: RuleNode): string[] {
  switch (n.kind) {
    case 'group':
      return [...(n.children.length ? [] : [n.id]), ...n.children.flatMap(incomplete)]
    case 'tag':
      // A category condition with no value chosen yet would count nobody: it waits for a choice.
      return n.tag && !(arity(n.op) === 'list' && Array.isArray(n.value) && n.value.length === 0) ? [] : [n.id]
    case 'event':
      return n.names.length ? [] : [n.id]
    case 'sequence':
      return n.steps.length >= 2 && n.steps.every((s) => s.length) ? [] : [n.id]
    case 'segment':
      return n.segment ? [] : [n.id]
    default:
      return []
  }
}

export function findParent(root: GroupNode, id: string): GroupNode | undefined {
  for (const c of root.children) {
    if (c.id === id) return root
    if (c.kind === 'group') {
      const p = findParent(c, id)
      if (p) return p
    }
  }
  return undefined
}

/** Operators by tag type, as segments/segment.compile.ts accepts them. */
export function opsForType(type: string): string[] {
  if (type === 'boolean' || type === 'enum' || type === 'string_list') return ['eq', 'ne', 'in', 'not_in', 'exists', 'not_exists']
  return ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between', 'exists', 'not_exists']
}

export const ATTRIBUTES: Record<string, 'text' | 'number' | 'boolean'> = {
  gender: 'text',
  region_code: 'text',
  branch_code: 'text',
  occupation: 'text',
  language: 'text',
  elder_mode: 'boolean',
  age: 'number',
}

export function opsForAttribute(name: string): string[] {
  return ATTRIBUTES[name] === 'number' ? ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between', 'in', 'not_in'] : ['eq', 'ne', 'in', 'not_in']
}

export const EVENT_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between']

export function arity(op: string): 'one' | 'list' | 'two' | 'none' {
  if (op === 'in' || op === 'not_in') return 'list'
  if (op === 'between') return 'two'
  if (op === 'exists' || op === 'not_exists') return 'none'
  return 'one'
}

/** Moves a value to the shape a new operator takes, keeping what the marketer typed where it fits. */
export function reshape(value: Scalar | Scalar[] | undefined, op: string, fallback: Scalar): Scalar | Scalar[] | undefined {
  const list = value === undefined ? [] : Array.isArray(value) ? value : [value]
  switch (arity(op)) {
    case 'none':
      return undefined
    case 'one':
      return list[0] ?? fallback
    case 'list':
      return list.length ? list : [fallback]
    case 'two':
      return [list[0] ?? fallback, list[1] ?? list[0] ?? fallback]
  }
}
