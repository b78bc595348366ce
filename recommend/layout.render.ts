import type { Reason, RankedModule } from './layout.rank.js'
import { itemTitle, roundScore } from './layout.rank.js'
import { localizeReason } from './layout.reasons.js'
import type { LayoutSnapshot } from './model.snapshot.js'

/**
 * A layout's JSON body, assembled from UTF-8 fragments cached per snapshot.
 *
 * Everything in a layout but a few flags, the customer number and the scores comes from the
 * snapshot: module and item heads (ids, titles, deep links) and the reasons (built once, see
 * layout.explain.ts). Measured on the demo bank, JSON.stringify of a 2.8 KB layout and the UTF-8
 * encoding of its Chinese text on the way to the socket took longer than ranking it; copying
 * cached bytes takes a fraction of that. The bytes are exactly what JSON.stringify would write
 * for the same layout object (layout.render.test.ts holds them to it).
 */

export interface LayoutHead {
  tenant: number
  customerId: string | null
  known: boolean
  screen: 'home'
  elder: boolean
  largeElements: boolean
  holdout: boolean
  experiment: { id: string; variant: string } | null
  /** Whether the layout used the customer's tags, segments and model. */
  personalized: boolean
  /** Why not: `personalization_off` (the customer's switch), `holdout`, `unknown_customer`; null when personalized. */
  personalizedReason: 'personalization_off' | 'holdout' | 'unknown_customer' | null
}

interface Fragments {
  /** `"model":{…}`: the same for every layout of the snapshot. */
  model: Buffer
  /**
   * Per language, by module, by reason: `{"id":…,"title":…,"reason":…,"items":[`. A module has a
   * reason per wording of its condition and per view of its tags (layout.explain.ts slotOf).
   */
  modules: { zh: WeakMap<object, Map<Reason, Buffer>>; en: WeakMap<object, Map<Reason, Buffer>> }
  /**
   * Per language and title variant, by item index, by reason: `{"id":…,…,"category":…,"reason":{…}`.
   * An item appears with few reasons (reasons are built once per snapshot), so head and reason
   * are cached together: one copy per item instead of two.
   */
  items: { zh: Map<Reason, Buffer>[][]; en: Map<Reason, Buffer>[][] }
}

const fragments = new WeakMap<LayoutSnapshot, Fragments>()
const utf8 = (s: string) => Buffer.from(s, 'utf8')

function fragmentsOf(s: LayoutSnapshot): Fragments {
  let f = fragments.get(s)
  if (!f) {
    f = {
      model: utf8(`"model":${JSON.stringify({ build: s.build, builtAt: s.builtAt, catalogVersion: s.catalogVersions })}`),
      modules: { zh: new WeakMap(), en: new WeakMap() },
      items: { zh: [[], []], en: [[], []] },
    }
    fragments.set(s, f)
  }
  return f
}

/**
 * Bodies are written into a shared slab, one at a time (rendering is synchronous), each handed
 * out as a slice of it: a Buffer of its own per body (a fresh allocation above 4 KB, then a
 * copy) showed as a tenth of a layout's time, most of it in the collector. A body that does
 * not fit moves to a larger slab; a full slab is left to the bodies still holding it.
 */
const SLAB = 256 * 1024
let scratch = Buffer.allocUnsafe(SLAB)
/** Where the body being written starts, and the write position. */
let base = 0
let at = 0

function begin(): void {
  if (scratch.length - base < 16 * 1024) {
    scratch = Buffer.allocUnsafe(SLAB)
    base = 0
  }
  at = base
}

function room(n: number): void {
  if (at + n <= scratch.length) return
  const grown = Buffer.allocUnsafe(Math.max(SLAB, 2 * (at - base + n)))
  scratch.copy(grown, 0, base, at)
  at -= base
  base = 0
  scratch = grown
}

