import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chDateTime } from '../core/time.js'
import { createWithdrawalIndex } from '../push/consent.index.js'
import { createPersonalizationSwitch } from '../recommend/personalization.js'
import { issueKey, openTestApp, type TestApp } from '../test/app.js'

/** Consent recorded through the API and through ingest, with its history, on the real engine. */

let t: TestApp
let tenant: number
let otherTenant: number
const k: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const put = (customer: string, body: object, key = k.consent!) => t.app.inject({ method: 'PUT', url: `/v1/customers/${customer}/consents`, headers: auth(key), payload: body })
const state = async (customer: string, key = k.consent!) => (await t.app.inject({ url: `/v1/customers/${customer}/consents`, headers: auth(key) })).json()
const batch = (events: object[]) => t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(k.ingest!), payload: { batch: events } })
const current = (s: { current: { purpose: string; channel: string; granted: boolean }[] }) =>
  Object.fromEntries(s.current.map((c) => [`${c.purpose}/${c.channel}`, c.granted]))

beforeAll(async () => {
  t = await openTestApp()
  tenant = (await t.tenants.create({ slug: 'consent-bank', name: 'consent bank' })).id
  otherTenant = (await t.tenants.create({ slug: 'consent-other', name: 'other' })).id
  k.consent = await issueKey(t.keys, tenant, 'consent')
  k.ingest = await issueKey(t.keys, tenant, 'ingest')
  k.admin = await issueKey(t.keys, tenant, 'admin')
  k.layout = await issueKey(t.keys, tenant, 'layout')
  k.otherConsent = await issueKey(t.keys, otherTenant, 'consent')
  const at = chDateTime(new Date('2026-01-01T00:00:00Z'))
  await t.engine.db.forTenant(tenant).insert('identities', [1, 2, 3, 4, 5, ...Array.from({ length: 32 }, (_, i) => 10 + i)].map((n) => ({ id_kind: 'customer_no', id_value: `C${n}`, customer_key: n, source: 'test', created_at: at, updated_at: at })))
}, 60_000)
afterAll(async () => {
  await t?.close()
})

