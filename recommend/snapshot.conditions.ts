import type { TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import type { BitmapStore } from '../segments/bitmap.store.js'
import type { Bitmap } from '../segments/roaring.js'
import { prepare } from '../segments/segment.compile.js'
import { evaluateInMemory } from '../segments/segment.memory.js'
import type { SegmentNode } from '../segments/segment.schema.js'
import { visibleTo } from '../tags/tag.catalog.js'
import type { Purpose } from '../tags/tag.schema.js'
import { affirmedTags, conditionWordings } from './layout.reasons.js'
import type { SnapshotInput, Wording } from './model.snapshot.js'

/**
 * The catalogue's conditions as a snapshot load evaluates them on the tag bitmaps: who each
 * admits, the tags it reads, how it is worded per customer (a condition with branches: from the
 * branch that holds for them, layout.reasons.ts) and which of its tags a reason may name only to
 * keys with personal:read (high sensitivity, as everywhere a tag is shown: tags/tag.catalog.ts).
 */

const tagsOf = (n: SegmentNode): string[] =>
  'all' in n ? n.all.flatMap(tagsOf) : 'any' in n ? n.any.flatMap(tagsOf) : 'not' in n ? tagsOf(n.not) : 'tag' in n ? [n.tag] : []

export interface Condition {
  eligible: Bitmap
  conditionTags: string[]
  affirmedTags: string[]
  wordings: Wording[] | undefined
  sensitiveTags: string[]
}

export function snapshotConditions(deps: { db: TenantDb; bitmaps: BitmapStore }, input: SnapshotInput) {
  const nobody = () => deps.bitmaps.roaring.create()
  /** Entries whose condition does not compile for the bank, and why: the load logs them. */
  const unserved: { entry: string; error: string }[] = []
  /**
   * An evaluator of a condition and of any tree of its own leaves (a branch: the leaves are
   * checked by identity), or undefined when it does not compile for this tenant: a tag it does
   * not define (a member without the banking pack, a tag retired since the catalogue was saved)
   * or no longer fits. That is the bank's configuration, not the caller's request: the load goes
   * on and says so, and the caller decides what such an entry means.
   */
  const compile = async (rule: SegmentNode, purpose: Purpose, entry: string): Promise<((tree: SegmentNode) => Promise<Bitmap>) | undefined> => {
    // A group holds no customer rows (its members' customers are theirs) and no tags of its own:
    // its conditions hold for nobody, and the tags they name need not be defined for it.
    if (input.tenant.kind === 'group') return async () => nobody()
    let tags
    try {
      tags = prepare(rule, { purpose, defs: input.defs, asOf: input.asOf, timeZone: input.tenant.timeZone }).tags
    } catch (err) {
      if (!(err instanceof AppError)) throw err
      unserved.push({ entry, error: err.message })
      return undefined
    }
    const snap = await deps.bitmaps.snapshot(deps.db, [...new Set([...tags.values()].map((c) => c.leaf.tag))], { maxAgeMs: 0 })
    return (tree) => evaluateInMemory(tree, tags, snap)
  }

  return {
    unserved,

    /** Who a condition admits; undefined when it does not compile for this tenant. */
    async evalRule(rule: SegmentNode, purpose: Purpose, entry: string): Promise<Bitmap | undefined> {
      return (await compile(rule, purpose, entry))?.(rule)
    },

    /** An item's or module's condition (`kind`: the item's type, or `module`); one that does not compile admits nobody. */
    async conditionOf(rule: SegmentNode, purpose: Purpose, entry: string, kind: string): Promise<Condition> {
      const ev = await compile(rule, purpose, entry)
      const conditionTags = [...new Set(tagsOf(rule))]
      const ws = ev && input.tenant.kind !== 'group' ? conditionWordings(rule, kind) : undefined
      const wordings = ws && (await Promise.all(ws.map(async (w) => ({ code: w.code, keys: deps.bitmaps.roaring.orMany(await Promise.all(w.when.map(ev!))) }))))
      return {
        eligible: (await ev?.(rule)) ?? nobody(),
        conditionTags,
        affirmedTags: affirmedTags(rule),
        wordings,
        // A tag the bank no longer defines is named as a risk flag would be: its entry admits nobody anyway.
        sensitiveTags: conditionTags.filter((t) => !visibleTo(false, input.defs.get(t)?.sensitivity ?? 'high')),
      }
    },
  }
}
