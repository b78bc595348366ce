import type { InjectOptions } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { issueKey, openTestApp, type TestApp } from '../test/app.js'

/**
 * Every route that takes a time from its caller and hands it to the engine, in one table: a time
 * the DateTime64 columns cannot hold (year 0 with an offset lands in year -1; after 2299) is a
 * 400 naming the field, never a 500 from the engine nor a value stored or answered as it is.
 */

const OPERATOR = 'time-bounds-operator-token-time-bounds'
let t: TestApp
const k: Record<string, string> = {}

/** The times tried on every route: pairs, for the routes that take a range. */
const TIMES = {
  instant: {
    'year 0 with an offset': ['0000-01-01T00:00:00+01:00', '0000-01-02T00:00:00Z'],
    'after 2299': ['2300-01-01T00:00:00Z', '2300-01-02T00:00:00Z'],
    'in range': ['2026-03-16T12:00:00+08:00', '2026-03-17T12:00:00+08:00'],
  },
  day: {
    'year 0 with an offset': ['0000-01-01', '0000-01-02'],
    'after 2299': ['2300-01-01', '2300-01-02'],
    'in range': ['2026-03-10', '2026-03-11'],
  },
} as const
type Case = keyof (typeof TIMES)['instant']

interface Route {
  route: string
  /** The key whose role the route is for. */
  key: string
  field: string
  kind: keyof typeof TIMES
  /** The request, given the time tried (and a day later, for ranges) and a name unique to the case. */
  req: (time: string, next: string, name: string) => InjectOptions
  /** The answer to a time in range. */
  ok: number
  /** A time in range where the route needs one of its own (a key expires in the future). */
  inRange?: readonly [string, string]
}

const q = encodeURIComponent
const ROUTES: Route[] = [
  { route: 'GET /v1/layout/experiments', key: 'analyst', field: 'querystring.from', kind: 'day', ok: 200, req: (a, b) => ({ url: `/v1/layout/experiments?from=${a}&to=${b}` }) },
  { route: 'GET /v1/customers/:id (at, a time)', key: 'admin', field: 'querystring.at', kind: 'instant', ok: 200, req: (a) => ({ url: `/v1/customers/C001?at=${q(a)}` }) },
  { route: 'GET /v1/customers/:id (at, a date)', key: 'admin', field: 'querystring.at', kind: 'day', ok: 200, req: (a) => ({ url: `/v1/customers/C001?at=${a}` }) },
  { route: 'GET /v1/audit (from)', key: 'admin', field: 'querystring.from', kind: 'instant', ok: 200, req: (a, b) => ({ url: `/v1/audit?from=${q(a)}&to=${q(b)}` }) },
  { route: 'GET /v1/audit (to)', key: 'admin', field: 'querystring.to', kind: 'instant', ok: 200, req: (a) => ({ url: `/v1/audit?to=${q(a)}` }) },
  { route: 'GET /v1/operator/audit', key: 'operator', field: 'querystring.from', kind: 'instant', ok: 200, req: (a, b) => ({ url: `/v1/operator/audit?from=${q(a)}&to=${q(b)}` }) },
  { route: 'POST /v1/push/schedules/preview', key: 'marketer', field: 'body.from', kind: 'instant', ok: 200, req: (a) => ({ method: 'POST', url: '/v1/push/schedules/preview', payload: { cron: '0 10 * * *', from: a, count: 2 } }) },
  { route: 'PUT /v1/push/campaigns/:id (schedule.once.at)', key: 'marketer', field: 'schedule.at', kind: 'instant', ok: 201, req: (a, _b, name) => ({ method: 'PUT', url: `/v1/push/campaigns/once-${name}`, payload: campaign({ schedule: { kind: 'once', at: a } }) }) },
  { route: 'PUT /v1/push/campaigns/:id (validFrom)', key: 'marketer', field: 'validFrom', kind: 'instant', ok: 201, req: (a, _b, name) => ({ method: 'PUT', url: `/v1/push/campaigns/from-${name}`, payload: campaign({ validFrom: a }) }) },
  { route: 'PUT /v1/push/campaigns/:id (validUntil)', key: 'marketer', field: 'validUntil', kind: 'instant', ok: 201, req: (a, _b, name) => ({ method: 'PUT', url: `/v1/push/campaigns/until-${name}`, payload: campaign({ validUntil: a }) }) },
  { route: 'POST /v1/push/campaigns/:id/run', key: 'admin', field: 'body.asOf', kind: 'instant', ok: 200, req: (a) => ({ method: 'POST', url: '/v1/push/campaigns/reminder/run', payload: { asOf: a } }) },
  { route: 'GET /v1/segments/:id/members/:customerId (at, a time)', key: 'admin', field: 'querystring.at', kind: 'instant', ok: 200, req: (a) => ({ url: `/v1/segments/elders/members/C001?at=${q(a)}` }) },
  { route: 'GET /v1/segments/:id/members/:customerId (at, a date)', key: 'admin', field: 'querystring.at', kind: 'day', ok: 200, req: (a) => ({ url: `/v1/segments/elders/members/C001?at=${a}` }) },
  { route: 'POST /v1/pipelines/runs (backfill)', key: 'admin', field: 'body.backfill.from', kind: 'day', ok: 200, req: (a, b) => ({ method: 'POST', url: '/v1/pipelines/runs', payload: { pipeline: 'tags', backfill: { from: a, to: b }, wait: true } }) },
  {
    route: 'POST /v1/keys (expiresAt)',
    key: 'admin',
    field: 'body.expiresAt',
    kind: 'instant',
    ok: 201,
    inRange: ['2099-03-16T12:00:00+08:00', '2099-03-17T12:00:00+08:00'],
    req: (a) => ({ method: 'POST', url: '/v1/keys', payload: { roles: ['analyst'], holder: 'time bounds', expiresAt: a } }),
  },
]