describe('PUT and GET /v1/customers/:id/consents', () => {
  it('records a decision with who, when, source and notice version, and shows the state and history', async () => {
    const r = await put('C1', { purpose: 'marketing', channel: 'push', granted: true, source: 'counter', noticeVersion: 'v3', at: '2026-11-01T09:00:00Z' })
    expect(r.statusCode).toBe(200)
    expect(r.json()).toEqual({ purpose: 'marketing', channel: 'push', granted: true, at: '2026-11-01T09:00:00.000Z', effective: true })
    const w = await put('C1', { purpose: 'marketing', channel: 'push', granted: false, source: 'call_centre', noticeVersion: 'v4', at: '2026-11-02T09:00:00Z' })
    expect(w.json()).toMatchObject({ granted: false, effective: true })
    const s = await state('C1')
    expect(current(s)).toEqual({ 'marketing/push': false })
    expect(s.personalized).toBe(true)
    expect(s.history).toHaveLength(2)
    expect(s.history[0]).toMatchObject({ granted: false, source: 'call_centre', noticeVersion: 'v4', holder: 'test consent', at: '2026-11-02T09:00:00.000Z' })
    expect(s.history[1]).toMatchObject({ granted: true, source: 'counter', noticeVersion: 'v3' })
    expect(s.history[0].keyId).toMatch(/^[0-9a-f]{16}$/)
  })

  it('keeps the newest decision by the customer’s time: an older one arriving later is history only (409)', async () => {
    await put('C2', { purpose: 'marketing', channel: 'sms', granted: false, source: 'app', noticeVersion: 'v4', at: '2026-11-05T10:00:00Z' })
    const late = await put('C2', { purpose: 'marketing', channel: 'sms', granted: true, source: 'counter', noticeVersion: 'v3', at: '2026-11-04T10:00:00Z' })
    expect(late.statusCode).toBe(409)
    expect(late.json().error).toMatchObject({ code: 'CONSENT_SUPERSEDED', issues: [{ field: 'at' }] })
    const s = await state('C2')
    expect(current(s)).toEqual({ 'marketing/sms': false })
    expect(s.history.map((h: { granted: boolean }) => h.granted)).toEqual([true, false])
    // The targeting query reads the same current state.
    const [row] = await t.engine.db.forTenant(tenant).query(
      `SELECT argMax(granted, updated_at) AS g FROM consents FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key = 2 AND purpose = 'marketing' AND channel = 'sms'`,
      {},
      z.object({ g: z.coerce.number() }),
    )
    expect(row!.g).toBe(0)
  })

  it('two decisions stamped with the same time (a counter’s import by day): the later received holds', async () => {
    await t.engine.db.system.command('SYSTEM STOP MERGES consents')
    try {
      for (const granted of [true, false, true, false]) {
        const r = await put('C5', { purpose: 'marketing', channel: 'push', granted, source: 'counter', noticeVersion: 'v4', at: '2026-11-07T00:00:00Z' })
        expect(r.json()).toMatchObject({ granted, effective: true })
      }
      for (const granted of [false, true]) {
        await put('C5', { purpose: 'personalization', channel: 'all', granted, source: 'counter', noticeVersion: 'v4', at: '2026-11-07T00:00:00Z' })
      }
      expect(current(await state('C5'))).toEqual({ 'marketing/push': false, 'personalization/all': true })
      // What pushes and layouts read, loaded afresh from the table.
      const withdrawals = createWithdrawalIndex({ db: t.engine.db, windowMs: 10 * 365 * 86_400_000 })
      await withdrawals.refresh(tenant)
      expect(withdrawals.withdrawn(tenant, 5, 'marketing', 'push')).toBe(true)
      const personalization = createPersonalizationSwitch({ db: t.engine.db })
      await personalization.ready(tenant)
      expect(personalization.off(tenant, 5)).toBe(false)
    } finally {
      await t.engine.db.system.command('SYSTEM START MERGES consents')
    }
  })

  it('records the same request replayed once', async () => {
    const body = { purpose: 'service', channel: 'push', granted: true, source: 'app', noticeVersion: 'v4', at: '2026-11-06T10:00:00Z' }
    expect((await put('C3', body)).statusCode).toBe(200)
    expect((await put('C3', body)).statusCode).toBe(200)
    expect((await state('C3')).history).toHaveLength(1)
  })

  it('refuses bad input with a coded 4xx naming the field, and keeps what was accepted', async () => {
    const bad = async (body: object, customer = 'C4') => {
      const r = await put(customer, body)
      return { status: r.statusCode, ...r.json().error }
    }
    const ok = { purpose: 'marketing', channel: 'push', granted: true, source: 'app', noticeVersion: 'v4' }
    expect(await bad({ ...ok, purpose: 'profiling' })).toMatchObject({ status: 400, code: 'CONSENT_INVALID', issues: [{ field: 'purpose' }] })
    expect(await bad({ ...ok, channel: 'fax' })).toMatchObject({ status: 400, code: 'CONSENT_INVALID', issues: [{ field: 'channel' }] })
    expect(await bad({ ...ok, channel: 'all' })).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'channel' }] })
    expect(await bad({ ...ok, purpose: 'personalization', channel: 'push' })).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'channel' }] })
    expect(await bad({ ...ok, channel: undefined })).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'channel' }] })
    expect(await bad({ ...ok, source: 'import' })).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'source' }] })
    expect(await bad({ ...ok, noticeVersion: '' })).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'noticeVersion' }] })
    expect(await bad({ ...ok, at: 'yesterday' })).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'at' }] })
    expect(await bad({ ...ok, granted: 'yes' })).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'granted' }] })
    expect(await bad(ok, 'NOBODY')).toMatchObject({ status: 404, code: 'NOT_FOUND', issues: [{ field: 'id' }] })
    expect((await state('C4')).history).toEqual([])
    // Keys without the permission, and another tenant's, get nothing.
    expect((await put('C4', ok, k.layout)).statusCode).toBe(403)
    expect((await put('C4', ok, k.otherConsent)).statusCode).toBe(404)
    expect((await t.app.inject({ url: '/v1/customers/C1/consents', headers: auth(k.otherConsent!) })).statusCode).toBe(404)
  })

  it('records the personalization switch on the channel "all"', async () => {
    const r = await put('C4', { purpose: 'personalization', granted: false, source: 'app', noticeVersion: 'v4', at: '2026-11-07T10:00:00Z' })
    expect(r.json()).toMatchObject({ purpose: 'personalization', channel: 'all', granted: false, effective: true })
    const s = await state('C4')
    expect(s.personalized).toBe(false)
    expect(current(s)).toEqual({ 'personalization/all': false })
  })
})

