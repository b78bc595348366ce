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
import { ALL_KEYS, keyInRange, rangeParams } from './tag.ranges.js'

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
export function zeroWhenAbsent(d: TagDefinition): boolean {
  return d.rule.kind === 'window' && !d.rule.threshold && d.rule.measure !== 'first_time' && d.rule.measure !== 'last_time'
}

/** A quantile score's cut points (see quantileCutsSql); NULL: an edge among customers without the input. */
export type Cuts = readonly (number | null)[]

/** What limits a stage to some customers: a predicate on `{key}` with its own parameters. */
export interface Band {
  sql: string
  params: Record<string, unknown>
}

/** The profile (customers, the features the tags read) joined with the values of the tags they read. */
function profileFrom(
  defs: readonly TagDefinition[],
  known: ReadonlyMap<string, TagDefinition>,
  o: { asOf: boolean; only: string },
  b: ParamBinder,
): { from: string; ctx: CompileContext } {
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
  let pivot = ''
  if (depList.length) {
    const tagsParam = b.strs(depList)
    const scope = o.only ? `${RANGE} AND ${o.only.replaceAll('{key}', 'customer_key')}` : RANGE
    const src = o.asOf ? valuesAsOfSql(tagsParam, `{asOf:DateTime64(3, 'UTC')}`, scope) : currentValuesSql(tagsParam, scope)
    const parts = depList.flatMap((_, i) => {
      const is = `tag = ${b.str(depList[i]!)}`
      return [`maxIf(toUInt8(1), ${is}) AS d${i}_p`, `anyIf(value, ${is}) AS d${i}_v`, `anyIf(num, ${is}) AS d${i}_n`, `anyIf(list, ${is}) AS d${i}_l`]
    })
    pivot = `LEFT JOIN (SELECT customer_key, ${parts.join(', ')} FROM ${src} GROUP BY customer_key) AS t ON t.customer_key = p.customer_key`
  }
  return { from: `(${profileSql([...features], o.only)}) AS p ${pivot}`, ctx: { binder: b, tags: cols } }
}

const isQuantile = (d: TagDefinition) => d.rule.kind === 'score' && d.rule.method === 'quantile'

/**
 * Rules and scores of one level, over the profile and the values of earlier tags; with
 * `changed`, only for the customers whose values of those tags this run changed, and with
 * `changedCustomers` for the customers whose row changed since too (rules only); with `band`,
 * also for the customers it holds (a quantile score: those whose input lies where a cut point
 * moved). A quantile score buckets by `cuts`, its cut points; without them, by cut points the
 * query computes over every customer (previews, benchmarks).
 */
export function profileStage(
  defs: readonly TagDefinition[],
  known: ReadonlyMap<string, TagDefinition>,
  o: { asOf: boolean; changed?: readonly string[]; changedCustomers?: boolean; cuts?: ReadonlyMap<string, Cuts>; band?: Band },
): StageQuery {
  const b = new ParamBinder('r')
  const narrowed = o.changed?.length || o.changedCustomers
  if (narrowed && defs.some((d) => d.rule.kind !== 'rule' && !(isQuantile(d) && o.cuts?.has(d.name)))) {
    throw new Error('only rules and quantile scores with their cut points are computed for the customers whose inputs changed')
  }
  const changedBy = narrowed ? changedBySql(b.strs(o.changed ?? []), o.changedCustomers) : ''
  const only = changedBy && o.band ? `(${changedBy} OR ${o.band.sql})` : changedBy
  const { from, ctx } = profileFrom(defs, known, { asOf: o.asOf, only }, b)
  const outs = defs.map((d, i) => {
    if (d.rule.kind !== 'score') return `${ruleSql(d, ctx)} AS e${i}`
    const cuts = o.cuts?.get(d.name)
    return `${scoreSql(d, ctx, cuts ? b.bind('Array(Nullable(Float64))', cuts) : isQuantile(d) ? quantileCutsSql(d, known, o.asOf, b) : '')} AS e${i}`
  })
  const select = `SELECT p.customer_key AS customer_key, ${outs.join(', ')} FROM ${from}
    SETTINGS join_use_nulls = 1`
  // A quantile score is per customer once its cut points are known; a weighted one ranks everyone.
  const ranged = defs.every((d) => d.rule.kind !== 'score' || isQuantile(d))
  return stageQuery(defs.map((d) => d.name), select, b, { ...rangeParams(), ...(o.band?.params ?? {}) }, ranged)
}

/** A numeric input; NULL when the customer has none (a window count without events is 0). */
function operandNumber(o: Operand, ctx: CompileContext): string {
  if ('feature' in o) return `toFloat64(${featureColumn(o.feature)})`
  const t = ctx.tags.get(o.tag)!
  return `if(${t.present} = 1, ${t.num}, ${t.zeroWhenAbsent ? '0' : 'NULL'})`
}

/** Whether a quantile score's input `x` is missing: no value, or one that is not a finite number. */
const missing = (x: string) => `(${x} IS NULL OR NOT isFinite(assumeNotNull(${x})))`

/**
 * A quantile score's cut points over every customer of the profile, as one expression of type
 * Array(Nullable(Float64)): customers ranked by the input (missing inputs first, in either
 * direction; ties share the rank of the first), the score is 1 + floor((rank - 1) * buckets / n).
 * A customer reaches bucket k + 1 when at least m = ceil(k * n / buckets) customers rank before
 * them, that is when the input is beyond the m-th input in that order: that input is cut point
 * k (NULL when it is a missing one, which every customer with the input is beyond).
 */
export function quantileCutsSql(d: TagDefinition, known: ReadonlyMap<string, TagDefinition>, asOf: boolean, b: ParamBinder): string {
  const r = d.rule as ScoreRule
  const ranged = profileFrom([d], known, { asOf, only: '' }, b)
  // Every key, not the stage's range: the cut points rank every customer whatever range is staged.
  const lo = b.bind('UInt32', ALL_KEYS.lo)
  const hi = b.bind('UInt32', ALL_KEYS.hi)
  const from = ranged.from.replaceAll('{klo:UInt32}', lo).replaceAll('{khi:UInt32}', hi)
  const ctx = ranged.ctx
  const m = `intDiv(k * n + ${r.buckets} - 1, ${r.buckets})`
  return `(SELECT arrayMap(k -> if(${m} <= gaps, NULL, toNullable(s[${m} - gaps])), range(1, ${r.buckets})) FROM (
      SELECT count() AS n, countIf(${missing('x')}) AS gaps, ${r.descending ? 'arrayReverseSort' : 'arraySort'}(groupArrayIf(assumeNotNull(x), NOT ${missing('x')})) AS s
      FROM (SELECT ${operandNumber(r.input!, ctx)} AS x FROM ${from} SETTINGS join_use_nulls = 1)))`
}

/** Quantile buckets by cut points (see quantileCutsSql), or a weighted percentile score. */
function scoreSql(d: TagDefinition, ctx: CompileContext, cuts: string): string {
  const r = d.rule as ScoreRule
  if (r.method === 'quantile') {
    const x = operandNumber(r.input!, ctx)
    const beyond = `isNull(c) OR assumeNotNull(${x}) ${r.descending ? '<' : '>'} assumeNotNull(c)`
    return outTuple('number', `toFloat64(if(${missing(x)}, 1, 1 + arrayCount(c -> ${beyond}, ${cuts})))`, '1')
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
