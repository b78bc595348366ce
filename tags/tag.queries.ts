import type { FeatureName } from './tag.features.js'
import { profileSql } from './tag.features.js'
import { featureColumn, lifecycleOutSql, outTuple, ruleSql, windowOutSql, type CompileContext, type TagColumns } from './tag.compile.js'
import { CURRENT_DAYS, lifecycleAggs, windowAggSql, type Layout } from './tag.measures.js'
import { ParamBinder } from '../core/params.js'
import {
  featureDependencies,
  tagDependencies,
  type LifecycleRule,
  type Operand,
  type ScoreRule,
  type TagDefinition,
  type WindowRule,
} from './tag.schema.js'
import { guardSqlTag } from './tag.sqlguard.js'
import { sqlTagSources } from './tag.sources.js'
import { changedBySql, currentValuesSql, valuesAsOfSql } from './tag.values.js'
import { keyInRange, rangeParams } from './tag.ranges.js'

/**
 * The SQL that stages one level of tags: every statement here is an `INSERT INTO tag_stage`
 * computing many tags in one query (one scan of daily aggregates for all window tags, one pass
 * over the profile for all rules and scores of a level). Each returns its SQL and parameters.
 */

export interface StageQuery {
  sql: string
  /** The rows `sql` inserts (tenant, run, tag, customer, value, num, list), as a SELECT. */
  select: string
  /** Bound for the whole key space; a ranged query is run once per key range with its own. */
  params: Record<string, unknown>
  /**
   * Computes each customer from that customer's rows alone, so it may run per range of customer
   * keys (`{klo}`..`{khi}`) and hold one range in memory at a time. Scores rank every customer
   * and SQL tags are free text: those run over all keys at once.
   */
  ranged: boolean
}

const SCOPE = `AND customer_key IN (SELECT customer_key FROM tag_scope WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64})`
const RANGE = `AND ${keyInRange('customer_key')}`

/** Output tuples, one per tag, unpivoted into stage rows; only tags that hold are kept. */
function stageQuery(names: readonly string[], select: string, b: ParamBinder, params: Record<string, unknown>, ranged: boolean): StageQuery {
  const items = names.map((n, i) => `tuple(${b.str(n)}, e${i}.1, e${i}.2, e${i}.3, e${i}.4)`)
  const rows = `SELECT {tenant:UInt16}, {run:UInt64}, o.1, customer_key, o.2, o.3, o.4 FROM (
      SELECT customer_key, arrayJoin(arrayFilter(x -> x.5 = 1, [${items.join(', ')}])) AS o FROM (${select})
    )`
  return { sql: `INSERT INTO tag_stage (tenant_id, run_id, tag, customer_key, value, num, list)\n    ${rows}`, select: rows, params: { ...b.params, ...params }, ranged }
}

