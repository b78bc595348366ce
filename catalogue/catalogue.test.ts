import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { declaredClass, type Catalogue } from './catalogue.service.js'

let t: TestApp
beforeAll(async () => {
  t = await openTestApp()
})
afterAll(async () => t?.close())

describe('the data catalogue', () => {
  it('reads a class from a column comment', () => {
    expect(declaredClass('C2: HMAC-SHA256 of the mobile number')).toBe('C2')
    expect(declaredClass('C1')).toBe('C1')
    expect(declaredClass('event time, corrected for client clock skew')).toBeUndefined()
    expect(declaredClass('C12 is not a class')).toBeUndefined()
  })

  it('lists every column of the stored tables with its class, and the traits and tags this bank holds', async () => {
    const k = await tenantWithKeys(t, 'cat-a')
    const other = await tenantWithKeys(t, 'cat-b')
    const identify = (key: string, traits: Record<string, string>) =>
      t.app.inject({ method: 'POST', url: '/v1/identify', headers: { authorization: `Bearer ${key}` }, payload: { userId: 'C1', traits } })
    expect((await identify(k.write, { tel: '13812345678', nickname: '小王' })).statusCode).toBe(200)
    expect((await identify(other.write, { only_in_b: 'x' })).statusCode).toBe(200)
    const tag = (sensitivity: string) => ({ type: 'boolean', description: { zh: '长辈', en: 'elder' }, owner: 'qa', purpose: ['service'], sensitivity, rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } })
    for (const [name, s] of [['elder_low', 'low'], ['elder_high', 'high']] as const) {
      const put = await t.app.inject({ method: 'PUT', url: `/v1/tags/${name}`, headers: { authorization: `Bearer ${k.admin}` }, payload: tag(s) })
      expect(put.statusCode, put.body).toBe(201)
    }
    const res = await t.app.inject({ url: '/v1/data-catalogue', headers: { authorization: `Bearer ${k.read}` } })
    expect(res.statusCode).toBe(200)
    const c = res.json() as Catalogue
    const col = (table: string, column: string) => c.columns.find((x) => x.table === table && x.column === column)
    expect(col('customers', 'phone_hash')).toMatchObject({ class: 'C2', declared: true })
    expect(col('customers', 'birth_date')).toMatchObject({ class: 'C2', declared: true })
    expect(col('accounts', 'balance')).toMatchObject({ class: 'C2' })
    expect(col('customers', 'gender')).toMatchObject({ class: 'C1', declared: true })
    expect(col('events', 'timestamp')).toMatchObject({ class: 'C1', declared: false })
    expect(col('tenant_privacy', 'events_days')).toMatchObject({ class: 'C1', declared: true })
    for (const table of ['customers', 'events', 'customer_traits', 'tag_values', 'push_outcomes', 'layout_exposures']) {
      expect(c.columns.some((x) => x.table === table), table).toBe(true)
    }
    // No column anywhere declares C3: it is never stored.
    expect(c.columns.filter((x) => /^C3\b/.test(x.comment))).toEqual([])
    // tel held a mobile number: found by value, stored as a digest, C2.
    expect(c.traits).toEqual([
      { name: 'nickname', class: 'C1', stored: 'plain' },
      { name: 'tel', class: 'C2', stored: 'digest' },
    ])
    expect(c.tags).toEqual([
      { name: 'elder_high', class: 'C2', sensitivity: 'high' },
      { name: 'elder_low', class: 'C1', sensitivity: 'low' },
    ])
    expect((await t.app.inject({ url: '/v1/data-catalogue', headers: { authorization: `Bearer ${k.write}` } })).statusCode).toBe(403)
  })
})
