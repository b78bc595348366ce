import { beforeAll, describe, expect, it } from 'vitest'
import { loadRoaring, type Roaring } from '../segments/roaring.js'
import { item, snapshot } from './layout.fixture.js'
import { rankLayout, type LayoutReason, type RankContext } from './layout.rank.js'
import { affirmedTags, conditionCode, conditionWordings, REASON_CODES, said } from './layout.reasons.js'
import { parseCatalog } from './catalog.schema.js'
import type { LayoutSnapshot } from './model.snapshot.js'
import type { SegmentNode } from '../segments/segment.schema.js'

/** Reasons as the customer reads them: a code, and a sentence in the layout's language. */

let R: Roaring
beforeAll(async () => {
  const r = await loadRoaring()
  if (!r) throw new Error('the optional "roaring" package is not installed')
  R = r
})

const CJK = /[\u4e00-\u9fff]/
const blend = { name: 'blend', weight: 1, popularityWeight: 1, affinityWeight: 1, exploration: true }
const ctx = (o: Partial<RankContext> = {}): RankContext => ({ customerKey: 7, elder: false, lang: 'zh', today: 20_000, variant: blend, draw: 0.5, ...o })

/** A screen where customer 7 gets a reminder, a tip, a co-occurrence pick, a segment's and the bank's popular items, a promoted one and the exploration slot. */
function screen(): LayoutSnapshot {
  const only7 = R.create(Uint32Array.of(7))
  const items = [
    item(0, 'reminder.loan_due', 'reminders', { type: 'reminder', eligible: only7, conditionTags: ['loan_due_7d'], service: true, boost: 0.6 }),
    item(1, 'tip.fraud', 'safety', { type: 'tip', eligible: only7, conditionTags: ['recent_fraud_risk'], boost: 0.7 }),
    item(2, 'tip.general', 'safety', { type: 'tip' }),
    item(3, 'svc.transfer', 'services', { title: { zh: '转账', en: 'Transfer' } }),
    item(4, 'svc.bills', 'services'),
    item(5, 'svc.topup', 'services'),
    item(6, 'p.deposit', 'picks', { type: 'product', category: 'deposit' }),
    item(7, 'p.wealth', 'picks', { type: 'product', category: 'wealth' }),
    item(8, 'p.promoted', 'picks', { type: 'product', category: 'promo', boost: 0.95 }),
    item(9, 'p.other', 'picks', { type: 'product', category: 'other' }),
    item(10, 'p.rare', 'picks', { type: 'product', category: 'rare' }),
  ]
  const s = snapshot(items, [
    { id: 'reminders', items: [0] },
    { id: 'safety', items: [1, 2], maxItems: 2 },
    { id: 'services', items: [3, 4, 5] },
    { id: 'picks', items: [6, 7, 8, 9, 10], maxItems: 4, eligible: only7, conditionTags: ['pension_recipient', 'elder'] },
  ])
  s.popularity.set([0, 0, 0, 0.5, 0.4, 0, 0.3, 0.1, 0, 0.05, 0])
  s.segments = [{ id: 'rich-elders', members: only7, popularity: Float32Array.from([0, 0, 0, 0, 0, 0, 0, 0.9, 0, 0, 0]) }]
  // Customer 7 used the transfer service; top-up is its neighbour.
  s.customers = { ...s.customers, keys: Uint32Array.of(7), itemOff: Uint32Array.of(0, 1), items: Int32Array.of(3), affinity: Float32Array.of(1), shownOff: Uint32Array.of(0, 0) }
  s.neighbours[3] = { items: Int32Array.of(5), sims: Float32Array.of(0.9) }
  return s
}

const reasonsOf = (s: LayoutSnapshot, c: RankContext) => {
  const out = new Map<string, LayoutReason>()
  for (const m of rankLayout(s, c)) {
    out.set(`module:${m.id}`, m.reason)
    for (const i of m.items) out.set(i.id, i.reason)
  }
  return out
}

