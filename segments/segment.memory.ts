import type { TagOp } from './segment.schema.js'
import type { SegmentNode } from './segment.schema.js'
import type { CheckedTagLeaf } from './segment.compile.js'
import type { Snapshot, TagBitmaps } from './bitmap.store.js'
import type { Bitmap } from './roaring.js'

/**
 * A tag-only segment evaluated on in-memory bitmaps with the bitmap path's semantics (see
 * segment.compile.ts): labels OR their value bitmaps; numbers OR the exact values and buckets
 * wholly inside the range and check the customers of edge buckets one by one; a window count
 * or sum's absence is 0; `ne`, `not_in`, `not_exists` and `not` complement within the live
 * customers; the result is put by survivors (a key merged into another counts for the customer it
 * belongs to now) and intersected with the universe. Cached bitmaps are never modified: every
 * in-place operation works on a clone or on a bitmap built here.
 */

/** A numeric comparison as JavaScript, the twin of the compiler's numericPredicate. */
export interface NumericTest {
  pred(x: number): boolean
  /** Every x in [lo, hi) satisfies it (false when unsure). */
  inside(lo: number, hi: number): boolean
  /** Some x in [lo, hi) may satisfy it (true when unsure). */
  overlap(lo: number, hi: number): boolean
}

export function numericTest(op: TagOp, vs: readonly number[]): NumericTest {
  const a = vs[0] ?? 0
  const b = vs[1] ?? 0
  const set = new Set(vs)
  switch (op) {
    case 'eq':
    case 'ne':
      return { pred: (x) => x === a, inside: () => false, overlap: (lo, hi) => lo <= a && a < hi }
    case 'in':
    case 'not_in':
      return { pred: (x) => set.has(x), inside: () => false, overlap: (lo, hi) => vs.some((v) => lo <= v && v < hi) }
    case 'gt':
      return { pred: (x) => x > a, inside: (lo) => lo > a, overlap: (_lo, hi) => hi > a }
    case 'gte':
      return { pred: (x) => x >= a, inside: (lo) => lo >= a, overlap: (_lo, hi) => hi > a }
    case 'lt':
      return { pred: (x) => x < a, inside: (_lo, hi) => hi <= a, overlap: (lo) => lo < a }
    case 'lte':
      return { pred: (x) => x <= a, inside: (_lo, hi) => hi <= a, overlap: (lo) => lo <= a }
    case 'between':
      return { pred: (x) => x >= a && x <= b, inside: (lo, hi) => lo >= a && hi <= b, overlap: (lo, hi) => lo <= b && hi > a }
    default:
      throw new Error(`no numeric test for ${op}`)
  }
}

/** True when every leaf of the tree is a tag condition (the memory path's domain). */
export function onlyTagLeaves(node: SegmentNode): boolean {
  if ('all' in node) return node.all.every(onlyTagLeaves)
  if ('any' in node) return node.any.every(onlyTagLeaves)
  if ('not' in node) return onlyTagLeaves(node.not)
  return 'tag' in node
}

async function numericSet(c: CheckedTagLeaf, t: TagBitmaps, s: Snapshot): Promise<Bitmap> {
  const test = numericTest(c.leaf.op, c.values as number[])
  const parts: Bitmap[] = []
  for (const row of t.numeric) {
    if (row.lo === row.hi ? test.pred(row.lo) : test.inside(row.lo, row.hi)) {
      parts.push(row.keys)
      continue
    }
    if (row.lo === row.hi || !test.overlap(row.lo, row.hi)) continue
    const edge = await s.edge(t, row.lo, row.hi)
    const hit: number[] = []
    for (let i = 0; i < edge.keys.length; i++) if (test.pred(edge.nums[i]!)) hit.push(edge.keys[i]!)
    if (hit.length) parts.push(s.roaring.create(Uint32Array.from(hit).sort()))
  }
  return s.roaring.orMany(parts)
}

async function leafBitmap(c: CheckedTagLeaf, s: Snapshot): Promise<Bitmap> {
  const t = s.tags.get(c.leaf.tag)
  const empty = s.roaring.create()
  const star = t?.star ?? empty
  const complement = (x: Bitmap) => s.live.clone().andNotInPlace(x)
  const op = c.leaf.op
  if (op === 'exists') return star.clone()
  if (op === 'not_exists') return complement(star)
  const negated = op === 'ne' || op === 'not_in'
  let pos: Bitmap
  if (c.type === 'boolean') {
    // Stored only when true: true is the * bitmap, false its complement.
    const wantTrue = (c.values as boolean[]).includes(true)
    const wantFalse = (c.values as boolean[]).includes(false)
    pos = wantTrue && wantFalse ? s.live.clone() : wantTrue ? star.clone() : complement(star)
  } else if (c.type === 'enum' || c.type === 'string_list') {
    const wanted = (c.values as string[]).map((v) => t?.values.get(v)).filter((b): b is Bitmap => !!b)
    pos = s.roaring.orMany(wanted)
  } else {
    const key = `${op}:${JSON.stringify(c.values)}`
    pos = t ? (await s.derived(t, key, () => numericSet(c, t, s))).clone() : s.roaring.create()
    if (c.zero && numericTest(op, c.values as number[]).pred(0)) pos.orInPlace(complement(star))
  }
  return negated ? complement(pos) : pos
}

/**
 * A result over live keys put by survivors: a key merged into another is replaced by the
 * customer it belongs to now, who then holds what either key holds, as the engine's path does
 * (core/identity.sql.ts survivorsBitmapSql).
 */
function survivors(r: Bitmap, s: Snapshot): Bitmap {
  if (!s.merged.keys.size) return r
  const moved = r.clone().andInPlace(s.merged.keys)
  if (!moved.size) return r
  r.andNotInPlace(s.merged.keys)
  return r.orInPlace(s.roaring.create(Uint32Array.from(moved.toUint32Array(), (k) => s.merged.into.get(k)!).sort()))
}

/**
 * The members of a tag-only tree: (tree) over the live customers, put by survivors, AND the
 * universe (the customers not merged away).
 */
export async function evaluateInMemory(tree: SegmentNode, leaves: ReadonlyMap<object, CheckedTagLeaf>, s: Snapshot): Promise<Bitmap> {
  const walk = async (n: SegmentNode): Promise<Bitmap> => {
    if ('all' in n) {
      const [first, ...rest] = await Promise.all(n.all.map(walk))
      for (const r of rest) first!.andInPlace(r)
      return first!
    }
    if ('any' in n) return s.roaring.orMany(await Promise.all(n.any.map(walk)))
    if ('not' in n) return s.live.clone().andNotInPlace(await walk(n.not))
    const c = leaves.get(n)
    if (!c) throw new Error('a leaf of a tag-only tree was not checked')
    return leafBitmap(c, s)
  }
  return survivors((await walk(tree)).andInPlace(s.live), s).andInPlace(s.universe)
}
