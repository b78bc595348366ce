import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPii } from '../core/pii.js'
import { maskValue, type PiiKind, type ValuePolicy } from '../core/pii.scan.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Personal data in what the events table and the traits store, on the real engine, through both
 * ways a request is normalized: the route (a worker thread, INGEST_WORKERS) and the service's
 * own entry (this thread). Every place a message carries the app's text, for every kind of
 * identifier, under each policy: none is stored in clear.
 */

const pii = createPii('test-secret-test-secret-test-secret')
const ID = '11010519491231002X'
const CARD = '6222021234567890128'
const KINDS: readonly (readonly [PiiKind, string])[] = [
  ['phone', '13812345678'],
  ['national_id', ID],
  ['card', CARD],
  ['email', 'wang@example.cn'],
]

/** Where the app's text goes, and the column (or path in properties, context) it is stored in. */
const PLACES: readonly { name: string; message: (v: string) => Record<string, unknown> }[] = [
  { name: 'property value', message: (v) => ({ type: 'track', event: 'e', properties: { note: `tel:${v}` } }) },
  { name: 'property key', message: (v) => ({ type: 'track', event: 'e', properties: { contacts: { [v]: 'mum' } } }) },
  { name: 'trait key', message: (v) => ({ type: 'identify', traits: { [v]: 'mum', family: { [v]: 'dad' } } }) },
  { name: 'context key', message: (v) => ({ type: 'track', event: 'e', context: { app: { [v]: 'x' } } }) },
  { name: 'track event', message: (v) => ({ type: 'track', event: `call:${v}` }) },
  { name: 'page name', message: (v) => ({ type: 'page', name: `profile ${v}` }) },
  { name: 'screen name', message: (v) => ({ type: 'screen', name: `profile ${v}` }) },
  { name: 'page category', message: (v) => ({ type: 'page', name: 'p', category: `tel:${v}` }) },
  { name: 'screen category', message: (v) => ({ type: 'screen', name: 's', category: `tel:${v}` }) },
  { name: 'groupId', message: (v) => ({ type: 'group', groupId: v }) },
  { name: 'context sessionId', message: (v) => ({ type: 'track', event: 'e', context: { sessionId: `s:${v}` } }) },
]

