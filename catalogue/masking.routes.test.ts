import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { DeclaredRoute } from '../audit/audit.hook.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../tags/tag.pack.js'
import { issueKey, openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { ROLE_PERMISSIONS, ROLES, type Permission, type Role } from '../tenants/permissions.js'

/**
 * C2 values (JR/T 0171-2020, `GET /v1/data-catalogue`) masked in every API response unless the
 * key may read personal data, route by route. One customer is seeded through the real paths
 * with a value in every C2 place the catalogue lists (birth date, phone and national id digests,
 * masked name, account and loan numbers, balances and amounts, digested traits, a high-sensitivity
 * tag) and every route of the app is called, as each role it admits, with a request that reaches
 * that customer where the route can. The whole body of each answer is searched for the raw values.
 *
 * A route is one of:
 * - `none`: no customer data for a key without personal:read; no C2 value may appear;
 * - `purpose`: a role without personal:read gets a customer's data for its purpose; only the C2
 *   values listed under `shows` may appear (and must, for `shownTo`);
 * - `personal`: only keys holding personal:read are admitted (checked against the roles);
 *   `shows` lists what the route is meant to show them, `hides` what it withholds even then;
 * - `operator`: the platform operator, outside every tenant: no C2 value may appear.
 * A route without an entry fails the test, as a stale entry does.
 */

const SECRETS = [
  'birthDate', 'phone', 'phoneDigest', 'nationalId', 'nationalIdDigest', 'nameMasked', 'accountNo', 'balance', 'loanNo', 'principal',
  'outstanding', 'installment', 'billAmount', 'tel', 'telDigest', 'highTagValue',
] as const
type Secret = (typeof SECRETS)[number]

interface Ctx {
  customer: string
  segment: string
  campaign: string
  runId: string
  pulled: string[]
}
interface Req {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'OPTIONS'
  url: string
  payload?: unknown
}
type Entry =
  | { kind: 'none'; req?: (c: Ctx) => Req; status?: number }
  | { kind: 'purpose'; req: (c: Ctx) => Req; shows: Secret[]; shownTo: Role; mayShow?: Secret[] }
  | { kind: 'personal'; req?: (c: Ctx) => Req; shows?: Secret[]; hides?: Secret[] }
  | { kind: 'operator' }

const none: Entry = { kind: 'none' }
const personal: Entry = { kind: 'personal' }
const operator: Entry = { kind: 'operator' }
const ingest = (payload: (c: Ctx) => Record<string, unknown>) => (url: string): Entry => ({ kind: 'none', req: (c) => ({ method: 'POST', url, payload: payload(c) }) })
const track = ingest((c) => ({ userId: c.customer, event: 'product_viewed', properties: { product_id: 'wm-01' } }))
const identify = ingest((c) => ({ userId: c.customer, traits: { nickname: 'mask-nick' } }))
const page = ingest((c) => ({ userId: c.customer, name: 'home' }))
const group = ingest((c) => ({ userId: c.customer, groupId: 'family-1' }))
const alias = ingest((c) => ({ userId: c.customer, previousId: 'mask-anon-2' }))
const batch = ingest((c) => ({ batch: [{ type: 'track', userId: c.customer, event: 'product_viewed' }] }))
const preview = () => ({ purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true }, breakdown: ['age', 'aum_tier'], sampleSize: 10 })