describe('a decision dated where the tables cannot hold it', () => {
  const withdrawal = { purpose: 'marketing', channel: 'push', granted: false, source: 'app', noticeVersion: 'v4', at: '2026-11-08T10:00:00Z' }
  const historyOf = async (customerNo: string) =>
    (await t.engine.db.forTenant(tenant).query(`SELECT count() AS n FROM consent_history WHERE tenant_id = {tenant:UInt16} AND customer_no = {no:String}`, { no: customerNo }, z.object({ n: z.coerce.number() })))[0]!.n

  it('is refused alone with a 400 naming at, while the valid ones sent beside it are recorded', async () => {
    const valid = Array.from({ length: 10 }, (_, i) => `C${10 + i}`)
    const res = await Promise.all([...valid.map((c) => put(c, withdrawal)), put('C20', { ...withdrawal, at: '1000-01-01T00:00:00Z' })])
    expect(res.map((r) => r.statusCode)).toEqual([...valid.map(() => 200), 400])
    expect(res[10]!.json().error).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'at' }] })
    for (const c of valid) expect(current(await state(c))).toEqual({ 'marketing/push': false })
    expect(await historyOf('C20')).toBe(0)
  })

  it('takes any time the columns hold up to a few minutes ahead, and refuses one outside with 400 naming at', async () => {
    // Before the epoch form's range (1973) and far back: the desk may record an old paper form.
    for (const at of ['1900-01-01T00:00:00Z', '1950-06-01T00:00:00Z']) {
      const r = await put('C21', { ...withdrawal, purpose: 'service', at })
      expect(r.statusCode, r.body).toBe(200)
    }
    for (const at of ['1899-12-31T23:59:59.999Z', '0000-01-01T00:00:00+01:00', '2300-01-01T00:00:00Z', new Date(Date.now() + 3_600_000).toISOString()]) {
      const r = await put('C22', { ...withdrawal, at })
      expect(r.statusCode, at).toBe(400)
      expect(r.json().error, at).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'at' }] })
    }
    expect(await historyOf('C22')).toBe(0)
  })

  it('written in one batch with others and refused by the engine, fails its own request only', async () => {
    // Past the route’s check (a change recorded by other code): year -1 is no DateTime64 value.
    const change = (n: number, customerAt: number) => ({ customerKey: n, customerNo: `C${n}`, purpose: 'marketing', channel: 'sms', granted: false, customerAt, source: 'counter', noticeVersion: 'v4', messageId: '', category: '' }) as const
    const by = { keyId: 'desk', holder: 'test desk' }
    const good = Array.from({ length: 10 }, (_, i) => 23 + i)
    const out = await Promise.allSettled([...good.map((n) => t.consent.service.record(tenant, [change(n, Date.parse('2026-11-09T10:00:00Z'))], by)), t.consent.service.record(tenant, [change(33, Date.parse('0000-01-01T00:00:00+01:00'))], by)])
    expect(out.map((o) => o.status)).toEqual([...good.map(() => 'fulfilled'), 'rejected'])
    for (const n of good) expect(current(await state(`C${n}`))).toEqual({ 'marketing/sms': false })
    expect(await historyOf('C33')).toBe(0)
  })

  it('from ingest, is left out and logged while the other changes of the same request are recorded', async () => {
    const item = (userId: string, timestamp: number) => ({ userId, anonymousId: '', messageId: `m-${userId}`, timestamp, categories: { push_marketing: false } })
    const r = await t.consent.service.fromIngest(tenant, [item('C34', Date.parse('2026-11-10T08:00:00Z')), item('C35', Date.parse('0000-01-01T00:00:00+01:00'))], 'ingest-key')
    expect(r).toMatchObject({ recorded: 1 })
    expect(current(await state('C34'))).toEqual({ 'marketing/push': false })
    expect(await historyOf('C35')).toBe(0)
  })
})

