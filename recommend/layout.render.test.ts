import { beforeAll, describe, expect, it } from 'vitest'
import { loadRoaring, type Roaring } from '../segments/roaring.js'
import { item, snapshot } from './layout.fixture.js'
import { rankModules, toLayoutModules, type RankContext } from './layout.rank.js'
import { renderLayout, type LayoutHead } from './layout.render.js'
import type { LayoutSnapshot } from './model.snapshot.js'

/** The rendered body is byte for byte JSON.stringify of the same layout as objects. */

let R: Roaring
beforeAll(async () => {
  const r = await loadRoaring()
  if (!r) throw new Error('the optional "roaring" package is not installed')
  R = r
})

// Text a JSON writer must escape or keep: quotes, backslashes, control characters, line
// separators, CJK, an emoji (a surrogate pair) and a lone surrogate.
const AWKWARD = ['他说"你好"', 'back\\slash', 'line\nbreak\ttab\u0001', 'sep\u2028ara\u2029tor', '理财 💰 产品', 'lone \ud800 half', '']

function awkwardSnapshot(): LayoutSnapshot {
  const items = Array.from({ length: 24 }, (_, i) =>
    item(i, `item-${i}"${AWKWARD[i % AWKWARD.length]}`, `m${i % 4}`, {
      type: (['service', 'product', 'reminder', 'tip'] as const)[i % 4],
      title: { zh: `标题${AWKWARD[i % AWKWARD.length]}${i}`, en: `Title ${AWKWARD[(i + 3) % AWKWARD.length]}` },
      elderTitle: i % 3 === 0 ? { zh: `大字${AWKWARD[(i + 1) % AWKWARD.length]}`, en: `Large ${i}` } : undefined,
      deeplink: `app://x/${i}?q="${AWKWARD[(i + 2) % AWKWARD.length]}"`,
      category: `c${i % 5}`,
      boost: (i % 7) / 10,
      conditionTags: i % 5 === 0 ? ['loan_due', `tag"${i}`] : [],
      why: i % 10 === 0 ? { zh: `为您${AWKWARD[(i + 4) % AWKWARD.length]}`, en: `For you ${AWKWARD[(i + 5) % AWKWARD.length]}` } : undefined,
      elder: i % 6 === 0 ? 'hide' : 'show',
    }),
  )
  const s = snapshot(
    items,
    [0, 1, 2, 3].map((j) => ({
      id: `m${j}${AWKWARD[j]}`,
      title: { zh: `模块${AWKWARD[j + 1]}`, en: `Module ${AWKWARD[j + 2]}` },
      items: items.filter((it) => it.module === `m${j}`).map((it) => it.index),
      maxItems: 3 + j,
      conditionTags: j === 2 ? ['pension'] : [],
    })),
  )
  s.popularity.set(items.map((_, i) => ((i * 37) % 11) / 10))
  s.segments = [{ id: 'seg"一', members: R.create(Uint32Array.of(7, 9)), popularity: Float32Array.from(items.map((_, i) => ((i * 13) % 7) / 6)) }]
  s.regions = new Map([['R-01', Float32Array.from(items.map((_, i) => ((i * 5) % 9) / 8))]])
  s.customers = {
    keys: Uint32Array.of(7, 9),
    itemOff: Uint32Array.of(0, 2, 3),
    items: Int32Array.of(1, 5, 9),
    affinity: Float32Array.of(1, 0.5, 0.8),
    shownOff: Uint32Array.of(0, 1, 1),
    shown: Int32Array.of(2),
    shownToday: Uint16Array.of(0),
    shownWeek: Uint16Array.of(6),
    clickedWeek: Uint16Array.of(0),
  }
  s.neighbours[1] = { items: Int32Array.of(3, 6, 13), sims: Float32Array.of(0.9, 0.4, 0.7) }
  s.neighbours[5] = { items: Int32Array.of(13, 17), sims: Float32Array.of(0.3, 0.95) }
  s.neighbours[9] = { items: Int32Array.of(21, 10), sims: Float32Array.of(0.6, 0.5) }
  s.build = '42'
  s.builtAt = '2026-11-28 03:00:00.000'
  return s
}

const variant = { name: 'v"1', weight: 1, popularityWeight: 0.7, affinityWeight: 1.3, exploration: true }