const TABLE: Record<string, Entry> = {
  'GET /health': none,
  'GET /ready': none,
  'GET /metrics': none,
  'GET /docs': none,
  'GET /console': none,
  'GET /console/*': { kind: 'none', req: () => ({ url: '/console/index.html' }) },
  'GET /v1/tenant': none,
  // A member bank has no member banks: 404, its body searched all the same.
  'GET /v1/group/members': { kind: 'none', status: 404 },
  'PUT /v1/tenant/privacy': personal,
  'GET /v1/tenant/cors': personal,
  'PUT /v1/tenant/cors': personal,
  'GET /v1/data-catalogue': none,
  'GET /v1/tenant/digests': personal,
  'POST /v1/tenant/digests/rekey': personal,
  'GET /v1/keys': personal,
  'POST /v1/keys': personal,
  'POST /v1/keys/:keyId/rotate': personal,
  'DELETE /v1/keys/:keyId': personal,
  'GET /v1/operator/tenants': operator,
  'POST /v1/operator/tenants': operator,
  'POST /v1/operator/tenants/:tenant/disable': operator,
  'POST /v1/operator/tenants/:tenant/enable': operator,
  'POST /v1/operator/tenants/:tenant/keys': operator,
  'GET /v1/operator/tenants/:tenant/keys': operator,
  'DELETE /v1/operator/tenants/:tenant/keys/:keyId': operator,
  'GET /v1/operator/audit': operator,
  ...Object.fromEntries(
    (
      [
        ['batch', batch], ['b', batch], ['track', track], ['t', track], ['identify', identify], ['i', identify], ['page', page], ['p', page],
        ['screen', page], ['s', page], ['group', group], ['g', group], ['alias', alias], ['a', alias],
      ] as const
    ).flatMap(([x, make]) => [
      [`POST /v1/${x}`, make(`/v1/${x}`)],
      // The browser's CORS preflight, sent without a key.
      [`OPTIONS /v1/${x}`, { kind: 'none', req: () => ({ method: 'OPTIONS', url: `/v1/${x}` }) }],
    ]),
  ),
  'GET /v1/tracking-plan': personal,
  'PUT /v1/tracking-plan': personal,
  'DELETE /v1/tracking-plan': personal,
  'GET /v1/identities/changes': personal,
  'POST /v1/identities/changes/:changeId/undo': personal,
  'POST /v1/identities/merge': personal,
  'GET /v1/tags': none,
  'GET /v1/tags/features': none,
  // The high-sensitivity tag: a key without personal:read must not learn it exists, nor its values.
  'GET /v1/tags/:name': { kind: 'none', req: () => ({ url: '/v1/tags/mask_risk_code' }), status: 404 },
  'GET /v1/tags/:name/versions': { kind: 'none', req: () => ({ url: '/v1/tags/mask_risk_code/versions' }), status: 404 },
  'PUT /v1/tags/:name': personal,
  'DELETE /v1/tags/:name': personal,
  'POST /v1/tags/apply': personal,
  // Minimum necessary even for an admin: an age band, not the birth date; no digests, no account numbers.
  'GET /v1/customers/:id': {
    kind: 'personal',
    req: (c) => ({ url: `/v1/customers/${c.customer}` }),
    shows: ['nameMasked', 'highTagValue'],
    hides: ['birthDate', 'phoneDigest', 'nationalIdDigest', 'telDigest', 'accountNo', 'loanNo', 'balance'],
  },
  'GET /v1/customers/:id/tags/:tag/history': { kind: 'personal', req: (c) => ({ url: `/v1/customers/${c.customer}/tags/mask_risk_code/history` }), shows: ['highTagValue'] },
  'GET /v1/customers/:id/segments': personal,
  'PUT /v1/customers/:id/consents': {
    kind: 'purpose',
    req: (c) => ({ method: 'PUT', url: `/v1/customers/${c.customer}/consents`, payload: { purpose: 'marketing', channel: 'push', granted: true, source: 'app', noticeVersion: 'v1' } }),
    shows: [],
    shownTo: 'consent',
  },
  'GET /v1/customers/:id/consents': { kind: 'purpose', req: (c) => ({ url: `/v1/customers/${c.customer}/consents` }), shows: [], shownTo: 'consent' },
  'GET /v1/customers/:id/export': { kind: 'personal', req: (c) => ({ url: `/v1/customers/${c.customer}/export` }), shows: ['nameMasked', 'highTagValue'] },
  'POST /v1/customers/:id/erasure': personal,
  'GET /v1/erasures/:id': personal,
  'POST /v1/customers/:id/reregistration': personal,
  'GET /v1/consent/categories': personal,
  'PUT /v1/consent/categories': personal,
  'GET /v1/pipelines/runs': { kind: 'none', req: () => ({ url: '/v1/pipelines/runs?limit=100' }) },
  'GET /v1/pipelines/runs/:runId': { kind: 'none', req: (c) => ({ url: `/v1/pipelines/runs/${c.runId}` }) },
  'POST /v1/pipelines/runs': personal,
  'GET /v1/pipelines/status': none,
  'POST /v1/segments/preview': { kind: 'none', req: () => ({ method: 'POST', url: '/v1/segments/preview', payload: preview() }) },
  'POST /v1/segments/explain': { kind: 'none', req: () => ({ method: 'POST', url: '/v1/segments/explain', payload: { purpose: 'service', rule: preview().rule } }) },
  'GET /v1/segments': none,
  'GET /v1/events/names': none,
  'GET /v1/segments/:id': { kind: 'none', req: (c) => ({ url: `/v1/segments/${c.segment}` }) },
  'GET /v1/segments/:id/versions': { kind: 'none', req: (c) => ({ url: `/v1/segments/${c.segment}/versions` }) },
  'POST /v1/segments/:id/preview': { kind: 'none', req: (c) => ({ method: 'POST', url: `/v1/segments/${c.segment}/preview`, payload: { breakdown: ['age'], sampleSize: 10 } }) },
  'PUT /v1/segments/:id': {
    kind: 'none',
    req: () => ({ method: 'PUT', url: '/v1/segments/mask-elders-copy', payload: { name: 'Elders (copy)', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } } }),
  },
  'DELETE /v1/segments/:id': { kind: 'none', req: () => ({ method: 'DELETE', url: '/v1/segments/mask-no-such-segment' }), status: 404 },
  // Restoring a segment that is not archived: a no-op answering the segment as saved.
  'PUT /v1/segments/:id/archived': { kind: 'none', req: (c) => ({ method: 'PUT', url: `/v1/segments/${c.segment}/archived`, payload: { archived: false } }) },
  'GET /v1/segments/:id/members': personal,
  'GET /v1/segments/:id/export': personal,
  'GET /v1/segments/:id/runs': { kind: 'none', req: (c) => ({ url: `/v1/segments/${c.segment}/runs` }) },
  'GET /v1/segments/:id/members/:customerId': personal,
  // The home screen the customer sees: reminders by the tags that hold, no field of the profile.
  'GET /v1/layout': { kind: 'purpose', req: (c) => ({ url: `/v1/layout?customerId=${c.customer}` }), shows: [], shownTo: 'layout' },
  'GET /v1/layout/catalog': none,
  'PUT /v1/layout/catalog': personal,
  'GET /v1/layout/catalog/versions': none,
  'GET /v1/layout/model': none,
  'GET /v1/layout/experiments': none,
  'GET /v1/push/campaigns': none,
  'GET /v1/push/campaigns/:id': { kind: 'none', req: (c) => ({ url: `/v1/push/campaigns/${c.campaign}` }) },
  'POST /v1/push/campaigns/:id/reach': {
    kind: 'none',
    req: () => ({ method: 'POST', url: '/v1/push/campaigns/mask-reach/reach', payload: { name: 'reach', purpose: 'service', priority: 'low', schedule: { kind: 'cron', cron: '0 10 * * *' }, message: { body: { zh: '您好', en: 'Hello' } } } }),
  },
  'GET /v1/push/campaigns/:id/versions': { kind: 'none', req: (c) => ({ url: `/v1/push/campaigns/${c.campaign}/versions` }) },
  'PUT /v1/push/campaigns/:id': {
    kind: 'none',
    req: () => ({ method: 'PUT', url: '/v1/push/campaigns/mask-copy', payload: { name: 'copy', purpose: 'service', priority: 'low', schedule: { kind: 'cron', cron: '0 10 * * *' }, message: { body: { zh: '您好 {{name}}', en: 'Hello {{name}}' } } } }),
  },
  'DELETE /v1/push/campaigns/:id': { kind: 'none', req: () => ({ method: 'DELETE', url: '/v1/push/campaigns/mask-no-such-campaign' }), status: 404 },
  'PUT /v1/push/campaigns/:id/archived': { kind: 'none', req: (c) => ({ method: 'PUT', url: `/v1/push/campaigns/${c.campaign}/archived`, payload: { archived: false } }) },
  'POST /v1/push/campaigns/:id/run': { kind: 'none', req: () => ({ method: 'POST', url: '/v1/push/campaigns/mask-bills/run', payload: {} }) },
  'GET /v1/push/campaigns/:id/approval': { kind: 'none', req: (c) => ({ url: `/v1/push/campaigns/${c.campaign}/approval` }) },
  'POST /v1/push/campaigns/:id/approval/request': { kind: 'none', req: (c) => ({ method: 'POST', url: `/v1/push/campaigns/${c.campaign}/approval/request`, payload: { version: 1 } }), status: 400 },
  'POST /v1/push/campaigns/:id/approval': { kind: 'none', req: (c) => ({ method: 'POST', url: `/v1/push/campaigns/${c.campaign}/approval`, payload: { version: 1 } }), status: 400 },
  // The seeded customer on a test list: the filled text (masked name, amounts) goes only to a key that may read personal data.
  'PUT /v1/push/test-lists/:id': { kind: 'none', req: (c) => ({ method: 'PUT', url: '/v1/push/test-lists/mask-staff', payload: { name: 'staff', members: [{ customerNo: c.customer, label: 'phone' }] } }) },
  'GET /v1/push/test-lists': none,
  'POST /v1/push/campaigns/:id/test': { kind: 'none', req: (c) => ({ method: 'POST', url: `/v1/push/campaigns/${c.campaign}/test`, payload: { list: 'mask-staff' } }) },
  'GET /v1/push/campaigns/:id/stats': { kind: 'none', req: (c) => ({ url: `/v1/push/campaigns/${c.campaign}/stats` }) },
  'GET /v1/push/campaigns/:id/targets': { kind: 'personal', req: (c) => ({ url: `/v1/push/campaigns/${c.campaign}/targets` }), shows: ['nameMasked', 'installment'] },
  'POST /v1/push/schedules/preview': { kind: 'none', req: () => ({ method: 'POST', url: '/v1/push/schedules/preview', payload: { cron: '0 9 * * 1-5', count: 3 } }) },
  // A customer's message for a key without personal:read: its C2 values masked (a filled name, amounts).
  // A high tag is refused in a message for every key (push/high-tags.routes.test.ts).
  'POST /v1/push/templates/preview': {
    kind: 'none',
    req: (c) => ({
      method: 'POST',
      url: '/v1/push/templates/preview',
      payload: { customerNo: c.customer, message: { body: { zh: '{{name}} {{loan.amount}} {{bill.amount}}', en: '{{name|-}} {{loan.amount|-}} {{bill.amount|-}}' } } },
    }),
  },
  'GET /v1/push/policy': none,
  'PUT /v1/push/policy': personal,
  // The notification service sends the message: the masked name and the amount due are its text.
  // The bill campaign a marketer runs below (its text carries the bill amount) is targeted in the
  // background: whether its target is queued by the time of the pull depends on timing.
  'POST /v1/push/pull': { kind: 'purpose', req: () => ({ method: 'POST', url: '/v1/push/pull', payload: { limit: 100, leaseSeconds: 1 } }), shows: ['nameMasked', 'installment'], mayShow: ['billAmount'], shownTo: 'push' },
  'POST /v1/push/ack': {
    kind: 'purpose',
    req: (c) => ({ method: 'POST', url: '/v1/push/ack', payload: { results: c.pulled.map((targetId) => ({ targetId, status: 'failed', retry: true })) } }),
    shows: [],
    shownTo: 'push',
  },
  'GET /v1/audit': personal,
  'POST /v1/import/:kind': personal,
  'GET /v1/import/kinds': personal,
}

