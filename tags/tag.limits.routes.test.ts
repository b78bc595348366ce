import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { testTagDef } from '../test/fixtures.js'

/**
 * The defects of the issue over HTTP, as a bank's tools met them: deep trees and big numbers that
 * answered 500, a six-field cron and a `{{constructor}}` template that were accepted, and a run of
 * named tags that always failed ("reading 'watermark'"). Each is now a coded 4xx naming the
 * field, or works.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const nest = (n: number, wrap: (c: unknown) => unknown) => {
  let c: unknown = { tag: 'elder', op: 'eq', value: true }
  for (let i = 1; i < n; i++) c = wrap(c)
  return c
}

beforeAll(async () => {
  t = await openTestApp({ PIPELINE_RETRIES: '0' })
  bank = await tenantWithKeys(t, 'limits-bank')
  const put = (name: string, body: object) => t.app.inject({ method: 'PUT', url: `/v1/tags/${name}`, headers: auth(bank.admin), payload: body })
  expect((await put('elder', testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }, {}, ['service', 'marketing']))).statusCode).toBe(201)
  expect((await put('active_7d', testTagDef('active_7d', 'boolean', { kind: 'window', measure: 'count', days: 7, threshold: { op: 'gte', value: 1 } }))).statusCode).toBe(201)
}, 60_000)

afterAll(async () => {
  await t?.close()
})

describe('deep trees and big numbers answer 400, not 500', () => {
  it('a tag when nested 1,250 deep', async () => {
    const when = nest(1_250, (c) => ({ not: c }))
    const res = await t.app.inject({ method: 'PUT', url: '/v1/tags/deep', headers: auth(bank.admin), payload: testTagDef('deep', 'boolean', { kind: 'rule', when }) })
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [expect.objectContaining({ code: 'too_deep', field: `rule.when${'.not'.repeat(32)}` })] })
  })

  it('segment rules with all / any nested 1,400 deep, in a preview, a saved segment and a campaign audience', async () => {
    const rule = nest(1_400, (c) => ({ all: [c] }))
    const preview = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: auth(bank.admin), payload: { purpose: 'marketing', rule } })
    expect(preview.statusCode).toBe(400)
    expect(preview.json().error.issues[0]).toMatchObject({ code: 'too_deep', field: `rule${'.all.0'.repeat(10)}` })
    const saved = await t.app.inject({ method: 'PUT', url: '/v1/segments/deep', headers: auth(bank.admin), payload: { name: 'Deep', purpose: 'marketing', rule: nest(1_400, (c) => ({ any: [c] })) } })
    expect(saved.statusCode).toBe(400)
    const campaign = await t.app.inject({
      method: 'PUT', url: '/v1/push/campaigns/deep', headers: auth(bank.admin),
      payload: { name: 'Deep', purpose: 'marketing', audience: { rule }, schedule: { kind: 'cron', cron: '0 9 * * *' }, message: { body: { zh: '你好', en: 'hi' } } },
    })
    expect(campaign.statusCode).toBe(400)
  })

  it('numbers beyond ±2^53 in attribute and measure values', async () => {
    const attribute = await t.app.inject({ method: 'POST', url: '/v1/segments/preview', headers: auth(bank.admin), payload: { purpose: 'marketing', rule: { attribute: 'age', op: 'gte', value: 2 ** 53 + 2 } } })
    expect(attribute.statusCode).toBe(400)
    expect(attribute.json().error.issues[0].field).toBe('rule.value')
    const measure = await t.app.inject({
      method: 'POST', url: '/v1/segments/preview', headers: auth(bank.admin),
      payload: { purpose: 'marketing', rule: { event: { names: ['x'] }, measure: 'count', op: 'between', value: [0, 1e300], window: { lastDays: 7 } } },
    })
    expect(measure.statusCode).toBe(400)
    expect(measure.json().error.issues[0].field).toBe('rule.value.1')
  })
})

describe('accepted at save, failing at run: now refused at save', () => {
  it('a six-field cron on a tag and a saved segment', async () => {
    const tag = await t.app.inject({ method: 'PUT', url: '/v1/tags/six', headers: auth(bank.admin), payload: { ...testTagDef('six', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 1 } }), schedule: '0 0 9 * * *' } })
    expect(tag.statusCode).toBe(400)
    expect(tag.json().error.issues[0].field).toBe('schedule')
    const seg = await t.app.inject({ method: 'PUT', url: '/v1/segments/six', headers: auth(bank.admin), payload: { name: 'Six', purpose: 'marketing', rule: { tag: 'elder', op: 'eq', value: true }, schedule: '0 0 9 * * *' } })
    expect(seg.statusCode).toBe(400)
    expect(seg.json().error.issues[0].field).toBe('schedule')
  })

  it('a campaign template {{constructor}}', async () => {
    const res = await t.app.inject({
      method: 'PUT', url: '/v1/push/campaigns/proto', headers: auth(bank.admin),
      payload: { name: 'Proto', purpose: 'service', schedule: { kind: 'cron', cron: '0 9 * * *' }, message: { body: { zh: '{{constructor}}', en: '{{__proto__}}' } } },
    })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.issues.map((i: { field: string }) => i.field).sort()).toEqual(['message.body.en', 'message.body.zh'])
  })

  it('a SQL tag calling __getScalar or naming its CTE events', async () => {
    for (const sql of ["SELECT customer_key, __getScalar('x') AS value FROM $customers", 'WITH events AS (SELECT customer_key FROM $events) SELECT customer_key, 1 AS value FROM events']) {
      const res = await t.app.inject({ method: 'PUT', url: '/v1/tags/probe', headers: auth(bank.admin), payload: testTagDef('probe', 'boolean', { kind: 'sql', sql }) })
      expect(res.statusCode, sql).toBe(400)
      expect(res.json().error.issues[0].field).toBe('rule.sql')
    }
  })
})

describe('a run of named tags', () => {
  it('POST /v1/pipelines/runs {"pipeline":"tags","tags":["elder"]} works beside event tags', async () => {
    const full = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { mode: 'full', wait: true } })
    expect(full.json().status).toBe('succeeded')
    const res = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { pipeline: 'tags', tags: ['elder'], wait: true } })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ status: 'succeeded', error: '' })
  }, 60_000)
})
