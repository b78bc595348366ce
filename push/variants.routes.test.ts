import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chDateTime } from '../core/time.js'
import { campaign, no, openPushApp, seedBank, type PushFixture } from './push.fixture.js'
import { variantIndexSql } from './targeting.sql.js'

/**
 * Message variants (A/B) over HTTP on the real engine: validation with the field at fault, the
 * stable split, the pull handing out each customer's variant, test sends of one variant or all,
 * approval of the variants as saved, and the per-variant funnel against a hand-computed fixture.
 */

let fx: PushFixture
let app: FastifyInstance
let t: number
let other: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const put = (id: string, body: object, key = keys.admin!) => app.inject({ method: 'PUT', url: `/v1/push/campaigns/${id}`, headers: auth(key), payload: body })
const post = (url: string, payload: object, key = keys.admin!) => app.inject({ method: 'POST', url, headers: auth(key), payload })

const msg = (tag: string) => ({ body: { zh: `${tag} 您好 {{name}}`, en: `${tag} Hello {{name}}` } })
const ab = (weights = [50, 50]) => weights.map((weight, i) => ({ id: String.fromCharCode(65 + i), weight, message: msg(`[${String.fromCharCode(65 + i)}]`) }))
const withVariants = (over: Record<string, unknown> = {}) => {
  const { message: _m, ...rest } = campaign(over)
  return { ...rest, variants: ab(), ...over }
}

beforeAll(async () => {
  // Approval is on (as in production): the approval case below needs it; runs approve first.
  const opened = await openPushApp()
  fx = opened.fx
  app = opened.app
  t = await seedBank(fx, { slug: 'ab-bank', timeZone: 'Asia/Shanghai', prefix: 'AB', n: 40, loanDay: '2026-03-18', asOf: new Date(), marketingForAll: true })
  other = (await fx.tenants.create({ slug: 'ab-other', name: 'other' })).id
  const issue = async (name: string, tenant: number, roles: ('marketer' | 'admin' | 'analyst' | 'push')[], holder: string) => (keys[name] = (await opened.keyService.issue(tenant, { roles, holder })).key)
  await issue('admin', t, ['admin'], 'Li Na')
  await issue('approver', t, ['marketer'], 'Wang Fang')
  await issue('analyst', t, ['analyst'], 'An Analyst')
  await issue('push', t, ['push'], 'notification service')
  await issue('otherAdmin', other, ['admin'], 'other admin')
  await fx.push.policies.save(t, { quietHours: null }, 'test')
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

async function approve(id: string) {
  const c = (await app.inject({ url: `/v1/push/campaigns/${id}`, headers: auth(keys.admin!) })).json()
  const res = await post(`/v1/push/campaigns/${id}/approval`, { version: c.version }, keys.approver)
  expect(res.statusCode, res.body).toBe(200)
}

describe('validation', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['weights not adding up to 100', withVariants({ variants: ab([50, 40]) }), 'variants'],
    ['one variant', withVariants({ variants: [{ id: 'A', weight: 100, message: msg('A') }] }), 'variants'],
    ['too many variants', withVariants({ variants: ab([20, 10, 10, 10, 10, 10, 10, 10, 10]) }), 'variants'],
    ['a text missing', withVariants({ variants: [ab()[0], { id: 'B', weight: 50, message: { body: { zh: '乙' } } }] }), 'variants.1.message.body.en'],
    ['a bad placeholder', withVariants({ variants: [ab()[0], { id: 'B', weight: 50, message: { body: { zh: '{{balance}}', en: 'x' } } }] }), 'variants.1.message.body.zh'],
    ['an unknown tag', withVariants({ variants: [ab()[0], { id: 'B', weight: 50, message: { body: { zh: '{{tag.no_such}}', en: 'x' } } }] }), 'variants.1.message'],
    ['the same id twice', withVariants({ variants: [ab()[0], { ...ab()[1], id: 'A' }] }), 'variants.1.id'],
    ['a bad id', withVariants({ variants: [ab()[0], { ...ab()[1], id: 'b' }] }), 'variants.1.id'],
    ['a weight out of range', withVariants({ variants: [{ ...ab()[0], weight: 101 }, { ...ab()[1], weight: -1 }] }), 'variants.0.weight'],
    ['message and variants both', { ...withVariants(), message: msg('x') }, 'message'],
    ['neither message nor variants', (({ variants: _v, ...rest }) => rest)(withVariants()), 'message'],
  ]
  it.each(cases)('refuses %s, naming the field', async (_what, body, field) => {
    const res = await put('bad-ab', body)
    expect(res.statusCode, res.body).toBe(400)
    const err = res.json().error
    expect(err.code).toBe('VALIDATION_FAILED')
    expect(err.issues.map((i: { field: string }) => i.field)).toContain(field)
  })

  it('takes a valid split, and a campaign without variants as before', async () => {
    const res = await put('valid-ab', withVariants({ variants: ab([34, 33, 33]) }))
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().campaign.variants.map((v: { id: string; weight: number }) => [v.id, v.weight])).toEqual([['A', 34], ['B', 33], ['C', 33]])
    expect(res.json().campaign.message).toBeUndefined()
    const plain = await put('plain', campaign())
    expect(plain.json().campaign).toMatchObject({ message: { body: { zh: '您好 {{name}}' } } })
    expect(plain.json().campaign.variants).toBeUndefined()
  })
})

