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
