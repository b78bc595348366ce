import { validate as validateCron } from 'node-cron'
import { z } from 'zod'
import { FEATURES, type FeatureName } from './tag.features.js'
import { inNumberRange, NUMBER_RANGE_MESSAGE } from './tag.limits.js'

/**
 * Tag definitions: declarative, validated here, versioned by the repository. Everything a
 * definition names (features, tags, event names, property names, values) reaches SQL as an
 * allow-listed identifier from code or as a bound parameter, never as text.
 */

export const TAG_NAME = /^[a-z][a-z0-9_]{1,62}$/
export const tagName = z.string().regex(TAG_NAME, 'lower case letters, digits and _, starting with a letter (2-63 characters)')

export const PURPOSES = ['security', 'service', 'marketing', 'risk'] as const
export type Purpose = (typeof PURPOSES)[number]
/** low and medium are shown to read keys; high only to admin keys (e.g. risk flags). */
export const SENSITIVITIES = ['low', 'medium', 'high'] as const
export type Sensitivity = (typeof SENSITIVITIES)[number]
export const VALUE_TYPES = ['boolean', 'enum', 'number', 'date', 'string_list'] as const
export type ValueType = (typeof VALUE_TYPES)[number]

// Values travel as Float64 parameters: beyond ±2^53 the engine refuses or rounds them.
const scalar = z.union([z.string().max(200), z.number().refine(inNumberRange, NUMBER_RANGE_MESSAGE), z.boolean()])
export type Scalar = z.infer<typeof scalar>

export const OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between', 'in', 'not_in', 'exists', 'not_exists', 'contains'] as const
export type Op = (typeof OPS)[number]

const comparison = {
  op: z.enum(OPS),
  value: z.union([scalar, z.array(scalar).min(1).max(500)]).optional(),
}

const featureName = z
  .string()
  .refine((f): f is FeatureName => Object.hasOwn(FEATURES, f), { message: `not a known feature (see GET /v1/tags/features)` })

export type Condition =
  | { all: Condition[] }
  | { any: Condition[] }
  | { not: Condition }
  | { feature: FeatureName; op: Op; value?: Scalar | Scalar[] }
  | { tag: string; op: Op; value?: Scalar | Scalar[] }

export const condition: z.ZodType<Condition> = z.lazy(() =>
  z.union([
    z.strictObject({ all: z.array(condition).min(1).max(50) }),
    z.strictObject({ any: z.array(condition).min(1).max(50) }),
    z.strictObject({ not: condition }),
    z.strictObject({ feature: featureName, ...comparison }),
    z.strictObject({ tag: tagName, ...comparison }),
  ]),
) as z.ZodType<Condition>

/** Where a rule takes a non-boolean value from. */
export const operand = z.union([z.strictObject({ feature: featureName }), z.strictObject({ tag: tagName })])
export type Operand = z.infer<typeof operand>

const propertyName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'a top-level property name')
const eventName = z.string().min(1).max(200)

export const propertyFilter = z.strictObject({
  property: propertyName,
  op: z.enum(['eq', 'ne', 'in', 'not_in', 'gt', 'gte', 'lt', 'lte', 'exists']),
  value: z.union([scalar, z.array(scalar).min(1).max(500)]).optional(),
})
export type PropertyFilter = z.infer<typeof propertyFilter>

/** distinct: distinct values of `property`; distinct_events: distinct event (or screen) names. */
export const MEASURES = ['count', 'sum', 'distinct', 'distinct_events', 'days', 'first_time', 'last_time'] as const

const ruleKind = z.strictObject({
  kind: z.literal('rule'),
  /** boolean: the condition. Other types: restricts where `from` applies. */
  when: condition.optional(),
  /** enum: the first case that holds gives the value. */
  cases: z.array(z.strictObject({ when: condition, value: z.string().min(1).max(100) })).max(50).optional(),
  else: z.string().min(1).max(100).optional(),
  /** number, date, string_list: the value comes from a feature or a tag. */
  from: operand.optional(),
})

