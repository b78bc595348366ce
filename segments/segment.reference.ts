import { STANDING_MERGES_SQL, survivorSql } from '../core/identity.sql.js'
import { ParamBinder } from '../core/params.js'
import { localDate } from '../core/time.js'
import { attributePredicate } from './segment.attributes.js'
import { numericPredicate, prepare, type CheckedTagLeaf, type CompileOptions, type Leaf } from './segment.compile.js'
import { eventPass } from './segment.events.js'
import type { Segment, SegmentNode } from './segment.schema.js'

/**
 * The reference path of the segment compiler (segment.compile.ts): the same tree as a row
 * predicate, written plainly, against which the bitmap path is checked (segment.property.test.ts).
 */

function referenceTagPredicate(c: CheckedTagLeaf, i: number, b: ParamBinder): string {
  const p = `tv.p${i} = 1`
  const op = c.leaf.op
  if (op === 'exists') return `(${p})`
  if (op === 'not_exists') return `NOT (${p})`
  const negated = op === 'ne' || op === 'not_in'
  let pos: string
  if (c.type === 'boolean') {
    pos = `(${(c.values as boolean[]).map((v) => (v ? `(${p})` : `NOT (${p})`)).join(' OR ')})`
  } else if (c.type === 'enum') {
    pos = `(${p} AND has(${b.strs(c.values as string[])}, tv.v${i}))`
  } else if (c.type === 'string_list') {
    pos = `(${p} AND hasAny(tv.l${i}, ${b.strs(c.values as string[])}))`
  } else {
    const np = numericPredicate(c, b)
    pos = c.zero ? `(${np.pred(`if(${p}, tv.n${i}, 0)`)})` : `(${p} AND ${np.pred(`tv.n${i}`)})`
  }
  return negated ? `NOT ${pos}` : pos
}

/**
 * The reference path: the tree as a row predicate over the customers, a pivot of their current
 * tag values and their event aggregates. One row: `keys`, the sorted members.
 */
export function compileReference(segment: Segment, o: Omit<CompileOptions, 'purpose'>): { sql: string; params: Record<string, unknown> } {
  const opts = { ...o, purpose: segment.purpose }
  const b = new ParamBinder('r')
  const { tags, events, attributes } = prepare(segment.rule, opts)
  const names = [...new Set([...tags.values()].map((c) => c.leaf.tag))]
  const col = new Map(names.map((n, i) => [n, i]))
  const pivot = names
    .map((n, i) => {
      const t = b.str(n)
      return `maxIf(toUInt8(1), tag = ${t}) AS p${i}, anyIf(num, tag = ${t}) AS n${i}, anyIf(value, tag = ${t}) AS v${i}, anyIf(list, tag = ${t}) AS l${i}`
    })
    .join(', ')
  const pass = events.length ? eventPass(events, b, opts) : undefined
  const evIndex = new Map<Leaf, number>(events.map((e, j) => [e.node, j]))
  const pred = (n: SegmentNode): string => {
    if ('all' in n) return `(${n.all.map(pred).join(' AND ')})`
    if ('any' in n) return `(${n.any.map(pred).join(' OR ')})`
    if ('not' in n) return `NOT ${pred(n.not)}`
    if ('tag' in n) {
      const c = tags.get(n)!
      return referenceTagPredicate(c, col.get(c.leaf.tag)!, b)
    }
    if ('attribute' in n) return `(${attributePredicate(n, attributes.get(n)!, b, localDate(o.asOf, o.timeZone))})`
    // The LEFT JOIN leaves 0 in every aggregate of a customer without events.
    return `(${pass!.leaves[evIndex.get(n)!]!.cmp.replace(/^a(\d+)/, 'ev.a$1')})`
  }
  const tv = names.length
    ? `LEFT JOIN (SELECT customer_key, ${pivot} FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag IN ${b.strs(names)} AND is_deleted = 0 GROUP BY customer_key) AS tv ON tv.customer_key = c.customer_key`
    : ''
  const ev = pass ? `LEFT JOIN (${pass.sql}) AS ev ON ev.customer_key = c.customer_key` : ''
  // As the bitmap path: the survivors of the keys that hold, among the live customers not merged away.
  const sql = `SELECT arraySort(groupUniqArray(${survivorSql('c.customer_key', 'mg')})) AS keys
  FROM (SELECT customer_key, gender, birth_date, region_code, branch_code, occupation, language, elder_mode
        FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0) AS c
  ${tv}
  ${ev}
  LEFT ANY JOIN ${STANDING_MERGES_SQL} AS mg ON mg.from_key = c.customer_key
  WHERE ${pred(segment.rule)}
    AND ${survivorSql('c.customer_key', 'mg')} IN (SELECT customer_key FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0)
  SETTINGS join_use_nulls = 0`
  return { sql, params: b.params }
}
