import { z } from 'zod'
import { AppError, type ErrorIssue } from '../core/errors.js'
import { daySchema } from '../core/time.js'
import { assertDepth, inNumberRange, NUMBER_RANGE_MESSAGE } from '../tags/tag.limits.js'
import { PURPOSES, propertyFilter, tagName, type PropertyFilter, type Purpose, type Scalar } from '../tags/tag.schema.js'
import { attributeLeaf, type AttributeLeaf } from './segment.attributes.js'

/**
 * The segment language: a JSON tree of `{all: [...]}`, `{any: [...]}`, `{not: ...}` over leaves:
 *
 * - tag conditions `{tag, op, value}` (eq, ne, in, not_in, gt, gte, lt, lte, between, exists,
 *   not_exists); whether the op and value fit the tag's type is checked by the compiler, which
 *   knows the definitions;
 * - event conditions `{event: {names?, types?, where?}, measure: count|sum|distinct, property?,
 *   op, value, window: {lastDays} | {from, to}}`: the measure of the matching events in the
 *   window (local days of the tenant, `from`/`to` inclusive) compared with a number; a customer
 *   without matching events has a measure of 0;
 * - sequences `{sequence: [{event: ...}, {event: ...}, ...], withinDays, window?}`: the steps in
 *   this order, the last within `withinDays` of the first, all inside `window` (default the last
 *   90 days).
 *
 * Limits: depth at most 10 (a leaf at the root is depth 1), at most 100 leaves. Every problem
 * is reported with the path of the node (`rule.all.2.any.0.value`), a code and a message.
 */

export const MAX_DEPTH = 10
export const MAX_LEAVES = 100
/** A sequence's scan when it names no window. */
export const DEFAULT_SEQUENCE_DAYS = 90

export const TAG_OPS = ['eq', 'ne', 'in', 'not_in', 'gt', 'gte', 'lt', 'lte', 'between', 'exists', 'not_exists'] as const
export type TagOp = (typeof TAG_OPS)[number]
export const EVENT_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between'] as const
export type EventOp = (typeof EVENT_OPS)[number]
export const EVENT_TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias'] as const

// Values are bound as Float64: beyond ±2^53 the engine binding refuses them.
const number = z.number().refine(inNumberRange, NUMBER_RANGE_MESSAGE)
const scalar = z.union([z.string().max(200), number, z.boolean()])
// A day that exists (2026-02-30 does not; Date.parse used to roll it over to 2 March) within
// the range an event's time can hold.
const date = daySchema

/** How many values each operator takes: one, a list, two, or none. */
export function arityOf(op: TagOp | EventOp): 'one' | 'list' | 'two' | 'none' {
  if (op === 'in' || op === 'not_in') return 'list'
  if (op === 'between') return 'two'
  if (op === 'exists' || op === 'not_exists') return 'none'
  return 'one'
}

function checkArity(op: TagOp | EventOp, value: unknown, ctx: z.RefinementCtx): void {
  const a = arityOf(op)
  const bad = (message: string) => ctx.addIssue({ code: 'custom', path: ['value'], message })
  if (a === 'none' && value !== undefined) bad(`${op} takes no value`)
  if (a === 'one' && (value === undefined || Array.isArray(value))) bad(`${op} needs one value`)
  if (a === 'list' && !Array.isArray(value)) bad(`${op} needs a list of values`)
  if (a === 'two' && (!Array.isArray(value) || value.length !== 2)) bad(`${op} needs two values [low, high]`)
}

export const tagLeaf = z
  .strictObject({ tag: tagName, op: z.enum(TAG_OPS), value: z.union([scalar, z.array(scalar).min(1).max(500)]).optional() })
  .superRefine((l, ctx) => checkArity(l.op, l.value, ctx))
export type TagLeaf = { tag: string; op: TagOp; value?: Scalar | Scalar[] }

const filter = propertyFilter.superRefine((f, ctx) => {
  if (f.op !== 'exists' && f.value === undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: `${f.op} needs a value` })
  if ((f.op === 'in' || f.op === 'not_in') && !Array.isArray(f.value)) ctx.addIssue({ code: 'custom', path: ['value'], message: `${f.op} needs a list` })
})

