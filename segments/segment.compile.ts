import { daysBetween, localDate } from '../core/time.js'
import { MERGE_ARRAYS_SQL, survivorsBitmapSql } from '../core/identity.sql.js'
import { conditionError } from '../tags/tag.compile.js'
import { attributeBitmapSql, type AttributeLeaf } from './segment.attributes.js'
import { ParamBinder } from '../core/params.js'
import { eventPass } from './segment.events.js'
import type { Purpose, Scalar, TagDefinition, ValueType } from '../tags/tag.schema.js'
import {
  arityOf,
  type EventLeaf,
  type Segment,
  type SegmentNode,
  type SequenceLeaf,
  type TagLeaf,
  type TagOp,
} from './segment.schema.js'

/**
 * Compiles a segment tree into SQL. Identifiers come from code only (columns, `t<i>`/`e<i>`
 * aliases); every user value (tag names, values, event names, property names, dates, the time
 * zone) is a bound `{sN:Type}` parameter; the only numbers written into the text are validated
 * integers (windowFunnel's window in seconds).
 *
 * Bitmap path (`compileSegment`): every tag leaf is a bitmap read from the tag's CURRENT build
 * (tag_state FINAL.build): labels (booleans, enums, list elements) OR their value bitmaps;
 * numbers and dates OR the buckets wholly inside the range and check the customers of the edge
 * buckets exactly against tag_values.num. Every event leaf and sequence of the tree is computed
 * by one pass over the resolved events (GROUP BY customer_key; countIf / sumIf / uniqExactIf /
 * windowFunnel per leaf) producing a bitmap per leaf. all / any / not are bitmapAnd / bitmapOr /
 * bitmapAndnot from the universe `u` (the tenant's customers, FINAL, not deleted); the result is
 * intersected with `u`, then a customer merged into another is replaced by its survivor
 * (core/identity.sql.ts). The query returns one row: `seg` and `universe` (groupBitmap states;
 * the universe without the keys merged away).
 *
 * Reference path (`compileReference`): the same tree as a row predicate over customers LEFT
 * JOIN a pivot of tag_values (and the same per-customer event aggregates); returns `keys`, the
 * sorted members. Tests prove both paths agree.
 *
 * Semantics (shared): a customer without a value of a tag satisfies `ne`, `not_in` and
 * `not_exists`, nothing else, except that a boolean's absence is `false` and a window count or
 * sum's absence is 0 (so `exists` means "not zero"). A customer without matching events has an
 * event measure of 0.
 */

export interface CompileOptions {
  purpose: Purpose
  /** The tenant's active definitions by name (TagRepository.list). */
  defs: ReadonlyMap<string, TagDefinition>
  /** The instant "today" and `lastDays` are taken from, and the tenant's time zone. */
  asOf: Date
  timeZone: string
}

export type Strategy = 'bitmap' | 'event_scan'
export interface PlanNode {
  path: string
  node: 'all' | 'any' | 'not' | 'tag' | 'event' | 'sequence' | 'attribute'
  /** bitmap: tag bitmaps or bitmap algebra; event_scan: a leaf of the shared per-customer event pass. */
  strategy: Strategy
  detail: string
  children?: PlanNode[]
}
export interface Plan {
  root: PlanNode
  /** Number of passes over events (0 or 1: all event leaves share one). */
  eventScans: number
  bitmapLeaves: number
  eventLeaves: number
}

export interface CompiledSegment {
  /** One row: `seg` and `universe`, AggregateFunction(groupBitmap, UInt32). */
  sql: string
  params: Record<string, unknown>
  plan: Plan
}

const LABEL_OPS: readonly TagOp[] = ['eq', 'ne', 'in', 'not_in', 'exists', 'not_exists']

/** A window measure stored only when not zero: its absence reads as 0. */
export function zeroWhenAbsent(d: TagDefinition): boolean {
  return d.rule.kind === 'window' && !d.rule.threshold && d.rule.measure !== 'first_time' && d.rule.measure !== 'last_time'
}

