import { conditionCode, said, type Localized, type ReasonCode, type Said } from './layout.reasons.js'
import type { SnapshotItem, SnapshotModule } from './model.snapshot.js'

/**
 * The reasons a ranking gives (layout.rank.ts), as objects: the fixed ones, and the makers of
 * those that name an item, a segment, a region or a condition. A reason is made once per
 * snapshot and key (`intern`, `internSlot`), so a layout names objects it does not build.
 */

/**
 * Why an entry is there: the mechanism (`kind` and its fields, `detail` for engineers), and for
 * the customer a `code` and `say`, their sentence in both languages (layout.reasons.ts); a
 * layout carries `text` in its own language instead of `say` (`LayoutReason`).
 */
export type Reason = (
  | { kind: 'tag'; tags: string[]; detail: string }
  | { kind: 'segment'; segment: string; detail: string }
  | { kind: 'rule'; detail: string }
  | { kind: 'model'; model: 'co-occurrence' | 'ease'; because: string[]; detail: string }
  | { kind: 'popularity'; scope: 'tenant' | 'segment' | 'region'; segment?: string; region?: string; detail: string }
  | { kind: 'exploration'; detail: string }
  | { kind: 'service'; tags: string[]; detail: string }
) & { code: ReasonCode; say: Said }
export type LayoutReason = Localized<Reason>

export const TENANT_POPULARITY: Reason = Object.freeze({ kind: 'popularity', code: 'popular_at_bank', scope: 'tenant', detail: 'popular with the bank\u2019s customers', say: said('popular_at_bank') })
export const EVERYONE: Reason = Object.freeze({ kind: 'rule', code: 'bank_service', detail: 'the bank\u2019s catalogue shows it to everyone', say: said('bank_service') })
export const SAFETY_FOR_ALL: Reason = Object.freeze({ kind: 'rule', code: 'account_safety', detail: 'the bank\u2019s catalogue shows it to everyone', say: said('account_safety') })
export const PROMOTED: Reason = Object.freeze({ kind: 'rule', code: 'bank_recommends', detail: 'promoted by the bank', say: said('bank_recommends') })
export const IN_CATALOGUE: Reason = Object.freeze({ kind: 'rule', code: 'bank_service', detail: 'in the bank\u2019s catalogue', say: said('bank_service') })
export const EXPLORATION: Reason = Object.freeze({ kind: 'exploration', code: 'something_new', detail: 'one slot tries something new, so the model learns beyond what is already popular', say: said('something_new') })
export const SIMILAR: Reason = Object.freeze({ kind: 'model', code: 'similar_customers', model: 'co-occurrence', because: [], detail: 'similar to what you use', say: said('similar_customers') })

/** The reason held for `key`, made from it on first use (makers are module functions: no closure per request). */
export function intern<K>(map: Map<K, Reason>, key: K, make: (key: K) => Reason): Reason {
  let v = map.get(key)
  if (v === undefined) map.set(key, (v = Object.freeze(make(key))))
  return v
}

/** The reason of a condition held for `entry` in `slot`, made on first use. */
export function internSlot<K>(map: Map<K, Reason[]>, entry: K, slot: number, make: (entry: K, slot: number) => Reason): Reason {
  let row = map.get(entry)
  if (row === undefined) map.set(entry, (row = []))
  return (row[slot] ??= Object.freeze(make(entry, slot)))
}

/** An item or module with a condition, as its reasons read it. */
export type Conditioned = Pick<SnapshotItem, 'conditionTags' | 'affirmedTags' | 'wordings' | 'sensitiveTags'>

/**
 * Which reason of a condition a layout shows: twice the index (from 1) of the customer's wording
 * among the entry's (0: the condition's own, for everyone it admits), plus 1 when the key may
 * read high-sensitivity tags.
 */
export function slotOf(e: Conditioned, key: number, open: boolean): number {
  let w = 0
  const ws = e.wordings
  if (ws !== undefined && key !== 0) {
    for (let i = 0; i < ws.length && w === 0; i++) if (ws[i]!.keys.has(key)) w = i + 1
  }
  return 2 * w + (open ? 1 : 0)
}

// The customer's sentence names the item that led to a pick by its title, never a tag or segment.
export const modelReason = (src: SnapshotItem): Reason => ({ kind: 'model', code: 'used_together', model: 'co-occurrence', because: [src.id], detail: `customers who used ${src.id} also use this`, say: said('used_together', src.title) })
export const easeReason = (src: SnapshotItem): Reason => ({ kind: 'model', code: 'used_together', model: 'ease', because: [src.id], detail: `EASE: ${src.id} weighs most among the customer's items for this one`, say: said('used_together', src.title) })
export const segmentReason = (segment: string): Reason => ({ kind: 'popularity', code: 'similar_customers', scope: 'segment', segment, detail: `popular in segment ${segment}`, say: said('similar_customers') })

/**
 * What a reason of a condition says in `slot` (slotOf): the code of the customer's wording, the
 * tags the key may read, and whether those are all the condition reads and all say they hold
 * (no tag is there only to keep customers out, none under an `any`).
 */
function conditionSays(e: Conditioned, kind: string, slot: number) {
  const w = slot >> 1
  const code = w > 0 ? e.wordings![w - 1]!.code : conditionCode(e.affirmedTags, kind)
  const tags = slot & 1 ? e.conditionTags : e.conditionTags.filter((t) => !e.sensitiveTags.includes(t))
  const plain = tags.length === e.conditionTags.length && e.affirmedTags.length === e.conditionTags.length
  return { code, tags, plain }
}
export const tagReason = (it: SnapshotItem, slot: number): Reason => {
  const { code, tags, plain } = conditionSays(it, it.type, slot)
  const named = tags.join(', ')
  const detail = !tags.length ? 'shown while its condition holds' : plain ? `shown while ${named} holds` : `shown while its condition on ${named} holds`
  return { kind: 'tag', code, tags, detail, say: it.why ?? said(code) }
}
export const serviceReason = (it: SnapshotItem, slot: number): Reason => {
  const { code, tags } = conditionSays(it, it.type, slot)
  const what = it.type === 'tip' ? 'a safety tip' : 'a service reminder'
  return { kind: 'service', code, tags, detail: `${what}${tags.length ? ` (${tags.join(', ')})` : ''}: kept on the non-personalized layout`, say: it.why ?? said(code) }
}
export const regionReason = (region: string): Reason => ({ kind: 'popularity', code: 'popular_nearby', scope: 'region', region, detail: `popular with the bank\u2019s customers in region ${region}`, say: said('popular_nearby') })

export function moduleReason(m: SnapshotModule, slot: number): Reason {
  if (!m.conditionTags.length) return { kind: 'rule', code: 'bank_service', detail: `catalogue module, priority ${m.priority}`, say: said('bank_service') }
  const { code, tags, plain } = conditionSays(m, 'module', slot)
  const named = tags.join(' / ')
  const detail = !tags.length ? 'shown because its condition holds for the customer' : plain ? `shown because ${named} holds for the customer` : `shown because its condition on ${named} holds for the customer`
  return { kind: 'tag', code, tags, detail, say: m.why ?? said(code) }
}
