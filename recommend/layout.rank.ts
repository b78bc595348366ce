import type { Experiment } from './catalog.schema.js'
import {
  EVERYONE,
  EXPLORATION,
  IN_CATALOGUE,
  PROMOTED,
  SAFETY_FOR_ALL,
  SIMILAR,
  TENANT_POPULARITY,
  easeReason,
  intern,
  internSlot,
  modelReason,
  moduleReason,
  regionReason,
  segmentReason,
  serviceReason,
  slotOf,
  tagReason,
  type LayoutReason,
  type Reason,
} from './layout.explain.js'
import { coOccurrence, customerRow, exposures, memoOf, type Memo } from './layout.memo.js'
import { localizeReason } from './layout.reasons.js'
import type { LayoutSnapshot, SnapshotItem, SnapshotModule } from './model.snapshot.js'

export type { LayoutReason, Reason } from './layout.explain.js'

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
 * day. Every module and item carries the reason that put it there (layout.explain.ts); the
 * arrays a ranking works in are kept per snapshot (layout.memo.ts).
 */

export const ELDER_MODULES = 5
const DIVERSITY = 0.6
const FATIGUE_STEP = 5

export interface LayoutItem {
  id: string
  type: SnapshotItem['type']
  title: string
  deeplink: string
  category: string
  reason: LayoutReason
  score: number
}

export interface LayoutModule {
  id: string
  title: string
  reason: LayoutReason
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
  /**
   * A known customer served the bank's default layout (personalization off, or the holdout):
   * `customerKey` is 0 and this key is used for the service reminders they need (a loan due),
   * whose reason says so, and for caps, which limit frequency rather than personalize.
   */
  serviceKey?: number | undefined
  /** Exposures of the customer this process served that the build has not counted: item index → today / week. */
  served?: ((item: number) => { today: number; week: number }) | undefined
  /**
   * Whether reasons may name high-sensitivity tags (risk flags): the key holds personal:read, as
   * wherever a tag is shown. Without it a reason keeps its code and text, its `tags` list those
   * the key may see and its `detail` names no other. Absent: they may not.
   */
  withSensitive?: boolean | undefined
}

/** A ranked item, pointing into the snapshot: turned into JSON or objects afterwards. */
export interface RankedItem {
  item: SnapshotItem
  score: number
  reason: Reason
}

export interface RankedModule {
  module: SnapshotModule
  reason: Reason
  items: RankedItem[]
}

/** DIVERSITY ** k for the picks a category can have on one screen. */
const DIVERSITY_POW = Float64Array.from({ length: 64 }, (_, k) => DIVERSITY ** k)

function eligible(it: SnapshotItem, anyKey: number, ctx: RankContext, m: Memo): boolean {
  const key = it.service && ctx.serviceKey ? ctx.serviceKey : anyKey
  if (it.validFrom !== undefined && ctx.today < it.validFrom) return false
  if (it.validTo !== undefined && ctx.today > it.validTo) return false
  if (ctx.elder && it.elder === 'hide') return false
  if (it.eligible && !(key && it.eligible.has(key))) return false
  if (it.excluded && key && it.excluded.some((e) => e.keys.has(key))) return false
  // Products under a product rule are offered to known customers only: the rule cannot be checked otherwise.
  if (it.excluded && !key) return false
  if (it.cap) {
    const own = ctx.served?.(it.index) ?? { today: 0, week: 0 }
    const seen = m.seen[it.index] === 1
    const today = (seen ? m.seenToday[it.index]! : 0) + own.today
    const week = (seen ? m.seenWeek[it.index]! : 0) + own.week
    if (it.cap.perDay !== undefined && today >= it.cap.perDay) return false
    if (it.cap.perWeek !== undefined && week >= it.cap.perWeek) return false
  }
  return true
}