/** Window and lifecycle tags, from daily aggregates, for all customers or the run's scope. */
export function windowStage(defs: readonly TagDefinition[], o: { scoped: boolean; windowFrom: string; layout: Layout }): StageQuery {
  const b = new ParamBinder('w')
  const scope = `${RANGE} ${o.scoped ? SCOPE : ''}`
  const aggs: string[] = []
  const outs: string[] = []
  defs.forEach((d, i) => {
    if (d.rule.kind === 'window') {
      aggs.push(`${windowAggSql(d.rule as WindowRule, o.layout)} AS a${i}`)
      outs.push(`${windowOutSql(d, `w.a${i}`, b)} AS e${i}`)
    } else {
      const r = d.rule as LifecycleRule
      const l = lifecycleAggs(r, o.layout)
      aggs.push(`${l.recent} AS a${i}_r`, `${l.gap} AS a${i}_g`, `${l.prior} AS a${i}_p`, `${l.churn} AS a${i}_c`)
      outs.push(
        `${lifecycleOutSql(r, { recent: `w.a${i}_r`, gap: `w.a${i}_g`, prior: `w.a${i}_p`, churn: `w.a${i}_c`, tenure: `dateDiff('day', base.opened, {today:Date32})` }, b)} AS e${i}`,
      )
    }
  })
  // Customers known to the bank, and those only the app knows (events but no profile yet).
  const base = `SELECT customer_key, max(opened) AS opened FROM (
      SELECT customer_key, toDate32(opened_at, {tz:String}) AS opened FROM customers FINAL
      WHERE tenant_id = {tenant:UInt16} AND deleted = 0 ${scope}
      UNION ALL
      SELECT DISTINCT customer_key, toDate32('1970-01-01') AS opened FROM tag_event_daily
      WHERE tenant_id = {tenant:UInt16} AND day BETWEEN {wfrom:Date} AND {today:Date32} AND (day, build) IN ${CURRENT_DAYS} ${scope}
    ) GROUP BY customer_key`
  const agg = `SELECT customer_key, ${aggs.join(', ')} FROM tag_event_daily
      WHERE tenant_id = {tenant:UInt16} AND day BETWEEN {wfrom:Date} AND {today:Date32} AND (day, build) IN ${CURRENT_DAYS} ${scope}
      GROUP BY customer_key`
  const select = `SELECT base.customer_key AS customer_key, ${outs.join(', ')}
      FROM (${base}) AS base LEFT JOIN (${agg}) AS w ON w.customer_key = base.customer_key`
  return stageQuery(defs.map((d) => d.name), select, b, { ...rangeParams(), wfrom: o.windowFrom, layout: o.layout.hash }, true)
}

export interface DepTag {
  name: string
  def: TagDefinition
}

/** Window measures that are absent count as zero (no event is a count of 0). */
function zeroWhenAbsent(d: TagDefinition): boolean {
  return d.rule.kind === 'window' && !d.rule.threshold && d.rule.measure !== 'first_time' && d.rule.measure !== 'last_time'
}

/**
 * Rules and scores of one level, over the profile and the values of earlier tags; with
 * `changed`, only for the customers whose values of those tags this run changed, and with
 * `changedCustomers` for the customers whose row changed since too (rules only).
 */
export function profileStage(
  defs: readonly TagDefinition[],
  known: ReadonlyMap<string, TagDefinition>,
  o: { asOf: boolean; changed?: readonly string[]; changedCustomers?: boolean },
): StageQuery {
  const b = new ParamBinder('r')
  if ((o.changed?.length || o.changedCustomers) && defs.some((d) => d.rule.kind !== 'rule')) throw new Error('only rules are computed for the customers whose inputs changed')
  const only = o.changed?.length || o.changedCustomers ? changedBySql(b.strs(o.changed ?? []), o.changedCustomers) : ''
  const features = new Set<FeatureName>()
  const deps = new Set<string>()
  for (const d of defs) {
    featureDependencies(d).forEach((f) => features.add(f))
    tagDependencies(d).forEach((t) => deps.add(t))
  }
  const depList = [...deps]
  const cols = new Map<string, TagColumns>()
  depList.forEach((name, i) => {
    const def = known.get(name)
    if (!def) throw new Error(`tag ${name} is not known`)
    cols.set(name, {
      type: def.type,
      present: `coalesce(t.d${i}_p, 0)`,
      value: `t.d${i}_v`,
      num: `t.d${i}_n`,
      list: `t.d${i}_l`,
      zeroWhenAbsent: zeroWhenAbsent(def),
    })
  })
  const ctx: CompileContext = { binder: b, tags: cols }
  const outs = defs.map((d, i) => `${d.rule.kind === 'score' ? scoreSql(d, ctx) : ruleSql(d, ctx)} AS e${i}`)
  let pivot = ''
  if (depList.length) {
    const tagsParam = b.strs(depList)
    const scope = only ? `${RANGE} AND ${only.replaceAll('{key}', 'customer_key')}` : RANGE
    const src = o.asOf ? valuesAsOfSql(tagsParam, `{asOf:DateTime64(3, 'UTC')}`, scope) : currentValuesSql(tagsParam, scope)
    const parts = depList.flatMap((_, i) => {
      const is = `tag = ${b.str(depList[i]!)}`
      return [`maxIf(toUInt8(1), ${is}) AS d${i}_p`, `anyIf(value, ${is}) AS d${i}_v`, `anyIf(num, ${is}) AS d${i}_n`, `anyIf(list, ${is}) AS d${i}_l`]
    })
    pivot = `LEFT JOIN (SELECT customer_key, ${parts.join(', ')} FROM ${src} GROUP BY customer_key) AS t ON t.customer_key = p.customer_key`
  }
  const select = `SELECT p.customer_key AS customer_key, ${outs.join(', ')} FROM (${profileSql([...features], only)}) AS p ${pivot}
    SETTINGS join_use_nulls = 1`
  const ranged = defs.every((d) => d.rule.kind !== 'score')
  return stageQuery(defs.map((d) => d.name), select, b, rangeParams(), ranged)
}

