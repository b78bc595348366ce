import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chDateTime } from '../core/time.js'
import { issueKey, openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * High-sensitivity tags (risk flags) are usable only by keys with personal:read (README, roles),
 * route by route: every route that takes a tag from the caller for a rule, a date trigger or a
 * message. An admin may target by one; a marketer is refused exactly as for a tag that does not
 * exist, so the refusal does not tell that the flag is there. Message text never carries one,
 * whoever asks (campaign save refuses it; the message preview as well, so it cannot tell who
 * has the flag by a value that is there or not).
 */

let t: TestApp
let tenantId: number
let admin: string
let marketer: string
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const NO_TAG = 'no_such_tag'

interface Req {
  method: 'POST' | 'PUT'
  url: string
  payload: object
}
interface Case {
  route: string
  what: string
  /** The high tag the request names. */
  tag: string
  /** The request naming `tag`; `n` keeps the ids of saved objects apart. */
  req: (tag: string, n: number) => Req
  /** What an admin gets: allowed (2xx), or refused naming a field. */
  admin: { status: number; field?: string }
}

const security = { purpose: 'security', priority: 'high', schedule: { kind: 'cron', cron: '0 10 * * *' }, message: { body: { zh: '请核实账户', en: 'Please check your account' } } }
const flagRule = (tag: string) => ({ tag, op: 'eq', value: true })

const CASES: Case[] = [
  {
    route: 'PUT /v1/segments/:id',
    what: 'a rule',
    tag: 'fraud_flag',
    req: (tag, n) => ({ method: 'PUT', url: `/v1/segments/risky-${n}`, payload: { name: 'risky', purpose: 'security', rule: flagRule(tag) } }),
    admin: { status: 201 },
  },
  {
    route: 'POST /v1/push/campaigns/:id/reach',
    what: 'an audience rule',
    tag: 'fraud_flag',
    req: (tag, n) => ({ method: 'POST', url: `/v1/push/campaigns/risky-${n}/reach`, payload: { ...security, name: 'risky', audience: { rule: flagRule(tag) } } }),
    admin: { status: 200 },
  },
  {
    route: 'PUT /v1/push/campaigns/:id',
    what: 'an audience rule',
    tag: 'fraud_flag',
    req: (tag, n) => ({ method: 'PUT', url: `/v1/push/campaigns/risky-${n}`, payload: { ...security, name: 'risky', audience: { rule: flagRule(tag) } } }),
    admin: { status: 201 },
  },
  {
    route: 'PUT /v1/push/campaigns/:id',
    what: 'a date trigger',
    tag: 'review_date',
    req: (tag, n) => ({ method: 'PUT', url: `/v1/push/campaigns/review-${n}`, payload: { ...security, name: 'review', dateTrigger: { on: 'tag_date', tag, daysBefore: 0 } } }),
    admin: { status: 201 },
  },
  {
    route: 'POST /v1/push/templates/preview',
    what: 'a message field',
    tag: 'fraud_flag',
    req: (tag) => ({ method: 'POST', url: '/v1/push/templates/preview', payload: { customerNo: 'C002', message: { body: { zh: `{{tag.${tag}}}`, en: 'x' } } } }),
    admin: { status: 400, field: 'body.message.body.zh' },
  },
]

let n = 0
const send = (r: Req, key: string) => t.app.inject({ method: r.method, url: r.url, headers: auth(key), payload: r.payload })
/** The coded error of a refusal, the tag's name replaced, to compare with the one for another tag. */
const refusal = (res: LightMyRequestResponse, tag: string) => JSON.parse(res.body.replaceAll(tag, '<tag>')) as unknown

// Customers C001-C003; C002 has an overdue loan, so the risk flag holds for C002 alone.
beforeAll(async () => {
  t = await openTestApp()
  const bank = await tenantWithKeys(t, 'high-tag-bank')
  tenantId = bank.tenant.id
  admin = bank.admin
  marketer = await issueKey(t.keys, bank.tenant.id, 'marketer')
  const db = t.engine.db.forTenant(bank.tenant.id)
  const now = chDateTime(new Date())
  const keys = [1, 2, 3]
  await db.insert('customers', keys.map((k) => ({
    customer_key: k, customer_no: `C00${k}`, gender: 'unknown', birth_date: '1950-03-01', region_code: 'r', branch_code: 'b', occupation: 'o',
    phone_hash: '', name_masked: `李${k}*`, opened_at: '2015-01-01 00:00:00', updated_at: now,
  })))
  await db.insert('identities', keys.map((k) => ({ id_kind: 'customer_no', id_value: `C00${k}`, customer_key: k, source: 'test', created_at: now, updated_at: now })))
  await db.insert('loans', [{ customer_key: 2, loan_no: 'L2', product_id: 'l', principal: 1000, outstanding: 900, annual_rate: 0.05, start_date: '2025-01-01', maturity_date: '2027-01-01', status: 'overdue', overdue_days: 30, updated_at: now }])
  const base = { description: { zh: '测试', en: 'test' }, owner: 'qa' }
  const tags: [string, object][] = [
    ['elder', { ...base, type: 'boolean', purpose: ['service', 'marketing', 'security'], rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } }],
    ['fraud_flag', { ...base, type: 'boolean', purpose: ['security', 'risk'], sensitivity: 'high', rule: { kind: 'rule', when: { feature: 'overdue_loans', op: 'gt', value: 0 } } }],
    ['review_date', { ...base, type: 'date', purpose: ['security', 'risk'], sensitivity: 'high', rule: { kind: 'rule', from: { feature: 'next_installment_date' } } }],
  ]
  for (const [name, def] of tags) {
    const put = await t.app.inject({ method: 'PUT', url: `/v1/tags/${name}`, headers: auth(admin), payload: def })
    expect(put.statusCode, put.body).toBe(201)
  }
  const run = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(admin), payload: { mode: 'full', wait: true } })
  expect(run.json().status, run.body).toBe('succeeded')
}, 120_000)

