import { resolvedEventsSql } from '../core/identity.sql.js'
import type { ParamBinder } from '../core/params.js'
import { addDays, localDate } from '../core/time.js'
import { measureConditionSql, measureValueSql, type Measure } from '../tags/tag.measures.js'
import { DEFAULT_SEQUENCE_DAYS, type EventFilter, type EventLeaf, type EventOp, type EventWindow, type SequenceLeaf } from './segment.schema.js'

/**
 * The segment compiler's event leaves (segment.compile.ts): one pass over the resolved events of
 * the union of the leaves' windows, one aggregate per leaf per customer (countIf, sumIf,
 * uniqExactIf, windowFunnel for a sequence).
 */

const EVENT_COLUMNS = ['timestamp', 'type', 'event', 'properties', 'product_id', 'amount'] as const

function measureOf(f: EventFilter, role: Measure['role'], property?: string): Measure {
  return { id: '', role, events: f.names ?? [], eventTypes: f.types ?? [], where: f.where ?? [], property }
}

function windowDays(w: EventWindow, today: string): { from: string; to: string } {
  return 'lastDays' in w ? { from: addDays(today, -(w.lastDays - 1)), to: today } : { from: w.from, to: w.to }
}

const CMP: Record<Exclude<EventOp, 'between'>, string> = { eq: '=', ne: '!=', gt: '>', gte: '>=', lt: '<', lte: '<=' }

function eventCompare(op: EventOp, value: number | number[], x: string, b: ParamBinder): { sql: string; holdsAt0: boolean } {
  if (op === 'between') {
    const [lo, hi] = value as number[]
    return { sql: `${x} BETWEEN ${b.num(lo!)} AND ${b.num(hi!)}`, holdsAt0: lo! <= 0 && 0 <= hi! }
  }
  const v = value as number
  const holds = { eq: 0 === v, ne: 0 !== v, gt: 0 > v, gte: 0 >= v, lt: 0 < v, lte: 0 <= v }[op]
  return { sql: `${x} ${CMP[op]} ${b.num(v)}`, holdsAt0: holds }
}

export interface EventPass {
  /** Per-customer aggregate columns `a<i>`. */
  aggs: string[]
  /** Per leaf: the predicate over `a<i>` and whether a customer without events satisfies it. */
  leaves: { cmp: string; holdsAt0: boolean }[]
  from: string
  to: string
  /** SELECT customer_key, a0, a1 ... GROUP BY customer_key over the resolved events. */
  sql: string
}

export function eventPass(leaves: readonly { node: EventLeaf | SequenceLeaf }[], b: ParamBinder, o: { timeZone: string; asOf: Date }): EventPass {
  const tz = b.str(o.timeZone)
  const today = localDate(o.asOf, o.timeZone)
  const pass: EventPass = { aggs: [], leaves: [], from: today, to: today, sql: '' }
  const inWindow = (w: EventWindow) => {
    const d = windowDays(w, today)
    if (d.from < pass.from) pass.from = d.from
    if (d.to > pass.to) pass.to = d.to
    return `day BETWEEN ${b.bind('Date32', d.from)} AND ${b.bind('Date32', d.to)}`
  }
  leaves.forEach(({ node }, i) => {
    const a = `a${i}`
    if ('sequence' in node) {
      const win = inWindow(node.window ?? { lastDays: DEFAULT_SEQUENCE_DAYS })
      const steps = node.sequence.map((s) => `(${measureConditionSql(measureOf(s.event, 'count'), b)}) AND ${win}`)
      // withinDays is a validated integer (1..400): windowFunnel takes its window as a literal.
      pass.aggs.push(`windowFunnel(${Math.trunc(node.withinDays) * 86400})(toDateTime(timestamp), ${steps.join(', ')}) AS ${a}`)
      pass.leaves.push({ cmp: `${a} = ${node.sequence.length}`, holdsAt0: false })
      return
    }
    const m = measureOf(node.event, node.measure, node.property)
    const cond = `(${measureConditionSql(m, b)}) AND ${inWindow(node.window)}`
    if (node.measure === 'count') pass.aggs.push(`toFloat64(countIf(${cond})) AS ${a}`)
    else if (node.measure === 'sum') pass.aggs.push(`sumIf(toFloat64(${measureValueSql(m, b)}), ${cond}) AS ${a}`)
    else {
      const v = measureValueSql(m, b)
      pass.aggs.push(`toFloat64(uniqExactIf(${v}, ${cond} AND ${v} != '')) AS ${a}`)
    }
    const c = eventCompare(node.op, node.value, a, b)
    pass.leaves.push({ cmp: c.sql, holdsAt0: c.holdsAt0 })
  })
  // The scan covers the union of the windows, as local days of the tenant.
  const where = `toDate(timestamp, ${tz}) BETWEEN ${b.bind('Date32', pass.from)} AND ${b.bind('Date32', pass.to)}`
  pass.aggs.unshift('customer_key')
  const source = `(SELECT customer_key, ${EVENT_COLUMNS.join(', ')}, toDate(timestamp, ${tz}) AS day FROM ${resolvedEventsSql(EVENT_COLUMNS, where)})`
  pass.sql = `SELECT ${pass.aggs.join(', ')} FROM ${source} WHERE customer_key != 0 GROUP BY customer_key`
  return pass
}