/** The body written since begin(), as a slice; the next one starts after it (8-byte aligned). */
function end(): Buffer {
  const out = scratch.subarray(base, at)
  base = (at + 7) & ~7
  return out
}

function bytes(b: Buffer): void {
  room(b.length)
  scratch.set(b, at)
  at += b.length
}

/** Short ASCII (punctuation, numbers): a loop costs less than a call into Buffer.write at this size. */
function ascii(s: string): void {
  room(s.length)
  for (let k = 0; k < s.length; k++) scratch[at++] = s.charCodeAt(k)
}

const flag = (b: boolean) => (b ? 'true' : 'false')

/** JSON.stringify(head) without its closing brace, and a comma. */
function headJson(h: LayoutHead): string {
  const experiment = h.experiment ? `{"id":${JSON.stringify(h.experiment.id)},"variant":${JSON.stringify(h.experiment.variant)}}` : 'null'
  return (
    `{"tenant":${jsonNumber(h.tenant)},"customerId":${h.customerId === null ? 'null' : JSON.stringify(h.customerId)},"known":${flag(h.known)},"screen":${JSON.stringify(h.screen)},` +
    `"elder":${flag(h.elder)},"largeElements":${flag(h.largeElements)},"holdout":${flag(h.holdout)},"experiment":${experiment},"personalized":${flag(h.personalized)},` +
    `"personalizedReason":${h.personalizedReason === null ? 'null' : JSON.stringify(h.personalizedReason)},`
  )
}

/** JSON.stringify of a number: a non-finite score reads null as it would there. */
const jsonNumber = (v: number) => (Number.isFinite(v) ? String(v) : 'null')

/** The body of GET /v1/layout: byte for byte JSON.stringify({...head, model, modules}). */
export function renderLayout(s: LayoutSnapshot, head: LayoutHead, ranked: readonly RankedModule[], lang: 'zh' | 'en'): Buffer {
  const f = fragmentsOf(s)
  // Cached fragments, and short ASCII strings (punctuation, scores) written as they are. No
  // closures here: this runs once per request. Separators ride on the strings around them.
  begin()
  // The head, in the order of LayoutHead's keys: JSON.stringify of the object walked its
  // properties per request; only the strings in it (the customer number, the experiment) need it.
  const h = headJson(head)
  room(h.length * 3)
  at += scratch.write(h, at, h.length * 3, 'utf8')
  bytes(f.model)
  ascii(',"modules":[')
  const byIndex = f.items[lang][head.elder ? 1 : 0]!
  const moduleHeads = f.modules[lang]
  for (let mi = 0; mi < ranked.length; mi++) {
    const rm = ranked[mi]!
    let heads = moduleHeads.get(rm.module)
    if (!heads) moduleHeads.set(rm.module, (heads = new Map()))
    let mh = heads.get(rm.reason)
    if (!mh) {
      mh = utf8(`{"id":${JSON.stringify(rm.module.id)},"title":${JSON.stringify(rm.module.title[lang])},"reason":${JSON.stringify(localizeReason(rm.reason, lang))},"items":[`)
      heads.set(rm.reason, mh)
    }
    bytes(mh)
    const last = rm.items.length - 1
    for (let ii = 0; ii <= last; ii++) {
      const p = rm.items[ii]!
      const it = p.item
      const byReason = (byIndex[it.index] ??= new Map())
      let ih = byReason.get(p.reason)
      if (!ih) {
        const fields = { id: it.id, type: it.type, title: itemTitle(it, lang, head.elder), deeplink: it.deeplink, category: it.category, reason: localizeReason(p.reason, lang) }
        ih = utf8(JSON.stringify(fields).slice(0, -1))
        byReason.set(p.reason, ih)
      }
      bytes(ih)
      ascii(',"score":')
      ascii(jsonNumber(roundScore(p.score)))
      ascii(ii < last ? '},' : '}')
    }
    ascii(mi < ranked.length - 1 ? ']},' : ']}')
  }
  ascii(']}')
  return end()
}