function campaign(over: Record<string, unknown>): Record<string, unknown> {
  return { name: 'time bounds', purpose: 'service', priority: 'low', schedule: { kind: 'cron', cron: '0 10 * * *' }, message: { body: { zh: '您好', en: 'Hello' } }, ...over }
}

const CASES = ROUTES.flatMap((r) =>
  (Object.keys(TIMES[r.kind]) as Case[]).map((c) => {
    const status = c === 'in range' ? r.ok : 400
    return [`${r.route}: ${r.field} ${c} answers ${status}`, { ...r, case: c, status }] as const
  }),
)

beforeAll(async () => {
  t = await openTestApp({ QIANMIAN_OPERATOR_TOKEN: OPERATOR })
  const tenant = (await t.tenants.create({ slug: 'time-bounds', name: 'time bounds' })).id
  for (const role of ['admin', 'analyst', 'marketer'] as const) k[role] = await issueKey(t.keys, tenant, role)
  k.operator = OPERATOR
  const at = chDateTime(new Date('2026-01-01T00:00:00Z'))
  await t.engine.db.forTenant(tenant).insert('identities', [{ id_kind: 'customer_no', id_value: 'C001', customer_key: 1, source: 'test', created_at: at, updated_at: at }])
  const admin = { authorization: `Bearer ${k.admin}` }
  const setup = [
    await t.app.inject({
      method: 'PUT',
      url: '/v1/tags/elder',
      headers: admin,
      payload: { description: { zh: '测试', en: 'test' }, owner: 'qa', purpose: ['service'], type: 'boolean', rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } },
    }),
    await t.app.inject({ method: 'PUT', url: '/v1/segments/elders', headers: admin, payload: { name: 'Elders', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } } }),
    await t.app.inject({ method: 'PUT', url: '/v1/push/campaigns/reminder', headers: admin, payload: campaign({}) }),
  ]
  for (const r of setup) expect(r.statusCode, r.body).toBeLessThan(300)
}, 60_000)
afterAll(async () => {
  await t?.close()
})

describe('times the engine cannot hold, route by route', () => {
  it.each(CASES)('%s', async (_title, c) => {
    const [time, next] = c.case === 'in range' && c.inRange ? c.inRange : TIMES[c.kind][c.case]
    const name = c.case.replaceAll(' ', '-').replace(/[^a-z0-9-]/g, '')
    const res = await t.app.inject({ ...c.req(time, next, name), headers: { authorization: `Bearer ${k[c.key]}` } })
    expect(res.statusCode, res.body).toBe(c.status)
    if (c.status !== 400) return
    const error = res.json().error as { code: string; issues: { field: string; message: string }[] }
    expect(error.code).toBe('VALIDATION_FAILED')
    expect(error.issues.map((i) => i.field)).toContain(c.field)
  })
})
