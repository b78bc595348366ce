import type { Experiment } from './catalog.schema.js'
import { conditionCode, localizeReason, said, type Localized, type ReasonCode, type Said } from './layout.reasons.js'
import { modelScratch, scoreByNeighbours, type ModelScratch } from './model.score.js'
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

/**
 * Per snapshot: reasons built once (a layout names a few of them; building their strings per
 * request was most of its garbage), and scratch arrays indexed by item for one ranking at a time
 * (ranking is synchronous, so one set per snapshot is never shared by two requests).
 */
interface Memo {
  moduleReasons: Map<SnapshotModule, Reason>
  tagReasons: Map<SnapshotItem, Reason>
  serviceReasons: Map<SnapshotItem, Reason>
  segmentReasons: Map<string, Reason>
  regionReasons: Map<string, Reason>
  modelReasons: Map<SnapshotItem, Reason>
  size: number
  seenWeek: Int32Array
  seenToday: Int32Array
  seenClicks: Int32Array
  seen: Uint8Array
  co: Float64Array
  coBest: Float64Array
  coBecause: Int32Array
  scratch: ModelScratch
  /** Modules by priority, and in elder mode's order (without the hidden ones): sorted once. */
  standardOrder: SnapshotModule[]
  elderOrder: SnapshotModule[]
  /** Per item, the index its id first has (an item in two modules is one on screen). */
  idSlot: Int32Array
  /** Per id slot, the ranking that put it on screen (compared with `stamp`). */
  onScreen: Uint32Array
  stamp: number
  /** One module's candidates: their indices, and per item index their score and reason. */
  candidates: Int32Array
  candScore: Float64Array
  candReason: Reason[]
  /** Per item, its category's slot; per slot, the picks of it in the ranking under `stamp`. */
  catSlot: Int32Array
  catPicks: Int32Array
  catStamp: Uint32Array
  /** Per item, the rank of its id among all ids (ties and the exploration's order compare ids). */
  idRank: Int32Array
}

const TENANT_POPULARITY: Reason = Object.freeze({ kind: 'popularity', code: 'popular_at_bank', scope: 'tenant', detail: 'popular with the bank\u2019s customers', say: said('popular_at_bank') })
const EVERYONE: Reason = Object.freeze({ kind: 'rule', code: 'bank_service', detail: 'the bank\u2019s catalogue shows it to everyone', say: said('bank_service') })
const SAFETY_FOR_ALL: Reason = Object.freeze({ kind: 'rule', code: 'account_safety', detail: 'the bank\u2019s catalogue shows it to everyone', say: said('account_safety') })
const PROMOTED: Reason = Object.freeze({ kind: 'rule', code: 'bank_recommends', detail: 'promoted by the bank', say: said('bank_recommends') })
const IN_CATALOGUE: Reason = Object.freeze({ kind: 'rule', code: 'bank_service', detail: 'in the bank\u2019s catalogue', say: said('bank_service') })
const EXPLORATION: Reason = Object.freeze({ kind: 'exploration', code: 'something_new', detail: 'one slot tries something new, so the model learns beyond what is already popular', say: said('something_new') })
const SIMILAR: Reason = Object.freeze({ kind: 'model', code: 'similar_customers', model: 'co-occurrence', because: [], detail: 'similar to what you use', say: said('similar_customers') })

const memos = new WeakMap<LayoutSnapshot, Memo>()

function memoOf(s: LayoutSnapshot): Memo {
  let m = memos.get(s)
  const n = s.items.length
  if (m && m.size >= n) return m
  const scratch = modelScratch(n)
  m = {
    moduleReasons: m?.moduleReasons ?? new Map(),
    tagReasons: m?.tagReasons ?? new Map(),
    serviceReasons: m?.serviceReasons ?? new Map(),
    segmentReasons: m?.segmentReasons ?? new Map(),
    regionReasons: m?.regionReasons ?? new Map(),
    modelReasons: m?.modelReasons ?? new Map(),
    size: n,
    seenWeek: new Int32Array(n),
    seenToday: new Int32Array(n),
    seenClicks: new Int32Array(n),
    seen: new Uint8Array(n),
    co: scratch.co,
    coBest: scratch.best,
    coBecause: scratch.because,
    scratch,
    standardOrder: [...s.modules].sort((a, b) => b.priority - a.priority),
    elderOrder: s.modules.filter((x) => x.elder !== 'hide').sort((a, b) => Number(b.elder === 'first') - Number(a.elder === 'first') || b.priority - a.priority),
    idSlot: Int32Array.from(s.items, (it) => s.itemIndex.get(it.id) ?? it.index),
    onScreen: new Uint32Array(n),
    stamp: 0,
    candidates: new Int32Array(n),
    candScore: new Float64Array(n),
    candReason: new Array<Reason>(n),
    ...categorySlots(s.items),
    idRank: idRanks(s.items),
  }
  memos.set(s, m)
  return m
}

function categorySlots(items: readonly SnapshotItem[]) {
  const slots = new Map<string, number>()
  const catSlot = Int32Array.from(items, (it) => slots.get(it.category) ?? (slots.set(it.category, slots.size), slots.size - 1))
  return { catSlot, catPicks: new Int32Array(slots.size), catStamp: new Uint32Array(slots.size) }
}