/** A numeric input; NULL when the customer has none (a window count without events is 0). */
function operandNumber(o: Operand, ctx: CompileContext): string {
  if ('feature' in o) return `toFloat64(${featureColumn(o.feature)})`
  const t = ctx.tags.get(o.tag)!
  return `if(${t.present} = 1, ${t.num}, ${t.zeroWhenAbsent ? '0' : 'NULL'})`
}

/** Quantile buckets by rank (ties share a bucket, so reruns agree) or a weighted percentile score. */
function scoreSql(d: TagDefinition, ctx: CompileContext): string {
  const r = d.rule as ScoreRule
  if (r.method === 'quantile') {
    const x = operandNumber(r.input!, ctx)
    // Ties share the bucket of their first rank, so reruns agree; a customer without the input
    // ranks first (the lowest bucket) in either direction.
    const expr = `toFloat64(least(${r.buckets}, 1 + intDiv((rank() OVER (ORDER BY ${x} ${r.descending ? 'DESC' : 'ASC'} NULLS FIRST) - 1) * ${r.buckets}, count() OVER ())))`
    return outTuple('number', expr, '1')
  }
  const total = r.inputs!.reduce((s, i) => s + i.weight, 0)
  const terms = r.inputs!.map((i) => {
    const x = `coalesce(${operandNumber(i.input, ctx)}, 0)`
    return `${ctx.binder.num(i.weight)} * if(count() OVER () > 1, (rank() OVER (ORDER BY ${x}) - 1) / (count() OVER () - 1), 0)`
  })
  return outTuple('number', `round(100 * (${terms.join(' + ')}) / ${ctx.binder.num(total)}, 1)`, '1')
}

/** An expert's SQL tag, guarded and tenant-scoped, cast to the tag's type. */
export function sqlStage(d: TagDefinition): StageQuery {
  if (d.rule.kind !== 'sql') throw new Error('not a sql tag')
  const b = new ParamBinder('s')
  const guarded = guardSqlTag(d.rule.sql, sqlTagSources(d.sensitivity))
  const v = 'value'
  const out =
    d.type === 'boolean'
      ? outTuple('boolean', '1', `toUInt8(${v}) = 1`)
      : d.type === 'number'
        ? outTuple('number', `toFloat64(${v})`, `${v} IS NOT NULL`)
        : d.type === 'date'
          ? outTuple('date', `toDate32(${v})`, `${v} IS NOT NULL`)
          : d.type === 'enum'
            ? outTuple('enum', `toString(${v})`, `toString(${v}) IN ${b.strs(d.values ?? [])}`, d.values, b)
            : outTuple('string_list', `CAST(${v}, 'Array(String)')`, `notEmpty(CAST(${v}, 'Array(String)'))`)
  // One value per customer: a query returning several rows for one customer keeps any one.
  const select = `SELECT customer_key, ${out} AS e0 FROM (SELECT customer_key, any(value) AS value FROM (${guarded.sql}) GROUP BY customer_key)`
  return stageQuery([d.name], select, b, {}, false)
}
