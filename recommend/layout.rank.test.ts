import { beforeAll, describe, expect, it } from 'vitest'
import { loadRoaring, type Roaring } from '../segments/roaring.js'
import { rankLayout, type RankContext } from './layout.rank.js'
import { item, snapshot } from './layout.fixture.js'
import type { SnapshotModule } from './model.snapshot.js'

/** The ranking on a hand-made snapshot: every rule with numbers one can check by hand. */

let R: Roaring
beforeAll(async () => {
  const r = await loadRoaring()
  if (!r) throw new Error('the optional "roaring" package is not installed')
  R = r
})

const TODAY = 20_000
const blend = { name: 'blend', weight: 1, popularityWeight: 1, affinityWeight: 1, exploration: false }

const ctx = (o: Partial<RankContext> = {}): RankContext => ({ customerKey: 7, elder: false, lang: 'en', today: TODAY, variant: blend, draw: 0, ...o })

describe('rankLayout', () => {
  it('ranks by the blend, with the reason of the strongest part; co-occurrence names its source', () => {
    const items = [item(0, 'a', 'm0'), item(1, 'b', 'm0'), item(2, 'c', 'm0'), item(3, 'used', 'm1')]
    const s = snapshot(items, [{ items: [0, 1, 2] }, { items: [] }])
    s.popularity.set([0.9, 0.2, 0.1, 0])
    // Customer 7 used item 3 (affinity 1); its neighbour c has similarity 0.8.
    s.customers = { ...s.customers, keys: Uint32Array.of(7), itemOff: Uint32Array.of(0, 1), items: Int32Array.of(3), affinity: Float32Array.of(1), shownOff: Uint32Array.of(0, 0) }
    s.neighbours[3] = { items: Int32Array.of(2), sims: Float32Array.of(0.8) }
    const [m] = rankLayout(s, ctx())
    expect(m!.items.map((i) => i.id)).toEqual(['c', 'a', 'b'])
    expect(m!.items[0]!.reason).toMatchObject({ kind: 'model', because: ['used'] })
    expect(m!.items[1]!.reason).toMatchObject({ kind: 'popularity', scope: 'tenant' })
    // Without personal ranking (holdout, anonymous): popularity alone.
    expect(rankLayout(s, ctx({ variant: null }))[0]!.items.map((i) => i.id)).toEqual(['a', 'b', 'c'])
  })

  it('EASE: its weights over the items a customer has (1 each), a negative weight counts against, the strongest positive source is the reason, in zh and en', () => {
    const items = [item(0, 'a', 'm0'), item(1, 'b', 'm0'), item(2, 'c', 'm0'), item(3, 'transfer', 'm1', { title: { zh: '转账', en: 'Transfer' } }), item(4, 'bills', 'm1', { title: { zh: '缴费', en: 'Bills' } })]
    const s = snapshot(items, [{ items: [0, 1, 2] }, { items: [] }], { model: { name: 'ease_0.3', kind: 'ease', input: 'binary' } })
    s.popularity.set([0.3, 0.2, 0.1, 0, 0])
    // Customer 7 used transfer (affinity 0.1) and bills (affinity 5); EASE counts each once.
    s.customers = { ...s.customers, keys: Uint32Array.of(7), itemOff: Uint32Array.of(0, 2), items: Int32Array.of(3, 4), affinity: Float32Array.of(0.1, 5), shownOff: Uint32Array.of(0, 0) }
    s.neighbours[3] = { items: Int32Array.of(2, 1), sims: Float32Array.of(0.6, 0.5) }
    s.neighbours[4] = { items: Int32Array.of(1, 0), sims: Float32Array.of(-0.9, 0.2) }
    // c 0.6 (transfer), a 0.2 (bills), b 0.5 − 0.9 < 0: read as 0. Normalised by 0.6: c 1, a 1/3.
    const [m] = rankLayout(s, ctx())
    expect(m!.items.map((i) => [i.id, i.score])).toEqual([['c', 1.1], ['a', 0.633], ['b', 0.2]])
    expect(m!.items[0]!.reason).toMatchObject({ kind: 'model', model: 'ease', code: 'used_together', because: ['transfer'], text: 'Customers who use Transfer also use this' })
    expect(m!.items[1]!.reason).toMatchObject({ kind: 'model', model: 'ease', because: ['bills'], text: 'Customers who use Bills also use this' })
    expect(m!.items[2]!.reason).toMatchObject({ kind: 'popularity', code: 'popular_at_bank', text: 'Popular with our customers' })
    const zh = rankLayout(s, ctx({ lang: 'zh' }))[0]!.items.map((i) => i.reason.text)
    expect(zh).toEqual(['常用「转账」的客户也在用', '常用「缴费」的客户也在用', '本行客户常用'])
    // The same weights scored against affinities (SAR's input) rank otherwise: bills' 5 dominates.
    const sar = rankLayout({ ...s, model: { name: 'sar', kind: 'sar', input: 'affinity' } }, ctx())[0]!.items
    expect(sar.map((i) => i.id)).toEqual(['a', 'b', 'c'])
    expect(sar[0]!.reason).toMatchObject({ kind: 'model', model: 'co-occurrence', because: ['bills'] })
    // No personal ranking (holdout, anonymous, personalization off): no model output at all.
    for (const r of rankLayout(s, ctx({ variant: null }))[0]!.items) expect(r.reason.kind).toBe('popularity')
    for (const r of rankLayout(s, ctx({ customerKey: 0, serviceKey: 7, variant: null }))[0]!.items) expect(r.reason.kind).toBe('popularity')
  })

  it('with personalization off: the default for everyone, plus the service reminders the customer needs, marked as service', () => {
    const only7 = R.create(Uint32Array.of(7))
    const items = [
      item(0, 'loan-due', 'm0', { type: 'reminder', eligible: only7, conditionTags: ['loan_due_7d'], service: true, boost: 0.6 }),
      item(1, 'birthday', 'm0', { type: 'reminder', eligible: only7, conditionTags: ['birthday_7d'], boost: 0.3 }),
      item(2, 'pension', 'm1'),
      item(3, 'help', 'm2'),
    ]
    const s = snapshot(items, [{ items: [0, 1] }, { items: [2], eligible: only7, conditionTags: ['elder'] }, { items: [3] }])
    const on = rankLayout(s, ctx())
    expect(on.map((m) => [m.id, m.items.map((i) => i.id)])).toEqual([['m0', ['loan-due', 'birthday']], ['m1', ['pension']], ['m2', ['help']]])
    const off = rankLayout(s, ctx({ customerKey: 0, serviceKey: 7, variant: null }))
    expect(off.map((m) => [m.id, m.items.map((i) => [i.id, i.reason.kind])])).toEqual([['m0', [['loan-due', 'service']]], ['m2', [['help', 'rule']]]])
    // Another customer with the switch off gets no one else's reminder.
    expect(rankLayout(s, ctx({ customerKey: 0, serviceKey: 8, variant: null })).map((m) => m.id)).toEqual(['m2'])
  })

  it('eligibility, product rules, validity dates and elder visibility leave items out', () => {
    const only7 = R.create(Uint32Array.of(7))
    const items = [
      item(0, 'for-7', 'm0', { eligible: only7, conditionTags: ['t'] }),
      item(1, 'for-8', 'm0', { eligible: R.create(Uint32Array.of(8)) }),
      item(2, 'loan', 'm0', { type: 'product', excluded: [{ keys: only7, reason: 'overdue' }] }),
      item(3, 'future', 'm0', { validFrom: TODAY + 1 }),
      item(4, 'past', 'm0', { validTo: TODAY - 1 }),
      item(5, 'risky', 'm0', { elder: 'hide' }),
    ]
    const s = snapshot(items, [{ items: [0, 1, 2, 3, 4, 5], maxItems: 10 }])
    expect(rankLayout(s, ctx())[0]!.items.map((i) => i.id).sort()).toEqual(['for-7', 'risky'])
    expect(rankLayout(s, ctx({ elder: true }))[0]!.items.map((i) => i.id)).toEqual(['for-7'])
    // Customer 8: for-8 and the loan (the rule excludes 7 only); anonymous: no product under a rule.
    expect(rankLayout(s, ctx({ customerKey: 8 }))[0]!.items.map((i) => i.id).sort()).toEqual(['for-8', 'loan', 'risky'])
    expect(rankLayout(s, ctx({ customerKey: 0, variant: null }))[0]!.items.map((i) => i.id)).toEqual(['risky'])
  })

  it('caps exposures per day and week, counting what this process served since the build', () => {
    const items = [item(0, 'promo', 'm0', { cap: { perDay: 2, perWeek: 3 } }), item(1, 'other', 'm0')]
    const s = snapshot(items, [{ items: [0, 1] }])
    s.customers = { ...s.customers, keys: Uint32Array.of(7), itemOff: Uint32Array.of(0, 0), shownOff: Uint32Array.of(0, 1), shown: Int32Array.of(0), shownToday: Uint16Array.of(1), shownWeek: Uint16Array.of(1), clickedWeek: Uint16Array.of(0) }
    const ids = (served: { today: number; week: number }) => rankLayout(s, ctx({ served: (i) => (i === 0 ? served : { today: 0, week: 0 }) }))[0]!.items.map((i) => i.id)
    expect(ids({ today: 0, week: 0 })).toContain('promo')
    expect(ids({ today: 1, week: 1 })).not.toContain('promo') // 1 + 1 today = the daily cap
    expect(ids({ today: 0, week: 2 })).not.toContain('promo') // 1 + 2 this week = the weekly cap
  })

  it('caps a customer served the default layout (personalization off, the holdout) by their own exposures; fatigue, which reads their clicks, does not apply', () => {
    const items = [item(0, 'promo', 'm0', { cap: { perDay: 1 } }), item(1, 'other', 'm0'), item(2, 'tired', 'm0')]
    const s = snapshot(items, [{ items: [0, 1, 2] }])
    s.popularity.set([0.5, 0.4, 1])
    // Customer 7 was shown promo once today and tired 10 times this week without a click.
    s.customers = { ...s.customers, keys: Uint32Array.of(7), itemOff: Uint32Array.of(0, 0), shownOff: Uint32Array.of(0, 2), shown: Int32Array.of(0, 2), shownToday: Uint16Array.of(1, 0), shownWeek: Uint16Array.of(1, 10), clickedWeek: Uint16Array.of(0, 0) }
    const plain = ctx({ customerKey: 0, serviceKey: 7, variant: null })
    expect(rankLayout(s, plain)[0]!.items.map((i) => [i.id, i.score])).toEqual([['tired', 1], ['other', 0.4]])
    // This process's own count caps too: customer 8, with no row in the build.
    const served = (i: number) => (i === 0 ? { today: 1, week: 1 } : { today: 0, week: 0 })
    expect(rankLayout(s, ctx({ customerKey: 0, serviceKey: 8, variant: null, served }))[0]!.items.map((i) => i.id)).toEqual(['tired', 'other'])
    // Anonymous: no one's exposures.
    expect(rankLayout(s, ctx({ customerKey: 0, variant: null }))[0]!.items.map((i) => i.id)).toEqual(['tired', 'promo', 'other'])
  })

  it('fatigue halves an item per 5 exposures without a click; a click lifts it', () => {
    const items = [item(0, 'a', 'm0'), item(1, 'b', 'm0')]
    const s = snapshot(items, [{ items: [0, 1], maxItems: 2 }])
    s.popularity.set([1, 0.6])
    const shown = (clicks: number) => ({ ...s.customers, keys: Uint32Array.of(7), itemOff: Uint32Array.of(0, 0), shownOff: Uint32Array.of(0, 1), shown: Int32Array.of(0), shownToday: Uint16Array.of(0), shownWeek: Uint16Array.of(5), clickedWeek: Uint16Array.of(clicks) })
    s.customers = shown(0)
    expect(rankLayout(s, ctx())[0]!.items.map((i) => [i.id, i.score])).toEqual([['b', 0.6], ['a', 0.5]])
    s.customers = shown(1)
    expect(rankLayout(s, ctx())[0]!.items.map((i) => i.id)).toEqual(['a', 'b'])
  })

  it('diversity: a second item of a category already on screen is worth 0.6 of its score', () => {
    const items = [item(0, 'a1', 'm0', { category: 'a' }), item(1, 'a2', 'm0', { category: 'a' }), item(2, 'b1', 'm0', { category: 'b' })]
    const s = snapshot(items, [{ items: [0, 1, 2], maxItems: 3 }])
    s.popularity.set([1, 0.9, 0.6])
    const [m] = rankLayout(s, ctx())
    expect(m!.items.map((i) => i.id)).toEqual(['a1', 'b1', 'a2'])
    expect(m!.items[2]!.score).toBeCloseTo(0.54, 5)
  })

  it('one exploration slot in product modules, the same all day for a customer', () => {
    const items = Array.from({ length: 8 }, (_, i) => item(i, `p${i}`, 'm0', { type: 'product', category: `c${i}` }))
    const s = snapshot(items, [{ items: items.map((i) => i.index), maxItems: 3 }])
    s.popularity.set([1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    const explore = { ...blend, exploration: true }
    const a = rankLayout(s, ctx({ variant: explore, draw: 0.99 }))[0]!.items
    expect(a.map((i) => i.id)).toEqual(['p0', 'p1', 'p7'])
    expect(a[2]!.reason.kind).toBe('exploration')
    expect(rankLayout(s, ctx({ variant: explore, draw: 0.99 }))[0]!.items).toEqual(a)
    expect(rankLayout(s, ctx({ variant: explore, draw: 0 }))[0]!.items[2]!.id).toBe('p2')
  })

  it('elder mode: first modules lead, hidden ones leave, five at most', () => {
    const items = Array.from({ length: 8 }, (_, i) => item(i, `i${i}`, `m${i}`))
    const mods: Partial<SnapshotModule>[] = items.map((it, j) => ({ items: [it.index], elder: j === 6 ? 'first' : j === 0 ? 'hide' : 'show' }))
    const s = snapshot(items, mods)
    expect(rankLayout(s, ctx()).map((m) => m.id)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'])
    expect(rankLayout(s, ctx({ elder: true })).map((m) => m.id)).toEqual(['m6', 'm1', 'm2', 'm3', 'm4'])
  })
})