const C = 'MASK-C1'
const NEIGHBOUR = 'MASK-C2'
const OPERATOR = 'masking-test-operator-token-0123456789'
const RAW: Partial<Record<Secret, string>> = {
  birthDate: '1953-07-19',
  phone: '13912345678',
  nationalId: '11010519491231002X',
  nameMasked: '欧*', // what the import makes of 欧阳娜娜 is read back below
  accountNo: 'AC-MASK-62220202',
  balance: '98765.43',
  loanNo: 'LN-MASK-7781',
  principal: '234567.89',
  outstanding: '123456.78',
  installment: '4321.09',
  billAmount: '567.89',
  tel: '13700001111',
  highTagValue: 'hsv_q7x',
}

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
let routes: DeclaredRoute[]
const keys = {} as Record<Role, string>
const secrets = {} as Record<Secret, string>
const ctx: Ctx = { customer: C, segment: 'mask-elders', campaign: 'mask-due', runId: '', pulled: [] }
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const name = (r: DeclaredRoute) => `${r.method} ${r.url}`
const permissionOf = (r: DeclaredRoute) => r.onRequest.map((h) => (h as { permission?: Permission }).permission).find(Boolean)
const seesPersonal = (role: Role) => ROLE_PERMISSIONS[role].includes('personal:read')