const dayNumber = (d: string): number => daysBetween('1970-01-01', d)

// --- checking a tag leaf against its definition ------------------------------------------------

export interface CheckedTagLeaf {
  leaf: TagLeaf
  path: string
  def: TagDefinition
  type: ValueType
  zero: boolean
  /** Labels (booleans as 'true'), or numbers (dates as days since 1970). */
  values: (string | number | boolean)[]
}

function checkTagLeaf(leaf: TagLeaf, path: string, o: CompileOptions): CheckedTagLeaf {
  const def = o.defs.get(leaf.tag)
  if (!def) throw conditionError(`${path}.tag`, `tag ${leaf.tag} is not defined`)
  if (!def.purpose.includes(o.purpose)) {
    throw conditionError(`${path}.tag`, `tag ${leaf.tag} may be used for ${def.purpose.join(', ')}, not for a ${o.purpose} segment`)
  }
  const type = def.type
  if ((type === 'boolean' || type === 'enum' || type === 'string_list') && !LABEL_OPS.includes(leaf.op)) {
    throw conditionError(`${path}.op`, `${leaf.op} does not apply to a ${type} tag; use ${LABEL_OPS.join(', ')}`)
  }
  const arity = arityOf(leaf.op)
  const raw: Scalar[] = leaf.value === undefined ? [] : Array.isArray(leaf.value) ? leaf.value : [leaf.value]
  const at = (i: number) => (arity === 'one' ? `${path}.value` : `${path}.value.${i}`)
  const values = raw.map((v, i) => {
    switch (type) {
      case 'boolean':
        if (typeof v !== 'boolean') throw conditionError(at(i), 'expected true or false')
        return v
      case 'enum':
        if (typeof v !== 'string') throw conditionError(at(i), 'expected a string')
        if (def.values && !def.values.includes(v)) throw conditionError(at(i), `not a value of ${leaf.tag} (${def.values.join(', ')})`)
        return v
      case 'string_list':
        if (typeof v !== 'string') throw conditionError(at(i), 'expected a string')
        return v
      case 'number':
        if (typeof v !== 'number') throw conditionError(at(i), 'expected a number')
        return v
      case 'date':
        if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(v) || Number.isNaN(Date.parse(`${v}T00:00:00Z`))) {
          throw conditionError(at(i), 'expected a date YYYY-MM-DD')
        }
        return dayNumber(v)
    }
  })
  if (leaf.op === 'between' && (values[0] as number) > (values[1] as number)) throw conditionError(`${path}.value`, 'between needs [low, high] with low <= high')
  return { leaf, path, def, type, zero: zeroWhenAbsent(def), values }
}