/** The ranked modules, pointing into the snapshot (see toLayoutModules and layout.render.ts). */
export function rankModules(s: LayoutSnapshot, ctx: RankContext): RankedModule[] {
  const key = ctx.customerKey
  // Whose exposures cap items: the customer's, also on the default layout a known customer gets.
  const row = customerRow(s, key || (ctx.serviceKey ?? 0))
  const memo = memoOf(s)
  exposures(s, row, memo)
  const personal = ctx.variant !== null && key !== 0
  if (personal) coOccurrence(s, row, memo)
  const mySegments = personal ? s.segments.filter((g) => g.members.has(key)) : []
  const popW = ctx.variant?.popularityWeight ?? 1
  const affW = ctx.variant?.affinityWeight ?? 0
  const regional = ctx.region !== undefined ? s.regions.get(ctx.region) : undefined
  const basePop = regional ?? s.popularity
  const baseReason = regional ? intern(memo.regionReasons, ctx.region!, regionReason) : TENANT_POPULARITY
  const open = ctx.withSensitive === true
  const serviceKey = ctx.serviceKey ?? 0
  const scoring: Scoring = { personal, mySegments, popW, affW, basePop, baseReason, memo, serviceOnly: serviceKey !== 0, fatigue: key !== 0, key, serviceKey, open }

  // Modules in their order (sorted once per snapshot), those whose condition admits the
  // customer; in elder mode the first ELDER_MODULES of them. Per item, arrays of the memo stand
  // in for the sets, maps and objects a ranking would otherwise allocate (they showed in the
  // collector's share of a request).
  const order = ctx.elder ? memo.elderOrder : memo.standardOrder
  const limit = ctx.elder ? ELDER_MODULES : order.length
  const stamp = (memo.stamp = (memo.stamp + 1) >>> 0 || 1)
  const out: RankedModule[] = []
  let admitted = 0
  for (let k = 0; k < order.length && admitted < limit; k++) {
    const m = order[k]!
    if (m.eligible && !(key !== 0 && m.eligible.has(key))) continue
    admitted++
    let n = 0
    for (const idx of m.items) {
      const it = s.items[idx]!
      if (memo.onScreen[memo.idSlot[idx]!] === stamp || !eligible(it, key, ctx, memo)) continue
      score(s, it, scoring)
      memo.candidates[n++] = idx
    }
    const picked = pick(s, memo, n, m, ctx, stamp)
    if (!picked.length) continue
    for (const p of picked) memo.onScreen[memo.idSlot[p.item.index]!] = stamp
    out.push({ module: m, reason: internSlot(memo.moduleReasons, m, slotOf(m, key, open), moduleReason), items: picked })
  }
  return out
}

/** The title an item shows in this language and mode. */
export function itemTitle(it: SnapshotItem, lang: 'zh' | 'en', elder: boolean): string {
  return (elder && it.elderTitle ? it.elderTitle : it.title)[lang]
}

/** Rounded for the response: three decimals say all a ranking needs. */
export const roundScore = (v: number) => Math.round(v * 1000) / 1000

export function toLayoutModules(ranked: readonly RankedModule[], lang: 'zh' | 'en', elder: boolean): LayoutModule[] {
  return ranked.map((r) => ({
    id: r.module.id,
    title: r.module.title[lang],
    reason: localizeReason(r.reason, lang),
    items: r.items.map((p) => ({
      id: p.item.id,
      type: p.item.type,
      title: itemTitle(p.item, lang, elder),
      deeplink: p.item.deeplink,
      category: p.item.category,
      reason: localizeReason(p.reason, lang),
      score: roundScore(p.score),
    })),
  }))
}

export function rankLayout(s: LayoutSnapshot, ctx: RankContext): LayoutModule[] {
  return toLayoutModules(rankModules(s, ctx), ctx.lang, ctx.elder)
}

interface Scoring {
  personal: boolean
  mySegments: LayoutSnapshot['segments']
  popW: number
  affW: number
  basePop: Float32Array
  baseReason: Reason
  memo: Memo
  /** The default layout of a known customer: the reminders shown are there for service. */
  serviceOnly: boolean
  /** Fatigue reads the customer's clicks: personal ranking, so not on the default layout. */
  fatigue: boolean
  /** The customer's keys, as eligibility reads them: a condition's wording is the one that holds for them. */
  key: number
  serviceKey: number
  /** The key may read high-sensitivity tags (RankContext.withSensitive). */
  open: boolean
}