const windowKind = z.strictObject({
  kind: z.literal('window'),
  /** Track event or screen names; empty means any event. */
  events: z.array(eventName).max(50).default([]),
  eventTypes: z.array(z.enum(['track', 'identify', 'page', 'screen', 'group', 'alias'])).max(6).optional(),
  where: z.array(propertyFilter).max(20).default([]),
  measure: z.enum(MEASURES),
  /** The property summed (sum) or counted distinct (distinct). */
  property: propertyName.optional(),
  days: z.number().int().min(1).max(400),
  /** Skip the most recent days: "active 30-120 days ago" is days 90, offsetDays 30. */
  offsetDays: z.number().int().min(0).max(400).default(0),
  /** Turns the aggregate into a boolean, e.g. count >= 3. */
  threshold: z.strictObject({ op: z.enum(['gt', 'gte', 'lt', 'lte', 'eq', 'ne']), value: z.number().refine(inNumberRange, NUMBER_RANGE_MESSAGE) }).optional(),
})

const sqlKind = z.strictObject({
  kind: z.literal('sql'),
  /** A SELECT returning customer_key and value, over $events, $customers ... (tenant-scoped). */
  sql: z.string().min(1).max(20000),
})

const scoreKind = z.strictObject({
  kind: z.literal('score'),
  method: z.enum(['quantile', 'weighted']),
  /** quantile: 1..buckets by the input's rank among the tenant's customers (missing counts as 0). */
  input: operand.optional(),
  buckets: z.number().int().min(2).max(100).default(5),
  /** quantile: the lowest input gets the top bucket (e.g. recency in days). */
  descending: z.boolean().default(false),
  /** weighted: sum of weight x percentile rank of each input, scaled to 0..100. */
  inputs: z.array(z.strictObject({ input: operand, weight: z.number().positive().max(1000) })).min(1).max(20).optional(),
})

const lifecycleKind = z.strictObject({
  kind: z.literal('lifecycle'),
  newDays: z.number().int().min(1).max(365).default(30),
  activeDays: z.number().int().min(1).max(365).default(30),
  /** A gap at least this long before the recent activity makes the customer reactivated. */
  dormantDays: z.number().int().min(1).max(365).default(60),
  churnDays: z.number().int().min(2).max(400).default(180),
})

export const LIFECYCLE_VALUES = ['new', 'active', 'reactivated', 'dormant', 'churned'] as const

export const tagRule = z.discriminatedUnion('kind', [ruleKind, windowKind, sqlKind, scoreKind, lifecycleKind])
export type TagRule = z.infer<typeof tagRule>
export type WindowRule = z.infer<typeof windowKind>
export type ScoreRule = z.infer<typeof scoreKind>
export type LifecycleRule = z.infer<typeof lifecycleKind>

/** Exactly five fields: node-cron also reads a six-field form whose first field is seconds. */
export const fiveFieldCron = z
  .string()
  .max(100)
  .refine((c) => c.trim().split(/\s+/).length === 5 && validateCron(c), { message: 'a five-field cron expression (minute hour day month weekday)' })
const cron = fiveFieldCron

