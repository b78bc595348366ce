/**
 * What changed between two versions of a definition (a segment, a campaign, a tag, a
 * catalogue), as a list of paths: added, removed or changed, with the values before and after.
 * Objects are compared key by key; arrays item by item (so an inserted condition shows as the
 * items after it changing: what was at `rule.all.1` is not looked for elsewhere).
 */

export interface Change {
  /** `rule.all.1.value`; empty for the whole value. */
  path: string
  kind: 'added' | 'removed' | 'changed'
  before?: unknown
  after?: unknown
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)
const join = (path: string, key: string | number) => (path ? `${path}.${key}` : String(key))

export function diff(before: unknown, after: unknown, path = '', out: Change[] = []): Change[] {
  if (Object.is(before, after)) return out
  if (before === undefined) return (out.push({ path, kind: 'added', after }), out)
  if (after === undefined) return (out.push({ path, kind: 'removed', before }), out)
  if (Array.isArray(before) && Array.isArray(after)) {
    for (let i = 0; i < Math.max(before.length, after.length); i++) diff(before[i], after[i], join(path, i), out)
    return out
  }
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])]
    for (const k of keys) diff(before[k], after[k], join(path, k), out)
    return out
  }
  out.push({ path, kind: 'changed', before, after })
  return out
}

/** A value of a change as a short line of text: strings as they are, the rest as JSON. */
export function shortValue(v: unknown, max = 120): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v)
  return s.length > max ? `${s.slice(0, max - 1)}…` : s
}
