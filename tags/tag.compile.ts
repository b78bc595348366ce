import { AppError } from '../core/errors.js'
import { FEATURES, type FeatureName } from './tag.features.js'
import type { ParamBinder } from '../core/params.js'
import {
  LIFECYCLE_VALUES,
  type Condition,
  type LifecycleRule,
  type Operand,
  type Scalar,
  type TagDefinition,
  type ValueType,
  type WindowRule,
} from './tag.schema.js'

/**
 * Turns definitions into SQL expressions. Identifiers come from code (feature expressions,
 * `t_<n>` columns numbered here); every user value is bound through the ParamBinder.
 *
 * Each tag compiles to one expression yielding `tuple(value String, num Float64, list
 * Array(String), present UInt8)`: the canonical text, the numeric form (numbers; dates as days
 * since 1970; enums as their position; booleans 1), the list (string_list), and whether the
 * customer has a value at all. A false boolean and a zero count are "no value": storage keeps
 * only what holds, and readers treat a missing window measure as 0.
 */

export const OUT_TYPE = 'Tuple(String, Float64, Array(String), UInt8)'

/** How a tag already computed is visible to expressions of later levels. */
export interface TagColumns {
  type: ValueType
  /** Columns of the dependency pivot: presence, text, number, list. */
  present: string
  value: string
  num: string
  list: string
  /** A window measure that is absent counts as 0 rather than unknown. */
  zeroWhenAbsent: boolean
}

export interface CompileContext {
  binder: ParamBinder
  /** Tags this level may read, by name. */
  tags: ReadonlyMap<string, TagColumns>
  /** Feature columns are `f_<name>` in the profile relation. */
}

export function featureColumn(f: FeatureName): string {
  return `f_${f}`
}

// --- conditions --------------------------------------------------------------------------------

type Kind = 'number' | 'date' | 'text' | 'boolean' | 'list'

function kindOf(t: ValueType | 'enum'): Kind {
  switch (t) {
    case 'number':
      return 'number'
    case 'date':
      return 'date'
    case 'boolean':
      return 'boolean'
    case 'string_list':
      return 'list'
    default:
      return 'text'
  }
}

export function conditionError(path: string, message: string): AppError {
  return new AppError('VALIDATION_FAILED', message, { issues: [{ field: path, message }] })
}

export function conditionSql(c: Condition, ctx: CompileContext, path = 'rule.when'): string {
  if ('all' in c) return `(${c.all.map((x, i) => conditionSql(x, ctx, `${path}.all.${i}`)).join(' AND ')})`
  if ('any' in c) return `(${c.any.map((x, i) => conditionSql(x, ctx, `${path}.any.${i}`)).join(' OR ')})`
  if ('not' in c) return `NOT (${conditionSql(c.not, ctx, `${path}.not`)})`
  let kind: Kind
  let expr: string
  let present: string
  if ('feature' in c) {
    const f = FEATURES[c.feature]
    kind = kindOf(f.type)
    expr = featureColumn(c.feature)
    present = kind === 'boolean' ? expr : kind === 'list' ? `notEmpty(${expr})` : `(${expr} IS NOT NULL)`
  } else {
    const t = ctx.tags.get(c.tag)
    if (!t) throw conditionError(`${path}.tag`, `tag ${c.tag} is not defined or not computed before this one`)
    kind = kindOf(t.type)
    present = `(${t.present} = 1)`
    expr =
      kind === 'number' || kind === 'date'
        ? t.zeroWhenAbsent
          ? `if(${t.present} = 1, ${t.num}, 0)`
          : `if(${t.present} = 1, ${t.num}, NULL)`
        : kind === 'list'
          ? t.list
          : kind === 'boolean'
            ? present
            : t.value
  }
  return comparisonSql(kind, expr, present, c.op, c.value, ctx.binder, path)
}

function scalarParam(kind: Kind, v: Scalar, b: ParamBinder, path: string): string {
  if (kind === 'number') {
    if (typeof v !== 'number') throw conditionError(`${path}.value`, 'expected a number')
    return b.num(v)
  }
  if (kind === 'date') {
    if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(v)) throw conditionError(`${path}.value`, 'expected a date YYYY-MM-DD')
    // Dates compare as days since 1970, the numeric form.
    return `toFloat64(toInt32(toDate32(${b.str(v)})))`
  }
  if (kind === 'boolean') {
    if (typeof v !== 'boolean') throw conditionError(`${path}.value`, 'expected true or false')
    return v ? '1' : '0'
  }
  if (typeof v !== 'string') throw conditionError(`${path}.value`, 'expected a string')
  return b.str(v)
}