/** A numeric predicate over a column, and whether 0 satisfies it (for absent window measures). */
export function numericPredicate(c: CheckedTagLeaf, b: ParamBinder) {
  const vs = c.values as number[]
  const op = c.leaf.op
  const p = vs.map((v) => b.num(v))
  const set = op === 'in' || op === 'not_in' ? b.nums(vs) : ''
  const pred = (x: string): string => {
    switch (op) {
      case 'eq':
      case 'ne':
        return `${x} = ${p[0]}`
      case 'in':
      case 'not_in':
        return `has(${set}, ${x})`
      case 'gt':
        return `${x} > ${p[0]}`
      case 'gte':
        return `${x} >= ${p[0]}`
      case 'lt':
        return `${x} < ${p[0]}`
      case 'lte':
        return `${x} <= ${p[0]}`
      case 'between':
        return `${x} BETWEEN ${p[0]} AND ${p[1]}`
      default:
        throw new Error(`no numeric predicate for ${op}`)
    }
  }
  /** Every x in [lo, hi) satisfies the predicate (conservative: false when unsure). */
  const inside = (lo: string, hi: string): string => {
    switch (op) {
      case 'gt':
        return `${lo} > ${p[0]}`
      case 'gte':
        return `${lo} >= ${p[0]}`
      case 'lt':
      case 'lte':
        return `${hi} <= ${p[0]}`
      case 'between':
        return `(${lo} >= ${p[0]} AND ${hi} <= ${p[1]})`
      default:
        return '0'
    }
  }
  /** Some x in [lo, hi) may satisfy it (conservative: true when unsure). */
  const overlap = (lo: string, hi: string): string => {
    switch (op) {
      case 'gt':
      case 'gte':
        return `${hi} > ${p[0]}`
      case 'lt':
        return `${lo} < ${p[0]}`
      case 'lte':
        return `${lo} <= ${p[0]}`
      case 'between':
        return `(${lo} <= ${p[1]} AND ${hi} > ${p[0]})`
      case 'eq':
      case 'ne':
        return `(${lo} <= ${p[0]} AND ${p[0]} < ${hi})`
      default:
        return `arrayExists(v -> ${lo} <= v AND v < ${hi}, ${set})`
    }
  }
  const holdsAt0 = (() => {
    switch (op) {
      case 'eq':
      case 'ne':
        return vs[0] === 0
      case 'in':
      case 'not_in':
        return vs.includes(0)
      case 'gt':
        return 0 > vs[0]!
      case 'gte':
        return 0 >= vs[0]!
      case 'lt':
        return 0 < vs[0]!
      case 'lte':
        return 0 <= vs[0]!
      case 'between':
        return vs[0]! <= 0 && 0 <= vs[1]!
      default:
        return false
    }
  })()
  return { pred, inside, overlap, holdsAt0 }
}

// --- bitmap SQL of tag leaves -------------------------------------------------------------------

const UNIVERSE = `(SELECT groupBitmapState(customer_key) FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0)`
const currentBuild = (tp: string) => `(SELECT argMax(build, computed_at) FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16} AND tag = ${tp})`
const bitmapRows = (tp: string) => `tag_bitmaps WHERE tenant_id = {tenant:UInt16} AND tag = ${tp} AND build = ${currentBuild(tp)}`

function labelBitmap(tp: string, labels: string): string {
  return `(SELECT groupBitmapMergeState(keys) FROM ${bitmapRows(tp)} AND value IN ${labels})`
}

/** The bitmap of a tag leaf and a short description for the plan. */
function tagLeafBitmap(c: CheckedTagLeaf, b: ParamBinder): { sql: string; detail: string } {
  const tp = b.str(c.leaf.tag)
  const star = labelBitmap(tp, `('*')`)
  const not = (x: string) => `bitmapAndnot(u, ${x})`
  const op = c.leaf.op
  if (op === 'exists') return { sql: star, detail: `${c.leaf.tag}: the * bitmap` }
  if (op === 'not_exists') return { sql: not(star), detail: `${c.leaf.tag}: universe AND NOT the * bitmap` }
  const negated = op === 'ne' || op === 'not_in'
  if (c.type === 'boolean') {
    // Stored only when true: true is the * bitmap, false its complement.
    const wantTrue = (c.values as boolean[]).includes(true)
    const wantFalse = (c.values as boolean[]).includes(false)
    const pos = wantTrue && wantFalse ? 'u' : wantTrue ? star : not(star)
    return { sql: negated ? not(pos) : pos, detail: `${c.leaf.tag}: boolean from the * bitmap` }
  }
  if (c.type === 'enum' || c.type === 'string_list') {
    const set = labelBitmap(tp, b.strs(c.values as string[]))
    return { sql: negated ? not(set) : set, detail: `${c.leaf.tag}: OR of ${c.values.length} value bitmap(s)${negated ? ', complement' : ''}` }
  }
  const np = numericPredicate(c, b)
  const inside = `if(lo = hi, ${np.pred('lo')}, ${np.inside('lo', 'hi')})`
  const edges = `(SELECT groupArray(tuple(lo, hi)) FROM ${bitmapRows(tp)} AND value != '*' AND lo < hi AND NOT (${np.inside('lo', 'hi')}) AND ${np.overlap('lo', 'hi')})`
  // Edge buckets are checked against the build's value-ordered snapshot (tag_numeric), reading
  // only the rows between the lowest and highest edge.
  const exact = `(SELECT groupBitmapState(customer_key) FROM tag_numeric
      WHERE tenant_id = {tenant:UInt16} AND tag = ${tp} AND build = ${currentBuild(tp)}
        AND num >= arrayMin(arrayMap(e -> e.1, ${edges})) AND num < arrayMax(arrayMap(e -> e.2, ${edges}))
        AND ${np.pred('num')} AND arrayExists(e -> num >= e.1 AND num < e.2, ${edges}))`
  let set = `(SELECT bitmapOr(groupBitmapMergeStateIf(keys, ${inside}), ${exact}) FROM ${bitmapRows(tp)} AND value != '*')`
  if (c.zero && np.holdsAt0) set = `bitmapOr(${set}, ${not(star)})`
  return {
    sql: negated ? not(set) : set,
    detail: `${c.leaf.tag}: OR of value/bucket bitmaps inside the range, edge buckets checked exactly against tag_values${c.zero && np.holdsAt0 ? ', plus customers without a value (0)' : ''}${negated ? ', complement' : ''}`,
  }
}