describe('renderLayout', () => {
  it('writes exactly what JSON.stringify writes for the same layout, awkward text included', () => {
    const s = awkwardSnapshot()
    let compared = 0
    for (const customerKey of [0, 7, 9, 8]) {
      for (const lang of ['zh', 'en'] as const) {
        for (const elder of [false, true]) {
          for (const draw of [0, 0.5, 0.99]) {
            for (const region of [undefined, 'R-01', 'R-99']) {
              const ctx: RankContext = { customerKey, elder, lang, today: 20_000, variant: customerKey ? variant : null, draw, region: customerKey ? undefined : region }
              const ranked = rankModules(s, ctx)
              const head: LayoutHead = {
                tenant: 3,
                customerId: customerKey ? `C"${AWKWARD[customerKey % AWKWARD.length]}` : null,
                known: customerKey !== 0,
                screen: 'home',
                elder,
                largeElements: elder,
                holdout: false,
                experiment: customerKey ? { id: 'exp"1', variant: variant.name } : null,
                personalized: customerKey !== 0,
                personalizedReason: customerKey ? null : 'unknown_customer',
              }
              const objects = { ...head, model: { build: s.build, builtAt: s.builtAt, catalogVersion: s.catalogVersions }, modules: toLayoutModules(ranked, lang, elder) }
              // Twice: the second time from the cached fragments.
              for (let k = 0; k < 2; k++) expect(renderLayout(s, head, ranked, lang).toString('utf8')).toBe(JSON.stringify(objects))
              compared++
            }
          }
        }
      }
    }
    expect(compared).toBe(4 * 2 * 2 * 3 * 3)
  })

  it('covers every kind of reason in that comparison', () => {
    const s = awkwardSnapshot()
    const kinds = new Set<string>()
    for (const customerKey of [0, 7, 9]) {
      for (const region of [undefined, 'R-01']) {
        const ranked = rankModules(s, { customerKey, elder: false, lang: 'zh', today: 20_000, variant: customerKey ? variant : null, draw: 0.3, region: customerKey ? undefined : region })
        for (const m of ranked) {
          kinds.add(`module:${m.reason.kind}`)
          for (const p of m.items) kinds.add(p.reason.kind === 'popularity' ? `popularity:${p.reason.scope}` : p.reason.kind)
        }
      }
    }
    expect([...kinds].sort()).toEqual(['exploration', 'model', 'module:rule', 'module:tag', 'popularity:region', 'popularity:segment', 'popularity:tenant', 'rule', 'tag'])
  })

  it('bodies kept together stay intact: each is its own slice, including one larger than a slab', () => {
    const s = awkwardSnapshot()
    const head = (i: number): LayoutHead => ({ tenant: 3, customerId: `C${i}`, known: true, screen: 'home', elder: false, largeElements: false, holdout: false, experiment: null, personalized: true, personalizedReason: null })
    const ranked = rankModules(s, { customerKey: 7, elder: false, lang: 'zh', today: 20_000, variant, draw: 0.5 })
    const expected = (h: LayoutHead) => JSON.stringify({ ...h, model: { build: s.build, builtAt: s.builtAt, catalogVersion: s.catalogVersions }, modules: toLayoutModules(ranked, 'zh', false) })
    const kept: [Buffer, string][] = []
    // Enough bodies to fill several slabs (256 KB each), and one customer number of 300 KB.
    for (let i = 0; i < 600; i++) {
      const h = i === 300 ? { ...head(i), customerId: '号'.repeat(100_000) } : head(i)
      kept.push([renderLayout(s, h, ranked, 'zh'), expected(h)])
    }
    for (const [body, text] of kept) expect(body.toString('utf8')).toBe(text)
  })

  it('a non-finite score reads null, as JSON.stringify writes it', () => {
    const s = snapshot([item(0, 'a', 'm0', { boost: Number.NaN })], [{ items: [0] }])
    const ranked = rankModules(s, { customerKey: 0, elder: false, lang: 'en', today: 20_000, variant: null, draw: 0 })
    const head: LayoutHead = { tenant: 1, customerId: null, known: false, screen: 'home', elder: false, largeElements: false, holdout: false, experiment: null, personalized: false, personalizedReason: 'unknown_customer' }
    const body = JSON.parse(renderLayout(s, head, ranked, 'en').toString('utf8')) as { modules: { items: { score: unknown }[] }[] }
    expect(body.modules[0]!.items[0]!.score).toBeNull()
  })
})
