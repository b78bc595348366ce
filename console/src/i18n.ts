import { cronSentence } from './describe.js'
import { en } from './words.en.js'
import { zh } from './words.zh.js'

/**
 * The console in Chinese (the default: the member banks' marketers) or English. The Chinese
 * table is typed by the English one, so a word missing in either fails the build.
 */

export type Key = keyof typeof en

const OPS: Record<'zh' | 'en', Record<string, string>> = {
  en: { eq: '=', ne: '≠', gt: '>', gte: '≥', lt: '<', lte: '≤', between: 'between', in: 'is any of', not_in: 'is none of', exists: 'has a value', not_exists: 'has no value' },
  zh: { eq: '等于', ne: '不等于', gt: '>', gte: '≥', lt: '<', lte: '≤', between: '介于', in: '属于', not_in: '不属于', exists: '有值', not_exists: '无值' },
}

const LANG = 'qianmian.lang'
let current: 'zh' | 'en' = localStorage.getItem(LANG) === 'en' ? 'en' : 'zh'

export const lang = () => current
export function setLang(l: 'zh' | 'en') {
  current = l
  localStorage.setItem(LANG, l)
}

export function t(key: Key): string {
  return (current === 'zh' ? zh : en)[key]
}

/** For keys made from API values (a reason, a kind): the value itself when the console has no word for it. */
export function tOr(key: string, fallback: string): string {
  return (current === 'zh' ? zh : en)[key as Key] ?? fallback
}

export const opLabel = (op: string) => OPS[current][op] ?? op

/** A word with `{name}` slots filled. */
export function tf(key: Key, vars: Record<string, string | number>): string {
  return t(key).replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m))
}

/** A tag's value as marketers say it: yes/no, or the dictionary's word for a category of the banking pack. */
export function valueLabel(tag: string, value: string): string {
  if (value === 'true') return t('yes')
  if (value === 'false') return t('no')
  return tOr(`val_${tag}_${value}`, value)
}

/** Whether the dictionary has a word for the value; if not, the value is shown as data, as it is. */
export const hasValueLabel = (tag: string, value: string) => value === 'true' || value === 'false' || `val_${tag}_${value}` in en

/** A five-field cron as a sentence ("每天 10:00", "工作日 09:30"); null for one it cannot say plainly, shown as written. */
export const describeCron = (cron: string): string | null => cronSentence(cron, current)

const PURPOSES = ['marketing', 'service', 'risk', 'security'] as const
const purposeWord = (p: string) => ((PURPOSES as readonly string[]).includes(p) ? t(`purpose_${p as (typeof PURPOSES)[number]}`) : p)

/**
 * An API issue in the console's language. The API words its issues in English; those a marketer
 * meets while building (a tag refused for the purpose, an unknown tag) are said in Chinese with
 * the tag named, others by a plain "not accepted" with the API's words kept for the tooltip.
 */
export function issueText(message: string): { tag?: string; text: string } {
  if (current === 'en') return { text: message }
  let m = /^tag (\S+) may be used for (.+), not for a (\w+) segment$/.exec(message)
  if (m) return { tag: m[1]!, text: tf('issueTagPurpose', { purposes: m[2]!.split(', ').map(purposeWord).join('、'), purpose: purposeWord(m[3]!) }) }
  m = /^tag (\S+) is not defined$/.exec(message)
  if (m) return { tag: m[1]!, text: t('issueTagUnknown') }
  m = /^the weights add up to (\d+), not 100$/.exec(message)
  if (m) return { text: tf('issueSplitSum', { sum: m[1]! }) }
  return /[\u4e00-\u9fff]/.test(message) ? { text: message } : { text: t('issueInvalid') }
}
