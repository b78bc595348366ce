import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { newcombe, wilson } from './experiments.report.js'

/**
 * GET /v1/layout/experiments on exposures and click and conversion events written by hand, with
 * every count known; the rates and intervals are checked against figures computed by hand below.
 */

describe('the intervals', () => {
  it('Wilson and Newcombe’s hybrid score match the published examples (Newcombe 1998, Stat Med 17:857 and 17:873)', () => {
    // 81/263: Wilson 0.2553 to 0.3662; 0/10: 0 to 0.2775 (where the Wald interval is 0 to 0).
    expect(wilson(81, 263)).toMatchObject({ rate: 81 / 263, low: expect.closeTo(0.2553, 4), high: expect.closeTo(0.3662, 4) })
    expect(wilson(0, 10)).toMatchObject({ rate: 0, low: 0, high: expect.closeTo(0.2775, 4) })
    // 56/70 - 48/80 = 0.2, method 10: 0.0524 to 0.3339.
    const d = newcombe(wilson(56, 70), wilson(48, 80))!
    expect(d.diff).toBeCloseTo(0.2, 10)
    expect(d.low).toBeCloseTo(0.0524, 4)
    expect(d.high).toBeCloseTo(0.3339, 4)
    expect(wilson(0, 0)).toEqual({ rate: null, low: null, high: null })
    expect(newcombe(wilson(1, 2), wilson(0, 0))).toBeNull()
  })
})

let t: TestApp
let tenantId: number
let read: string
let ingestKey: string
let layoutOnly: string

// Asia/Shanghai (UTC+8), the test tenants' zone: the local day 2026-11-10 is 2026-11-09 16:00Z to 2026-11-10 16:00Z.
const DAY = '2026-11-10'
const at = (utc: string) => `${utc}.000`
const MODULES = ['services', 'services', 'picks']
const ITEMS = ['svc.a', 'svc.b', 'p.x']
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i)

