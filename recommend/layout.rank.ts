import type { Experiment } from './catalog.schema.js'
import { findKey, type LayoutSnapshot, type SnapshotItem, type SnapshotModule } from './model.snapshot.js'

/**
 * One customer's home screen from a snapshot, in memory and in microseconds.
 *
 * Modules: the catalogue's, in priority order, those whose condition admits the customer; in
 * elder mode the `first` ones lead, `hide` ones leave and at most ELDER_MODULES remain.
 * Items per module: eligible (condition, product rules, validity dates, exposure caps, elder
 * visibility), then scored by a blend:
 *   boost (business) + popularityWeight x popularity (the best of the tenant's and of each saved
 *   segment the customer is in) + affinityWeight x co-occurrence (the customer's affinities
 *   times the items' Jaccard neighbours, SAR-style) + reminders first,
 * multiplied by fatigue (0.5 for every 5 exposures in 7 days without a click). Diversity: each
 * further pick of a category already on screen is worth 0.6 of its score. One exploration slot
 * (the product module's last) goes to an eligible item outside the top, drawn per customer and
 * day. Every module and item carries the reason that put it there.
 */

export const ELDER_MODULES = 5
const DIVERSITY = 0.6
const FATIGUE_STEP = 5

export type Reason =
  | { kind: 'tag'; tags: string[]; detail: string }
  | { kind: 'segment'; segment: string; detail: string }
  | { kind: 'rule'; detail: string }
  | { kind: 'model'; model: 'co-occurrence'; because: string[]; detail: string }
  | { kind: 'popularity'; scope: 'tenant' | 'segment' | 'region'; segment?: string; region?: string; detail: string }
  | { kind: 'exploration'; detail: string }

export interface LayoutItem {
  id: string
  type: SnapshotItem['type']
  title: string
  deeplink: string
  category: string
  reason: Reason
  score: number
}

export interface LayoutModule {
  id: string
  title: string
  reason: Reason
  items: LayoutItem[]
}

export interface RankContext {
  /** 0 for an unknown or anonymous customer. */
  customerKey: number
  elder: boolean
  lang: 'zh' | 'en'
  /** Days since 1970, the tenant's local today. */
  today: number
  /** null: no personal ranking (holdout, anonymous). */
  variant: Experiment['variants'][number] | null
  /** A number in [0, 1) fixed per customer and day. */
  draw: number
  /** An anonymous visitor's region code: the region's popularity replaces the bank's. */
  region?: string | undefined
  /** Exposures this process served since the snapshot: item index → today / week. */
  served?: ((item: number) => { today: number; week: number }) | undefined
}

interface Scored {
  item: SnapshotItem
  score: number
  reason: Reason
}

function customerRow(s: LayoutSnapshot, key: number): number {
  return key ? findKey(s.customers.keys, key) : -1
}

/** Exposures and clicks of the customer per item: from the build plus this process's own since. */
function exposures(s: LayoutSnapshot, row: number): Map<number, { today: number; week: number; clicks: number }> {
  const out = new Map<number, { today: number; week: number; clicks: number }>()
  if (row >= 0) {
    const c = s.customers
    for (let j = c.shownOff[row]!; j < c.shownOff[row + 1]!; j++) out.set(c.shown[j]!, { today: c.shownToday[j]!, week: c.shownWeek[j]!, clicks: c.clickedWeek[j]! })
  }
  return out
}

/** The customer's affinity-weighted neighbour scores (SAR: affinity x similarity) and their sources. */
function coOccurrence(s: LayoutSnapshot, row: number): { score: Map<number, number>; because: Map<number, number> } {
  const score = new Map<number, number>()
  const because = new Map<number, number>()
  if (row < 0) return { score, because }
  const c = s.customers
  const best = new Map<number, number>()
  for (let j = c.itemOff[row]!; j < c.itemOff[row + 1]!; j++) {
    const src = c.items[j]!
    const a = c.affinity[j]!
    const nb = s.neighbours[src]!
    for (let k = 0; k < nb.items.length; k++) {
      const target = nb.items[k]!
      const v = a * nb.sims[k]!
      score.set(target, (score.get(target) ?? 0) + v)
      if (v > (best.get(target) ?? 0)) {
        best.set(target, v)
        because.set(target, src)
      }
    }
  }
  // Normalise to 0..1 so the weights of the blend mean the same for every customer.
  let max = 0
  for (const v of score.values()) max = Math.max(max, v)
  if (max > 0) for (const [k, v] of score) score.set(k, v / max)
  return { score, because }
}