afterAll(async () => {
  await t?.close()
})

describe('high-sensitivity tags, route by route', () => {
  it.each(CASES)('$route with $tag in $what: an admin as the table says, a marketer as for an unknown tag', async (c) => {
    const asAdmin = await send(c.req(c.tag, ++n), admin)
    expect(asAdmin.statusCode, asAdmin.body).toBe(c.admin.status)
    if (c.admin.field) {
      expect(asAdmin.json().error.code).toBe('VALIDATION_FAILED')
      expect(asAdmin.json().error.issues.map((i: { field: string }) => i.field)).toContain(c.admin.field)
    }
    const asMarketer = await send(c.req(c.tag, ++n), marketer)
    expect(asMarketer.statusCode, asMarketer.body).toBe(400)
    expect(asMarketer.json().error.code).toBe('VALIDATION_FAILED')
    const unknown = await send(c.req(NO_TAG, ++n), marketer)
    expect(refusal(asMarketer, c.tag)).toEqual(refusal(unknown, NO_TAG))
  })

  it('refuses the marketer’s segment as the preview refuses an unknown tag', async () => {
    const saved = await send({ method: 'PUT', url: '/v1/segments/risky-saved', payload: { name: 'risky', purpose: 'security', rule: flagRule('fraud_flag') } }, marketer)
    const previewed = await send({ method: 'POST', url: '/v1/segments/preview', payload: { purpose: 'security', rule: flagRule(NO_TAG) } }, marketer)
    expect(saved.statusCode).toBe(400)
    expect(refusal(saved, 'fraud_flag')).toEqual(refusal(previewed, NO_TAG))
  })

  it('counts for an admin who has the flag, and names what the message may not carry', async () => {
    const reach = await send(CASES[1]!.req('fraud_flag', ++n), admin)
    expect(reach.json().audience).toBe(1)
    const preview = await send(CASES[4]!.req('fraud_flag', ++n), admin)
    expect(preview.json().error.message).toMatch(/high sensitivity/)
    expect(preview.body).not.toContain('***')
  })

  it('keeps a saved segment an admin made usable as a marketer’s campaign audience', async () => {
    const seg = await send({ method: 'PUT', url: '/v1/segments/flagged', payload: { name: 'flagged', purpose: 'security', rule: flagRule('fraud_flag') } }, admin)
    expect(seg.statusCode, seg.body).toBe(201)
    const reach = await send({ method: 'POST', url: '/v1/push/campaigns/flagged/reach', payload: { ...security, name: 'flagged', audience: { segment: 'flagged' } } }, marketer)
    expect(reach.statusCode, reach.body).toBe(200)
    expect(reach.json().audience).toBe(1)
  })
})

describe('a tag raised to high sensitivity', () => {
  const watch = { description: { zh: '测试', en: 'test' }, owner: 'qa', type: 'boolean', purpose: ['security', 'risk'], rule: { kind: 'rule', when: { feature: 'overdue_loans', op: 'gt', value: 0 } } }
  const tip = { ...security, name: 'tip', audience: { rule: { tag: 'elder', op: 'eq', value: true } }, message: { body: { zh: '提示 {{tag.watch_flag}}', en: 'tip {{tag.watch_flag}}' } } }
  const bodies = async (campaign: string) => {
    const rows = await t.engine.db.forTenant(tenantId).query(
      `SELECT body FROM push_targets FINAL WHERE tenant_id = {tenant:UInt16} AND campaign_id = {c:String} AND status = 'queued'`,
      { c: campaign },
      z.object({ body: z.string() }),
    )
    return rows.map((r) => r.body)
  }

  it('is refused while a campaign puts its value in message text, naming the campaign', async () => {
    expect((await send({ method: 'PUT', url: '/v1/tags/watch_flag', payload: { ...watch, sensitivity: 'medium' } }, admin)).statusCode).toBe(201)
    expect((await send({ method: 'PUT', url: '/v1/push/campaigns/watch-tip', payload: tip }, admin)).statusCode).toBe(201)
    const raised = await send({ method: 'PUT', url: '/v1/tags/watch_flag', payload: { ...watch, sensitivity: 'high' } }, admin)
    expect(raised.statusCode, raised.body).toBe(409)
    expect(raised.json().error).toMatchObject({ code: 'IN_USE', issues: [expect.objectContaining({ field: 'sensitivity', kind: 'campaign', id: 'watch-tip' })] })
  })

  it('never reaches message text, though it was raised before such refusals (its customers are left out as missing the field)', async () => {
    // A raise written as an earlier version would have: the definition row, not the repository.
    const now = chDateTime(new Date())
    const definition = JSON.stringify({ name: 'watch_flag', ...watch, sensitivity: 'high' })
    await t.engine.db.forTenant(tenantId).insert('tag_definitions', [{ name: 'watch_flag', version: 99, definition, retired: 0, created_by: 'earlier', created_at: now }])
    const run = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(admin), payload: { mode: 'full', wait: true } })
    expect(run.statusCode, run.body).toBe(200)
    const r = await t.push.runTargeting(tenantId, { campaignIds: ['watch-tip'], asOf: new Date() })
    // The three elder customers were its audience: the one with the flag is left out too.
    expect(r.campaigns[0]).toMatchObject({ targeted: 3, suppressed: { missing_field: 3 } })
    const sent = await bodies('watch-tip')
    expect(sent.some((b) => /true|false/.test(b)), JSON.stringify(sent)).toBe(false)
  })
})