beforeAll(async () => {
  t = await openTestApp()
  const k = await tenantWithKeys(t, 'exp-bank')
  tenantId = k.tenant.id
  read = k.read
  ingestKey = k.write
  layoutOnly = (await t.keys.issue(tenantId, { roles: ['layout'], holder: 'gateway' })).key
  const db = t.engine.db.forTenant(tenantId)
  // Rows as layouts write them, by position in a list (sql/028), for the popular arm and the
  // holdout; by id, as written before lists, for the others. The list is written twice, as two
  // processes would: it must not count an impression twice.
  const LIST = '9876543210123'
  await db.insertTsv('layout_exposure_lists', ['list', 'modules', 'items'], [[LIST, ['services', 'picks'], ITEMS], [LIST, ['services', 'picks'], ITEMS]])
  const SLOTS = [0 * 3 + 0, 0 * 3 + 1, 1 * 3 + 2]
  const exposure = (key: number, when: string, experiment: string, variant: string, holdout: number) =>
    variant === 'popular' || holdout ? [key, at(when), 'home', experiment, variant, holdout, 0, 1, [], [], LIST, SLOTS] : [key, at(when), 'home', experiment, variant, holdout, 0, 1, MODULES, ITEMS, 0, []]
  await db.insertTsv('layout_exposures', ['customer_key', 'served_at', 'screen', 'experiment', 'variant', 'holdout', 'elder', 'model_build', 'modules', 'items', 'list', 'slots'], [
    // 20 customers per arm, one home screen each at 10:00 local: 60 impressions per arm.
    ...range(1, 20).map((c) => exposure(c, '2026-11-10 02:00:00', 'home-ranking', 'blend', 0)),
    ...range(21, 40).map((c) => exposure(c, '2026-11-10 02:00:00', 'home-ranking', 'popular', 0)),
    ...range(41, 60).map((c) => exposure(c, '2026-11-10 02:00:00', '', '', 1)),
    // Another experiment's arm, and a layout outside any experiment (personalization off).
    ...[61, 62].map((c) => exposure(c, '2026-11-10 02:00:00', 'old-exp', 'x', 0)),
    exposure(70, '2026-11-10 02:00:00', '', '', 0),
    // The day before, outside the range: not counted, and not the exposure customer 1's clicks belong to.
    exposure(1, '2026-11-09 02:00:00', 'home-ranking', 'blend', 0),
  ])
  let seq = 0
  const event = (key: number, when: string, name: string, props: Record<string, unknown> = {}) => [key, at(when), 'track', name, `m-${++seq}`, JSON.stringify(props)]
  const click = (key: number, when: string, item: string) => event(key, when, 'layout_item_clicked', { item_id: item })
  await db.insertTsv('events', ['customer_key', 'timestamp', 'type', 'event', 'message_id', 'properties'], [
    // blend: svc.a clicked by customers 1-5 (customer 1 twice), p.x by 6 and 7.
    click(1, '2026-11-10 02:10:00', 'svc.a'),
    click(1, '2026-11-10 02:20:00', 'svc.a'),
    ...range(2, 5).map((c) => click(c, '2026-11-10 02:10:00', 'svc.a')),
    click(6, '2026-11-10 03:00:00', 'p.x'),
    click(7, '2026-11-10 03:00:00', 'p.x'),
    // Customer 1 buys 10 minutes after their last click (svc.a), customer 6 two hours after theirs (p.x).
    event(1, '2026-11-10 02:30:00', 'product_purchased', { product_id: 'x' }),
    event(6, '2026-11-10 05:00:00', 'product_purchased', { product_id: 'x' }),
    // Customer 7 buys four days after the click: outside the 72 hours, no conversion.
    event(7, '2026-11-14 03:00:00', 'product_purchased', { product_id: 'x' }),
    // Customer 8 clicks 26 hours after the exposure (outside the 24 hours); customer 99 was never shown anything.
    click(8, '2026-11-11 04:00:00', 'svc.b'),
    click(99, '2026-11-10 05:00:00', 'svc.a'),
    // popular: one click (customer 21, svc.a). Holdout: customer 41 on svc.a, 42 on p.x.
    click(21, '2026-11-10 02:05:00', 'svc.a'),
    click(41, '2026-11-10 02:05:00', 'svc.a'),
    click(42, '2026-11-10 02:05:00', 'p.x'),
    // An event that is no conversion by default, right after a click.
    event(2, '2026-11-10 02:15:00', 'product_viewed', { product_id: 'x' }),
  ])
}, 120_000)
afterAll(async () => t?.close())

async function report(query: Record<string, string>, key = read) {
  return t.app.inject({ method: 'GET', url: `/v1/layout/experiments?${new URLSearchParams(query)}`, headers: { authorization: `Bearer ${key}` } })
}

interface P {
  rate: number | null
  low: number | null
  high: number | null
}
const close = (p: P, rate: number, low: number, high: number) => {
  expect(p.rate).toBeCloseTo(rate, 5)
  expect(p.low).toBeCloseTo(low, 5)
  expect(p.high).toBeCloseTo(high, 5)
}