function eligible(it: SnapshotItem, key: number, ctx: RankContext, seen: Map<number, { today: number; week: number; clicks: number }>): boolean {
  if (it.validFrom !== undefined && ctx.today < it.validFrom) return false
  if (it.validTo !== undefined && ctx.today > it.validTo) return false
  if (ctx.elder && it.elder === 'hide') return false
  if (it.eligible && !(key && it.eligible.has(key))) return false
  if (it.excluded && key && it.excluded.some((e) => e.keys.has(key))) return false
  // Products under a product rule are offered to known customers only: the rule cannot be checked otherwise.
  if (it.excluded && !key) return false
  if (it.cap) {
    const own = ctx.served?.(it.index) ?? { today: 0, week: 0 }
    const e = seen.get(it.index)
    const today = (e?.today ?? 0) + own.today
    const week = (e?.week ?? 0) + own.week
    if (it.cap.perDay !== undefined && today >= it.cap.perDay) return false
    if (it.cap.perWeek !== undefined && week >= it.cap.perWeek) return false
  }
  return true
}

export function rankLayout(s: LayoutSnapshot, ctx: RankContext): LayoutModule[] {
  const key = ctx.customerKey
  const row = customerRow(s, key)
  const seen = exposures(s, row)
  const personal = ctx.variant !== null && key !== 0
  const co = personal ? coOccurrence(s, row) : { score: new Map<number, number>(), because: new Map<number, number>() }
  const mySegments = personal ? s.segments.filter((g) => g.members.has(key)) : []
  const popW = ctx.variant?.popularityWeight ?? 1
  const affW = ctx.variant?.affinityWeight ?? 0

  let modules = s.modules.filter((m) => !m.eligible || (key !== 0 && m.eligible.has(key)))
  if (ctx.elder) {
    modules = modules.filter((m) => m.elder !== 'hide')
    modules.sort((a, b) => Number(b.elder === 'first') - Number(a.elder === 'first') || b.priority - a.priority)
    modules = modules.slice(0, ELDER_MODULES)
  } else {
    modules = [...modules].sort((a, b) => b.priority - a.priority)
  }

  const onScreen = new Set<string>()
  const categories = new Map<string, number>()
  const out: LayoutModule[] = []
  for (const m of modules) {
    const candidates: Scored[] = []
    for (const idx of m.items) {
      const it = s.items[idx]!
      if (onScreen.has(it.id) || !eligible(it, key, ctx, seen)) continue
      candidates.push(score(s, it, ctx, { personal, co, mySegments, popW, affW, seen }))
    }
    const picked = pick(candidates, m, ctx, categories)
    if (!picked.length) continue
    for (const p of picked) onScreen.add(p.item.id)
    out.push({
      id: m.id,
      title: m.title[ctx.lang],
      reason: moduleReason(m),
      items: picked.map((p) => ({
        id: p.item.id,
        type: p.item.type,
        title: (ctx.elder && p.item.elderTitle ? p.item.elderTitle : p.item.title)[ctx.lang],
        deeplink: p.item.deeplink,
        category: p.item.category,
        reason: p.reason,
        score: Math.round(p.score * 1000) / 1000,
      })),
    })
  }
  return out
}

