import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { issueKey, openTestApp, type TestApp } from '../test/app.js'

/**
 * A customer merged into another shows, under either customer number, the consent that gates
 * its pushes: for each purpose and channel the latest decision under any of the survivor's keys.
 */

let t: TestApp
let tenant: number
const k: Record<string, string> = {}
const admin = { id: 'Li Wei', reason: 'same person' }
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const put = (customer: string, body: object) => t.app.inject({ method: 'PUT', url: `/v1/customers/${customer}/consents`, headers: auth(k.consent!), payload: body })
const state = async (customer: string) => (await t.app.inject({ url: `/v1/customers/${customer}/consents`, headers: auth(k.consent!) })).json()
const current = (s: { current: { purpose: string; channel: string; granted: boolean }[] }) =>
  Object.fromEntries(s.current.map((c) => [`${c.purpose}/${c.channel}`, c.granted]))
const decision = (granted: boolean, at: string, purpose = 'marketing') => ({ purpose, channel: 'push', granted, source: 'app', noticeVersion: 'v4', at })

beforeAll(async () => {
  t = await openTestApp()
  tenant = (await t.tenants.create({ slug: 'consent-merge', name: 'consent merge' })).id
  k.consent = await issueKey(t.keys, tenant, 'consent')
  k.ingest = await issueKey(t.keys, tenant, 'ingest')
  // The customers exist through ingest (the merge needs their numbers known).
  const batch = ['MA', 'MB', 'MC', 'MD'].map((no) => ({ type: 'identify', messageId: crypto.randomUUID(), userId: no }))
  const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(k.ingest), payload: { batch } })
  expect(res.statusCode, res.body).toBe(200)
}, 60_000)
afterAll(async () => t?.close())

describe('consent of merged customers', () => {
  it('shows the latest decision under either key for the survivor and the customer merged into it, until the merge is undone', async () => {
    // B granted (11-01) before A withdrew (11-02); A's personalization switch is older than B's.
    expect((await put('MB', decision(true, '2026-11-01T09:00:00Z'))).statusCode).toBe(200)
    expect((await put('MA', decision(false, '2026-11-02T09:00:00Z'))).statusCode).toBe(200)
    await put('MA', { ...decision(false, '2026-10-01T09:00:00Z', 'personalization'), channel: 'all' })
    await put('MB', { ...decision(true, '2026-10-02T09:00:00Z', 'personalization'), channel: 'all' })
    const merge = await t.ingest.identities.merge(tenant, 'MA', 'MB', admin)
    const b = await state('MB')
    expect(current(b)).toEqual({ 'marketing/push': false, 'personalization/all': true })
    expect(b.personalized).toBe(true)
    expect(b.current.find((c: { purpose: string }) => c.purpose === 'marketing')).toMatchObject({ at: '2026-11-02T09:00:00.000Z' })
    // The history is the person's: every decision under either key.
    expect(b.history).toHaveLength(4)
    expect(current(await state('MA'))).toEqual(current(b))

    await t.ingest.identities.undo(tenant, merge!.changeId, 'Li Wei')
    expect(current(await state('MB'))).toEqual({ 'marketing/push': true, 'personalization/all': true })
    expect(current(await state('MA'))).toEqual({ 'marketing/push': false, 'personalization/all': false })
    expect((await state('MB')).history).toHaveLength(2)
  })

  it('records a decision after the merge for the survivor, against the newest under either key', async () => {
    expect((await put('MC', decision(false, '2026-11-03T09:00:00Z'))).statusCode).toBe(200)
    expect((await put('MD', decision(true, '2026-11-01T09:00:00Z'))).statusCode).toBe(200)
    await t.ingest.identities.merge(tenant, 'MC', 'MD', admin)
    // Older than C's withdrawal, newer than D's own grant: history only.
    const older = await put('MD', decision(true, '2026-11-02T09:00:00Z'))
    expect(older.statusCode).toBe(409)
    expect(older.json().error).toMatchObject({ code: 'CONSENT_SUPERSEDED' })
    // Under the number merged away, a newer one decides for the person.
    const newer = await put('MC', decision(true, '2026-11-04T09:00:00Z'))
    expect(newer.json()).toMatchObject({ granted: true, effective: true })
    expect(current(await state('MD'))).toEqual({ 'marketing/push': true })
    expect(current(await state('MC'))).toEqual({ 'marketing/push': true })
  })
})
