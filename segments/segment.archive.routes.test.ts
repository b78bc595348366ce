import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chDateTime } from '../core/time.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Archiving a segment (issue 21): refused with the users named while a campaign or another
 * segment uses it; archived, it leaves the default list (a filter shows it), cannot be used or
 * changed until restored; each step is a version by the key's holder, and audited.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const elders = { tag: 'elder', op: 'eq', value: true }
const put = (url: string, payload: object) => t.app.inject({ method: 'PUT', url, headers: auth(bank.admin), payload })
const archive = (id: string, archived: boolean, key = bank.admin) => t.app.inject({ method: 'PUT', url: `/v1/segments/${id}/archived`, headers: auth(key), payload: { archived } })
const ids = async (query = '') => (await t.app.inject({ url: `/v1/segments${query}`, headers: auth(bank.admin) })).json().segments.map((s: { id: string }) => s.id)
const message = { body: { zh: '您好', en: 'Hello' } }

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'archive-seg-bank')
  const db = t.engine.db.forTenant(bank.tenant.id)
  const now = chDateTime(new Date())
  await db.insert('customers', [1, 2, 3, 4].map((k) => ({
    customer_key: k, customer_no: `C00${k}`, gender: 'unknown', birth_date: k <= 2 ? '1950-03-01' : '1990-03-01', region_code: 'r', branch_code: 'b', occupation: 'o',
    phone_hash: '', name_masked: '', opened_at: '2015-01-01 00:00:00', updated_at: now,
  })))
  const tag = await put('/v1/tags/elder', { description: { zh: '长辈', en: 'elder' }, owner: 'qa', type: 'boolean', purpose: ['service', 'marketing'], rule: { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } } })
  expect(tag.statusCode).toBe(201)
  expect((await put('/v1/segments/elders', { name: '长辈客群', description: 'Customers aged 60 and over', purpose: 'marketing', rule: elders })).statusCode).toBe(201)
  expect((await put('/v1/segments/elders-too', { name: '长辈（引用）', purpose: 'marketing', rule: { all: [{ segment: 'elders' }] } })).statusCode).toBe(201)
  expect((await put('/v1/push/campaigns/elder-wealth', { name: '长辈理财', purpose: 'marketing', audience: { segment: 'elders' }, schedule: { kind: 'cron', cron: '0 10 * * *' }, message })).statusCode).toBe(201)
  expect((await put('/v1/push/campaigns/elder-rule', { name: '长辈（规则）', purpose: 'marketing', audience: { rule: { all: [{ segment: 'elders' }] } }, schedule: { kind: 'cron', cron: '0 10 * * *' }, message })).statusCode).toBe(201)
}, 60_000)
afterAll(async () => {
  await t?.close()
})

describe('PUT /v1/segments/:id/archived', () => {
  it('refuses to archive a segment a campaign or another segment uses, naming each of them', async () => {
    const res = await archive('elders', true)
    expect(res.statusCode).toBe(409)
    const err = res.json().error
    expect(err.code).toBe('IN_USE')
    expect(err.issues.map((i: { kind: string; id: string; at: string }) => `${i.kind} ${i.id} ${i.at}`).sort()).toEqual(['campaign elder-rule audience.rule.all.0', 'campaign elder-wealth audience.segment', 'segment elders-too rule.all.0'])
    expect(await ids()).toContain('elders')
  })

  it('refuses to retire a segment a campaign or another segment uses, naming each of them, and keeps it', async () => {
    const res = await t.app.inject({ method: 'DELETE', url: '/v1/segments/elders', headers: auth(bank.admin) })
    expect(res.statusCode).toBe(409)
    const err = res.json().error
    expect(err.code).toBe('IN_USE')
    expect(err.issues.map((i: { kind: string; id: string; at: string }) => `${i.kind} ${i.id} ${i.at}`).sort()).toEqual(['campaign elder-rule audience.rule.all.0', 'campaign elder-wealth audience.segment', 'segment elders-too rule.all.0'])
    const kept = await t.app.inject({ url: '/v1/segments/elders', headers: auth(bank.admin) })
    expect(kept.statusCode).toBe(200)
    expect(kept.json()).toMatchObject({ id: 'elders', version: 1, retired: false })
  })

  it('archives once nothing uses it: out of the default list, shown by the filter, a version by the holder, audited', async () => {
    expect((await put('/v1/push/campaigns/elder-wealth', { name: '长辈理财', purpose: 'marketing', audience: { all: true }, schedule: { kind: 'cron', cron: '0 10 * * *' }, message })).statusCode).toBe(200)
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/segments/elders-too', headers: auth(bank.admin) })).statusCode).toBe(204)
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/push/campaigns/elder-rule', headers: auth(bank.admin) })).statusCode).toBe(204)
    const res = await archive('elders', true)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ changed: true, segment: { id: 'elders', version: 2, archived: true, createdBy: 'test admin' } })
    expect(await ids()).not.toContain('elders')
    expect(await ids('?archived=only')).toEqual(['elders'])
    expect(await ids('?archived=include&q=AGED%2060')).toEqual(['elders'])
    expect(await ids(`?archived=include&q=${encodeURIComponent('长辈 客群')}`)).toEqual(['elders'])
    expect(await ids('?archived=include&q=nobody')).toEqual([])
    const versions = (await t.app.inject({ url: '/v1/segments/elders/versions', headers: auth(bank.read) })).json().versions
    expect(versions.map((v: { version: number; archived: boolean; changeNote: string }) => [v.version, v.archived, v.changeNote])).toEqual([[1, false, ''], [2, true, 'archived']])
    const audit = (await t.app.inject({ url: '/v1/audit?action=segment.archive', headers: auth(bank.admin) })).json()
    expect(audit.entries.map((e: { objectId: string; outcome: string }) => `${e.objectId} ${e.outcome}`)).toEqual(expect.arrayContaining(['elders ok']))
  })

  it('an archived segment is used by nothing and changed by no one until it is restored', async () => {
    const audience = await put('/v1/push/campaigns/to-elders', { name: 'x', purpose: 'marketing', audience: { segment: 'elders' }, schedule: { kind: 'cron', cron: '0 10 * * *' }, message })
    expect(audience.statusCode).toBe(400)
    expect(audience.json().error.issues[0].field).toBe('audience.segment')
    expect((await put('/v1/segments/ref-elders', { name: 'x', purpose: 'marketing', rule: { segment: 'elders' } })).statusCode).toBe(400)
    const change = await put('/v1/segments/elders', { name: '长辈', purpose: 'marketing', rule: elders })
    expect(change.statusCode).toBe(409)
    expect(change.json().error.issues[0].field).toBe('archived')

    expect((await archive('elders', false, bank.read)).statusCode).toBe(403)
    const back = await archive('elders', false)
    expect(back.json()).toMatchObject({ changed: true, segment: { version: 3, archived: false } })
    expect(await ids()).toContain('elders')
    expect((await put('/v1/push/campaigns/to-elders', { name: 'x', purpose: 'marketing', audience: { segment: 'elders' }, schedule: { kind: 'cron', cron: '0 10 * * *' }, message })).statusCode).toBe(201)
  })

  it('refuses a body without a yes or no, naming the field', async () => {
    const res = await t.app.inject({ method: 'PUT', url: '/v1/segments/elders/archived', headers: auth(bank.admin), payload: { archived: 'soon' } })
    expect(res.statusCode).toBe(400)
    expect(JSON.stringify(res.json().error)).toContain('archived')
  })
})
