import { describe, expect, it } from 'vitest'
import { cronSentence, describeTag, partsText, type Lang } from './describe.js'

const ctx = (lang: Lang) => ({ lang, tagLabel: (n: string) => ({ age: lang === 'zh' ? '年龄（周岁）' : 'Age', rfm_r: lang === 'zh' ? '最近交易分' : 'Recency' })[n] })
const say = (rule: Record<string, unknown>, lang: Lang = 'zh', name = 't', type = 'boolean') => partsText(describeTag({ name, type, rule }, ctx(lang)))

describe('schedules as sentences', () => {
  it('says the common crons in Chinese and English', () => {
    expect(cronSentence('0 9 * * *', 'zh')).toBe('每天 09:00')
    expect(cronSentence('0 9 * * *', 'en')).toBe('daily at 09:00')
    expect(cronSentence('30 9 * * 1-5', 'zh')).toBe('工作日 09:30')
    expect(cronSentence('0 10 * * 6', 'zh')).toBe('每周六 10:00')
    expect(cronSentence('0 10 * * 1,3', 'zh')).toBe('每周一、周三 10:00')
    expect(cronSentence('0 10 1,15 * *', 'zh')).toBe('每月 1、15 日 10:00')
    expect(cronSentence('0 8,20 * * *', 'zh')).toBe('每天 08:00、20:00')
    expect(cronSentence('15 * * * *', 'zh')).toBe('每小时第 15 分')
    expect(cronSentence('*/10 * * * *', 'en')).toBe('every 10 minutes')
    expect(cronSentence('0 */6 * * *', 'zh')).toBe('每 6 小时（第 0 分）')
    expect(cronSentence('0 9-17 * * 1-5', 'zh')).toBe('工作日 09:00 至 17:00 每小时')
    expect(cronSentence('0 10 1 3 *', 'zh')).toBe('每年 3 月 1 日 10:00')
  })

  it('leaves what it cannot say plainly to the cron itself', () => {
    expect(cronSentence('0 10 1 * 1', 'zh')).toBeNull()
    expect(cronSentence('5-10 * * * *', 'zh')).toBeNull()
    expect(cronSentence('0 10 * *', 'zh')).toBeNull()
  })
})

describe('tag definitions as sentences', () => {
  it('a behaviour window with a threshold reads as the marketer says it', () => {
    expect(say({ kind: 'window', events: ['signed_in'], measure: 'count', days: 30, threshold: { op: 'gte', value: 3 } })).toBe('近30天登录≥3次')
    expect(say({ kind: 'window', events: ['signed_in'], measure: 'count', days: 30, threshold: { op: 'gte', value: 3 } }, 'en')).toBe('number of sign-ins in the last 30 days ≥3 times')
    expect(say({ kind: 'window', events: ['transfer_completed', 'bill_paid'], measure: 'sum', property: 'amount', days: 30 }, 'zh', 't', 'number')).toBe('近30天转账、缴费的金额合计')
    expect(say({ kind: 'window', events: ['wealth'], eventTypes: ['screen'], measure: 'count', days: 90, offsetDays: 30 }, 'zh', 't', 'number')).toBe('120天前至30天前浏览理财的次数')
    expect(say({ kind: 'window', events: ['bill_paid'], where: [{ property: 'for_family', op: 'eq', value: true }], measure: 'count', days: 90 }, 'zh', 't', 'number')).toBe('近90天缴费（其中为家人代缴）的次数')
  })

  it('rules over features and tags, with and/or, categories and yes/no', () => {
    expect(say({ kind: 'rule', when: { any: [{ tag: 'age', op: 'gte', value: 60 }, { feature: 'elder_mode_chosen', op: 'eq', value: true }] } })).toBe('年龄（周岁） ≥ 60，或选择了长辈版')
    expect(say({ kind: 'rule', when: { feature: 'days_to_birthday', op: 'between', value: [0, 6] } })).toBe('距生日天数 介于 0 与 6 之间')
    expect(say({ kind: 'rule', cases: [{ when: { feature: 'aum', op: 'gte', value: 500000 }, value: 'high_net_worth' }, { when: { feature: 'aum', op: 'gt', value: 0 }, value: 'mass' }], else: 'none' }, 'zh', 'aum_tier', 'enum')).toMatch(/^AUM（元） ≥ 500,000 时为 \S+；AUM（元） > 0 时为 \S+；否则为 \S+$/)
    expect(say({ kind: 'rule', from: { feature: 'age' } }, 'zh', 'age', 'number')).toBe('取自年龄')
    expect(say({ kind: 'rule', when: { not: { feature: 'some_new_feature', op: 'gt', value: 1 } } })).toBe('非some_new_feature > 1')
  })

  it('scores, lifecycle and SQL', () => {
    expect(say({ kind: 'score', method: 'quantile', input: { tag: 'rfm_r' }, buckets: 5 }, 'zh', 't', 'number')).toBe('按在本行客户中的排名分为 5 档（越高越好）：最近交易分')
    expect(say({ kind: 'score', method: 'weighted', inputs: [{ input: { tag: 'age' }, weight: 3 }, { input: { feature: 'aum' }, weight: 1 }] }, 'zh', 't', 'number')).toBe('按排名加权的 0–100 分：年龄（周岁） ×3、AUM（元） ×1')
    expect(say({ kind: 'lifecycle', newDays: 30, activeDays: 30, dormantDays: 60, churnDays: 180 }, 'zh', 'lifecycle', 'enum')).toContain('180 天无行为为流失')
    expect(say({ kind: 'sql', sql: 'SELECT 1' }, 'zh', 't', 'number')).toContain('SQL')
  })
})