describe('the split', () => {
  it('puts each of 20,000 customers in a stable bucket, in proportion, and a changed split moves only the buckets that changed hands', async () => {
    const db = fx.engine.db.forTenant(t)
    const assign = async (weights: number[]) => {
      let at = 0
      const vups = weights.map((w) => (at += w))
      const [r] = await db.query(
        `SELECT groupArray(${variantIndexSql('number + 1')}) AS vi FROM (SELECT number FROM numbers(20000) ORDER BY number)`,
        { vsalt: 'push-variant:spring:', vups },
        z.object({ vi: z.array(z.coerce.number()) }),
      )
      return r!.vi
    }
    const first = await assign([50, 30, 20])
    expect(await assign([50, 30, 20])).toEqual(first)
    const share = (vi: number[], i: number) => vi.filter((x) => x === i).length / vi.length
    expect(share(first, 1)).toBeGreaterThan(0.485)
    expect(share(first, 1)).toBeLessThan(0.515)
    expect(share(first, 2)).toBeGreaterThan(0.285)
    expect(share(first, 2)).toBeLessThan(0.315)
    expect(share(first, 3)).toBeGreaterThan(0.185)
    expect(share(first, 3)).toBeLessThan(0.215)
    // 50/30/20 to 60/20/20: A gains B's lowest tenth; C keeps every customer it had.
    const after = await assign([60, 20, 20])
    const moved = first.map((v, i) => [v, after[i]!] as const).filter(([a, b]) => a !== b)
    expect(moved.every(([a, b]) => a === 2 && b === 1)).toBe(true)
    expect(moved.length / first.length).toBeGreaterThan(0.085)
    expect(moved.length / first.length).toBeLessThan(0.115)
  })

  it("targets each customer with their variant's text, the same variant on every run, and the pull hands it out", async () => {
    expect((await put('spring', withVariants({ schedule: { kind: 'cron', cron: '0 0 * * *' } }))).statusCode).toBe(201)
    await approve('spring')
    const run = await post('/v1/push/campaigns/spring/run', {})
    expect(run.statusCode, run.body).toBe(200)
    const db = fx.engine.db.forTenant(t)
    const stored = async () =>
      db.query(
        `SELECT customer_key, toString(local_date) AS day, message_variant, body FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = 'spring' ORDER BY local_date, customer_key`,
        {},
        z.object({ customer_key: z.coerce.number(), day: z.string(), message_variant: z.string(), body: z.string() }),
      )
    const first = await stored()
    expect(first).toHaveLength(40)
    const variantOf = new Map(first.map((r) => [r.customer_key, r.message_variant]))
    expect(new Set(variantOf.values())).toEqual(new Set(['A', 'B']))
    for (const r of first.filter((x) => x.body)) expect(r.body.startsWith(`[${r.message_variant}]`)).toBe(true)
    // The next day's run: every customer gets the variant they had.
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString()
    expect((await post('/v1/push/campaigns/spring/run', { asOf: tomorrow })).statusCode).toBe(200)
    const both = await stored()
    expect(both).toHaveLength(80)
    for (const r of both) expect(r.message_variant).toBe(variantOf.get(r.customer_key))
    const page = (await app.inject({ url: '/v1/push/campaigns/spring/targets?limit=10', headers: auth(keys.admin!) })).json().targets as { customerNo: string; messageVariant: string }[]
    expect(page).toHaveLength(10)
    for (const x of page) expect(x.messageVariant).toBe(variantOf.get(Number(x.customerNo.slice(2))))

    const pulled = (await post('/v1/push/pull', { limit: 1000, leaseSeconds: 60 }, keys.push)).json().targets as { campaignId: string; customerNo: string; messageVariant: string; body: string }[]
    const mine = pulled.filter((p) => p.campaignId === 'spring')
    expect(mine.length).toBeGreaterThan(30)
    for (const p of mine) {
      const k = Number(p.customerNo.slice(2))
      expect(p.messageVariant).toBe(variantOf.get(k))
      expect(p.body).toMatch(new RegExp(`^\\[${p.messageVariant}\\] (您好|Hello) 张${k}\\*$`))
    }
  })
})

