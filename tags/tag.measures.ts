import crypto from 'node:crypto'
import { conditionError, lifecycleRanges } from './tag.compile.js'
import { ParamBinder } from '../core/params.js'
import type { LifecycleRule, PropertyFilter, Scalar, TagDefinition, WindowRule } from './tag.schema.js'

/**
 * Event measures and their per-day storage. A measure is what a window tag aggregates per
 * customer and day (an event filter and what is taken: a count, a sum, distinct keys, first and
 * last times), independent of the window length; equal ones are shared by many tags.
 *
 * One row of tag_event_daily per (customer, local day) holds every measure of the tenant as
 * arrays in the order of the layout (measures sorted by id): one GROUP BY (customer, day) over a
 * day's events fills them all, several times cheaper than a row per (customer, day, measure).
 */

export type MeasureRole = 'count' | 'sum' | 'distinct' | 'time'

export interface Measure {
  id: string
  role: MeasureRole
  events: string[]
  eventTypes: string[]
  where: PropertyFilter[]
  /** The property summed (sum) or counted distinct (distinct; `$event` for the event name). */
  property: string | undefined
}

/** The distinct key of `distinct_events`: the event or screen name itself, not a property. */
const EVENT_NAME = '$event'

const ROLE: Record<WindowRule['measure'], MeasureRole> = {
  count: 'count',
  days: 'count',
  sum: 'sum',
  distinct: 'distinct',
  distinct_events: 'distinct',
  first_time: 'time',
  last_time: 'time',
}

export function measureOf(r: Pick<WindowRule, 'events' | 'eventTypes' | 'where' | 'measure' | 'property'>): Measure {
  const role = ROLE[r.measure]
  const m = {
    role,
    events: [...r.events].sort(),
    eventTypes: [...(r.eventTypes ?? [])].sort(),
    where: r.where,
    property: r.measure === 'distinct_events' ? EVENT_NAME : role === 'sum' || role === 'distinct' ? r.property : undefined,
  }
  const id = BigInt('0x' + crypto.createHash('sha256').update(JSON.stringify(m)).digest('hex').slice(0, 16)).toString()
  return { id, ...m }
}

/** The activity measure lifecycles read: any track, screen or page event. */
export const ACTIVITY_MEASURE = measureOf({ events: [], eventTypes: ['track', 'screen', 'page'], where: [], measure: 'count' })

/** Where each measure's values sit in the daily arrays (1-based, as ClickHouse indexes). */
export interface Layout {
  hash: string
  measures: readonly Measure[]
  cnt: ReadonlyMap<string, number>
  total: ReadonlyMap<string, number>
  time: ReadonlyMap<string, number>
  keys: ReadonlyMap<string, number>
}

export function layoutOf(measures: readonly Measure[]): Layout {
  const sorted = [...new Map(measures.map((m) => [m.id, m])).values()].sort((a, b) => a.id.localeCompare(b.id))
  const index = (role?: MeasureRole) => new Map(sorted.filter((m) => !role || m.role === role).map((m, i) => [m.id, i + 1]))
  const hash = crypto.createHash('sha256').update(sorted.map((m) => m.id).join(',')).digest('hex').slice(0, 16)
  return { hash, measures: sorted, cnt: index(), total: index('sum'), time: index('time'), keys: index('distinct') }
}

function propertyFilterSql(f: PropertyFilter, b: ParamBinder): string {
  const key = b.str(f.property)
  const values = f.value === undefined ? [] : Array.isArray(f.value) ? f.value : [f.value]
  if (f.op === 'exists') return `JSONHas(properties, ${key})`
  if (values.length === 0) throw conditionError('rule.where', `${f.op} needs a value`)
  const typed = (v: Scalar) =>
    typeof v === 'number'
      ? { e: `JSONExtractFloat(properties, ${key})`, p: b.num(v) }
      : typeof v === 'boolean'
        ? { e: `JSONExtractBool(properties, ${key})`, p: v ? '1' : '0' }
        : { e: `JSONExtractString(properties, ${key})`, p: b.str(v) }
  const sym = { eq: '=', ne: '!=', gt: '>', gte: '>=', lt: '<', lte: '<=' } as const
  if (f.op === 'in' || f.op === 'not_in') {
    const any = `(${values.map((v) => `${typed(v).e} = ${typed(v).p}`).join(' OR ')})`
    return f.op === 'in' ? any : `NOT ${any}`
  }
  const t = typed(values[0]!)
  return `${t.e} ${sym[f.op]} ${t.p}`
}