describe('reasons in the customer’s language', () => {
  it('every code has a short sentence in Chinese and in English', () => {
    for (const code of REASON_CODES) {
      const t = said(code, { zh: '转账', en: 'Transfer' })
      expect(t.zh, code).toMatch(CJK)
      expect(t.en, code).not.toMatch(CJK)
      expect(t.zh.length, code).toBeLessThanOrEqual(16)
      expect(t.en.length, code).toBeLessThanOrEqual(50)
      expect(`${t.zh} ${t.en}`, code).not.toMatch(/[{}]/)
    }
  })

  it('names the situation a known tag describes, the first in the table when several; a sensitive or unknown tag gets its item’s kind', () => {
    expect(conditionCode(['loan_due_7d'], 'reminder')).toBe('loan_due')
    expect(conditionCode(['loan_due_7d', 'loan_overdue'], 'reminder')).toBe('loan_overdue')
    expect(conditionCode(['recent_fraud_risk'], 'tip')).toBe('account_safety')
    expect(conditionCode(['vulnerable'], 'reminder')).toBe('account_reminder')
    expect(conditionCode(['my_own_tag'], 'product')).toBe('your_situation')
    expect(conditionCode(['pension_recipient', 'elder'], 'module')).toBe('pension')
  })

  it('names only the tags a condition says hold: not under a not, not ne / not_in / lt / not_exists, not compared with false, 0 or none', () => {
    expect(affirmedTags({ tag: 'loan_overdue', op: 'eq', value: true })).toEqual(['loan_overdue'])
    expect(affirmedTags({ not: { tag: 'loan_overdue', op: 'eq', value: true } })).toEqual([])
    expect(affirmedTags({ not: { not: { tag: 'loan_overdue', op: 'eq', value: true } } })).toEqual(['loan_overdue'])
    const negative: SegmentNode[] = [
      { tag: 'loan_overdue', op: 'eq', value: false },
      { tag: 'loan_overdue', op: 'ne', value: true },
      { tag: 'loan_overdue', op: 'in', value: [false] },
      { tag: 'loan_overdue', op: 'not_in', value: [true] },
      { tag: 'loan_overdue', op: 'exists' },
      { tag: 'loan_overdue', op: 'not_exists' },
      { tag: 'new_device_signins_7d', op: 'lt', value: 1 },
      { tag: 'new_device_signins_7d', op: 'eq', value: 0 },
      { tag: 'new_device_signins_7d', op: 'gte', value: 0 },
      { tag: 'aum_tier', op: 'eq', value: 'none' },
    ]
    for (const leaf of negative) expect(affirmedTags(leaf), JSON.stringify(leaf)).toEqual([])
    expect(affirmedTags({ tag: 'new_device_signins_7d', op: 'gte', value: 1 })).toEqual(['new_device_signins_7d'])
    expect(affirmedTags({ tag: 'aum_tier', op: 'in', value: ['affluent', 'private'] })).toEqual(['aum_tier'])
    expect(affirmedTags({ all: [{ tag: 'loan_due_7d', op: 'eq', value: true }, { not: { tag: 'loan_overdue', op: 'eq', value: true } }] })).toEqual(['loan_due_7d'])
    // An item shown while the customer is NOT overdue gets its kind's wording, and says the condition is on the tag.
    const s = screen()
    s.items[0] = { ...s.items[0]!, conditionTags: ['loan_overdue'], affirmedTags: [] }
    expect(reasonsOf(s, ctx({ lang: 'en' })).get('reminder.loan_due')).toMatchObject({ kind: 'tag', tags: ['loan_overdue'], code: 'account_reminder', text: 'A reminder about your accounts', detail: 'shown while its condition on loan_overdue holds' })
    expect(reasonsOf(s, ctx({ customerKey: 0, serviceKey: 7, variant: null, lang: 'en' })).get('reminder.loan_due')).toMatchObject({ kind: 'service', code: 'account_reminder' })
  })

  it('words a condition with branches from one that holds for the customer: a family agent who is not elder is not told about senior customers', () => {
    const family = { tag: 'family_agent', op: 'eq', value: true } as const
    const elder = { tag: 'elder', op: 'eq', value: true } as const
    const pension = { tag: 'pension_recipient', op: 'eq', value: true } as const
    // Said to hold for whoever the condition admits: only what every branch affirms.
    expect(affirmedTags({ any: [family, elder] })).toEqual([])
    expect(affirmedTags({ all: [pension, { any: [family, elder] }] })).toEqual(['pension_recipient'])
    expect(affirmedTags({ any: [{ all: [elder, family] }, { all: [elder, pension] }] })).toEqual(['elder'])
    expect(affirmedTags({ not: { all: [{ not: family }, { not: elder }] } })).toEqual([])
    expect(affirmedTags({ not: { any: [{ not: family }, { not: elder }] } })).toEqual(['family_agent', 'elder'])
    // Per customer: each code a branch gives, in the order the table gives them, with its branches.
    const ws = conditionWordings({ any: [family, elder] }, 'module')!
    expect(ws.map((w) => w.code)).toEqual(['elder_care', 'family'])
    expect(ws.map((w) => w.when)).toEqual([[{ all: [elder] }], [{ all: [family] }]])
    // The leaves themselves (a branch is evaluated with the condition's checked leaves).
    expect((ws[1]!.when[0] as { all: unknown[] }).all[0]).toBe(family)
    const negated = conditionWordings({ any: [{ not: { tag: 'loan_overdue', op: 'eq', value: true } }, elder] }, 'reminder')!
    expect(negated.map((w) => w.code)).toEqual(['elder_care', 'account_reminder'])
    // One wording for everyone: none per customer.
    expect(conditionWordings({ any: [{ all: [elder, family] }, { all: [elder, { tag: 'agri_interest', op: 'eq', value: true }] }] }, 'module')).toBeUndefined()
    expect(conditionWordings({ all: [family, elder] }, 'module')).toBeUndefined()
    // Past the limit of branches: none per customer, what every branch affirms words it.
    const wide = { all: Array.from({ length: 6 }, (_, i) => ({ any: [{ tag: `t${i}`, op: 'eq', value: true } as const, elder] })) }
    expect(conditionWordings(wide, 'module')).toBeUndefined()

    // In the ranking: the first wording whose customers hold the customer (a snapshot is never changed once ranked: one each).
    const only = (...keys: number[]) => R.create(Uint32Array.from(keys))
    const zone = (wordings: { code: 'elder_care' | 'family'; keys: ReturnType<typeof only> }[]) => {
      const s = screen()
      s.modules[3] = { ...s.modules[3]!, conditionTags: ['family_agent', 'elder'], affirmedTags: [], wordings }
      return reasonsOf(s, ctx({ lang: 'en' })).get('module:picks')
    }
    expect(zone([{ code: 'elder_care', keys: only(8) }, { code: 'family', keys: only(7, 8) }])).toMatchObject({ kind: 'tag', code: 'family', text: 'To help you look after your family', tags: ['family_agent', 'elder'], detail: 'shown because its condition on family_agent / elder holds for the customer' })
    expect(zone([{ code: 'elder_care', keys: only(7) }, { code: 'family', keys: only(7) }])).toMatchObject({ code: 'elder_care' })
    // Held by none (it cannot be, as the wordings cover the condition): the condition's own wording.
    expect(zone([{ code: 'elder_care', keys: only(8) }])).toMatchObject({ code: 'your_situation' })
    const s = screen()
    // An item's wording follows the key its eligibility read: the service key on a default layout.
    s.items[0] = { ...s.items[0]!, conditionTags: ['loan_due_7d', 'bill_due_3d'], affirmedTags: [], wordings: [{ code: 'loan_due', keys: only(8) }, { code: 'bill_due', keys: only(7) }] }
    expect(reasonsOf(s, ctx()).get('reminder.loan_due')).toMatchObject({ kind: 'tag', code: 'bill_due' })
    expect(reasonsOf(s, ctx({ customerKey: 0, serviceKey: 7, variant: null })).get('reminder.loan_due')).toMatchObject({ kind: 'service', code: 'bill_due' })
  })

  it('names a high-sensitivity tag only to a key that may read personal data; the code and the customer’s text are the same for both', () => {
    const s = screen()
    s.items[0] = { ...s.items[0]!, conditionTags: ['loan_due_7d', 'vulnerable'], affirmedTags: ['loan_due_7d', 'vulnerable'], sensitiveTags: ['vulnerable'] }
    s.items[1] = { ...s.items[1]!, conditionTags: ['recent_fraud_risk'], affirmedTags: ['recent_fraud_risk'], sensitiveTags: ['recent_fraud_risk'] }
    s.modules[3] = { ...s.modules[3]!, conditionTags: ['vulnerable'], affirmedTags: ['vulnerable'], sensitiveTags: ['vulnerable'] }
    const views = (c: Partial<RankContext>) => ({ hidden: reasonsOf(s, ctx({ lang: 'en', ...c })), shown: reasonsOf(s, ctx({ lang: 'en', withSensitive: true, ...c })) })
    const personal = views({})
    expect(personal.shown.get('reminder.loan_due')).toMatchObject({ tags: ['loan_due_7d', 'vulnerable'], detail: 'shown while loan_due_7d, vulnerable holds' })
    expect(personal.hidden.get('reminder.loan_due')).toMatchObject({ tags: ['loan_due_7d'], detail: 'shown while its condition on loan_due_7d holds' })
    expect(personal.shown.get('tip.fraud')).toMatchObject({ tags: ['recent_fraud_risk'], detail: 'shown while recent_fraud_risk holds' })
    expect(personal.hidden.get('tip.fraud')).toMatchObject({ tags: [], detail: 'shown while its condition holds' })
    expect(personal.shown.get('module:picks')).toMatchObject({ tags: ['vulnerable'], detail: 'shown because vulnerable holds for the customer' })
    expect(personal.hidden.get('module:picks')).toMatchObject({ tags: [], detail: 'shown because its condition holds for the customer' })
    const plain = views({ customerKey: 0, serviceKey: 7, variant: null })
    expect(plain.shown.get('reminder.loan_due')).toMatchObject({ kind: 'service', tags: ['loan_due_7d', 'vulnerable'], detail: 'a service reminder (loan_due_7d, vulnerable): kept on the non-personalized layout' })
    expect(plain.hidden.get('reminder.loan_due')).toMatchObject({ kind: 'service', tags: ['loan_due_7d'], detail: 'a service reminder (loan_due_7d): kept on the non-personalized layout' })
    for (const { hidden, shown } of [personal, plain]) {
      expect([...hidden.keys()]).toEqual([...shown.keys()])
      for (const [id, r] of hidden) {
        expect([r.kind, r.code, r.text], id).toEqual([shown.get(id)!.kind, shown.get(id)!.code, shown.get(id)!.text])
        for (const name of ['vulnerable', 'recent_fraud_risk']) expect(JSON.stringify(r), id).not.toContain(name)
      }
    }
  })

  it('each reason of a layout says its code’s sentence in the layout’s language, never a tag or segment name; the machine fields stay the same in both', () => {
    const s = screen()
    const zh = reasonsOf(s, ctx({ lang: 'zh' }))
    const en = reasonsOf(s, ctx({ lang: 'en' }))
    expect([...zh.keys()].sort()).toEqual([...en.keys()].sort())
    const codes = new Set<string>()
    for (const [id, r] of zh) {
      const e = en.get(id)!
      const { text: zt, ...zRest } = r
      const { text: et, ...eRest } = e
      expect(zRest, id).toEqual(eRest)
      expect(REASON_CODES).toContain(r.code)
      expect(zt, id).toMatch(CJK)
      expect(et, id).not.toMatch(CJK)
      for (const name of ['loan_due_7d', 'recent_fraud_risk', 'pension_recipient', 'rich-elders', 'svc.transfer']) expect(`${zt} ${et}`, id).not.toContain(name)
      codes.add(r.code)
    }
    // What each line says, in both languages, checked by hand against the screen above.
    expect(zh.get('reminder.loan_due')).toMatchObject({ kind: 'tag', code: 'loan_due', tags: ['loan_due_7d'], text: '您的贷款还款日临近' })
    expect(en.get('reminder.loan_due')).toMatchObject({ code: 'loan_due', text: 'Your loan repayment date is near', detail: 'shown while loan_due_7d holds' })
    expect(zh.get('tip.fraud')).toMatchObject({ kind: 'tag', code: 'account_safety', text: '为保障您的资金安全' })
    expect(zh.get('tip.general')).toMatchObject({ kind: 'rule', code: 'account_safety' })
    expect(zh.get('svc.topup')).toMatchObject({ kind: 'model', code: 'used_together', because: ['svc.transfer'], text: '常用「转账」的客户也在用' })
    expect(en.get('svc.topup')).toMatchObject({ text: 'Customers who use Transfer also use this' })
    expect(zh.get('svc.transfer')).toMatchObject({ kind: 'popularity', scope: 'tenant', code: 'popular_at_bank', text: '本行客户常用' })
    expect(zh.get('p.wealth')).toMatchObject({ kind: 'popularity', scope: 'segment', segment: 'rich-elders', code: 'similar_customers', text: '与您情况相似的客户常用' })
    expect(zh.get('p.promoted')).toMatchObject({ kind: 'rule', code: 'bank_recommends', text: '本行为您推荐' })
    expect(en.get('module:picks')).toMatchObject({ kind: 'tag', code: 'pension', text: 'Pension services for you' })
    expect(zh.get('module:services')).toMatchObject({ kind: 'rule', code: 'bank_service', text: '本行为您提供的服务' })
    expect([...codes]).toContain('something_new')
  })

  it('a catalogue entry words its own condition for the customer in both languages; the code stays the table’s', () => {
    const s = screen()
    const why = { zh: '您的定期存款即将到期', en: 'Your time deposit matures soon' }
    s.items[0] = { ...s.items[0]!, conditionTags: ['deposit_maturing_7d'], affirmedTags: ['deposit_maturing_7d'], why }
    s.modules[3] = { ...s.modules[3]!, why: { zh: '养老专区', en: 'For your retirement' } }
    expect(reasonsOf(s, ctx({ lang: 'zh' })).get('reminder.loan_due')).toMatchObject({ kind: 'tag', code: 'account_reminder', tags: ['deposit_maturing_7d'], text: why.zh })
    expect(reasonsOf(s, ctx({ lang: 'en' })).get('reminder.loan_due')).toMatchObject({ text: why.en })
    expect(reasonsOf(s, ctx({ lang: 'en' })).get('module:picks')).toMatchObject({ code: 'pension', text: 'For your retirement' })
    expect(reasonsOf(s, ctx({ customerKey: 0, serviceKey: 7, variant: null, lang: 'en' })).get('reminder.loan_due')).toMatchObject({ kind: 'service', text: why.en })
    // In the catalogue: both languages, short.
    const doc = (w: unknown) => ({ modules: [{ id: 'm', title: { zh: '模', en: 'M' } }], items: [{ id: 'i', module: 'm', type: 'service', title: { zh: '项', en: 'I' }, deeplink: 'app://i', category: 'c', why: w }] })
    expect(parseCatalog(doc(why)).items[0]!.why).toEqual(why)
    expect(() => parseCatalog(doc({ zh: '只有中文' }))).toThrow(/items\.0\.why\.en/)
    expect(() => parseCatalog(doc({ zh: 'x'.repeat(121), en: 'y' }))).toThrow(/items\.0\.why\.zh/)
  })

  it('an anonymous visitor of a region is told what is popular nearby; a customer with personalization off, why a reminder stays', () => {
    const s = screen()
    s.regions = new Map([['R-01', Float32Array.from([0, 0, 0, 0.9, 0, 0, 0, 0, 0, 0, 0])]])
    expect(reasonsOf(s, ctx({ customerKey: 0, variant: null, region: 'R-01', lang: 'en' })).get('svc.transfer')).toMatchObject({ kind: 'popularity', scope: 'region', code: 'popular_nearby', text: 'Popular in your area' })
    const off = reasonsOf(s, ctx({ customerKey: 0, serviceKey: 7, variant: null }))
    expect(off.get('reminder.loan_due')).toMatchObject({ kind: 'service', code: 'loan_due', text: '您的贷款还款日临近' })
  })
})