export const eventFilter = z.strictObject({
  names: z.array(z.string().min(1).max(200)).min(1).max(50).optional(),
  types: z.array(z.enum(EVENT_TYPES)).min(1).max(6).optional(),
  where: z.array(filter).max(20).optional(),
})
export type EventFilter = { names?: string[]; types?: (typeof EVENT_TYPES)[number][]; where?: PropertyFilter[] }

export const eventWindow = z.union([
  z.strictObject({ lastDays: z.number().int().min(1).max(400) }),
  z.strictObject({ from: date, to: date }).refine((w) => w.from <= w.to, { message: 'from is after to', path: ['to'] }),
])
export type EventWindow = { lastDays: number } | { from: string; to: string }

const propertyName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'a top-level property name')

export const eventLeaf = z
  .strictObject({
    event: eventFilter,
    measure: z.enum(['count', 'sum', 'distinct']),
    property: propertyName.optional(),
    op: z.enum(EVENT_OPS),
    value: z.union([number, z.array(number).length(2)]),
    window: eventWindow,
  })
  .superRefine((l, ctx) => {
    checkArity(l.op, l.value, ctx)
    if (l.measure !== 'count' && !l.property) ctx.addIssue({ code: 'custom', path: ['property'], message: `${l.measure} needs the property it measures` })
    if (l.measure === 'count' && l.property) ctx.addIssue({ code: 'custom', path: ['property'], message: 'count measures no property' })
  })
export type EventLeaf = {
  event: EventFilter
  measure: 'count' | 'sum' | 'distinct'
  property?: string
  op: EventOp
  value: number | number[]
  window: EventWindow
}

export const sequenceLeaf = z.strictObject({
  sequence: z.array(z.strictObject({ event: eventFilter })).min(2).max(8),
  withinDays: z.number().int().min(1).max(400),
  window: eventWindow.optional(),
})
export type SequenceLeaf = { sequence: { event: EventFilter }[]; withinDays: number; window?: EventWindow }

export type SegmentNode = { all: SegmentNode[] } | { any: SegmentNode[] } | { not: SegmentNode } | TagLeaf | EventLeaf | SequenceLeaf | AttributeLeaf

export interface Segment {
  purpose: Purpose
  rule: SegmentNode
}

type Issue = ErrorIssue & { field: string; code: string }

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)

/** Walks a node, checking each by the key that tells its kind; returns the parsed node or undefined. */
function parseNode(input: unknown, path: string, depth: number, st: { leaves: number; issues: Issue[] }): SegmentNode | undefined {
  const issue = (field: string, code: string, message: string) => st.issues.push({ field, code, message })
  if (depth > MAX_DEPTH) {
    issue(path, 'too_deep', `a segment is at most ${MAX_DEPTH} levels deep`)
    return undefined
  }
  if (!isObject(input)) {
    issue(path, 'invalid_type', 'expected a condition object')
    return undefined
  }
  const group = (key: 'all' | 'any') => {
    const list = input[key]
    if (Object.keys(input).length !== 1) issue(path, 'unrecognized_keys', `{${key}: [...]} takes no other key`)
    if (!Array.isArray(list) || list.length === 0) {
      issue(`${path}.${key}`, 'invalid_type', 'expected a non-empty list of conditions')
      return undefined
    }
    if (list.length > MAX_LEAVES) {
      issue(`${path}.${key}`, 'too_big', `at most ${MAX_LEAVES} conditions`)
      return undefined
    }
    const out = list.map((c, i) => parseNode(c, `${path}.${key}.${i}`, depth + 1, st))
    return out.every((x) => x !== undefined) ? (out as SegmentNode[]) : undefined
  }
  if ('all' in input) {
    const l = group('all')
    return l && { all: l }
  }
  if ('any' in input) {
    const l = group('any')
    return l && { any: l }
  }
  if ('not' in input) {
    if (Object.keys(input).length !== 1) issue(path, 'unrecognized_keys', '{not: ...} takes no other key')
    const n = parseNode(input.not, `${path}.not`, depth + 1, st)
    return n && { not: n }
  }
  const schema = 'tag' in input ? tagLeaf : 'sequence' in input ? sequenceLeaf : 'event' in input ? eventLeaf : 'attribute' in input ? attributeLeaf : undefined
  if (!schema) {
    issue(path, 'invalid_union', 'expected all, any, not, a tag condition {tag, op, value}, a profile attribute {attribute, op, value}, an event condition {event, measure, op, value, window} or a sequence')
    return undefined
  }
  st.leaves++
  if (st.leaves === MAX_LEAVES + 1) issue(path, 'too_big', `a segment has at most ${MAX_LEAVES} conditions`)
  const r = (schema as z.ZodType<unknown>).safeParse(input)
  if (!r.success) {
    for (const i of r.error.issues) issue([path, ...i.path.map(String)].join('.'), i.code, i.message)
    return undefined
  }
  return r.data as SegmentNode
}

