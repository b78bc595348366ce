import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { TenantTable } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../tags/tag.pack.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { countIn, type Subject } from './erasure.job.js'
import { placeOrder } from './erasure.places.js'
import { antiFraudCampaign } from '../test/fixtures.js'

/**
 * One customer erased everywhere, seeded through the real paths: stock data (customer, account,
 * loan and its schedule, bill) through the import route, events and
 * traits through /v1/batch (an app id and a device linked), a consent recorded, tags computed by
 * the pipeline, a saved segment materialized, a push target made by an event trigger, pulled and
 * acknowledged, layouts served and their exposures written. After the job every place is read
 * again and holds nothing of them; a neighbour seeded the same way keeps every row; previews,
 * layouts and pulls made afterwards see no trace; late events are dropped until the number is
 * re-registered.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const V = 'E0001' // the customer erased
const N = 'E0002' // the neighbour

async function keyOf(no: string): Promise<number> {
  const [r] = await t.engine.db
    .forTenant(bank.tenant.id)
    .query(`SELECT customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = {no:String}`, { no }, z.object({ k: z.coerce.number() }))
  return r?.k ?? 0
}

const subjectOf = (no: string, key: number): Subject => ({ customerNos: [no], keys: [key], anonymousIds: [`anon-${no}`, 'fresh-install'], deviceIds: [], digests: [] })

async function counts(s: Subject): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const table of placeOrder()) out[table] = await countIn(t.engine.db.forTenant(bank.tenant.id), table, s)
  return out
}

const post = (url: string, payload: unknown, key = bank.admin) => t.app.inject({ method: 'POST', url, headers: auth(key), payload: payload as object })

function events(no: string, now: number) {
  const ctx = { device: { id: `dev-${no}`, model: 'x' }, app: { version: '1' } }
  const base = { userId: no, anonymousId: `anon-${no}`, context: ctx }
  return [
    { ...base, type: 'identify', traits: { plan: 'gold', nickname: 'n' }, timestamp: new Date(now - 120_000).toISOString(), messageId: `${no}-id` },
    { ...base, type: 'track', event: 'product_viewed', properties: { product_id: 'wm-01' }, timestamp: new Date(now - 100_000).toISOString(), messageId: `${no}-pv` },
    { ...base, type: 'track', event: 'signed_in', properties: { new_device: true }, timestamp: new Date(now - 60_000).toISOString(), messageId: `${no}-si` },
    { ...base, type: 'track', event: 'transfer_completed', properties: { amount: 80_000 }, timestamp: new Date(now).toISOString(), messageId: `${no}-tc` },
  ]
}

let before: { v: Record<string, number>; n: Record<string, number> }
let vKey: number
let nKey: number
let jobId: string

beforeAll(async () => {
  t = await openTestApp({ PIPELINE_RETRIES: '0' })
  bank = await tenantWithKeys(t, 'erase-bank')
  // Stock data through the bank's import path (POST /v1/import/:kind), as a bank loads it.
  const nos = [V, N, 'E0003', 'E0004']
  const at = new Date().toISOString().slice(0, 19).replace('T', ' ') + 'Z'
  const files: [kind: string, csv: string[], rows: number][] = [
    ['customers', ['customer_no,gender,birth_date,region_code,branch_code,phone,name,opened_at', ...nos.map((no, i) => `${no},female,${1950 + i * 20}-05-01,3301,b1,1380013800${i},王芳,${at}`)], 4],
    ['accounts', ['customer_no,account_no,kind,currency,balance,opened_at,status', ...[V, N].map((no) => `${no},A-${no},savings,CNY,1000,2015-01-01,active`)], 2],
    ['loans', ['customer_no,loan_no,principal,outstanding,annual_rate,start_date,maturity_date', ...[V, N].map((no) => `${no},L-${no},50000,20000,0.0435,2023-01-01,2026-01-01`)], 2],
    ['loan_schedules', ['loan_no,installment_no,due_date,amount_due', ...[V, N].map((no) => `L-${no},1,2024-01-01,1500`)], 2],
    // And a bill of the neighbour the customer paid (a family agent): the neighbour's row, naming the customer.
    ['bills', ['customer_no,bill_no,biller,amount,due_date,status,paid_at,payer_customer_no', ...[V, N].map((no) => `${no},B-${no},electricity,88.20,2024-05-01,unpaid,,`), `${N},B-${N}-paid,water,30.50,2024-04-01,paid,2024-03-28 10:00:00,${V}`], 3],
  ]
  for (const [kind, lines, inserted] of files) {
    const res = await t.app.inject({ method: 'POST', url: `/v1/import/${kind}`, headers: { ...auth(bank.admin), 'content-type': 'text/csv' }, payload: lines.join('\n') + '\n' })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json(), kind).toMatchObject({ status: 'imported', rows: { inserted } })
  }
  // The banking pack (the layout catalogue reads its tags), then a saved segment and an event-triggered push.
  await applyDefinitions(t.tags.repo, bank.tenant.id, readDefinitionFiles(BANKING_PACK), 'test')
  const seg = await t.app.inject({ method: 'PUT', url: '/v1/segments/actives', headers: auth(bank.admin), payload: { name: 'Actives', purpose: 'marketing', rule: { tag: 'active_7d', op: 'eq', value: true } } })
  expect(seg.statusCode, seg.body).toBe(201)
  const campaign = antiFraudCampaign
  expect((await t.app.inject({ method: 'PUT', url: '/v1/push/campaigns/anti-fraud', headers: auth(bank.admin), payload: campaign })).statusCode).toBe(201)
  // Behaviour and a consent through the app's paths.
  const now = Date.now()
  const sent = await post('/v1/batch', { batch: [...events(V, now), ...events(N, now)] }, bank.write)
  expect(sent.statusCode, sent.body).toBe(200)
  expect(sent.json().accepted).toBe(8)
  for (const no of [V, N]) {
    const c = await t.app.inject({ method: 'PUT', url: `/v1/customers/${no}/consents`, headers: auth(bank.admin), payload: { purpose: 'marketing', channel: 'push', granted: true, source: 'app', noticeVersion: 'v1' } })
    expect(c.statusCode, c.body).toBe(200)
  }
  // The pipelines: tags, the segment's materialization, the layout model.
  // A tag run is followed by the segments, then the layout model and push targeting.
  const run = await t.tags.runner.run({ tenantId: bank.tenant.id, pipeline: 'tags', trigger: 'api' })
  expect(run.status, run.error).toBe('succeeded')
  for (let i = 0; i < 300 && t.tags.runner.running(bank.tenant.id).length; i++) await new Promise((r) => setTimeout(r, 100))
  const done = await t.tags.runner.runs(bank.tenant.id, { limit: 50 })
  for (const p of ['segments', 'recommend'] as const) expect(done.some((r) => r.pipeline === p && r.status === 'succeeded'), `${p}: ${JSON.stringify(done.map((r) => [r.pipeline, r.status, r.error]))}`).toBe(true)
  // The trigger's targets, pulled and acknowledged by the notification service.
  let pulled: { targetId: string; customerNo: string }[] = []
  for (let i = 0; i < 50 && pulled.length < 2; i++) {
    const res = await post('/v1/push/pull', { limit: 10, leaseSeconds: 60 }, bank.read)
    pulled = [...pulled, ...(res.json().targets as typeof pulled)]
    if (pulled.length < 2) await new Promise((r) => setTimeout(r, 200))
  }
  expect(pulled.map((p) => p.customerNo).sort()).toEqual([V, N])
  expect((await post('/v1/push/ack', { results: pulled.map((p) => ({ targetId: p.targetId, status: 'delivered' })) }, bank.read)).statusCode).toBe(200)
  for (const no of [V, N]) expect((await t.app.inject({ url: `/v1/layout?customerId=${no}`, headers: auth(bank.read) })).json().known).toBe(true)
  await t.recommend.layouts.flush()
  vKey = await keyOf(V)
  nKey = await keyOf(N)
  before = { v: await counts(subjectOf(V, vKey)), n: await counts(subjectOf(N, nKey)) }
}, 300_000)
afterAll(async () => t?.close())

/** Places every seeded customer has rows in (tag run staging and push scratch tables may be empty). */
const SEEDED: TenantTable[] = [
  'customers', 'accounts', 'loans', 'loan_schedules', 'bills', 'identities', 'events', 'ingest_dedup', 'ingest_dedup_digests', 'identity_changes', 'customer_traits', 'consents', 'consent_history',
  'tag_values', 'tag_history', 'tag_bitmaps', 'segment_members', 'segment_events', 'push_targets', 'push_leases', 'push_outcomes', 'layout_exposures', 'audit_log',
]