/** The item's blended score and reason, into the memo's candidate arrays. */
function score(s: LayoutSnapshot, it: SnapshotItem, p: Scoring): void {
  const memo = p.memo
  let pop = p.basePop[it.index] ?? 0
  let popReason = p.baseReason
  for (const g of p.mySegments) {
    const v = g.popularity[it.index] ?? 0
    if (v > pop) {
      pop = v
      popReason = intern(memo.segmentReasons, g.id, segmentReason)
    }
  }
  const aff = p.personal ? Math.max(0, memo.co[it.index]!) : 0
  const reminder = it.type === 'reminder' ? 2 : 0
  let total = reminder + it.boost + p.popW * pop + p.affW * aff
  if (p.fatigue && memo.seen[it.index] === 1 && memo.seenClicks[it.index] === 0 && memo.seenWeek[it.index]! >= FATIGUE_STEP) {
    total *= 0.5 ** Math.floor(memo.seenWeek[it.index]! / FATIGUE_STEP)
  }
  let reason: Reason
  if (p.serviceOnly && it.service) {
    reason = internSlot(memo.serviceReasons, it, slotOf(it, p.serviceKey, p.open), serviceReason)
  } else if (it.type === 'reminder' || it.type === 'tip' || (it.conditionTags.length && it.boost >= p.popW * pop && it.boost >= p.affW * aff)) {
    reason = it.conditionTags.length
      ? internSlot(memo.tagReasons, it, slotOf(it, it.service && p.serviceKey ? p.serviceKey : p.key, p.open), tagReason)
      : it.type === 'tip'
        ? SAFETY_FOR_ALL
        : EVERYONE
  } else if (p.affW * aff > p.popW * pop && aff > 0) {
    const src = memo.coBecause[it.index]!
    reason = src >= 0 && s.items[src] ? intern(memo.modelReasons, s.items[src]!, s.model.kind === 'ease' ? easeReason : modelReason) : SIMILAR
  } else if (pop > 0) {
    reason = popReason
  } else {
    reason = it.boost > 0 ? PROMOTED : IN_CATALOGUE
  }
  memo.candScore[it.index] = total
  memo.candReason[it.index] = reason
}

/**
 * Greedy picks with a diversity penalty, and the exploration slot in product modules, over the
 * module's `n` candidates in the memo (ties go to the smaller id).
 */
function pick(s: LayoutSnapshot, memo: Memo, n: number, m: SnapshotModule, ctx: RankContext, stamp: number): RankedItem[] {
  const pool = memo.candidates
  const items = s.items
  const { catSlot, catPicks, catStamp, idRank, candScore } = memo
  const picksOf = (idx: number) => {
    const c = catSlot[idx]!
    return catStamp[c] === stamp ? catPicks[c]! : 0
  }
  const chosen: RankedItem[] = []
  let explore = false
  if (ctx.variant?.exploration === true && m.maxItems >= 3) for (let i = 0; i < n && !explore; i++) explore = items[pool[i]!]!.type === 'product'
  const slots = explore ? m.maxItems - 1 : m.maxItems
  while (chosen.length < slots && n > 0) {
    let best = 0
    let bestScore = -Infinity
    for (let i = 0; i < n; i++) {
      const idx = pool[i]!
      const k = picksOf(idx)
      const v = candScore[idx]! * (DIVERSITY_POW[k] ?? DIVERSITY ** k)
      if (v > bestScore || (v === bestScore && idRank[idx]! < idRank[pool[best]!]!)) {
        best = i
        bestScore = v
      }
    }
    const idx = pool[best]!
    const it = items[idx]!
    // Out of the pool, keeping the others' order.
    pool.copyWithin(best, best + 1, n)
    n--
    chosen.push({ item: it, score: bestScore, reason: memo.candReason[idx]! })
    const c = catSlot[idx]!
    catPicks[c] = picksOf(idx) + 1
    catStamp[c] = stamp
  }
  if (explore && n > 0) {
    const rest = Array.from(pool.subarray(0, n)).sort((a, b) => idRank[a]! - idRank[b]!)
    const idx = rest[Math.floor(ctx.draw * rest.length)]!
    chosen.push({ item: items[idx]!, score: candScore[idx]!, reason: EXPLORATION })
  }
  return chosen
}