const envelope = z.strictObject({ purpose: z.enum(PURPOSES), rule: z.unknown() })

/** The zod schema of a segment: the envelope, then the tree with node paths in its issues. */
export const segmentSchema: z.ZodType<Segment> = envelope.transform((s, ctx) => {
  const st = { leaves: 0, issues: [] as Issue[] }
  const rule = s.rule === undefined ? undefined : parseNode(s.rule, 'rule', 1, st)
  if (s.rule === undefined) st.issues.push({ field: 'rule', code: 'invalid_type', message: 'a segment needs a rule' })
  for (const i of st.issues) ctx.addIssue({ code: 'custom', path: i.field.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p)), message: i.message, params: { reason: i.code } })
  if (st.issues.length || !rule) return z.NEVER
  return { purpose: s.purpose, rule }
}) as unknown as z.ZodType<Segment>

/**
 * Refuses a tree past MAX_DEPTH at its first node too deep, without recursion: reference
 * expansion and parsing recurse once per level, and ~1,400 levels overflow the stack.
 */
export function assertSegmentDepth(rule: unknown, path = 'rule'): void {
  assertDepth(rule, path, MAX_DEPTH, 'a segment')
}

/** Parses a segment or throws VALIDATION_FAILED with every issue: field (node path), code, message. */
export function parseSegment(input: unknown): Segment {
  assertSegmentDepth((input as { rule?: unknown } | null)?.rule)
  const r = segmentSchema.safeParse(input)
  if (r.success) return r.data
  const issues = r.error.issues.map((i) => {
    const params = (i as { params?: { reason?: string } }).params
    return { field: i.path.map(String).join('.') || '(root)', code: params?.reason ?? i.code, message: i.message }
  })
  throw new AppError('VALIDATION_FAILED', `The segment is invalid: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`, { issues })
}

/**
 * The tag conditions of a raw (stored, unexpanded) tree with their paths, walked iteratively: a
 * stored tree is not re-validated before it is searched.
 */
export function tagLeavesOf(rule: unknown, base = 'rule'): { tag: string; field: string }[] {
  const out: { tag: string; field: string }[] = []
  const stack: { v: unknown; path: string }[] = [{ v: rule, path: base }]
  while (stack.length) {
    const { v, path } = stack.pop()!
    if (Array.isArray(v)) v.forEach((x, i) => stack.push({ v: x, path: `${path}.${i}` }))
    else if (isObject(v)) {
      if (typeof v.tag === 'string' && 'op' in v) out.push({ tag: v.tag, field: `${path}.tag` })
      else for (const [k, x] of Object.entries(v)) stack.push({ v: x, path: `${path}.${k}` })
    }
  }
  return out
}

/** Leaves of a tree with their paths, in the order the compiler numbers them. */
export function leavesOf(node: SegmentNode, path = 'rule'): { node: TagLeaf | EventLeaf | SequenceLeaf | AttributeLeaf; path: string }[] {
  if ('all' in node) return node.all.flatMap((c, i) => leavesOf(c, `${path}.all.${i}`))
  if ('any' in node) return node.any.flatMap((c, i) => leavesOf(c, `${path}.any.${i}`))
  if ('not' in node) return leavesOf(node.not, `${path}.not`)
  return [{ node, path }]
}