// --- the tree ------------------------------------------------------------------------------------

export type Leaf = TagLeaf | EventLeaf | SequenceLeaf | AttributeLeaf
const isGroup = (n: SegmentNode): n is { all: SegmentNode[] } | { any: SegmentNode[] } | { not: SegmentNode } => 'all' in n || 'any' in n || 'not' in n

/** Walks the tree once: checks tag leaves, numbers event leaves in order. */
function collect(
  node: SegmentNode,
  path: string,
  o: CompileOptions,
  out: { tags: Map<Leaf, CheckedTagLeaf>; events: { node: EventLeaf | SequenceLeaf; path: string }[]; attributes: Map<AttributeLeaf, string> },
): void {
  if ('all' in node) return node.all.forEach((c, i) => collect(c, `${path}.all.${i}`, o, out))
  if ('any' in node) return node.any.forEach((c, i) => collect(c, `${path}.any.${i}`, o, out))
  if ('not' in node) return collect(node.not, `${path}.not`, o, out)
  if ('tag' in node) out.tags.set(node, checkTagLeaf(node, path, o))
  else if ('attribute' in node) out.attributes.set(node, path)
  else out.events.push({ node, path })
}

const fold = (fn: string, xs: string[]): string => xs.reduce((acc, x) => `${fn}(${acc}, ${x})`)

/** The tree's leaves, tag leaves checked against their definitions (throws on the first bad one). */
export function prepare(tree: SegmentNode, o: CompileOptions) {
  const out = { tags: new Map<Leaf, CheckedTagLeaf>(), events: [] as { node: EventLeaf | SequenceLeaf; path: string }[], attributes: new Map<AttributeLeaf, string>() }
  collect(tree, 'rule', o, out)
  return out
}