export const tagDefinitionInput = z
  .strictObject({
    name: tagName,
    type: z.enum(VALUE_TYPES),
    /** enum: the allowed values, in order. */
    values: z.array(z.string().min(1).max(100)).min(1).max(100).optional(),
    description: z.strictObject({ zh: z.string().min(1).max(500), en: z.string().min(1).max(500) }),
    owner: z.string().min(1).max(100),
    /** The uses allowed; segments and push refuse any other, e.g. marketing on a risk-only tag. */
    purpose: z.array(z.enum(PURPOSES)).min(1).max(4),
    sensitivity: z.enum(SENSITIVITIES).default('low'),
    /** When the scheduler recomputes it (cron, tenant time zone). */
    schedule: cron.default('15 * * * *'),
    rule: tagRule,
  })
  .superRefine((d, ctx) => {
    const at = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message })
    const r = d.rule
    if (d.type === 'enum') {
      if (!d.values) at(['values'], 'an enum tag lists its values')
    } else if (d.values) at(['values'], 'only enum tags list values')
    switch (r.kind) {
      case 'rule':
        if (d.type === 'boolean' && !r.when) at(['rule', 'when'], 'a boolean rule needs `when`')
        if (d.type === 'enum') {
          if (!r.cases?.length) at(['rule', 'cases'], 'an enum rule needs `cases`')
          for (const [i, c] of (r.cases ?? []).entries()) {
            if (d.values && !d.values.includes(c.value)) at(['rule', 'cases', i, 'value'], `not one of values`)
          }
          if (r.else && d.values && !d.values.includes(r.else)) at(['rule', 'else'], 'not one of values')
        }
        if ((d.type === 'number' || d.type === 'date' || d.type === 'string_list') && !r.from) at(['rule', 'from'], `a ${d.type} rule needs \`from\``)
        if (d.type !== 'enum' && (r.cases || r.else)) at(['rule', 'cases'], 'only enum rules have cases')
        if (r.from && 'feature' in r.from) {
          const ft = FEATURES[r.from.feature as FeatureName].type
          const ok = ft === d.type || (ft === 'enum' && d.type === 'enum')
          if (!ok) at(['rule', 'from', 'feature'], `feature ${r.from.feature} is a ${ft}, the tag a ${d.type}`)
        }
        break
      case 'window': {
        const isTime = r.measure === 'first_time' || r.measure === 'last_time'
        if (r.threshold) {
          if (d.type !== 'boolean') at(['type'], 'a window with a threshold is a boolean tag')
          if (isTime) at(['rule', 'threshold'], 'thresholds apply to counts and sums')
        } else if (isTime ? d.type !== 'date' : d.type !== 'number') {
          at(['type'], `a ${r.measure} window is a ${isTime ? 'date' : 'number'} tag (or boolean with a threshold)`)
        }
        if ((r.measure === 'sum' || r.measure === 'distinct') && !r.property) at(['rule', 'property'], `${r.measure} needs the property it measures`)
        if (r.property && r.measure !== 'sum' && r.measure !== 'distinct') at(['rule', 'property'], `${r.measure} measures no property`)
        if (r.days + r.offsetDays > 400) at(['rule', 'offsetDays'], 'days + offsetDays is at most 400')
        // A filter without its value cannot be compiled: refused here, or every run would fail.
        for (const [i, f] of r.where.entries()) if (f.op !== 'exists' && f.value === undefined) at(['rule', 'where', i, 'value'], `${f.op} needs a value`)
        break
      }
      case 'score':
        if (d.type !== 'number') at(['type'], 'a score is a number tag')
        if (r.method === 'quantile' && !r.input) at(['rule', 'input'], 'a quantile score needs `input`')
        if (r.method === 'weighted' && !r.inputs) at(['rule', 'inputs'], 'a weighted score needs `inputs`')
        break
      case 'lifecycle':
        if (d.type !== 'enum') at(['type'], 'a lifecycle tag is an enum')
        if (d.values && d.values.join() !== LIFECYCLE_VALUES.join()) at(['values'], `lifecycle values are ${LIFECYCLE_VALUES.join(', ')}`)
        // Reactivation needs activity before the dormant gap, inside the churn horizon.
        if (r.churnDays <= r.activeDays + r.dormantDays) at(['rule', 'churnDays'], 'churnDays must exceed activeDays + dormantDays')
        break
      case 'sql':
        break
    }
  })

export type TagDefinitionInput = z.input<typeof tagDefinitionInput>
export type TagDefinition = z.infer<typeof tagDefinitionInput>

/** A stored definition: the input plus its version and audit fields. */
export interface StoredTag extends TagDefinition {
  version: number
  createdBy: string
  createdAt: string
}

/** Every operand a definition reads: the leaves of its conditions and its `from` / score inputs. */
function readsOf(d: TagDefinition): ({ tag: string } | { feature: FeatureName })[] {
  const out: ({ tag: string } | { feature: FeatureName })[] = []
  const walk = (c: Condition | undefined): void => {
    if (!c) return
    if ('all' in c) c.all.forEach(walk)
    else if ('any' in c) c.any.forEach(walk)
    else if ('not' in c) walk(c.not)
    else out.push(c)
  }
  const r = d.rule
  if (r.kind === 'rule') {
    walk(r.when)
    r.cases?.forEach((c) => walk(c.when))
    if (r.from) out.push(r.from)
  } else if (r.kind === 'score') {
    for (const o of [r.input, ...(r.inputs ?? []).map((i) => i.input)]) if (o) out.push(o)
  }
  return out
}

/** Tags a definition reads, directly. */
export function tagDependencies(d: TagDefinition): string[] {
  return [...new Set(readsOf(d).flatMap((x) => ('tag' in x ? [x.tag] : [])))]
}

/** Features a definition reads, directly. */
export function featureDependencies(d: TagDefinition): FeatureName[] {
  return [...new Set(readsOf(d).flatMap((x) => ('feature' in x ? [x.feature] : [])))]
}
