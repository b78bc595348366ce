import { en } from './words.en.js'
import { zh } from './words.zh.js'

/**
 * Tag definitions and schedules as sentences a marketer reads ("近30天登录≥3次", "每天 09:00")
 * instead of JSON and cron strings. Pure: the language and the names of other tags are passed
 * in. A sentence is a list of parts: text, and identifiers (an event, a property, a value the
 * dictionary has no word for) that the page shows as written, marked untranslated.
 */

export type Lang = 'zh' | 'en'
export type Part = string | { id: string }
type Words = typeof en

const WORDS: Record<Lang, Words> = { zh, en }
const WEEKDAYS: Record<Lang, string[]> = { zh: ['周日', '周一', '周二', '周三', '周四', '周五', '周六'], en: ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] }
const SEP: Record<Lang, string> = { zh: '、', en: ', ' }

const fill = (s: string, vars: Record<string, string | number>) => s.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m))
const word = (l: Lang, key: string): string | undefined => (WORDS[l] as Record<string, string>)[key]
const w = (l: Lang, key: keyof Words, vars: Record<string, string | number> = {}) => fill(WORDS[l][key], vars)

// --- schedules -------------------------------------------------------------------------------

const NUM = /^\d{1,2}$/
const nums = (f: string): number[] | null => (f.split(',').every((x) => NUM.test(x)) ? f.split(',').map(Number) : null)
const hhmm = (h: number, m: number) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`

/** The days a cron runs on, as words; null when the console cannot say it plainly. */
function daysOf(dom: string, month: string, dow: string, l: Lang): string | null {
  if (month !== '*') {
    const ms = nums(month)
    const d = nums(dom)
    if (!ms || !d || dow !== '*') return null
    return w(l, 'cronYearly', { months: ms.join(SEP[l]), dom: d.join(SEP[l]) })
  }
  if (dom === '*' && dow === '*') return w(l, 'cronEveryDay')
  if (dom !== '*' && dow !== '*') return null
  if (dom !== '*') {
    const d = nums(dom)
    return d ? w(l, 'cronDaysOfMonth', { dom: d.join(SEP[l]) }) : null
  }
  if (dow === '1-5') return w(l, 'cronWeekdayDays')
  if (dow === '0,6' || dow === '6,0' || dow === '6-7') return w(l, 'cronWeekendDays')
  const range = /^([0-7])-([0-7])$/.exec(dow)
  if (range) return w(l, 'cronDayRange', { from: WEEKDAYS[l][Number(range[1]) % 7]!, to: WEEKDAYS[l][Number(range[2]) % 7]! })
  const d = nums(dow)
  return d && d.every((x) => x <= 7) ? w(l, 'cronOnWeekdays', { days: d.map((x) => WEEKDAYS[l][x % 7]!).join(SEP[l]) }) : null
}

/** The times of day a cron runs at, as words; null when the console cannot say it plainly. */
function timesOf(minute: string, hour: string, l: Lang): { text: string; daily: boolean } | null {
  const every = /^\*\/(\d{1,2})$/.exec(minute)
  if (every && hour === '*') return { text: w(l, 'cronEveryMinutes', { n: every[1]! }), daily: false }
  const ms = nums(minute)
  if (!ms || ms.length !== 1) return null
  const m = ms[0]!
  if (hour === '*') return { text: w(l, 'cronHourly', { m }), daily: false }
  const step = /^\*\/(\d{1,2})$/.exec(hour)
  if (step) return { text: w(l, 'cronEveryHours', { n: step[1]!, m }), daily: false }
  const span = /^(\d{1,2})-(\d{1,2})$/.exec(hour)
  if (span) return { text: w(l, 'cronHourSpan', { from: hhmm(Number(span[1]), m), to: hhmm(Number(span[2]), m) }), daily: false }
  const hs = nums(hour)
  return hs ? { text: hs.map((x) => hhmm(x, m)).join(SEP[l]), daily: true } : null
}

/** A five-field cron as a sentence ("每天 09:00", "工作日 09:30", "每月 1日 10:00"); null for one it cannot say plainly. */
export function cronSentence(cron: string, l: Lang): string | null {
  const f = cron.trim().split(/\s+/)
  if (f.length !== 5) return null
  const [minute, hour, dom, month, dow] = f as [string, string, string, string, string]
  const days = daysOf(dom, month, dow, l)
  const times = timesOf(minute, hour, l)
  if (!days || !times) return null
  if (!times.daily && dom === '*' && month === '*' && dow === '*') return times.text
  return w(l, 'cronAt', { days, times: times.text })
}

// --- tag definitions -------------------------------------------------------------------------

type Cond = { all: Cond[] } | { any: Cond[] } | { not: Cond } | { feature?: string; tag?: string; op: string; value?: unknown }
type Operand = { feature?: string; tag?: string }
interface Def {
  name: string
  type: string
  rule: Record<string, unknown>
}

export interface DescribeCtx {
  lang: Lang
  /** A tag's name in the console's language (its description), when the catalogue has it. */
  tagLabel: (name: string) => string | undefined
}

const OPS: Record<Lang, Record<string, string>> = {
  zh: { eq: '=', ne: '≠', gt: '>', gte: '≥', lt: '<', lte: '≤', in: '属于', not_in: '不属于', contains: '包含', exists: '有值', not_exists: '无值', between: '介于' },
  en: { eq: '=', ne: '≠', gt: '>', gte: '≥', lt: '<', lte: '≤', in: 'is any of', not_in: 'is none of', contains: 'includes', exists: 'has a value', not_exists: 'has no value', between: 'between' },
}

function operand(o: Operand, c: DescribeCtx): Part {
  if (o.tag) return c.tagLabel(o.tag) ?? { id: o.tag }
  const f = o.feature ?? ''
  return word(c.lang, `feat_${f}`) ?? { id: f }
}

/** A value as words: yes/no, a number with separators, a category's word when the dictionary has one. */
function value(v: unknown, c: DescribeCtx, of?: Operand): Part {
  if (v === true) return w(c.lang, 'yes')
  if (v === false) return w(c.lang, 'no')
  if (typeof v === 'number') return v.toLocaleString('en-US')
  const s = String(v)
  return (of?.tag && word(c.lang, `val_${of.tag}_${s}`)) || word(c.lang, `val_${of?.feature ?? ''}_${s}`) || { id: s }
}

function values(v: unknown, c: DescribeCtx, of?: Operand): Part[] {
  const list = Array.isArray(v) ? v : [v]
  return list.flatMap((x, i) => (i ? [SEP[c.lang], value(x, c, of)] : [value(x, c, of)]))
}

function comparison(subject: Part[], op: string, v: unknown, c: DescribeCtx, of?: Operand): Part[] {
  if (op === 'exists' || op === 'not_exists') return [...subject, ` ${OPS[c.lang][op]}`]
  // A yes/no condition reads as the fact itself ("选择了长辈版"), or its negation.
  if ((op === 'eq' && v === true) || (op === 'ne' && v === false)) return subject
  if ((op === 'eq' && v === false) || (op === 'ne' && v === true)) return [w(c.lang, 'descNot'), ...subject]
  if (op === 'between' && Array.isArray(v)) return [...subject, ` ${w(c.lang, 'descBetween', { lo: String(v[0]), hi: String(v[1]) })}`]
  return [...subject, ` ${OPS[c.lang][op] ?? op} `, ...values(v, c, of)]
}

export function condition(x: Cond, c: DescribeCtx, nested = false): Part[] {
  if ('all' in x || 'any' in x) {
    const list = 'all' in x ? x.all : x.any
    const joiner = w(c.lang, 'all' in x ? 'descAnd' : 'descOr')
    const parts = list.flatMap((y, i) => (i ? [joiner, ...condition(y, c, true)] : condition(y, c, true)))
    return nested && list.length > 1 ? ['（', ...parts, '）'] : parts
  }
  if ('not' in x) return [w(c.lang, 'descNot'), ...condition(x.not, c, true)]
  const of: Operand = x.tag ? { tag: x.tag } : { feature: x.feature ?? '' }
  return comparison([operand(of, c)], x.op, x.value, c, of)
}

function events(r: Record<string, unknown>, c: DescribeCtx): Part[] {
  const names = (r.events as string[] | undefined) ?? []
  const screens = Array.isArray(r.eventTypes) && r.eventTypes.length === 1 && r.eventTypes[0] === 'screen'
  if (!names.length) return [w(c.lang, screens ? 'descAnyScreen' : 'descAnyEvent')]
  const named = names.flatMap((n, i): Part[] => [i ? SEP[c.lang] : '', word(c.lang, `${screens ? 'screen' : 'event'}_${n}`) ?? { id: n }])
  return screens ? [w(c.lang, 'descScreen'), ...named] : named
}

function where(r: Record<string, unknown>, c: DescribeCtx): Part[] {
  const filters = (r.where as { property: string; op: string; value?: unknown }[] | undefined) ?? []
  if (!filters.length) return []
  const parts = filters.flatMap((f, i) => [i ? w(c.lang, 'descAnd') : '', ...comparison([word(c.lang, `prop_${f.property}`) ?? { id: f.property }], f.op, f.value, c)])
  return ['（', w(c.lang, 'descWhere'), ...parts, '）']
}

function windowRule(r: Record<string, unknown>, c: DescribeCtx): Part[] {
  const days = Number(r.days)
  const offset = Number(r.offsetDays ?? 0)
  const span = offset ? w(c.lang, 'descDaysAgo', { from: offset + days, to: offset }) : w(c.lang, 'descLastDays', { n: days })
  const prop: Part = word(c.lang, `prop_${String(r.property ?? '')}`) ?? { id: String(r.property ?? '') }
  const measure = String(r.measure)
  const what: Part[] =
    measure === 'count'
      ? [w(c.lang, 'descCount')]
      : measure === 'sum'
        ? [prop, w(c.lang, 'descSum')]
        : measure === 'distinct'
          ? [w(c.lang, 'descDistinct'), prop]
          : [w(c.lang, `desc_${measure}` as keyof Words)]
  const t = r.threshold as { op: string; value: number } | undefined
  const unit = measure === 'count' ? w(c.lang, 'descTimes') : measure === 'days' ? w(c.lang, 'descDayUnit') : ''
  const tail: Part[] = t ? [`${OPS[c.lang][t.op] ?? t.op}${t.value.toLocaleString('en-US')}${unit}`] : []
  return c.lang === 'zh' ? [span, ...events(r, c), ...where(r, c), ...(t ? [] : [w(c.lang, 'descOf')]), ...(t && measure === 'count' ? [] : what), ...tail] : [...what, ' ', w(c.lang, 'descOf'), ' ', ...events(r, c), ...where(r, c), ' ', span, ...(t ? [' ', ...tail] : [])]
}

/** A tag's definition as a sentence (or a few, for the cases of a category). */
export function describeTag(d: Def, c: DescribeCtx): Part[] {
  const r = d.rule
  switch (r.kind) {
    case 'rule': {
      if (Array.isArray(r.cases)) {
        const cases = (r.cases as { when: Cond; value: string }[]).flatMap((k, i) => [i ? w(c.lang, 'descSemicolon') : '', ...condition(k.when, c), w(c.lang, 'descThen'), value(k.value, c, { tag: d.name })])
        return [...cases, ...(r.else ? [w(c.lang, 'descSemicolon'), w(c.lang, 'descElse'), value(r.else, c, { tag: d.name })] : [])]
      }
      if (r.from) return [w(c.lang, 'descFrom'), operand(r.from as Operand, c), ...(r.when ? [w(c.lang, 'descWhen'), ...condition(r.when as Cond, c)] : [])]
      return r.when ? condition(r.when as Cond, c) : []
    }
    case 'window':
      return windowRule(r, c)
    case 'score': {
      if (r.method === 'quantile') return [w(c.lang, r.descending ? 'descQuantileLow' : 'descQuantile', { n: Number(r.buckets ?? 5) }), operand(r.input as Operand, c)]
      const inputs = (r.inputs as { input: Operand; weight: number }[]).flatMap((x, i) => [i ? SEP[c.lang] : '', operand(x.input, c), ` ×${x.weight}`])
      return [w(c.lang, 'descWeighted'), ...inputs]
    }
    case 'lifecycle':
      return [w(c.lang, 'descLifecycle', { newDays: Number(r.newDays ?? 30), activeDays: Number(r.activeDays ?? 30), dormantDays: Number(r.dormantDays ?? 60), churnDays: Number(r.churnDays ?? 180) })]
    case 'sql':
      return [w(c.lang, 'descSql')]
    default:
      return []
  }
}

/** The parts as plain text (identifiers as written), for tests and tooltips. */
export const partsText = (parts: Part[]) => parts.map((p) => (typeof p === 'string' ? p : p.id)).join('')