describe('consent through ingest', () => {
  const ev = (over: object) => ({ type: 'track', userId: 'I1', event: 'screen_viewed', timestamp: '2026-11-10T08:00:00Z', ...over })

  it('maps context.consent.categoryPreferences to purposes and channels, by the default mapping', async () => {
    const r = await batch([
      ev({ messageId: 'm1', context: { consent: { categoryPreferences: { marketing: false, personalization: false, analytics: true } } } }),
      ev({ messageId: 'm2', event: 'Segment Consent Preference Updated', userId: 'I2', context: { consent: { categoryPreferences: { push_marketing: true } } } }),
      ev({ messageId: 'm3', userId: 'I3' }),
    ])
    expect(r.json()).toMatchObject({ accepted: 3, rejected: [] })
    const s1 = await state('I1')
    expect(current(s1)).toEqual({ 'marketing/push': false, 'marketing/sms': false, 'marketing/in_app': false, 'personalization/all': false })
    expect(s1.history[0]).toMatchObject({ source: 'ingest', holder: 'test ingest', category: expect.stringMatching(/^(marketing|personalization)$/), at: '2026-11-10T08:00:00.000Z' })
    // Recorded in the audit trail by the consent service, as the app key's holder.
    const audited = await t.engine.db.forTenant(tenant).query(
      `SELECT holder, detail FROM audit_log WHERE tenant_id = {tenant:UInt16} AND action = 'consent.record' AND customer_no = 'I1'`,
      {},
      z.object({ holder: z.string(), detail: z.string() }),
    )
    expect(audited).toHaveLength(4)
    expect(audited.every((a) => a.holder === 'test ingest' && JSON.parse(a.detail).source === 'ingest')).toBe(true)
    expect(current(await state('I2'))).toEqual({ 'marketing/push': true })
    // An event without a consent object changes nothing.
    expect((await state('I3')).current).toEqual([])
  })

  it('rejects a malformed category map for its event only, naming the field', async () => {
    const r = await batch([
      ev({ messageId: 'b1', userId: 'I4', context: { consent: { categoryPreferences: { marketing: 'no' } } } }),
      ev({ messageId: 'b2', userId: 'I4', context: { consent: { categoryPreferences: ['marketing'] } } }),
      ev({ messageId: 'b3', userId: 'I4', event: 'Segment Consent Preference Updated' }),
      ev({ messageId: 'b4', userId: 'I4', context: { consent: { categoryPreferences: { push_marketing: true } } } }),
    ])
    const body = r.json()
    expect(body.accepted).toBe(1)
    expect(body.rejected).toEqual([
      expect.objectContaining({ index: 0, code: 'CONSENT_INVALID', field: 'context.consent.categoryPreferences.marketing' }),
      expect.objectContaining({ index: 1, code: 'CONSENT_INVALID', field: 'context.consent.categoryPreferences' }),
      expect.objectContaining({ index: 2, code: 'CONSENT_INVALID', field: 'context.consent.categoryPreferences' }),
    ])
    expect(current(await state('I4'))).toEqual({ 'marketing/push': true })
  })

  it('is idempotent for a replayed event, and the newest by the customer’s time wins whatever arrives first', async () => {
    const newer = ev({ messageId: 'o2', userId: 'I5', timestamp: '2026-11-10T09:00:00Z', context: { consent: { categoryPreferences: { push_marketing: false } } } })
    const older = ev({ messageId: 'o1', userId: 'I5', timestamp: '2026-11-10T08:00:00Z', context: { consent: { categoryPreferences: { push_marketing: true } } } })
    await batch([newer])
    await batch([older])
    await batch([newer])
    const s = await state('I5')
    expect(current(s)).toEqual({ 'marketing/push': false })
    expect(s.history.map((h: { granted: boolean }) => h.granted).sort()).toEqual([false, true])
  })

  it('follows the tenant’s own category mapping, saved by an admin', async () => {
    const get = await t.app.inject({ url: '/v1/consent/categories', headers: auth(k.admin!) })
    expect(get.json()).toMatchObject({ version: 0, mapping: { marketing: expect.any(Array), personalization: [{ purpose: 'personalization', channel: 'all' }] } })
    const bad = await t.app.inject({ method: 'PUT', url: '/v1/consent/categories', headers: auth(k.admin!), payload: { C0004: [{ purpose: 'marketing', channel: 'all' }] } })
    expect(bad.json().error).toMatchObject({ code: 'CONSENT_INVALID', issues: [{ field: 'C0004.0.channel' }] })
    expect((await t.app.inject({ method: 'PUT', url: '/v1/consent/categories', headers: auth(k.consent!), payload: {} })).statusCode).toBe(403)
    const saved = await t.app.inject({ method: 'PUT', url: '/v1/consent/categories?changeNote=onetrust', headers: auth(k.admin!), payload: { C0004: [{ purpose: 'marketing', channel: 'sms' }] } })
    expect(saved.json()).toMatchObject({ version: 1, changed: true })
    await batch([ev({ messageId: 'c1', userId: 'I6', context: { consent: { categoryPreferences: { C0004: false, marketing: false } } } })])
    expect(current(await state('I6'))).toEqual({ 'marketing/sms': false })
  })
})