function send(req: Req, key: string | undefined) {
  const method = req.method ?? 'GET'
  return t.app.inject({ method, url: req.url, headers: key ? auth(key) : {}, ...(req.payload !== undefined ? { payload: req.payload as object } : {}) })
}

/** The seeded C2 values found in a body, by name. */
const found = (body: string) => SECRETS.filter((s) => secrets[s] && body.includes(secrets[s]))

beforeAll(async () => {
  t = await openTestApp({ QIANMIAN_OPERATOR_TOKEN: OPERATOR, PIPELINE_RETRIES: '0' })
  routes = [...t.audit.declared()]
  bank = await tenantWithKeys(t, 'mask-bank')
  for (const role of ROLES) keys[role] = await issueKey(t.keys, bank.tenant.id, role)
  const soon = new Date(Date.now() + 5 * 86_400_000).toISOString().slice(0, 10)
  const at = new Date().toISOString().slice(0, 19).replace('T', ' ') + 'Z'
  const files: [kind: string, lines: string[]][] = [
    [
      'customers',
      [
        'customer_no,gender,birth_date,region_code,branch_code,phone,name,national_id,opened_at',
        `${C},female,${RAW.birthDate},3301,b1,${RAW.phone},欧阳娜娜,${RAW.nationalId},${at}`,
        `${NEIGHBOUR},male,1988-02-02,3301,b1,13800138000,李雷,,${at}`,
      ],
    ],
    ['accounts', ['customer_no,account_no,kind,currency,balance,opened_at,status', `${C},${RAW.accountNo},savings,CNY,${RAW.balance},2015-01-01,active`]],
    ['loans', ['customer_no,loan_no,principal,outstanding,annual_rate,start_date,maturity_date', `${C},${RAW.loanNo},${RAW.principal},${RAW.outstanding},0.0435,2023-01-01,2030-01-01`]],
    ['loan_schedules', ['loan_no,installment_no,due_date,amount_due', `${RAW.loanNo},1,${soon},${RAW.installment}`]],
    ['bills', ['customer_no,bill_no,biller,amount,due_date,status', `${C},B-MASK-1,electricity,${RAW.billAmount},${soon},unpaid`]],
  ]
  for (const [kind, lines] of files) {
    const res = await t.app.inject({ method: 'POST', url: `/v1/import/${kind}`, headers: { ...auth(bank.admin), 'content-type': 'text/csv' }, payload: lines.join('\n') + '\n' })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json(), kind).toMatchObject({ status: 'imported' })
  }
  await applyDefinitions(t.tags.repo, bank.tenant.id, readDefinitionFiles(BANKING_PACK), 'test')
  const high = {
    type: 'enum',
    values: [RAW.highTagValue],
    description: { zh: '风险代码', en: 'risk code' },
    owner: 'qa',
    purpose: ['risk'],
    sensitivity: 'high',
    rule: { kind: 'sql', sql: `SELECT customer_key, '${RAW.highTagValue}' AS value FROM $customers WHERE region_code = '3301'` },
  }
  const put = await t.app.inject({ method: 'PUT', url: '/v1/tags/mask_risk_code', headers: auth(bank.admin), payload: high })
  expect(put.statusCode, put.body).toBe(201)
  const seg = await t.app.inject({ method: 'PUT', url: `/v1/segments/${ctx.segment}`, headers: auth(bank.admin), payload: { name: 'Elders', purpose: 'service', rule: { tag: 'elder', op: 'eq', value: true } } })
  expect(seg.statusCode, seg.body).toBe(201)
  // A security reminder woken by a risky transfer, whose text carries the masked name and the amount due.
  const campaign = {
    name: 'Repayment reminder',
    purpose: 'security',
    priority: 'critical',
    channel: 'push',
    schedule: { kind: 'event', steps: [{ event: { names: ['transfer_completed'], where: [{ property: 'amount', op: 'gte', value: 50_000 }] } }], withinMinutes: 30 },
    message: { body: { zh: '{{name}} 您好，本期应还 {{loan.amount}} 元', en: 'Hello {{name}}, {{loan.amount}} due' } },
  }
  const camp = await t.app.inject({ method: 'PUT', url: `/v1/push/campaigns/${ctx.campaign}`, headers: auth(bank.admin), payload: campaign })
  expect(camp.statusCode, camp.body).toBe(201)
  // A scheduled one, which a marketer may run now: its text carries the bill amount.
  const bills = { name: 'Bills', purpose: 'service', priority: 'normal', audience: { segment: ctx.segment }, schedule: { kind: 'cron', cron: '0 10 * * *' }, message: { body: { zh: '{{name}} 账单 {{bill.amount}} 元', en: '{{name}}: bill of {{bill.amount}}' } } }
  const billsPut = await t.app.inject({ method: 'PUT', url: '/v1/push/campaigns/mask-bills', headers: auth(bank.admin), payload: bills })
  expect(billsPut.statusCode, billsPut.body).toBe(201)
  const now = Date.now()
  const base = { userId: C, anonymousId: 'mask-anon-1', context: { device: { id: 'mask-dev-1' } } }
  const sent = await t.app.inject({
    method: 'POST',
    url: '/v1/batch',
    headers: auth(keys.ingest),
    payload: {
      batch: [
        { ...base, type: 'identify', traits: { tel: RAW.tel, nickname: 'n' }, timestamp: new Date(now - 60_000).toISOString(), messageId: 'mask-id' },
        { ...base, type: 'track', event: 'transfer_completed', properties: { amount: 80_000 }, timestamp: new Date(now).toISOString(), messageId: 'mask-tc' },
      ],
    },
  })
  expect(sent.statusCode, sent.body).toBe(200)
  expect(sent.json().accepted).toBe(2)
  const run = await t.tags.runner.run({ tenantId: bank.tenant.id, pipeline: 'tags', trigger: 'api' })
  expect(run.status, run.error).toBe('succeeded')
  ctx.runId = run.runId
  for (let i = 0; i < 300 && t.tags.runner.running(bank.tenant.id).length; i++) await new Promise((r) => setTimeout(r, 100))
  // The stored forms: digests and the masked name as the real paths wrote them.
  const db = t.engine.db.forTenant(bank.tenant.id)
  const [profile] = await db.query(
    `SELECT phone_hash, name_masked FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND customer_no = {no:String}`,
    { no: C },
    z.object({ phone_hash: z.string(), name_masked: z.string() }),
  )
  const traits = await db.query(
    `SELECT t.trait AS trait, t.value AS value FROM customer_traits AS t FINAL
     WHERE t.tenant_id = {tenant:UInt16} AND t.hashed = 1 AND t.customer_key IN (SELECT customer_key FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND customer_no = {no:String})`,
    { no: C },
    z.object({ trait: z.string(), value: z.string() }),
  )
  Object.assign(secrets, RAW, {
    phoneDigest: profile!.phone_hash,
    nameMasked: profile!.name_masked,
    nationalIdDigest: traits.find((x) => x.trait === 'national_id')?.value ?? '',
    telDigest: traits.find((x) => x.trait === 'tel')?.value ?? '',
  })
  // The push target the trigger made (its text rendered), waiting for the notification service.
  for (let i = 0; i < 100; i++) {
    const [n] = await db.query(`SELECT count() AS n FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {c:String}`, { c: ctx.campaign }, z.object({ n: z.coerce.number() }))
    if (n!.n > 0) break
    await new Promise((r) => setTimeout(r, 100))
  }
}, 300_000)
afterAll(async () => t?.close())