describe('GET /v1/layout/experiments', () => {
  it('counts exposures, clicks and conversions per arm against the holdout, with Wilson intervals', async () => {
    const res = await report({ from: DAY, to: DAY, experiment: 'home-ranking' })
    expect(res.statusCode, res.body).toBe(200)
    const r = res.json()
    expect(r).toMatchObject({ from: DAY, to: DAY, timeZone: 'Asia/Shanghai', experiment: 'home-ranking', interval: { method: 'wilson', confidence: 0.95 } })
    // Customer 8's late click and customer 99's click without an exposure.
    expect(r.unattributedClicks).toBe(2)
    const arm = (variant: string | null, holdout = false) => r.arms.find((a: { variant: string | null; holdout: boolean }) => a.variant === variant && a.holdout === holdout)
    // old-exp is filtered out; the layout outside any experiment stays, as the holdout does.
    expect(r.arms.map((a: { holdout: boolean; variant: string | null }) => `${a.holdout ? 'holdout' : (a.variant ?? 'none')}`).sort()).toEqual(['blend', 'holdout', 'none', 'popular'])

    const blend = arm('blend')
    expect(blend).toMatchObject({ experiment: 'home-ranking', exposures: 60, customers: 20, clicks: 8, clickedExposures: 7, clickers: 7, conversions: 2, convertedExposures: 2, converters: 2 })
    // ctr 7/60 = 0.116667. Wilson, z = 1.959964, z^2 = 3.841459, z^2/n = 0.064024:
    //   centre = (0.116667 + 3.841459/120) / 1.064024 = 0.148679 / 1.064024 = 0.139733
    //   half = (1.959964 / 1.064024) * sqrt(0.116667 * 0.883333 / 60 + 3.841459 / 14400)
    //        = 1.842029 * sqrt(0.0017176 + 0.00026677) = 1.842029 * 0.044546 = 0.082055
    //   -> 0.057677 to 0.221788
    close(blend.ctr, 7 / 60, 0.057677, 0.221788)
    // customers: 7/20 -> 0.181192 to 0.567146; conversions 2/60 -> 0.009189 to 0.113638.
    close(blend.customerCtr, 0.35, 0.181192, 0.567146)
    close(blend.conversionRate, 2 / 60, 0.009189, 0.113638)
    const held = arm(null, true)
    expect(held).toMatchObject({ experiment: null, exposures: 60, customers: 20, clicks: 2, clickedExposures: 2, conversions: 0, vsHoldout: null })
    close(held.ctr, 2 / 60, 0.009189, 0.113638)
    // blend - holdout, 7/60 - 2/60 = 0.083333; Newcombe: 0.083333 - sqrt((0.116667-0.057677)^2 + (0.113638-0.033333)^2)
    //   = 0.083333 - sqrt(0.0034798 + 0.0064489) = 0.083333 - 0.099642 = -0.016309, and
    //   0.083333 + sqrt((0.221788-0.116667)^2 + (0.033333-0.009189)^2) = 0.083333 + 0.107859 = 0.191192.
    expect(blend.vsHoldout.ctr.diff).toBeCloseTo(0.083333, 5)
    expect(blend.vsHoldout.ctr.low).toBeCloseTo(-0.016309, 5)
    expect(blend.vsHoldout.ctr.high).toBeCloseTo(0.191192, 5)
    expect(blend.vsHoldout.customerCtr.diff).toBeCloseTo(0.25, 5)
    // popular: 1/60 -> 0.002948 to 0.088551.
    const popular = arm('popular')
    expect(popular).toMatchObject({ exposures: 60, clicks: 1, clickedExposures: 1, conversions: 0 })
    close(popular.ctr, 1 / 60, 0.002948, 0.088551)
    expect(arm(null)).toMatchObject({ holdout: false, experiment: null, exposures: 3, customers: 1, clicks: 0 })
  })

  it('per module and per item, each against the holdout’s same module or item; conversions go to the last click', async () => {
    const r = (await report({ from: DAY, to: DAY, experiment: 'home-ranking' })).json()
    const mod = (variant: string | null, module: string) => r.modules.find((m: { variant: string | null; module: string; holdout: boolean }) => m.variant === variant && m.module === module && m.holdout === (variant === null))
    const item = (variant: string | null, id: string) => r.items.find((m: { variant: string | null; item: string; holdout: boolean }) => m.variant === variant && m.item === id && m.holdout === (variant === null))
    // services: svc.a and svc.b to 20 customers = 40 impressions; 5 of them clicked (6 clicks) -> 5/40: 0.054595 to 0.261121.
    const services = mod('blend', 'services')
    expect(services).toMatchObject({ exposures: 40, customers: 20, clicks: 6, clickedExposures: 5, conversions: 1 })
    close(services.ctr, 5 / 40, 0.054595, 0.261121)
    close(mod(null, 'services').ctr, 1 / 40, 0.004427, 0.128814)
    expect(mod('blend', 'picks')).toMatchObject({ exposures: 20, clicks: 2, clickedExposures: 2, conversions: 1 })
    // svc.a: 5/20 (0.111862 to 0.468701) against the holdout's 1/20 (0.008881 to 0.236131): 0.2, -0.031791 to 0.422533.
    const a = item('blend', 'svc.a')
    expect(a).toMatchObject({ module: 'services', exposures: 20, clicks: 6, clickedExposures: 5, conversions: 1, converters: 1 })
    close(a.ctr, 0.25, 0.111862, 0.468701)
    expect(a.vsHoldout.ctr.diff).toBeCloseTo(0.2, 5)
    expect(a.vsHoldout.ctr.low).toBeCloseTo(-0.031791, 5)
    expect(a.vsHoldout.ctr.high).toBeCloseTo(0.422533, 5)
    // Customer 6's purchase follows their p.x click; customer 7's came too late.
    expect(item('blend', 'p.x')).toMatchObject({ clicks: 2, conversions: 1, converters: 1 })
    // svc.b: never clicked in time -> 0/20: 0 to 0.161125.
    const b = item('blend', 'svc.b')
    expect(b).toMatchObject({ exposures: 20, clicks: 0 })
    close(b.ctr, 0, 0, 0.161125)
  })

  it('without an experiment shows every arm; conversion events and windows are the caller’s', async () => {
    const all = (await report({ from: DAY, to: DAY })).json()
    expect(all.arms.find((a: { variant: string | null }) => a.variant === 'x')).toMatchObject({ experiment: 'old-exp', exposures: 6, customers: 2 })
    // product_viewed as the goal: customer 2 viewed 5 minutes after their svc.a click.
    const viewed = (await report({ from: DAY, to: DAY, conversionEvents: 'product_viewed' })).json()
    expect(viewed.arms.find((a: { variant: string | null }) => a.variant === 'blend')).toMatchObject({ conversions: 1, converters: 1 })
    // A 48-hour click window takes customer 8's click (26 hours after the exposure).
    const wide = (await report({ from: DAY, to: DAY, clickWithinHours: '48' })).json()
    expect(wide.unattributedClicks).toBe(1)
    expect(wide.arms.find((a: { variant: string | null }) => a.variant === 'blend')).toMatchObject({ clicks: 9, clickers: 8 })
    // The day before holds only customer 1's earlier layout, with no click in time.
    const before = (await report({ from: '2026-11-09', to: '2026-11-09' })).json()
    expect(before.arms).toEqual([expect.objectContaining({ variant: 'blend', exposures: 3, customers: 1, clicks: 0 })])
  })

  it('is in the OpenAPI document, as the layout’s reasons with their code and text are', async () => {
    const doc = (await t.app.inject('/docs')).json()
    const report = doc.paths['/v1/layout/experiments'].get
    expect(report.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['from', 'to', 'experiment', 'conversionEvents']))
    expect(Object.keys(report.responses['200'].content['application/json'].schema.properties)).toEqual(expect.arrayContaining(['arms', 'modules', 'items', 'interval']))
    const layout = doc.paths['/v1/layout'].get.responses['200'].content['application/json'].schema
    const reason = layout.properties.modules.items.properties.reason
    expect(reason.required).toEqual(expect.arrayContaining(['kind', 'code', 'detail', 'text']))
    expect(reason.properties.code.enum).toEqual(expect.arrayContaining(['loan_due', 'similar_customers', 'bank_recommends']))
  })

  it('refuses a bad range naming the field, and keys without catalog:read', async () => {
    const bad = async (q: Record<string, string>, field: string) => {
      const res = await report(q)
      expect(res.statusCode, res.body).toBe(400)
      expect(res.json().error.issues.map((i: { field: string }) => i.field)).toContain(field)
    }
    await bad({ from: '2026-11-10', to: '2026-11-09' }, 'querystring.to')
    await bad({ from: '2026-01-01', to: '2026-11-09' }, 'querystring.from')
    await bad({ from: '2026-02-30', to: '2026-03-01' }, 'querystring.from')
    await bad({ from: '10/11/2026' }, 'querystring.from')
    await bad({ conversionEvents: 'a,,b' }, 'querystring.conversionEvents')
    await bad({ clickWithinHours: '0' }, 'querystring.clickWithinHours')
    expect((await report({}, layoutOnly)).statusCode).toBe(403)
    expect((await report({}, ingestKey)).statusCode).toBe(403)
  })
})