/** Per event: does it count for the measure. */
export function measureConditionSql(m: Measure, b: ParamBinder): string {
  const conds = ['1']
  if (m.events.length) conds.push(`event IN ${b.strs(m.events)}`)
  if (m.eventTypes.length) conds.push(`toString(type) IN ${b.strs(m.eventTypes)}`)
  for (const f of m.where) conds.push(propertyFilterSql(f, b))
  return conds.join(' AND ')
}

/**
 * Why a window tag's measure cannot be compiled into the daily aggregate (a definition stored
 * before the schema refused it, such as a filter without its value), or undefined. Every event
 * tag shares that aggregate, so a run leaves such a measure out of it and fails the tag alone.
 */
export function measureProblem(d: TagDefinition): string | undefined {
  if (d.rule.kind !== 'window') return undefined
  try {
    const m = measureOf(d.rule)
    const b = new ParamBinder()
    measureConditionSql(m, b)
    measureValueSql(m, b)
    return undefined
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  }
}

/** Per event: the value summed (sum) or the key counted distinct (distinct; '' when absent). */
export function measureValueSql(m: Measure, b: ParamBinder): string {
  if (m.role === 'sum') return m.property === 'amount' ? 'amount' : `JSONExtractFloat(properties, ${b.str(m.property!)})`
  if (m.role === 'distinct') {
    if (m.property === EVENT_NAME) return 'toString(event)'
    return m.property === 'product_id' ? 'toString(product_id)' : `JSONExtractRaw(properties, ${b.str(m.property!)})`
  }
  return '0'
}

/**
 * The SELECT that aggregates events (columns customer_key, timestamp, type, event, properties,
 * product_id, amount, and `day`) into one row per (customer, day) following the layout.
 */
export function dailyAggregateSql(layout: Layout, source: string, b: ParamBinder): string {
  const cols: string[] = []
  const m = layout.measures
  m.forEach((x, i) => {
    cols.push(`toUInt8(${measureConditionSql(x, b)}) AS x${i}`)
    if (x.role === 'sum' || x.role === 'distinct') cols.push(`${measureValueSql(x, b)} AS v${i}`)
  })
  const pick = (role: MeasureRole, f: (i: number) => string, empty: string) => {
    const items = m.flatMap((x, i) => (x.role === role ? [f(i)] : []))
    return items.length ? `[${items.join(', ')}]` : empty
  }
  const noTimes = `arrayResize([toDateTime64(0, 3, 'UTC')], 0)`
  return `SELECT customer_key, day,
      [${m.map((_, i) => `toUInt32(countIf(x${i} = 1))`).join(', ')}] AS cnt,
      ${pick('sum', (i) => `sumIf(toFloat64(v${i}), x${i} = 1)`, `CAST([], 'Array(Float64)')`)} AS total,
      ${pick('time', (i) => `minIf(timestamp, x${i} = 1)`, noTimes)} AS first_at,
      ${pick('time', (i) => `maxIf(timestamp, x${i} = 1)`, noTimes)} AS last_at,
      ${pick('distinct', (i) => `arraySort(groupUniqArrayIf(v${i}, x${i} = 1 AND v${i} != ''))`, `CAST([], 'Array(Array(String))')`)} AS keys
    FROM (SELECT customer_key, timestamp, day, ${cols.join(', ')} FROM ${source})
    GROUP BY customer_key, day
    HAVING arraySum(cnt) > 0`
}

/**
 * The current builds of the days of a layout, as a subquery of (day, build) pairs: readers keep
 * only rows of these, so a rebuilt day's superseded rows are invisible before they are dropped.
 */
