import type { DemoBank } from './demo.banks.js'
import { createRng, STREAM } from './demo.random.js'

/**
 * Each member bank's catalogue ("一行一面"): a shared core every bank offers, a bank-specific pick
 * of optional products, and its own local specialities in the agricultural zone. The order of
 * each list is the bank's popularity ranking, which the event generator skews views towards.
 */

export type ProductKind = 'deposit' | 'wealth' | 'loan' | 'insurance' | 'pension' | 'government' | 'payment' | 'agri'
export type LoanType = 'micro' | 'agri' | 'consumer' | 'mortgage'
export const LOAN_TYPES: readonly LoanType[] = ['micro', 'agri', 'consumer', 'mortgage']

interface Template {
  id: string
  kind: ProductKind
  category: string
  zh: string
  en: string
  core?: boolean
  risk?: number
  min?: number
  rate?: number
  /** Wealth products have subscription windows; others run open-ended. */
  windowed?: boolean
  attrs?: Record<string, string>
}

// prettier-ignore
const TEMPLATES: readonly Template[] = [
  { id: 'd-current', kind: 'deposit', category: 'demand', zh: '活期储蓄', en: 'Demand savings', core: true, rate: 0.0015 },
  { id: 'd-3m', kind: 'deposit', category: 'fixed', zh: '整存整取（三个月）', en: '3-month fixed deposit', rate: 0.0105, min: 50, attrs: { term_days: '90' } },
  { id: 'd-1y', kind: 'deposit', category: 'fixed', zh: '整存整取（一年）', en: '1-year fixed deposit', core: true, rate: 0.0145, min: 50, attrs: { term_days: '365' } },
  { id: 'd-3y', kind: 'deposit', category: 'fixed', zh: '整存整取（三年）', en: '3-year fixed deposit', rate: 0.0195, min: 50, attrs: { term_days: '1095' } },
  { id: 'd-5y', kind: 'deposit', category: 'fixed', zh: '整存整取（五年）', en: '5-year fixed deposit', rate: 0.02, min: 50, attrs: { term_days: '1825' } },
  { id: 'd-cd', kind: 'deposit', category: 'large_cd', zh: '大额存单（三年期）', en: '3-year large certificate of deposit', rate: 0.0235, min: 200000, attrs: { term_days: '1095' } },
  { id: 'd-plan', kind: 'deposit', category: 'fixed', zh: '零存整取', en: 'Monthly savings plan', rate: 0.0125, min: 5 },
  { id: 'd-huinong', kind: 'deposit', category: 'fixed', zh: '惠农存', en: 'Farmer savings', rate: 0.016, min: 1000, attrs: { audience: 'farmer' } },
  { id: 'd-elder', kind: 'deposit', category: 'fixed', zh: '安享养老储蓄', en: 'Retirement savings', rate: 0.021, min: 1000, attrs: { audience: 'elder' } },
  { id: 'w-cash', kind: 'wealth', category: 'cash_management', zh: '现金宝', en: 'Cash manager', core: true, risk: 1, rate: 0.019, min: 1 },
  { id: 'w-90', kind: 'wealth', category: 'fixed_income', zh: '稳盈90天', en: 'Steady 90-day', core: true, risk: 2, rate: 0.026, min: 10000, windowed: true, attrs: { term_days: '90' } },
  { id: 'w-180', kind: 'wealth', category: 'fixed_income', zh: '稳盈180天', en: 'Steady 180-day', risk: 2, rate: 0.028, min: 10000, windowed: true, attrs: { term_days: '180' } },
  { id: 'w-1y', kind: 'wealth', category: 'fixed_income_plus', zh: '固收增强一年期', en: 'Enhanced fixed income 1-year', risk: 3, rate: 0.032, min: 10000, windowed: true, attrs: { term_days: '365' } },
  { id: 'w-mix', kind: 'wealth', category: 'mixed', zh: '灵活配置混合', en: 'Flexible mixed allocation', risk: 3, rate: 0.035, min: 10000, windowed: true },
  { id: 'w-equity', kind: 'wealth', category: 'equity', zh: '权益精选', en: 'Equity select', risk: 4, rate: 0.05, min: 50000, windowed: true },
  { id: 'w-index', kind: 'wealth', category: 'equity', zh: '指数增强', en: 'Enhanced index', risk: 5, rate: 0.06, min: 100000, windowed: true },
  { id: 'w-elder', kind: 'wealth', category: 'fixed_income', zh: '长者安享理财', en: 'Senior steady income', risk: 2, rate: 0.03, min: 10000, windowed: true, attrs: { audience: 'elder' } },
  { id: 'w-green', kind: 'wealth', category: 'theme', zh: '绿色发展主题', en: 'Green development theme', risk: 3, rate: 0.034, min: 10000, windowed: true },
  { id: 'l-credit', kind: 'loan', category: 'micro', zh: '丰福信用贷', en: 'Fengfu credit micro-loan', core: true, rate: 0.055, min: 10000, attrs: { loan_type: 'micro', series: '丰福', max_amount: '300000' } },
  { id: 'l-business', kind: 'loan', category: 'micro', zh: '丰福经营贷', en: 'Fengfu small business loan', rate: 0.05, min: 20000, attrs: { loan_type: 'micro', series: '丰福', max_amount: '500000' } },
  { id: 'l-farm', kind: 'loan', category: 'agri', zh: '惠农快贷', en: 'Quick farm loan', core: true, rate: 0.048, min: 10000, attrs: { loan_type: 'agri', max_amount: '500000' } },
  { id: 'l-breeding', kind: 'loan', category: 'agri', zh: '种养殖贷', en: 'Crop and livestock loan', rate: 0.045, min: 20000, attrs: { loan_type: 'agri', max_amount: '800000' } },
  { id: 'l-consumer', kind: 'loan', category: 'consumer', zh: '乐享消费贷', en: 'Consumer loan', core: true, rate: 0.068, min: 5000, attrs: { loan_type: 'consumer', max_amount: '200000' } },
  { id: 'l-car', kind: 'loan', category: 'consumer', zh: '安车贷', en: 'Car loan', rate: 0.058, min: 30000, attrs: { loan_type: 'consumer', max_amount: '300000' } },
  { id: 'l-home', kind: 'loan', category: 'mortgage', zh: '安居按揭贷', en: 'Home mortgage', core: true, rate: 0.039, min: 150000, attrs: { loan_type: 'mortgage' } },
  { id: 'l-build', kind: 'loan', category: 'mortgage', zh: '农房建设贷', en: 'Rural house building loan', rate: 0.042, min: 100000, attrs: { loan_type: 'mortgage' } },
  { id: 'i-accident', kind: 'insurance', category: 'accident', zh: '综合意外险', en: 'Personal accident cover', core: true, min: 50 },
  { id: 'i-medical', kind: 'insurance', category: 'health', zh: '百万医疗险', en: 'Million-yuan medical cover', min: 200 },
  { id: 'i-crop', kind: 'insurance', category: 'agri', zh: '农业种植保险', en: 'Crop insurance', min: 30, attrs: { audience: 'farmer' } },
  { id: 'i-senior', kind: 'insurance', category: 'health', zh: '银发关爱险', en: 'Senior care cover', min: 100, attrs: { audience: 'elder' } },
  { id: 'p-collect', kind: 'pension', category: 'service', zh: '养老金领取', en: 'Pension collection', core: true, attrs: { audience: 'elder' } },
  { id: 'p-private', kind: 'pension', category: 'private_pension', zh: '个人养老金账户', en: 'Private pension account', rate: 0.02, min: 1 },
  { id: 'p-wealth', kind: 'pension', category: 'pension_wealth', zh: '养老理财', en: 'Pension wealth product', risk: 2, rate: 0.031, min: 1000, windowed: true },
  { id: 'p-care', kind: 'pension', category: 'service', zh: '长者关爱服务', en: 'Senior care services', attrs: { audience: 'elder' } },
  { id: 'g-card', kind: 'government', category: 'social_security', zh: '社保卡服务', en: 'Social security card services', core: true },
  { id: 'g-records', kind: 'government', category: 'social_security', zh: '社保查询', en: 'Social security records', core: true },
  { id: 'g-medical', kind: 'government', category: 'medical_insurance', zh: '城乡居民医保缴费', en: 'Rural medical insurance payment', core: true },
  { id: 'g-pension', kind: 'government', category: 'social_security', zh: '城乡居民养老保险缴费', en: 'Rural pension contribution' },
  { id: 'g-fund', kind: 'government', category: 'housing_fund', zh: '公积金查询', en: 'Housing fund enquiry' },
  { id: 'g-queue', kind: 'government', category: 'appointment', zh: '网点预约取号', en: 'Branch appointment' },
  { id: 'g-subsidy', kind: 'government', category: 'subsidy', zh: '惠农补贴查询', en: 'Farm subsidy enquiry', attrs: { audience: 'farmer' } },
  { id: 'g-receipt', kind: 'government', category: 'paperless', zh: '电子回单', en: 'E-receipts' },
  { id: 'b-electricity', kind: 'payment', category: 'utility', zh: '电费缴纳', en: 'Electricity bill', core: true, attrs: { biller: 'electricity' } },
  { id: 'b-water', kind: 'payment', category: 'utility', zh: '水费缴纳', en: 'Water bill', core: true, attrs: { biller: 'water' } },
  { id: 'b-gas', kind: 'payment', category: 'utility', zh: '燃气费缴纳', en: 'Gas bill', attrs: { biller: 'gas' } },
  { id: 'b-telecom', kind: 'payment', category: 'telecom', zh: '话费充值', en: 'Mobile top-up', core: true, attrs: { biller: 'telecom' } },
  { id: 'b-tv', kind: 'payment', category: 'utility', zh: '有线电视费', en: 'Cable TV bill', attrs: { biller: 'tv' } },
  { id: 'b-property', kind: 'payment', category: 'utility', zh: '物业费', en: 'Property fee', attrs: { biller: 'property' } },
  { id: 'a-fertilizer', kind: 'agri', category: 'supplies', zh: '复合肥', en: 'Compound fertilizer', core: true, min: 120 },
  { id: 'a-seed', kind: 'agri', category: 'supplies', zh: '优质稻种', en: 'Rice seed', min: 45 },
  { id: 'a-tools', kind: 'agri', category: 'supplies', zh: '小型农机具', en: 'Small farm tools', min: 260 },
  { id: 'a-feed', kind: 'agri', category: 'supplies', zh: '畜禽饲料', en: 'Livestock feed', min: 95 },
]

