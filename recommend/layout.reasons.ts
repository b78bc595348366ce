import type { SegmentNode, TagLeaf } from '../segments/segment.schema.js'

/**
 * What a layout tells the customer about why something is on their screen ("为什么推荐给我").
 *
 * A reason keeps its machine fields (`kind`, the tags, segment, item or scope that decided it,
 * and `detail`, an English line for engineers) and adds a `code` (a stable name of the
 * explanation, for apps that word it themselves) and a `text`: a short sentence in the
 * layout's language, written for the customer. The text never names a tag, a segment or a
 * score; a tag the table below does not know, or one that is sensitive, gets the wording of
 * its item's kind (a tip: "为保障您的资金安全"), never its name. A catalogue entry with a condition of
 * the bank's own may word it itself (`why`, zh and en): its text replaces the table's, its code
 * stays the table's, for apps that word codes themselves.
 *
 * A condition with branches (`any`) is worded, per customer, from a branch that holds for them
 * (`conditionWordings`): a family zone shown to family agents or elders tells a family agent
 * who is not elder about their family, not about senior customers.
 *
 * Reasons are built once per snapshot (layout.explain.ts) with both languages; the layout shows
 * the one it was asked for (`localizeReason`, kept per reason object).
 */

export interface Said {
  zh: string
  en: string
}

const TEXTS = {
  // From the condition of the item or module (tags of the banking pack).
  loan_due: { zh: '您的贷款还款日临近', en: 'Your loan repayment date is near' },
  loan_overdue: { zh: '您的贷款已逾期，请尽快还款', en: 'A loan of yours is overdue' },
  bill_due: { zh: '您的账单即将到期', en: 'A bill of yours is due soon' },
  birthday: { zh: '您的生日快到了', en: 'Your birthday is coming up' },
  welcome_back: { zh: '好久不见，欢迎回来', en: 'Welcome back' },
  new_customer: { zh: '欢迎您成为本行客户', en: 'Welcome to the bank' },
  new_device: { zh: '您的账户近期在新设备上登录过', en: 'Your account was recently used on a new device' },
  pension: { zh: '为您准备的养老服务', en: 'Pension services for you' },
  elder_care: { zh: '为长辈客户准备的贴心服务', en: 'Made easier for senior customers' },
  family: { zh: '方便您照顾家人', en: 'To help you look after your family' },
  wealth: { zh: '根据您在本行的资产为您推荐', en: 'Suggested for the savings you hold with us' },
  farming: { zh: '您关注的惠农服务', en: 'Farming services you follow' },
  salary: { zh: '您的工资发放到本行账户', en: 'Your salary is paid into your account with us' },
  social_security: { zh: '您常用的社保服务', en: 'Social security services you use' },
  // From the item's kind, when its tags are not in the table above.
  account_safety: { zh: '为保障您的资金安全', en: 'To help keep your money safe' },
  account_reminder: { zh: '根据您的账户情况提醒您', en: 'A reminder about your accounts' },
  your_situation: { zh: '根据您的情况为您推荐', en: 'Suggested for your situation' },
  // From the ranking.
  popular_at_bank: { zh: '本行客户常用', en: 'Popular with our customers' },
  similar_customers: { zh: '与您情况相似的客户常用', en: 'Popular with customers like you' },
  popular_nearby: { zh: '您所在地区的客户常用', en: 'Popular in your area' },
  used_together: { zh: '常用「{item}」的客户也在用', en: 'Customers who use {item} also use this' },
  bank_recommends: { zh: '本行为您推荐', en: 'Recommended by the bank' },
  bank_service: { zh: '本行为您提供的服务', en: 'A service the bank offers you' },
  something_new: { zh: '为您发现新服务', en: 'Something new you may like' },
} as const satisfies Record<string, Said>

export type ReasonCode = keyof typeof TEXTS
export const REASON_CODES = Object.keys(TEXTS) as ReasonCode[]