describe('test sends and approval', () => {
  it('sends one chosen variant or all of them to a test list, each pulled with its text', async () => {
    expect((await put('tested', withVariants())).statusCode).toBe(201)
    const list = await app.inject({ method: 'PUT', url: '/v1/push/test-lists/phones', headers: auth(keys.admin!), payload: { name: 'phones', members: [{ customerNo: no('AB', 2), label: 'Li' }, { customerNo: no('AB', 3), label: 'Wang' }] } })
    expect(list.statusCode, list.body).toBe(200)
    const one = await post('/v1/push/campaigns/tested/test', { list: 'phones', variant: 'B' })
    expect(one.statusCode, one.body).toBe(200)
    expect(one.json()).toMatchObject({ variants: ['B'], leftOut: [] })
    expect(one.json().queued.map((q: { messageVariant: string; body: string }) => [q.messageVariant, q.body.slice(0, 3)])).toEqual([['B', '[B]'], ['B', '[B]']])
    const all = await post('/v1/push/campaigns/tested/test', { list: 'phones' })
    expect(all.json().variants).toEqual(['A', 'B'])
    expect(all.json().queued.map((q: { customerNo: string; messageVariant: string }) => `${q.customerNo}:${q.messageVariant}`).sort()).toEqual([
      `${no('AB', 2)}:A`, `${no('AB', 2)}:B`, `${no('AB', 3)}:A`, `${no('AB', 3)}:B`,
    ])
    const unknown = await post('/v1/push/campaigns/tested/test', { list: 'phones', variant: 'Z' })
    expect(unknown.json().error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ field: 'variant' }] })
    const pulled = (await post('/v1/push/pull', { limit: 1000, leaseSeconds: 60 }, keys.push)).json().targets as { campaignId: string; test: boolean; messageVariant: string; body: string }[]
    const tests = pulled.filter((p) => p.test && p.campaignId === 'tested')
    expect(tests.map((p) => p.messageVariant).sort()).toEqual(['A', 'A', 'B', 'B', 'B', 'B'])
    for (const p of tests) expect(p.body.startsWith(`[${p.messageVariant}]`)).toBe(true)
  })

  it('an approval covers the variants as saved: a changed variant or split needs approving again', async () => {
    expect((await put('approved-ab', withVariants())).statusCode).toBe(201)
    await approve('approved-ab')
    const state = async () => (await app.inject({ url: '/v1/push/campaigns/approved-ab/approval', headers: auth(keys.admin!) })).json().status
    expect(await state()).toBe('approved')
    const changedText = withVariants({ variants: [ab()[0], { id: 'B', weight: 50, message: msg('[B2]') }] })
    expect((await put('approved-ab', changedText)).json()).toMatchObject({ changed: true, campaign: { version: 2 } })
    expect(await state()).toBe('draft')
    await approve('approved-ab')
    expect((await put('approved-ab', { ...changedText, variants: [{ ...changedText.variants[0], weight: 70 }, { ...changedText.variants[1], weight: 30 }] })).json().changed).toBe(true)
    expect(await state()).toBe('draft')
  })
})