function idRanks(items: readonly SnapshotItem[]): Int32Array {
  const ids = [...new Set(items.map((it) => it.id))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const rank = new Map(ids.map((id, i) => [id, i]))
  return Int32Array.from(items, (it) => rank.get(it.id)!)
}

/** DIVERSITY ** k for the picks a category can have on one screen. */
const DIVERSITY_POW = Float64Array.from({ length: 64 }, (_, k) => DIVERSITY ** k)

/** The reason held for `key`, made from it on first use (makers are module functions: no closure per request). */
function intern<K>(map: Map<K, Reason>, key: K, make: (key: K) => Reason): Reason {
  let v = map.get(key)
  if (v === undefined) map.set(key, (v = Object.freeze(make(key))))
  return v
}

function customerRow(s: LayoutSnapshot, key: number): number {
  return key ? findKey(s.customers.keys, key) : -1
}

/** The customer's exposures and clicks per item, from the build, into the memo's arrays. */
function exposures(s: LayoutSnapshot, row: number, m: Memo): void {
  m.seen.fill(0)
  if (row < 0) return
  const c = s.customers
  for (let j = c.shownOff[row]!; j < c.shownOff[row + 1]!; j++) {
    const i = c.shown[j]!
    m.seen[i] = 1
    m.seenToday[i] = c.shownToday[j]!
    m.seenWeek[i] = c.shownWeek[j]!
    m.seenClicks[i] = c.clickedWeek[j]!
  }
}

/**
 * The model's scores for the customer (model.score.ts: SAR's affinity x similarity, or EASE's
 * weights over the items they have), normalised to 0..1 so the weights of the blend mean the
 * same for every customer, and the strongest source of each, into the memo's arrays. A negative
 * score (EASE counting an item against what the customer has) stays below 0: the blend reads 0.
 */
function coOccurrence(s: LayoutSnapshot, row: number, m: Memo): void {
  if (row < 0) {
    m.co.fill(0)
    m.coBecause.fill(-1)
    return
  }
  const c = s.customers
  scoreByNeighbours(s.neighbours, c.items, c.affinity, c.itemOff[row]!, c.itemOff[row + 1]!, s.model.input, m.scratch)
  let max = 0
  for (let i = 0; i < m.size; i++) if (m.co[i]! > max) max = m.co[i]!
  if (max > 0) for (let i = 0; i < m.size; i++) m.co[i]! /= max
}

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
  const scoring: Scoring = { personal, mySegments, popW, affW, basePop, baseReason, memo, serviceOnly: (ctx.serviceKey ?? 0) !== 0, fatigue: key !== 0 }

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
    out.push({ module: m, reason: intern(memo.moduleReasons, m, moduleReason), items: picked })
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
    reason = intern(memo.serviceReasons, it, serviceReason)
  } else if (it.type === 'reminder' || it.type === 'tip' || (it.conditionTags.length && it.boost >= p.popW * pop && it.boost >= p.affW * aff)) {
    reason = it.conditionTags.length
      ? intern(memo.tagReasons, it, tagReason)
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

// The customer's sentence names the item that led to a pick by its title, never a tag or segment.
const modelReason = (src: SnapshotItem): Reason => ({ kind: 'model', code: 'used_together', model: 'co-occurrence', because: [src.id], detail: `customers who used ${src.id} also use this`, say: said('used_together', src.title) })
const easeReason = (src: SnapshotItem): Reason => ({ kind: 'model', code: 'used_together', model: 'ease', because: [src.id], detail: `EASE: ${src.id} weighs most among the customer's items for this one`, say: said('used_together', src.title) })
const segmentReason = (segment: string): Reason => ({ kind: 'popularity', code: 'similar_customers', scope: 'segment', segment, detail: `popular in segment ${segment}`, say: said('similar_customers') })
/** Whether the condition reads only tags it says hold (no tag is there only to keep customers out). */
const plainCondition = (e: { conditionTags: string[]; affirmedTags: string[] }) => e.affirmedTags.length === e.conditionTags.length
const tagReason = (it: SnapshotItem): Reason => {
  const code = conditionCode(it.affirmedTags, it.type)
  const tags = it.conditionTags.join(', ')
  return { kind: 'tag', code, tags: it.conditionTags, detail: plainCondition(it) ? `shown while ${tags} holds` : `shown while its condition on ${tags} holds`, say: it.why ?? said(code) }
}
const serviceReason = (it: SnapshotItem): Reason => {
  const code = conditionCode(it.affirmedTags, it.type)
  const what = it.type === 'tip' ? 'a safety tip' : 'a service reminder'
  return { kind: 'service', code, tags: it.conditionTags, detail: `${what} (${it.conditionTags.join(', ')}): kept on the non-personalized layout`, say: it.why ?? said(code) }
}
const regionReason = (region: string): Reason => ({ kind: 'popularity', code: 'popular_nearby', scope: 'region', region, detail: `popular with the bank\u2019s customers in region ${region}`, say: said('popular_nearby') })

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

function moduleReason(m: SnapshotModule): Reason {
  if (!m.conditionTags.length) return { kind: 'rule', code: 'bank_service', detail: `catalogue module, priority ${m.priority}`, say: said('bank_service') }
  const code = conditionCode(m.affirmedTags, 'module')
  const tags = m.conditionTags.join(' / ')
  return { kind: 'tag', code, tags: m.conditionTags, detail: plainCondition(m) ? `shown because ${tags} holds for the customer` : `shown because its condition on ${tags} holds for the customer`, say: m.why ?? said(code) }
}