/**
 * Tags of the banking pack that may explain an item to its customer, in the order they win when
 * a condition reads several. Risk flags that describe no situation of the customer's own
 * (`vulnerable`, `recent_fraud_risk`) are not here on purpose: a customer is never told they were
 * flagged. Two high-sensitivity tags are (an overdue loan, a new-device sign-in): the customer
 * is told of their own situation; which keys a reason names the tag to is layout.explain.ts's.
 */
const TAG_CODES: Readonly<Record<string, ReasonCode>> = {
  loan_overdue: 'loan_overdue',
  loan_due_7d: 'loan_due',
  bill_due_3d: 'bill_due',
  birthday_7d: 'birthday',
  dormant_30d: 'welcome_back',
  new_customer_30d: 'new_customer',
  new_device_signins_7d: 'new_device',
  pension_recipient: 'pension',
  elder: 'elder_care',
  family_agent: 'family',
  aum_tier: 'wealth',
  agri_interest: 'farming',
  salary_inflow: 'salary',
  social_security_user: 'social_security',
}
const TAG_ORDER = Object.keys(TAG_CODES)

/** A value that says the tag's situation is absent (a flag off, no count, the tier `none`). */
const absent = (v: unknown) => v === false || v === 0 || v === 'none'

/** Whether a leaf, read as written, says its tag's situation holds for the customer. */
function affirms(l: TagLeaf): boolean {
  const v = l.value
  switch (l.op) {
    case 'eq':
      return !absent(v)
    case 'in':
      return Array.isArray(v) && !v.some(absent)
    case 'gt':
      return typeof v !== 'number' || v >= 0
    case 'gte':
      return typeof v !== 'number' || v > 0
    case 'between':
      return !Array.isArray(v) || typeof v[0] !== 'number' || v[0] > 0
    // ne, not_in, lt, lte, not_exists hold where the situation is absent; exists holds for a false flag too.
    default:
      return false
  }
}

/** A leaf of a condition, or its negation: the literals of its branches in disjunctive form. */
type Leaf = Exclude<SegmentNode, { all: SegmentNode[] } | { any: SegmentNode[] } | { not: SegmentNode }>
interface Literal {
  leaf: Leaf
  negated: boolean
}

/** Whether a node under `negated` is a conjunction: `all`, or `any` under a `not` (De Morgan). */
const conjunctive = (n: { all: SegmentNode[] } | { any: SegmentNode[] }, negated: boolean) => 'all' in n !== negated

/**
 * The tags a condition says hold for whoever it admits: its leaves under an even number of
 * `not`s that affirm their tag (eq, in, gt, gte, between, with no false, 0 or `none` among the
 * values), and of those under a disjunction (`any`) only the ones every branch affirms. A reason
 * is worded from these only: a condition that keeps overdue customers out
 * (`{not: {tag: loan_overdue, op: eq, value: true}}`, `op: eq, value: false`, `op: ne`) must
 * not tell a customer their loan is overdue, one that admits family agents or elders must not
 * tell every one of them they are elder; with none, the entry's kind words it.
 */
export function affirmedTags(rule: SegmentNode): string[] {
  const walk = (n: SegmentNode, negated: boolean): string[] => {
    if ('not' in n) return walk(n.not, !negated)
    if ('all' in n || 'any' in n) {
      const kids = ('all' in n ? n.all : n.any).map((c) => walk(c, negated))
      if (conjunctive(n, negated)) return [...new Set(kids.flat())]
      const [first = [], ...rest] = kids
      return first.filter((t) => rest.every((k) => k.includes(t)))
    }
    return 'tag' in n && !negated && affirms(n) ? [n.tag] : []
  }
  return walk(rule, false)
}

