import { modelScratch, scoreByNeighbours, type ModelScratch } from './model.score.js'
import { findKey, type LayoutSnapshot, type SnapshotItem, type SnapshotModule } from './model.snapshot.js'
import type { Reason } from './layout.explain.js'

/**
 * Per snapshot: reasons built once (a layout names a few of them; building their strings per
 * request was most of its garbage), and scratch arrays indexed by item for one ranking at a time
 * (ranking is synchronous, so one set per snapshot is never shared by two requests).
 */
export interface Memo {
  /** Reasons of a condition, per entry and slot (`slotOf`: the customer's wording, what the key may read). */
  moduleReasons: Map<SnapshotModule, Reason[]>
  tagReasons: Map<SnapshotItem, Reason[]>
  serviceReasons: Map<SnapshotItem, Reason[]>
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

const memos = new WeakMap<LayoutSnapshot, Memo>()

export function memoOf(s: LayoutSnapshot): Memo {
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

export function customerRow(s: LayoutSnapshot, key: number): number {
  return key ? findKey(s.customers.keys, key) : -1
}

/** The customer's exposures and clicks per item, from the build, into the memo's arrays. */
export function exposures(s: LayoutSnapshot, row: number, m: Memo): void {
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
export function coOccurrence(s: LayoutSnapshot, row: number, m: Memo): void {
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