describe('C2 values in API responses, route by route', () => {
  it('was seeded with a value in every C2 place, stored only in its protected form', () => {
    for (const s of SECRETS) expect(secrets[s], s).toBeTruthy()
    expect(secrets.phoneDigest).not.toContain(RAW.phone)
    expect(secrets.nameMasked).toContain('*')
    expect(secrets.nameMasked).not.toBe('欧阳娜娜')
  })

  it('has an entry for every route of the app, and no stale entries', () => {
    const names = new Set(routes.map(name))
    expect(routes.map(name).filter((n) => !(n in TABLE))).toEqual([])
    expect(Object.keys(TABLE).filter((n) => !names.has(n))).toEqual([])
  })

  it('admits only keys that may read personal data to the routes marked personal', () => {
    const wrong: string[] = []
    for (const r of routes) {
      const e = TABLE[name(r)]
      const need = permissionOf(r)
      if (e?.kind !== 'personal') continue
      if (!need) wrong.push(`${name(r)}: no permission`)
      else for (const role of ROLES) if (ROLE_PERMISSIONS[role].includes(need) && !seesPersonal(role)) wrong.push(`${name(r)}: admits ${role}`)
    }
    expect(wrong).toEqual([])
  })

  it('shows no C2 value to a key without personal:read, except what a route is for', async () => {
    const leaks: string[] = []
    const missing: string[] = []
    const unanswered: string[] = []
    // Pull before ack: the ack answers for the targets the pull leased.
    const order = [...routes].sort((a, b) => Number(a.url === '/v1/push/ack') - Number(b.url === '/v1/push/ack'))
    for (const r of order) {
      const e = TABLE[name(r)]
      if (!e || e.kind === 'personal') continue
      if (e.kind === 'operator') {
        if (r.method !== 'GET') continue
        const res = await send({ url: r.url.replace(':tenant', 'mask-bank') }, OPERATOR)
        if (res.statusCode !== 200) unanswered.push(`${name(r)} operator: ${res.statusCode} ${res.body.slice(0, 200)}`)
        for (const s of found(res.body)) leaks.push(`${name(r)} operator: ${s}`)
        continue
      }
      const need = permissionOf(r)
      const req = e.req?.(ctx) ?? { method: r.method as Req['method'], url: r.url }
      const callers: (Role | 'public')[] = need ? ROLES.filter((role) => ROLE_PERMISSIONS[role].includes(need) && !seesPersonal(role)) : ['public']
      for (const who of callers) {
        const res = await send(req, who === 'public' ? undefined : keys[who])
        // An answer that is not the one the request was built for would search nothing.
        const want = e.kind === 'none' && e.status ? e.status : undefined
        if (want ? res.statusCode !== want : res.statusCode >= 300 && res.statusCode !== 301) unanswered.push(`${name(r)} ${who}: ${res.statusCode} ${res.body.slice(0, 200)}`)
        const allowed: readonly Secret[] = e.kind === 'purpose' ? [...e.shows, ...(e.mayShow ?? [])] : []
        for (const s of found(res.body)) if (!allowed.includes(s)) leaks.push(`${name(r)} ${who}: ${s}`)
        if (e.kind === 'purpose' && who === e.shownTo) {
          for (const s of e.shows) if (!found(res.body).includes(s)) missing.push(`${name(r)} ${who}: ${s} not shown (${res.statusCode} ${res.body.slice(0, 300)})`)
          if (r.url === '/v1/push/pull') ctx.pulled = (res.json() as { targets: { targetId: string }[] }).targets.map((x) => x.targetId)
        }
      }
    }
    expect(leaks).toEqual([])
    expect(missing).toEqual([])
    expect(unanswered).toEqual([])
  }, 180_000)

  it('shows an admin what each personal route is for, and withholds what it says it withholds', async () => {
    const wrong: string[] = []
    for (const r of routes) {
      const e = TABLE[name(r)]
      if (e?.kind !== 'personal' || !e.req) continue
      const res = await send(e.req(ctx), keys.admin)
      if (res.statusCode !== 200) wrong.push(`${name(r)}: ${res.statusCode} ${res.body.slice(0, 300)}`)
      const got = found(res.body)
      for (const s of e.shows ?? []) if (!got.includes(s)) wrong.push(`${name(r)}: ${s} not shown`)
      for (const s of e.hides ?? []) if (got.includes(s)) wrong.push(`${name(r)}: ${s} shown`)
    }
    expect(wrong).toEqual([])
  }, 60_000)
})