export const CURRENT_DAYS = `(SELECT day, max(build) FROM tag_event_days
  WHERE tenant_id = {tenant:UInt16} AND layout = {layout:String} GROUP BY day)`

/** Days [from, to] of a window ending today, as bound Date32 expressions. */
function windowDays(days: number, offset: number): { from: string; to: string } {
  return { from: `subtractDays({today:Date32}, ${offset + days - 1})`, to: `subtractDays({today:Date32}, ${offset})` }
}

function position(map: ReadonlyMap<string, number>, m: Measure): number {
  const i = map.get(m.id)
  if (i === undefined) throw new Error(`measure ${m.id} is not in the layout`)
  return i
}

/** Aggregate over daily rows for one window tag: its measure's days inside the window. */
export function windowAggSql(r: WindowRule, layout: Layout): string {
  const m = measureOf(r)
  const c = position(layout.cnt, m)
  const { from, to } = windowDays(r.days, r.offsetDays)
  const inWindow = `day BETWEEN ${from} AND ${to}`
  switch (r.measure) {
    case 'count':
      return `toFloat64(sumIf(cnt[${c}], ${inWindow}))`
    case 'days':
      return `toFloat64(countIf(cnt[${c}] > 0 AND ${inWindow}))`
    case 'sum':
      return `round(sumIf(total[${position(layout.total, m)}], ${inWindow}), 2)`
    case 'distinct':
    case 'distinct_events':
      // Counted by each key's 64-bit hash: a set of integers instead of one of strings (which
      // hashes every key again with a 128-bit hash): at 1M customers the same counts in 395-562 ms
      // against 726-1,904 ms; two of one customer's keys in a window colliding is a ~n²/2^65 chance.
      return `toFloat64(uniqExactArrayIf(arrayMap(k -> cityHash64(k), keys[${position(layout.keys, m)}]), ${inWindow}))`
    case 'first_time':
      return `minIf(first_at[${position(layout.time, m)}], cnt[${c}] > 0 AND ${inWindow})`
    case 'last_time':
      return `maxIf(last_at[${position(layout.time, m)}], cnt[${c}] > 0 AND ${inWindow})`
  }
}

/** The activity counts a lifecycle reads, as aggregates over daily rows. */
export function lifecycleAggs(r: LifecycleRule, layout: Layout): { recent: string; gap: string; prior: string; churn: string } {
  const c = position(layout.cnt, ACTIVITY_MEASURE)
  const range = (days: number, offset: number) => {
    const { from, to } = windowDays(days, offset)
    return `countIf(cnt[${c}] > 0 AND day BETWEEN ${from} AND ${to})`
  }
  return {
    recent: range(r.activeDays, 0),
    gap: range(r.dormantDays, r.activeDays),
    prior: range(Math.max(1, r.churnDays - r.activeDays - r.dormantDays), r.activeDays + r.dormantDays),
    churn: range(r.churnDays, 0),
  }
}

/**
 * The measures of a tenant's event tags (its daily layout) and the longest window they span.
 * A window tag whose measure cannot be compiled (`measureProblem`) is left out, with the reason.
 */
export function eventMeasures(defs: readonly TagDefinition[]): { layout: Layout; span: number; hash: string; uncompiled: Map<string, string> } {
  const byId = new Map<string, Measure>()
  const uncompiled = new Map<string, string>()
  let span = 0
  for (const d of defs) {
    if (d.rule.kind === 'window') {
      const why = measureProblem(d)
      if (why) {
        uncompiled.set(d.name, why)
        continue
      }
      const m = measureOf(d.rule)
      byId.set(m.id, m)
      span = Math.max(span, d.rule.days + d.rule.offsetDays)
    } else if (d.rule.kind === 'lifecycle') {
      byId.set(ACTIVITY_MEASURE.id, ACTIVITY_MEASURE)
      for (const r of lifecycleRanges(d.rule)) span = Math.max(span, r.days + r.offset)
    }
  }
  const layout = layoutOf([...byId.values()])
  return { layout, span, hash: layout.hash, uncompiled }
}
