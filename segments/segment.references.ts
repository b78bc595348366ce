import { AppError } from '../core/errors.js'
import { assertSegmentDepth } from './segment.schema.js'

/**
 * Segments may name other saved segments: `{ "segment": "rich-elders" }` stands for that
 * segment's rule. References are expanded before the rule is validated and compiled, so the
 * referenced segment's current version always applies, and the limits (depth, conditions) hold
 * for the expanded tree. A reference cycle or an unknown segment is refused at the node.
 */

const MAX_REFERENCE_DEPTH = 5

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)

/** The ids a rule names directly. */
export function referencesOf(rule: unknown): string[] {
  if (Array.isArray(rule)) return rule.flatMap(referencesOf)
  if (!isObject(rule)) return []
  if (typeof rule.segment === 'string' && Object.keys(rule).length === 1) return [rule.segment]
  return Object.values(rule).flatMap(referencesOf)
}

/**
 * Replaces every `{segment: id}` with the rule `load(id)` gives (undefined: no such segment),
 * recursively. `chain` holds the segments being expanded, to refuse cycles.
 */
export async function expandReferences(
  rule: unknown,
  load: (id: string) => Promise<unknown>,
  chain: readonly string[] = [],
  path = 'rule',
): Promise<unknown> {
  // The walk below recurses per level: the raw tree is measured first, iteratively.
  assertSegmentDepth(rule, path)
  return expand(rule, load, chain, path)
}

async function expand(rule: unknown, load: (id: string) => Promise<unknown>, chain: readonly string[], path: string): Promise<unknown> {
  if (Array.isArray(rule)) return Promise.all(rule.map((r, i) => expand(r, load, chain, `${path}.${i}`)))
  if (!isObject(rule)) return rule
  if ('segment' in rule && Object.keys(rule).length === 1) {
    const id = rule.segment
    const fail = (message: string) => new AppError('VALIDATION_FAILED', message, { issues: [{ field: `${path}.segment`, code: 'invalid_reference', message }] })
    if (typeof id !== 'string') throw fail('a segment reference names a segment id')
    if (chain.includes(id)) throw fail(`segments refer to each other in a cycle: ${[...chain, id].join(' -> ')}`)
    if (chain.length >= MAX_REFERENCE_DEPTH) throw fail(`segment references nest at most ${MAX_REFERENCE_DEPTH} deep`)
    const target = await load(id)
    if (target === undefined) throw fail(`no segment ${id}`)
    assertSegmentDepth(target, path)
    return expand(target, load, [...chain, id], path)
  }
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(rule)) out[k] = await expand(v, load, chain, `${path}.${k}`)
  return out
}