/** The condition in disjunctive form: its branches as lists of literals; undefined past `limit` branches. */
function branches(rule: SegmentNode, limit: number): Literal[][] | undefined {
  const walk = (n: SegmentNode, negated: boolean): Literal[][] | undefined => {
    if ('not' in n) return walk(n.not, !negated)
    if (!('all' in n || 'any' in n)) return [[{ leaf: n, negated }]]
    let out: Literal[][] = conjunctive(n, negated) ? [[]] : []
    for (const c of 'all' in n ? n.all : n.any) {
      const kid = walk(c, negated)
      if (!kid) return undefined
      out = conjunctive(n, negated) ? out.flatMap((a) => kid.map((b) => [...a, ...b])) : [...out, ...kid]
      if (out.length > limit) return undefined
    }
    return out
  }
  return walk(rule, false)
}

/** Where a code stands among those a condition may give: the table's in its order, then the kind's. */
const codeRank = (code: ReasonCode) => {
  const i = TAG_ORDER.findIndex((t) => TAG_CODES[t] === code)
  return i < 0 ? TAG_ORDER.length : i
}

/**
 * How a condition with branches is worded per customer: each code its branches give, in the
 * order they win (a customer several branches hold for gets the code `conditionCode` gives the
 * tags of them all), with the branches that give it as trees of the condition's own leaves
 * (evaluated with its checked leaves: snapshot.conditions.ts). A customer is told what a branch
 * that holds for them affirms, or their entry kind's wording when that branch affirms nothing.
 * Undefined when every branch is worded alike (`affirmedTags` words it for everyone it admits),
 * and for a condition of more than `limit` branches (the same then, the safe side: what every
 * branch affirms is true of everyone admitted).
 */
export function conditionWordings(rule: SegmentNode, kind: string, limit = 32): { code: ReasonCode; when: SegmentNode[] }[] | undefined {
  const bs = branches(rule, limit)
  if (!bs || bs.length < 2) return undefined
  const byCode = new Map<ReasonCode, SegmentNode[]>()
  for (const b of bs) {
    const affirmed = b.filter((l) => !l.negated && 'tag' in l.leaf && affirms(l.leaf)).map((l) => (l.leaf as TagLeaf).tag)
    const code = conditionCode(affirmed, kind)
    const tree: SegmentNode = { all: b.map((l) => (l.negated ? { not: l.leaf } : l.leaf)) }
    const list = byCode.get(code)
    if (list) list.push(tree)
    else byCode.set(code, [tree])
  }
  if (byCode.size < 2) return undefined
  return [...byCode].map(([code, when]) => ({ code, when })).sort((a, b) => codeRank(a.code) - codeRank(b.code))
}

/** The code of a condition affirming `tags` (affirmedTags) on an entry of this kind (a module, or an item's type). */
export function conditionCode(tags: readonly string[], kind: string): ReasonCode {
  for (const t of TAG_ORDER) if (tags.includes(t)) return TAG_CODES[t]!
  if (kind === 'tip') return 'account_safety'
  if (kind === 'reminder') return 'account_reminder'
  return 'your_situation'
}

/** The customer's sentence for a code in both languages; `item` fills `{item}` (a title). */
export function said(code: ReasonCode, item?: Said): Said {
  const t: Said = TEXTS[code]
  if (!item) return t
  return { zh: t.zh.replace('{item}', item.zh), en: t.en.replace('{item}', item.en) }
}

/** A reason as a layout carries it: the machine fields, the code, and `text` in one language. */
export type Localized<R> = R extends { say: Said } ? Omit<R, 'say'> & { text: string } : never

const localized = new WeakMap<object, { zh?: object; en?: object }>()

/**
 * The reason in the layout's language. Reasons are interned per snapshot, so this runs once per
 * reason and language; the result keeps the reason's key order with `text` last.
 */
export function localizeReason<R extends { say: Said }>(r: R, lang: 'zh' | 'en'): Localized<R> {
  let held = localized.get(r)
  if (!held) localized.set(r, (held = {}))
  let out = held[lang]
  if (!out) {
    const { say, ...rest } = r
    out = held[lang] = Object.freeze({ ...rest, text: say[lang] })
  }
  return out as Localized<R>
}