/** The bitmap path: one row with `seg` and `universe`. */
export function compileSegment(segment: Segment, o: Omit<CompileOptions, 'purpose'>): CompiledSegment {
  const opts = { ...o, purpose: segment.purpose }
  const b = new ParamBinder('s')
  const { tags, events, attributes } = prepare(segment.rule, opts)
  const withs = [`${UNIVERSE} AS u`]
  const attrAlias = new Map<Leaf, string>()
  for (const [leaf, path] of attributes) {
    const alias = `p${attrAlias.size}`
    withs.push(`${attributeBitmapSql(leaf, path, b, localDate(o.asOf, o.timeZone))} AS ${alias}`)
    attrAlias.set(leaf, alias)
  }
  const tagAlias = new Map<Leaf, { alias: string; detail: string }>()
  let i = 0
  for (const [leaf, c] of tags) {
    const { sql, detail } = tagLeafBitmap(c, b)
    const alias = `t${i++}`
    withs.push(`${sql} AS ${alias}`)
    tagAlias.set(leaf, { alias, detail })
  }
  const eventIndex = new Map<Leaf, number>(events.map((e, j) => [e.node, j]))
  let from = ''
  if (events.length) {
    const pass = eventPass(events, b, opts)
    // Per leaf, the customers it holds for; when a customer without events satisfies it, the
    // customers with events who do not (taken from the universe outside).
    const cols = pass.leaves.map((l, j) => `groupBitmapStateIf(customer_key, ${l.holdsAt0 ? `NOT (${l.cmp})` : l.cmp}) AS e${j}`)
    from = ` FROM (SELECT ${cols.join(', ')} FROM (${pass.sql})) AS ev`
    events.forEach((e, j) => {
      if (pass.leaves[j]!.holdsAt0) eventIndex.set(e.node, -1 - j)
    })
  }
  const walk = (n: SegmentNode, path: string): { sql: string; plan: PlanNode } => {
    if (isGroup(n)) {
      const kind = 'all' in n ? 'all' : 'any' in n ? 'any' : 'not'
      const kids = 'all' in n ? n.all : 'any' in n ? n.any : [n.not]
      const cs = kids.map((k, j) => walk(k, kind === 'not' ? `${path}.not` : `${path}.${kind}.${j}`))
      const sql = kind === 'not' ? `bitmapAndnot(u, ${cs[0]!.sql})` : fold(kind === 'all' ? 'bitmapAnd' : 'bitmapOr', cs.map((c) => c.sql))
      const detail = kind === 'all' ? 'bitmapAnd' : kind === 'any' ? 'bitmapOr' : 'bitmapAndnot(universe, x)'
      return { sql, plan: { path, node: kind, strategy: 'bitmap', detail, children: cs.map((c) => c.plan) } }
    }
    if ('tag' in n) {
      const t = tagAlias.get(n)!
      return { sql: t.alias, plan: { path, node: 'tag', strategy: 'bitmap', detail: t.detail } }
    }
    if ('attribute' in n) {
      return { sql: attrAlias.get(n)!, plan: { path, node: 'attribute', strategy: 'bitmap', detail: `customers whose ${n.attribute} ${n.op} ${JSON.stringify(n.value)}` } }
    }
    const j = eventIndex.get(n)!
    const col = j >= 0 ? `e${j}` : `e${-1 - j}`
    const seq = 'sequence' in n
    const detail = seq
      ? `windowFunnel over ${n.sequence.length} steps within ${n.withinDays} day(s)`
      : `${n.measure} of matching events ${n.op} ${JSON.stringify(n.value)}${j < 0 ? ' (customers without events count as 0: universe AND NOT the failing ones)' : ''}`
    return { sql: j >= 0 ? col : `bitmapAndnot(u, ${col})`, plan: { path, node: seq ? 'sequence' : 'event', strategy: 'event_scan', detail } }
  }
  const root = walk(segment.rule, 'rule')
  // Keys are evaluated one by one, then each customer merged into another is replaced by its
  // survivor: a person is one member, a member when either key holds; the universe is the
  // customers not merged away. Every reader of a segment (builds, previews, push) gets this.
  const sql = `SELECT bitmapAnd(${survivorsBitmapSql('k.seg', 'mg')}, universe) AS seg, bitmapAndnot(k.live, bitmapBuild(mg.froms)) AS universe
FROM (WITH ${withs.join(',\n  ')}\nSELECT bitmapAnd(${root.sql}, u) AS seg, u AS live${from}) AS k CROSS JOIN ${MERGE_ARRAYS_SQL} AS mg`
  return {
    sql,
    params: b.params,
    plan: { root: root.plan, eventScans: events.length ? 1 : 0, bitmapLeaves: tags.size + attributes.size, eventLeaves: events.length },
  }
}

/** The plan alone: which nodes are bitmaps and which are event scans (validates like compile). */
export function explain(segment: Segment, o: Omit<CompileOptions, 'purpose'>): Plan {
  return compileSegment(segment, o).plan
}