function score(
  s: LayoutSnapshot,
  it: SnapshotItem,
  ctx: RankContext,
  p: {
    personal: boolean
    co: ReturnType<typeof coOccurrence>
    mySegments: LayoutSnapshot['segments']
    popW: number
    affW: number
    seen: Map<number, { today: number; week: number; clicks: number }>
  },
): Scored {
  const regional = ctx.region !== undefined ? s.regions.get(ctx.region) : undefined
  let pop = (regional ?? s.popularity)[it.index] ?? 0
  let popReason: Reason = regional
    ? { kind: 'popularity', scope: 'region', region: ctx.region!, detail: `popular with the bank\u2019s customers in region ${ctx.region}` }
    : { kind: 'popularity', scope: 'tenant', detail: 'popular with the bank\u2019s customers' }
  for (const g of p.mySegments) {
    const v = g.popularity[it.index] ?? 0
    if (v > pop) {
      pop = v
      popReason = { kind: 'popularity', scope: 'segment', segment: g.id, detail: `popular in segment ${g.id}` }
    }
  }
  const aff = p.personal ? (p.co.score.get(it.index) ?? 0) : 0
  const reminder = it.type === 'reminder' ? 2 : 0
  let total = reminder + it.boost + p.popW * pop + p.affW * aff
  const e = p.seen.get(it.index)
  if (e && e.clicks === 0 && e.week >= FATIGUE_STEP) total *= 0.5 ** Math.floor(e.week / FATIGUE_STEP)
  let reason: Reason
  if (it.type === 'reminder' || it.type === 'tip' || (it.conditionTags.length && it.boost >= p.popW * pop && it.boost >= p.affW * aff)) {
    reason = it.conditionTags.length ? { kind: 'tag', tags: it.conditionTags, detail: `shown while ${it.conditionTags.join(', ')} holds` } : { kind: 'rule', detail: 'the bank\u2019s catalogue shows it to everyone' }
  } else if (p.affW * aff > p.popW * pop && aff > 0) {
    const src = s.items[p.co.because.get(it.index) ?? -1]
    reason = { kind: 'model', model: 'co-occurrence', because: src ? [src.id] : [], detail: src ? `customers who used ${src.id} also use this` : 'similar to what you use' }
  } else if (pop > 0) {
    reason = popReason
  } else {
    reason = { kind: 'rule', detail: it.boost > 0 ? 'promoted by the bank' : 'in the bank\u2019s catalogue' }
  }
  return { item: it, score: total, reason }
}

/** Greedy picks with a diversity penalty, and the exploration slot in product modules. */
function pick(candidates: Scored[], m: SnapshotModule, ctx: RankContext, categories: Map<string, number>): Scored[] {
  const pool = [...candidates]
  const chosen: Scored[] = []
  const explore = ctx.variant?.exploration === true && pool.some((c) => c.item.type === 'product') && m.maxItems >= 3
  const slots = explore ? m.maxItems - 1 : m.maxItems
  while (chosen.length < slots && pool.length) {
    let best = 0
    let bestScore = -Infinity
    pool.forEach((c, i) => {
      const v = c.score * DIVERSITY ** (categories.get(c.item.category) ?? 0)
      if (v > bestScore || (v === bestScore && c.item.id < pool[best]!.item.id)) {
        best = i
        bestScore = v
      }
    })
    const [c] = pool.splice(best, 1)
    chosen.push({ ...c!, score: bestScore })
    categories.set(c!.item.category, (categories.get(c!.item.category) ?? 0) + 1)
  }
  if (explore && pool.length) {
    const sorted = pool.sort((a, b) => (a.item.id < b.item.id ? -1 : 1))
    const c = sorted[Math.floor(ctx.draw * sorted.length)]!
    chosen.push({ ...c, reason: { kind: 'exploration', detail: 'one slot tries something new, so the model learns beyond what is already popular' } })
  }
  return chosen
}

function moduleReason(m: SnapshotModule): Reason {
  return m.conditionTags.length
    ? { kind: 'tag', tags: m.conditionTags, detail: `shown because ${m.conditionTags.join(' / ')} holds for the customer` }
    : { kind: 'rule', detail: `catalogue module, priority ${m.priority}` }
}