let t: TestApp
let tmp: string
beforeAll(async () => {
  t = await openTestApp({ INGEST_WORKERS: '1' })
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-pii-stored-'))
})
afterAll(async () => {
  await t?.close()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

const batch = () =>
  PLACES.flatMap((p) => KINDS.map(([, v]) => ({ messageId: crypto.randomUUID(), userId: 'C1', ...p.message(v) })))
const rows = <T>(tenantId: number, sql: string) => t.engine.db.forTenant(tenantId).query<T>(sql)

describe.each(['digest', 'mask'] as const)('personal data in every place, %s policy', (policy: ValuePolicy) => {
  let tenant: number
  beforeAll(async () => {
    const k = await tenantWithKeys(t, `places-${policy}`)
    tenant = k.tenant.id
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tenant/privacy', headers: { authorization: `Bearer ${k.admin}` }, payload: { valuePolicy: policy } })).statusCode).toBe(200)
    expect(t.ingest.pool).toBeDefined()
    const viaWorker = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${k.write}` }, payload: { batch: batch() } })
    expect(viaWorker.statusCode, viaWorker.body).toBe(200)
    expect(viaWorker.json()).toMatchObject({ accepted: PLACES.length * KINDS.length, rejected: [] })
    const inThread = await t.ingest.service.ingest({ tenantId: tenant, actor: 'test', messages: batch(), envelope: {}, single: false })
    expect(inThread).toMatchObject({ accepted: PLACES.length * KINDS.length, rejected: [] })
  })

  it.each(KINDS)('stores no %s in clear in any column of events or customer_traits', async (_kind, v) => {
    for (const table of ['events', 'customer_traits']) {
      const hits = await rows<{ row: string }>(tenant, `SELECT toString(tuple(*)) AS row FROM ${table} WHERE tenant_id = {tenant:UInt16}`)
      expect(hits.length, table).toBeGreaterThan(0)
      expect(hits.filter((r) => r.row.includes(v)), `${v} in ${table}`).toEqual([])
    }
  })

  it.each(KINDS)('stores the %s replaced by the policy in the event, session_id and group_id columns', async (kind, v) => {
    const replaced = policy === 'digest' ? `[${kind}:${pii.hash(kind, v, tenant)}]` : maskValue(kind, v)
    const stored = await rows<{ event: string; session_id: string; properties: string }>(tenant, 'SELECT event, session_id, properties FROM events WHERE tenant_id = {tenant:UInt16}')
    const count = (pred: (r: (typeof stored)[number]) => boolean) => stored.filter(pred).length
    // Each place twice: once through the worker, once in this thread.
    expect(count((r) => r.event === `call:${replaced}`)).toBe(2)
    expect(count((r) => r.event === `profile ${replaced}`)).toBe(4)
    expect(count((r) => r.session_id === `s:${replaced}`)).toBe(2)
    expect(count((r) => JSON.parse(r.properties).category === `tel:${replaced}`)).toBe(4)
    expect(count((r) => JSON.parse(r.properties).group_id === replaced)).toBe(2)
    expect(count((r) => JSON.parse(r.properties).contacts?.[replaced] === 'mum')).toBe(2)
  })
})

describe('one number, one digest, wherever it comes from', () => {
  it('matches a mobile number sent with +86 in events and traits, and an imported one, to the bare number', async () => {
    const k = await tenantWithKeys(t, 'plus86')
    const tenant = k.tenant.id
    const bare = pii.hash('phone', '13812345678', tenant)
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/batch',
      headers: { authorization: `Bearer ${k.write}` },
      payload: {
        batch: [
          { type: 'track', messageId: crypto.randomUUID(), userId: 'C1', event: 'e', properties: { a: '+8613812345678', b: '13812345678', c: '008613812345678' } },
          { type: 'identify', messageId: crypto.randomUUID(), userId: 'C2', traits: { phone: '+86 138 1234 5678', tel: '+8613812345678' } },
        ],
      },
    })
    expect(res.json()).toMatchObject({ accepted: 2, rejected: [] })
    const [ev] = await rows<{ properties: string }>(tenant, `SELECT properties FROM events WHERE tenant_id = {tenant:UInt16} AND type = 'track'`)
    expect(JSON.parse(ev!.properties)).toEqual({ a: `[phone:${bare}]`, b: `[phone:${bare}]`, c: `[phone:${bare}]` })
    const traits = await rows<{ trait: string; value: string }>(tenant, 'SELECT trait, value FROM customer_traits FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY trait')
    expect(traits).toEqual([
      { trait: 'phone', value: bare },
      { trait: 'tel', value: bare },
    ])
    const file = path.join(tmp, 'plus86.csv')
    fs.writeFileSync(file, 'customer_no,phone,opened_at\nC3,+86 138 1234 5678,2020-01-01 08:00:00\nC4,13812345678,2020-01-01 08:00:00\n')
    expect(await t.ingest.importer.importFile({ tenantId: tenant, kind: 'customers', file, actor: 'test' })).toMatchObject({ status: 'imported' })
    const profiles = await rows<{ phone_hash: string }>(tenant, 'SELECT phone_hash FROM customers FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY customer_no')
    expect(profiles).toEqual([{ phone_hash: bare }, { phone_hash: bare }])
  })

  it('digests an identify trait idCard as the identity number the import stores for that customer', async () => {
    const k = await tenantWithKeys(t, 'idcard')
    const tenant = k.tenant.id
    const file = path.join(tmp, 'idcard.csv')
    fs.writeFileSync(file, `customer_no,national_id,opened_at\nC7,${ID},2020-01-01 08:00:00\n`)
    expect(await t.ingest.importer.importFile({ tenantId: tenant, kind: 'customers', file, actor: 'test' })).toMatchObject({ status: 'imported' })
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/identify',
      headers: { authorization: `Bearer ${k.write}` },
      payload: { messageId: crypto.randomUUID(), userId: 'C7', traits: { idCard: ID, bankCard: CARD } },
    })
    expect(res.statusCode).toBe(200)
    const traits = await rows<{ trait: string; value: string }>(tenant, 'SELECT trait, value FROM customer_traits FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY trait')
    expect(traits).toEqual([
      { trait: 'bankCard', value: pii.hash('card', CARD, tenant) },
      { trait: 'idCard', value: pii.hash('national_id', ID, tenant) },
      { trait: 'national_id', value: pii.hash('national_id', ID, tenant) },
    ])
  })
})