describe('erasure of one customer', () => {
  it('refuses an erasure without a reason (400), of an unknown customer (404), to a key without tenant:admin (403)', async () => {
    const none = await post(`/v1/customers/${V}/erasure`, {})
    expect(none.statusCode).toBe(400)
    expect(none.json().error.issues[0].field).toBe('reason')
    expect((await post(`/v1/customers/${V}/erasure`, { reason: '   ' })).statusCode).toBe(400)
    expect((await post('/v1/customers/NOPE/erasure', { reason: 'asked' })).statusCode).toBe(404)
    expect((await post(`/v1/customers/${V}/erasure`, { reason: 'asked' }, bank.read)).statusCode).toBe(403)
  })

  it('the customer and the neighbour were seeded into every place through the real paths', () => {
    for (const table of SEEDED) {
      expect(before.v[table], `${V} in ${table}`).toBeGreaterThan(0)
      expect(before.n[table], `${N} in ${table}`).toBeGreaterThan(0)
    }
  })

  it('erases the customer everywhere and proves it; the neighbour keeps every row', async () => {
    const previewBefore = await post('/v1/segments/preview', { purpose: 'marketing', rule: { tag: 'active_7d', op: 'eq', value: true } }, bank.admin)
    expect(previewBefore.statusCode, previewBefore.body).toBe(200)
    const erasedFrom = chDateTime(new Date())
    const started = await post(`/v1/customers/${V}/erasure`, { reason: 'PIPL art. 47 request, ticket 123' })
    expect(started.statusCode, started.body).toBe(202)
    jobId = started.json().id
    // (A second request while it runs, 409 naming the job: erasure.resume.test.ts, where the job is held half-way.)
    await t.privacy.erasure.idle()
    const job = (await t.app.inject({ url: `/v1/erasures/${jobId}`, headers: auth(bank.admin) })).json()
    expect(job.status, job.error).toBe('done')
    expect(job.progress.done).toBe(job.progress.total)
    expect(job.proof.verified).toBe(true)
    const proof = new Map<string, { before: number; remaining: number }>(job.proof.places.map((p: { table: string }) => [p.table, p]))
    for (const table of SEEDED) expect(proof.get(table)?.before, table).toBeGreaterThan(0)
    for (const [table, p] of proof) expect(p.remaining, table).toBe(0)
    expect(job.proof.notHeld.map((x: { table: string }) => x.table)).toContain('tag_definitions')
    expect(job.proof.outside.map((x: { place: string }) => x.place)).toEqual(['kafka', 'exports'])
    // Read again here, independently of the job: nothing of the customer anywhere.
    const after = await counts(subjectOf(V, vKey))
    for (const table of placeOrder()) expect(after[table], table).toBe(0)
    expect(proof.get('bills')?.before).toBe(2)
    // The neighbour's bill the customer paid stays, without its payer.
    const db = t.engine.db.forTenant(bank.tenant.id)
    const paid = await db.query(`SELECT customer_key AS k, payer_key AS p FROM bills FINAL WHERE tenant_id = {tenant:UInt16} AND bill_no = {no:String}`, { no: `B-${N}-paid` }, z.object({ k: z.coerce.number(), p: z.coerce.number() }))
    expect(paid).toEqual([{ k: nKey, p: 0 }])
    // Tag runs see the stock tables it deleted from as changed (a rule over what a payer paid for others reads them).
    const stamped = await db.query(`SELECT toString(source) AS s FROM stock_changes WHERE tenant_id = {tenant:UInt16} AND changed_at >= {at:DateTime64(3, 'UTC')} GROUP BY s ORDER BY s`, { at: erasedFrom }, z.object({ s: z.string() }))
    expect(stamped.map((r) => r.s)).toEqual(['accounts', 'bills', 'consents', 'customers', 'loan_schedules', 'loans'])
    // The neighbour: every row where it was.
    const n = await counts(subjectOf(N, nKey))
    for (const table of placeOrder()) expect(n[table], `${N} in ${table}`).toBe(before.n[table])
    // Audit entries kept, the erased number nowhere in clear.
    const audit = await db.query(`SELECT count() AS n, countIf(customer_no LIKE 'erased:%') AS d FROM audit_log WHERE tenant_id = {tenant:UInt16} AND (position(customer_no, {no:String}) > 0 OR position(object_id, {no:String}) > 0 OR customer_no LIKE 'erased:%')`, { no: V }, z.object({ n: z.coerce.number(), d: z.coerce.number() }))
    expect(audit[0]!.n).toBe(audit[0]!.d)
    expect(audit[0]!.d).toBeGreaterThan(0)
    // A preview, a layout and a pull made now see no trace of them.
    const previewAfter = await post('/v1/segments/preview', { purpose: 'marketing', rule: { tag: 'active_7d', op: 'eq', value: true } }, bank.admin)
    expect(previewAfter.json().count).toBe(previewBefore.json().count - 1)
    expect(previewAfter.body).not.toContain(V)
    const layout = (await t.app.inject({ url: `/v1/layout?customerId=${V}`, headers: auth(bank.read) })).json()
    expect(layout.known).toBe(false)
    await t.recommend.layouts.flush()
    expect(await countIn(db, 'layout_exposures', subjectOf(V, vKey))).toBe(0)
    const pull = await post('/v1/push/pull', { limit: 100, leaseSeconds: 60 }, bank.read)
    expect(pull.body).not.toContain(V)
    // The export: gone.
    const exported = await t.app.inject({ url: `/v1/customers/${V}/export`, headers: auth(bank.admin) })
    expect(exported.statusCode).toBe(410)
    expect(exported.json().error.code).toBe('CUSTOMER_ERASED')
  })

  it('drops late and replayed events of the erased number and app id, until the number is re-registered', async () => {
    const now = Date.now()
    const late = await post('/v1/batch', { batch: [
      { type: 'track', userId: V, event: 'late', timestamp: new Date(now).toISOString(), messageId: 'late-1' },
      { type: 'track', anonymousId: `anon-${V}`, event: 'late', timestamp: new Date(now).toISOString(), messageId: 'late-2' },
      { type: 'identify', userId: V, anonymousId: 'fresh-install', traits: { plan: 'x' }, timestamp: new Date(now).toISOString(), messageId: 'late-3' },
      { type: 'track', userId: N, event: 'late', timestamp: new Date(now).toISOString(), messageId: 'late-4' },
    ] }, bank.write)
    expect(late.statusCode, late.body).toBe(200)
    const db = t.engine.db.forTenant(bank.tenant.id)
    const lateRows = await db.query(`SELECT message_id FROM events WHERE tenant_id = {tenant:UInt16} AND message_id LIKE 'late-%' ORDER BY message_id`, {}, z.object({ message_id: z.string() }))
    expect(lateRows.map((r) => r.message_id)).toEqual(['late-4'])
    // Dropped before identities: no key, no link, no trait came back.
    expect(await keyOf(V)).toBe(0)
    expect(await countIn(db, 'identities', subjectOf(V, vKey))).toBe(0)
    expect(await countIn(db, 'customer_traits', subjectOf(V, vKey))).toBe(0)
    const metrics = await t.metrics.registry.metrics()
    expect(metrics).toMatch(new RegExp(`qianmian_erasure_dropped_events_total\\{[^}]*tenant="${bank.tenant.id}"[^}]*\\} 3`))
    expect((await post(`/v1/customers/${V}/reregistration`, {})).statusCode).toBe(400)
    expect((await post(`/v1/customers/${N}/reregistration`, { reason: 'x' })).statusCode).toBe(404)
    expect((await post(`/v1/customers/${V}/reregistration`, { reason: 'opened a new relationship' })).statusCode).toBe(200)
    const back = await post('/v1/batch', { batch: [{ type: 'track', userId: V, event: 'back', timestamp: new Date().toISOString(), messageId: 'back-1' }] }, bank.write)
    expect(back.json().accepted).toBe(1)
    const newKey = await keyOf(V)
    expect(newKey).toBeGreaterThan(0)
    expect(newKey).not.toBe(vKey)
  })
})