describe('per-variant results', () => {
  /**
   * By hand: variant A has 12 targets (10 queued, 2 in the control group), 8 sent and 1 failed,
   * clicks on 3 sent targets and on the failed one, 2 conversions in the window (and one before
   * its target was due, which does not count); B has 9 targets (8 queued), 6 sent, clicks on 4
   * sent targets, 4 conversions. Click-through: A 3/8, B 4/6; conversion: A 2/10, B 4/8.
   */
  it('breaks the funnel down per variant with Wilson intervals and the difference from A', async () => {
    expect((await put('fixture-ab', withVariants({ conversion: { event: { names: ['loan_applied'] }, withinHours: 24 } }))).statusCode).toBe(201)
    const db = fx.engine.db.forTenant(t)
    const due = Date.now() - 3_600_000
    const target = (k: number, v: string, status: 'queued' | 'suppressed') => ({
      campaign_id: 'fixture-ab', local_date: new Date(due).toISOString().slice(0, 10), customer_key: k, target_id: `${'f'.repeat(28)}${String(k).padStart(4, '0')}`, campaign_version: 1, run_id: 1,
      customer_no: no('AB', k), purpose: 'marketing', channel: 'push', priority: 'low', status, reason: status === 'queued' ? '' : 'control_group', due_at: chDateTime(due),
      expires_at: chDateTime(due + 86_400_000), send_date: new Date(due).toISOString().slice(0, 10), quiet_exempt: 0, language: 'zh', variant: 'standard', message_variant: v,
      title: '', body: status === 'queued' ? `[${v}]` : '', trigger: 'manual', created_at: chDateTime(due),
    })
    const A = Array.from({ length: 12 }, (_, i) => i + 1) // 1..10 queued, 11..12 control
    const B = Array.from({ length: 9 }, (_, i) => i + 21) // 21..28 queued, 29 control
    await db.insert('push_targets', [...A.map((k) => target(k, 'A', k <= 10 ? 'queued' : 'suppressed')), ...B.map((k) => target(k, 'B', k <= 28 ? 'queued' : 'suppressed'))])
    const tid = (k: number) => target(k, '', 'queued').target_id
    const outcome = (k: number, status: 'delivered' | 'failed') => ({ target_id: tid(k), campaign_id: 'fixture-ab', customer_key: k, status, final: 1, reason: '', lease_id: 'l', at: chDateTime(due + 60_000) })
    await db.insert('push_outcomes', [...[1, 2, 3, 4, 5, 6, 7, 8].map((k) => outcome(k, 'delivered')), outcome(9, 'failed'), ...[21, 22, 23, 24, 25, 26].map((k) => outcome(k, 'delivered'))])
    const ev = (k: number, name: string, at: number, props: object = {}) => ({
      customer_key: k, timestamp: chDateTime(at), type: 'track', event: name, message_id: `${name}-${k}-${at}`, anonymous_id: '', user_id: no('AB', k),
      session_id: 's', properties: JSON.stringify(props), context: '{}', sent_at: chDateTime(at), received_at: chDateTime(at), violations: [],
    })
    const later = due + 600_000
    await db.insert('events', [
      ...[1, 2, 3, 9].map((k) => ev(k, 'push_clicked', later, { target_id: tid(k) })),
      ...[21, 22, 23, 24].map((k) => ev(k, 'push_clicked', later, { target_id: tid(k) })),
      ...[1, 5].map((k) => ev(k, 'loan_applied', later)),
      ev(6, 'loan_applied', due - 600_000), // before its target was due
      ev(11, 'loan_applied', later), // the control group: not a variant's conversion
      ...[21, 22, 27, 28].map((k) => ev(k, 'loan_applied', later)),
    ])

    const res = await app.inject({ url: '/v1/push/campaigns/fixture-ab/stats', headers: auth(keys.analyst!) })
    expect(res.statusCode, res.body).toBe(200)
    const s = res.json()
    expect(s).toMatchObject({ targeted: 21, queued: 18, sent: 14, failed: 1, clicked: 8 })
    const [a, b] = s.variants
    expect(s.variants).toHaveLength(2)
    expect(a).toMatchObject({ variant: 'A', weight: 50, targeted: 12, queued: 10, suppressed: 2, sent: 8, failed: 1, clicked: 4, clickThrough: { count: 3, of: 8, rate: 0.375 }, conversion: { count: 2, of: 10, rate: 0.2 }, vsBaseline: null })
    expect(b).toMatchObject({ variant: 'B', weight: 50, targeted: 9, queued: 8, suppressed: 1, sent: 6, failed: 0, clicked: 4, clickThrough: { count: 4, of: 6 }, conversion: { count: 4, of: 8, rate: 0.5 } })
    // Wilson 95% of 3 in 8, worked by hand: centre 0.41556, half-width 0.27871.
    expect(a.clickThrough.low).toBeCloseTo(0.13685, 4)
    expect(a.clickThrough.high).toBeCloseTo(0.69427, 4)
    const w = wilson(4, 6)
    expect(b.clickThrough.low).toBeCloseTo(w.low, 5)
    expect(b.clickThrough.high).toBeCloseTo(w.high, 5)
    const wa = wilson(2, 10)
    const wb = wilson(4, 8)
    expect(a.conversion.low).toBeCloseTo(wa.low, 5)
    expect(b.conversion.high).toBeCloseTo(wb.high, 5)
    // Newcombe's interval of B minus A, from the two Wilson intervals.
    const d = 0.5 - 0.2
    expect(b.vsBaseline.conversion.diff).toBeCloseTo(d, 6)
    expect(b.vsBaseline.conversion.low).toBeCloseTo(d - Math.sqrt((0.5 - wb.low) ** 2 + (wa.high - 0.2) ** 2), 5)
    expect(b.vsBaseline.conversion.high).toBeCloseTo(d + Math.sqrt((wb.high - 0.5) ** 2 + (0.2 - wa.low) ** 2), 5)
    expect(b.vsBaseline.clickThrough.diff).toBeCloseTo(4 / 6 - 3 / 8, 6)

    // Another bank's key reads none of it.
    expect((await app.inject({ url: '/v1/push/campaigns/fixture-ab/stats', headers: auth(keys.otherAdmin!) })).statusCode).toBe(404)
    // A campaign without variants reports none.
    expect((await app.inject({ url: '/v1/push/campaigns/plain/stats', headers: auth(keys.analyst!) })).json().variants).toEqual([])
  })
})

/** Wilson's 95% score interval, written out independently of the SQL. */
function wilson(x: number, n: number) {
  const z = 1.959963984540054
  const p = x / n
  const centre = (p + (z * z) / (2 * n)) / (1 + (z * z) / n)
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / (1 + (z * z) / n)
  return { low: centre - half, high: centre + half }
}