/**
 * The SQL-tag path, against the catalogue: for every C2 column a `$source` of SQL tags exposes,
 * a tag whose value hands that column out, in each of the ways SQL can pass a value through
 * unchanged, is refused when saved (400 SQL_C2_VALUE, field rule.sql); a value derived from it
 * (a band, a flag) is saved. A column the catalogue declares C2 later is covered without a change.
 */
const PASS_THROUGH = [
  (c: string) => `toString(${c}) AS value`,
  (c: string) => `toString(${c}) value`,
  (c: string) => `toString(${c}) AS "value"`,
  (c: string) => `substring(toString(${c}), 1) AS value`,
  (c: string) => `[toString(${c})][1] AS value`,
  (c: string) => `arrayElement([toString(${c})], 1) AS value`,
  (c: string) => `lower(toString(${c})) AS value`,
  (c: string) => `replaceAll(toString(${c}), '', '') AS value`,
]

describe('SQL tags and the C2 columns of the catalogue', () => {
  it('refuses a tag whose value passes any exposed C2 column through, and saves one that derives a flag from it', async () => {
    const { SQL_TAG_SOURCES } = await import('../tags/tag.sources.js')
    const catalogue = (await t.app.inject({ url: '/v1/data-catalogue', headers: auth(keys.analyst) })).json() as { columns: { table: string; column: string; class: string }[] }
    const table = (source: string) => (source === 'tags' ? 'tag_values' : source)
    const exposed: [source: string, column: string][] = []
    for (const [source, sql] of Object.entries(SQL_TAG_SOURCES)) {
      for (const c of catalogue.columns.filter((x) => x.class === 'C2' && x.table === table(source))) {
        if (new RegExp(`\\b${c.column}\\b`).test(sql)) exposed.push([source, c.column])
      }
    }
    // The sources do expose C2 columns: the table below is not empty.
    expect(exposed.map(([s, c]) => `${s}.${c}`)).toEqual(expect.arrayContaining(['customers.birth_date', 'accounts.balance', 'loans.outstanding', 'bills.amount', 'events.amount']))
    const put = (name: string, sql: string) =>
      t.app.inject({
        method: 'PUT',
        url: `/v1/tags/${name}`,
        headers: auth(bank.admin),
        payload: { type: 'enum', values: ['x'], description: { zh: '测试', en: 'test' }, owner: 'qa', purpose: ['service'], rule: { kind: 'sql', sql } },
      })
    const saved: string[] = []
    for (const [source, column] of exposed) {
      for (const [i, value] of PASS_THROUGH.entries()) {
        const sql = `SELECT customer_key, ${value(column)} FROM $${source}`
        const res = await put(`c2_${source}_${column}_${i}`, sql)
        const issue = res.statusCode === 400 ? (res.json() as { error: { issues?: { field?: string; code?: string }[] } }).error.issues?.[0] : undefined
        if (issue?.field !== 'rule.sql' || issue.code !== 'SQL_C2_VALUE') saved.push(`${sql}: ${res.statusCode} ${res.body.slice(0, 160)}`)
      }
      const flag = await put(`c2_${source}_${column}_flag`, `SELECT customer_key, if(count() > 0 AND max(${column}) IS NOT NULL, 'x', 'x') AS value FROM $${source} GROUP BY customer_key`)
      if (flag.statusCode !== 201) saved.push(`flag from ${source}.${column} refused: ${flag.statusCode} ${flag.body.slice(0, 160)}`)
    }
    expect(saved).toEqual([])
  }, 120_000)
})