function comparisonSql(kind: Kind, expr: string, present: string, op: string, value: Scalar | Scalar[] | undefined, b: ParamBinder, path: string): string {
  if (op === 'exists') return present
  if (op === 'not_exists') return `NOT ${present}`
  const list = Array.isArray(value) ? value : undefined
  const one = Array.isArray(value) ? undefined : value
  const needOne = (): Scalar => {
    if (one === undefined) throw conditionError(`${path}.value`, `${op} needs one value`)
    return one
  }
  const needList = (n?: number): Scalar[] => {
    if (!list || (n !== undefined && list.length !== n)) throw conditionError(`${path}.value`, `${op} needs ${n ? `${n} values` : 'a list of values'}`)
    return list
  }
  const e = kind === 'date' ? `toFloat64(toInt32(${expr}))` : kind === 'boolean' ? `toUInt8(${expr})` : expr
  if (kind === 'list') {
    if (op === 'contains' || op === 'eq') return `has(${expr}, ${scalarParam('text', needOne(), b, path)})`
    if (op === 'in') return `hasAny(${expr}, ${b.strs(needList().map(String))})`
    if (op === 'not_in' || op === 'ne') return `NOT hasAny(${expr}, ${b.strs((list ?? [needOne()]).map(String))})`
    throw conditionError(`${path}.op`, `${op} does not apply to a list; use contains, in, not_in, exists`)
  }
  const cmp = (sym: string) => `coalesce(${e} ${sym} ${scalarParam(kind, needOne(), b, path)}, 0)`
  switch (op) {
    case 'eq':
      return cmp('=')
    case 'ne':
      // An absent value is not equal to anything, as not_in treats it.
      return `NOT ${cmp('=')}`
    case 'gt':
      return cmp('>')
    case 'gte':
      return cmp('>=')
    case 'lt':
      return cmp('<')
    case 'lte':
      return cmp('<=')
    case 'between': {
      const [lo, hi] = needList(2)
      return `coalesce(${e} BETWEEN ${scalarParam(kind, lo!, b, path)} AND ${scalarParam(kind, hi!, b, path)}, 0)`
    }
    case 'in':
    case 'not_in': {
      const vals = needList().map((v, i) => scalarParam(kind, v, b, `${path}.value.${i}`))
      const sql = `coalesce(${e} IN (${vals.join(', ')}), 0)`
      return op === 'in' ? sql : `NOT ${sql}`
    }
    case 'contains':
      if (kind !== 'text') throw conditionError(`${path}.op`, 'contains applies to text and lists')
      return `coalesce(position(${e}, ${scalarParam('text', needOne(), b, path)}) > 0, 0)`
    default:
      throw conditionError(`${path}.op`, `unknown operator ${op}`)
  }
}

// --- value expressions -------------------------------------------------------------------------

function operandSql(o: Operand, ctx: CompileContext, type: ValueType, path: string): { expr: string; present: string } {
  if ('feature' in o) {
    const col = featureColumn(o.feature)
    return { expr: col, present: type === 'string_list' ? `notEmpty(${col})` : `(${col} IS NOT NULL)` }
  }
  const t = ctx.tags.get(o.tag)
  if (!t) throw conditionError(`${path}.tag`, `tag ${o.tag} is not defined or not computed before this one`)
  if (t.type !== type) throw conditionError(`${path}.tag`, `tag ${o.tag} is a ${t.type}, this tag a ${type}`)
  if (type === 'date') return { expr: `toDate32(toInt32(${t.num}))`, present: `${t.present} = 1` }
  if (type === 'string_list') return { expr: t.list, present: `${t.present} = 1` }
  return { expr: t.zeroWhenAbsent ? `if(${t.present} = 1, ${t.num}, 0)` : t.num, present: t.zeroWhenAbsent ? '1' : `${t.present} = 1` }
}

