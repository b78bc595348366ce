import { AppError, type ErrorIssue } from '../core/errors.js'

/**
 * Size limits on definitions (tags, segments), checked on the raw JSON before anything recursive
 * touches it. zod's recursive schemas, the compilers and reference expansion all recurse once per
 * level, and a `not` nested ~1,250 deep overflows the stack: so this scan is iterative and stops
 * at the first node past the limit, whatever the depth of the input.
 */

/** Levels of all / any / not in a tag condition (a leaf at the top is level 1). */
export const MAX_CONDITION_DEPTH = 32
/** Objects and arrays nested inside one definition, whatever their keys. */
export const MAX_NESTING = 100
/** Numbers a definition compares with: what a Float64 parameter holds exactly, as integers go. */
export const MAX_ABS_NUMBER = Number.MAX_SAFE_INTEGER

const GROUPS = ['all', 'any'] as const

/**
 * The first node of `root` past the limits, or undefined. `root` is a condition tree at level 1;
 * `base` is its field path. Nesting counts every object and array.
 */
export function depthIssue(root: unknown, base: string, maxDepth: number, what = 'a condition'): ErrorIssue | undefined {
  const stack: { v: unknown; path: string; depth: number; nesting: number; condition: boolean }[] = [{ v: root, path: base, depth: 1, nesting: 1, condition: true }]
  while (stack.length) {
    const { v, path, depth, nesting, condition } = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    if (condition && depth > maxDepth) return { field: path, code: 'too_deep', message: `${what} nests all / any / not at most ${maxDepth} levels deep` }
    if (nesting > MAX_NESTING) return { field: path, code: 'too_deep', message: `values nest at most ${MAX_NESTING} levels deep` }
    if (Array.isArray(v)) {
      v.forEach((x, i) => stack.push({ v: x, path: `${path}.${i}`, depth, nesting: nesting + 1, condition: false }))
      continue
    }
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const sub = `${path}.${k}`
      if (condition && k === 'not') stack.push({ v: x, path: sub, depth: depth + 1, nesting: nesting + 1, condition: true })
      else if (condition && (GROUPS as readonly string[]).includes(k) && Array.isArray(x)) {
        x.forEach((c, i) => stack.push({ v: c, path: `${sub}.${i}`, depth: depth + 1, nesting: nesting + 2, condition: true }))
      } else stack.push({ v: x, path: sub, depth, nesting: nesting + 1, condition: false })
    }
  }
  return undefined
}

/** Throws VALIDATION_FAILED naming the first node past the limits. */
export function assertDepth(root: unknown, base: string, maxDepth: number, what?: string): void {
  const issue = depthIssue(root, base, maxDepth, what)
  if (issue) throw new AppError('VALIDATION_FAILED', `${issue.field}: ${issue.message}.`, { issues: [issue] })
}

/** The paths of the condition trees in a raw tag definition (`rule.when`, `rule.cases.N.when`). */
function conditionRoots(input: unknown): { v: unknown; path: string }[] {
  const rule = (input as { rule?: unknown } | null)?.rule as { when?: unknown; cases?: unknown } | undefined
  if (typeof rule !== 'object' || rule === null) return []
  const out: { v: unknown; path: string }[] = []
  if (rule.when !== undefined) out.push({ v: rule.when, path: 'rule.when' })
  if (Array.isArray(rule.cases)) rule.cases.forEach((c: unknown, i) => out.push({ v: (c as { when?: unknown } | null)?.when, path: `rule.cases.${i}.when` }))
  return out
}

/** Checks a raw tag definition's condition depth and nesting before it is parsed. */
export function assertTagDefinitionSize(input: unknown, fieldPrefix = ''): void {
  const issues: ErrorIssue[] = []
  for (const r of conditionRoots(input)) {
    const i = depthIssue(r.v, r.path, MAX_CONDITION_DEPTH)
    if (i) issues.push(i)
  }
  // Everything else: the generic nesting limit (a condition counts one level per group).
  if (!issues.length) {
    const i = depthIssue(input, '', Number.MAX_SAFE_INTEGER, 'a definition')
    if (i) issues.push(i)
  }
  if (issues.length) {
    const named = issues.map((i) => ({ ...i, field: fieldPrefix + String(i.field).replace(/^\./, '') }))
    throw new AppError('VALIDATION_FAILED', `The tag definition is too deep: ${named.map((i) => `${i.field}: ${i.message}`).join('; ')}`, { issues: named })
  }
}

/** A number a definition may compare with (zod refinement). */
export const inNumberRange = (n: number): boolean => Number.isFinite(n) && Math.abs(n) <= MAX_ABS_NUMBER
export const NUMBER_RANGE_MESSAGE = `a number between -${MAX_ABS_NUMBER} and ${MAX_ABS_NUMBER} (2^53 - 1)`