/**
 * A high-sensitivity tag's values stay where personal:read is needed: a lower tag may not copy
 * them, or the copy would be listed, broken down and shown to an analyst. A SQL tag's `$tags`
 * holds only tags no more sensitive than itself; a rule or score may not read a high tag unless
 * it is high itself.
 */
describe('a high-sensitivity tag read by a less sensitive one', () => {
  const def = (rule: unknown, sensitivity = 'low', type = 'string_list') => ({ type, description: { zh: '复制', en: 'copy' }, owner: 'qa', purpose: ['risk'], sensitivity, rule })
  const copy = { kind: 'sql', sql: "SELECT customer_key, [value] AS value FROM $tags WHERE tag = 'mask_risk_code'" }

  it('gives a SQL tag of lower sensitivity no values of it; one as sensitive reads them', async () => {
    for (const [name, s] of [['mask_copy_low', 'low'], ['mask_copy_medium', 'medium'], ['mask_copy_high', 'high']] as const) {
      const put = await t.app.inject({ method: 'PUT', url: `/v1/tags/${name}`, headers: auth(bank.admin), payload: def(copy, s) })
      expect(put.statusCode, put.body).toBe(201)
    }
    const run = await t.tags.runner.run({ tenantId: bank.tenant.id, pipeline: 'tags', trigger: 'api', mode: 'full', tags: ['mask_copy_low', 'mask_copy_medium', 'mask_copy_high'], follow: false })
    expect(run.status, run.error).toBe('succeeded')
    for (const name of ['mask_copy_low', 'mask_copy_medium']) {
      for (const key of [keys.analyst, keys.admin]) {
        const res = await t.app.inject({ url: `/v1/tags/${name}`, headers: auth(key) })
        expect(res.statusCode, res.body).toBe(200)
        expect(found(res.body), name).toEqual([])
      }
    }
    const high = await t.app.inject({ url: `/v1/customers/${C}`, headers: auth(keys.admin) })
    expect((high.json() as { tags: { name: string; value: unknown }[] }).tags.find((x) => x.name === 'mask_copy_high')?.value).toEqual([RAW.highTagValue])
  }, 60_000)

  it('shows the versions of a lowered tag from when it was high to keys with personal:read only', async () => {
    const sql = (v: string) => ({ kind: 'sql', sql: `SELECT customer_key, ['${v}'] AS value FROM $customers` })
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/mask_lowered', headers: auth(bank.admin), payload: def(sql('was_high_q2'), 'high') })).statusCode).toBe(201)
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tags/mask_lowered', headers: auth(bank.admin), payload: def(sql('now_low_q2'), 'low') })).statusCode).toBe(200)
    const analyst = await t.app.inject({ url: '/v1/tags/mask_lowered/versions', headers: auth(keys.analyst) })
    expect(analyst.statusCode).toBe(200)
    expect(analyst.body).toContain('now_low_q2')
    expect(analyst.body).not.toContain('was_high_q2')
    const admin = await t.app.inject({ url: '/v1/tags/mask_lowered/versions', headers: auth(keys.admin) })
    expect((admin.json() as { versions: unknown[] }).versions).toHaveLength(2)
  })

  it('refuses a rule of lower sensitivity that reads it, naming the field', async () => {
    const rule = { kind: 'rule', when: { tag: 'mask_risk_code', op: 'eq', value: 'x' } }
    const low = await t.app.inject({ method: 'PUT', url: '/v1/tags/mask_flag_low', headers: auth(bank.admin), payload: def(rule, 'medium', 'boolean') })
    expect(low.statusCode, low.body).toBe(400)
    expect(low.json().error.issues[0]).toMatchObject({ field: 'sensitivity' })
    const high = await t.app.inject({ method: 'PUT', url: '/v1/tags/mask_flag_high', headers: auth(bank.admin), payload: def(rule, 'high', 'boolean') })
    expect(high.statusCode, high.body).toBe(201)
    // Nor may a tag that lower tags read become high.
    const elder = (await t.app.inject({ url: '/v1/tags/age', headers: auth(bank.admin) })).json() as Record<string, unknown>
    const raise = { type: elder.type, description: elder.description, owner: elder.owner, purpose: elder.purpose, rule: elder.rule, sensitivity: 'high' }
    const raised = await t.app.inject({ method: 'PUT', url: '/v1/tags/age', headers: auth(bank.admin), payload: raise })
    expect(raised.statusCode, raised.body).toBe(400)
    expect(raised.json().error.issues[0]).toMatchObject({ field: 'sensitivity' })
  })
})