/** A typed value and its presence as the output tuple. */
export function outTuple(type: ValueType, expr: string, present: string, enumValues?: readonly string[], b?: ParamBinder): string {
  switch (type) {
    case 'boolean':
      return `tuple('true', 1., CAST([], 'Array(String)'), toUInt8(coalesce(${present}, 0)))`
    case 'number':
      // A number that is not finite is no value: NaN is unequal to itself, so a stored NaN would
      // read as changed on every comparison, and infinities have no place in buckets or JSON.
      return `tuple(toString(assumeNotNull(${expr})), toFloat64(assumeNotNull(${expr})), CAST([], 'Array(String)'),
        toUInt8(coalesce(${present}, 0) AND isFinite(toFloat64(assumeNotNull(${expr})))))`
    case 'date':
      return `tuple(toString(assumeNotNull(${expr})), toFloat64(toInt32(assumeNotNull(${expr}))), CAST([], 'Array(String)'), toUInt8(coalesce(${present}, 0)))`
    case 'enum':
      return `tuple(toString(${expr}), toFloat64(indexOf(${b!.strs(enumValues ?? [])}, toString(${expr}))), CAST([], 'Array(String)'), toUInt8(coalesce(${present}, 0)))`
    case 'string_list':
      return `tuple(arrayStringConcat(${expr}, ','), toFloat64(length(${expr})), ${expr}, toUInt8(coalesce(${present}, 0)))`
  }
}

/** The expression of a rule tag over the profile relation and earlier tags. */
export function ruleSql(d: TagDefinition, ctx: CompileContext): string {
  const r = d.rule
  if (r.kind !== 'rule') throw new Error('not a rule')
  const when = r.when ? conditionSql(r.when, ctx) : '1'
  if (d.type === 'boolean') return outTuple('boolean', '1', when)
  if (d.type === 'enum') {
    const branches = (r.cases ?? []).flatMap((c, i) => [conditionSql(c.when, ctx, `rule.cases.${i}.when`), ctx.binder.str(c.value)])
    const value = `multiIf(${[...branches, r.else ? ctx.binder.str(r.else) : `''`].join(', ')})`
    return outTuple('enum', value, `(${when}) AND ${value} != ''`, d.values, ctx.binder)
  }
  const o = operandSql(r.from!, ctx, d.type, 'rule.from')
  return outTuple(d.type, o.expr, `(${when}) AND ${o.present}`)
}

// --- window measures ---------------------------------------------------------------------------

/** The window tag's output from its aggregate column `agg` (and the tenant time zone). */
export function windowOutSql(d: TagDefinition, agg: string, b: ParamBinder): string {
  const r = d.rule as WindowRule
  if (r.threshold) {
    const sym = { gt: '>', gte: '>=', lt: '<', lte: '<=', eq: '=', ne: '!=' }[r.threshold.op]
    return outTuple('boolean', '1', `${agg} ${sym} ${b.num(r.threshold.value)}`)
  }
  if (r.measure === 'first_time' || r.measure === 'last_time') {
    // No event in the window leaves the aggregate at its zero; dates are the tenant's local days.
    return outTuple('date', `toDate32(${agg}, {tz:String})`, `toUnixTimestamp64Milli(${agg}) > 0`)
  }
  return outTuple('number', agg, `${agg} != 0`)
}

/** new, active, reactivated, dormant, churned from the activity counts and the tenure. */
export function lifecycleOutSql(r: LifecycleRule, cols: { recent: string; gap: string; prior: string; tenure: string; churn: string }, b: ParamBinder): string {
  const value = `multiIf(${cols.tenure} < ${r.newDays}, 'new',
      ${cols.recent} > 0 AND ${cols.gap} = 0 AND ${cols.prior} > 0, 'reactivated',
      ${cols.recent} > 0, 'active',
      ${cols.churn} > 0, 'dormant', 'churned')`
  return outTuple('enum', value, '1', LIFECYCLE_VALUES, b)
}

/** Window lengths a lifecycle spans: the activity ranges whose edges move each day. */
export function lifecycleRanges(r: LifecycleRule): { days: number; offset: number }[] {
  return [
    { days: r.activeDays, offset: 0 },
    { days: r.dormantDays, offset: r.activeDays },
    { days: Math.max(1, r.churnDays - r.activeDays - r.dormantDays), offset: r.activeDays + r.dormantDays },
    { days: r.churnDays, offset: 0 },
  ]
}