export interface ProductRow {
  product_id: string
  kind: ProductKind
  name_zh: string
  name_en: string
  category: string
  risk_level: number
  min_amount: string
  annual_rate: number
  valid_from: string
  valid_to: string
  attributes: Record<string, string>
  status: 'active' | 'inactive'
}

export interface Catalogue {
  rows: ProductRow[]
  /** Product ids by kind, most popular first. */
  byKind: Record<ProductKind, string[]>
  /** Loan products by loan type (micro, agri, consumer, mortgage), most popular first, and their rates. */
  loans: { ids: string[][]; rates: number[][] }
}

const OPEN_ENDED = '2099-12-31'
const DAY = 86_400_000

/** Builds one bank's catalogue; `today` is the bank's local date (YYYY-MM-DD). */
export function buildCatalogue(bank: DemoBank, seed: number, today: string): Catalogue {
  const rng = createRng(seed, STREAM.catalogue(bank.index))
  const todayMs = Date.parse(`${today}T00:00:00Z`)
  const date = (offsetDays: number) => new Date(todayMs + offsetDays * DAY).toISOString().slice(0, 10)

  const core = TEMPLATES.filter((t) => t.core)
  const optional = shuffle(TEMPLATES.filter((t) => !t.core), rng.float)
  const local: Template[] = bank.specialities.map((s, i) => ({
    id: `a-local${i + 1}`,
    kind: 'agri',
    category: 'local_speciality',
    zh: s.zh,
    en: s.en,
    min: s.price,
    attrs: { origin: bank.regions[i % bank.regions.length]!.name, zone: 'supply_and_marketing' },
  }))
  // 17 core + 3 local + 7..17 optional: 27..37 products per bank.
  const chosen = [...core, ...local, ...optional.slice(0, rng.int(7, 17))]

  const rows: ProductRow[] = shuffle(chosen, rng.float).map((t) => {
    let from = date(-rng.int(200, 2000))
    let to = OPEN_ENDED
    let status: ProductRow['status'] = 'active'
    if (t.windowed) {
      // Subscription windows: most open now, some opening within the week (the "wealth product
      // opening" reminder), some just closed.
      const phase = rng.weighted([['open', 6], ['soon', 3], ['closed', 2]] as const)
      const start = phase === 'open' ? -rng.int(1, 20) : phase === 'soon' ? rng.int(1, 7) : -rng.int(30, 60)
      from = date(start)
      to = date(start + (phase === 'closed' ? rng.int(7, 20) : rng.int(10, 30)))
      if (phase === 'closed') status = 'inactive'
    }
    const rate = t.rate === undefined ? 0 : Math.round(t.rate * (0.95 + rng.float() * 0.1) * 10000) / 10000
    return {
      product_id: `${bank.code}-${t.id}`,
      kind: t.kind,
      name_zh: t.zh,
      name_en: t.en,
      category: t.category,
      risk_level: t.risk ?? 0,
      min_amount: (t.min ?? 0).toFixed(2),
      annual_rate: rate,
      valid_from: from,
      valid_to: to,
      attributes: { channel: 'app', ...(t.attrs ?? {}) },
      status,
    }
  })

  const byKind = Object.fromEntries(
    (['deposit', 'wealth', 'loan', 'insurance', 'pension', 'government', 'payment', 'agri'] as const).map((k) => [
      k,
      rows.filter((r) => r.kind === k).map((r) => r.product_id),
    ]),
  ) as Record<ProductKind, string[]>
  const loanRows = LOAN_TYPES.map((lt) => rows.filter((r) => r.attributes.loan_type === lt))
  return {
    rows,
    byKind,
    loans: { ids: loanRows.map((rs) => rs.map((r) => r.product_id)), rates: loanRows.map((rs) => rs.map((r) => r.annual_rate)) },
  }
}

function shuffle<T>(items: readonly T[], float: () => number): T[] {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(float() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}
