import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createWithdrawalIndex } from '../../push/consent.index.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../../test/app.js'

/**
 * Consent decisions loaded from a file are decisions like those recorded through the API: in the
 * customer's history (who loaded them, from which source), and read by the pulls' withdrawal
 * index, which learns of changes through the history.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const at = (msAgo: number) => new Date(Date.now() - msAgo).toISOString().slice(0, 19).replace('T', ' ') + 'Z'

async function load(kind: string, lines: string[]): Promise<{ rows: { inserted: number } }> {
  const r = await t.app.inject({ method: 'POST', url: `/v1/import/${kind}`, headers: { ...auth(bank.admin), 'content-type': 'text/csv' }, payload: lines.join('\n') + '\n' })
  expect(r.statusCode, r.body).toBe(200)
  return r.json()
}

async function keyOf(no: string): Promise<number> {
  const [r] = await t.engine.db
    .forTenant(bank.tenant.id)
    .query(`SELECT customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = {no:String}`, { no }, z.object({ k: z.coerce.number() }))
  return r?.k ?? 0
}

interface History {
  purpose: string
  channel: string
  granted: boolean
  source: string
  holder: string
}

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'consent-import-bank')
  const header = 'customer_no,gender,birth_date,region_code,branch_code,phone,name,opened_at'
  await load('customers', [header, ...['K0001', 'K0002', 'K0003'].map((no, i) => `${no},female,1970-05-01,3301,b1,1380013800${i},王芳,${at(3_600_000)}`)])
}, 120_000)
afterAll(async () => t?.close())

describe('consents loaded from a file', () => {
  it('are in the customer’s consent history with their source and the key’s holder, and a reload adds no second row', async () => {
    const file = ['customer_no,purpose,channel,granted,source,updated_at', `K0001,marketing,sms,0,counter,${at(60_000)}`, `K0001,service,push,1,counter,${at(60_000)}`]
    expect((await load('consents', file)).rows.inserted).toBe(2)
    await load('consents', file)
    const r = await t.app.inject({ url: '/v1/customers/K0001/consents', headers: auth(bank.admin) })
    expect(r.statusCode, r.body).toBe(200)
    const history = r.json<{ history: History[] }>().history
    expect(history.map((h) => `${h.purpose}/${h.channel}/${h.granted}/${h.source}`).sort()).toEqual(['marketing/sms/false/counter', 'service/push/true/counter'])
    expect(new Set(history.map((h) => h.holder))).toEqual(new Set(['test admin']))
    // The export's consent history holds them too.
    const x = await t.app.inject({ url: '/v1/customers/K0001/export', headers: auth(bank.admin) })
    expect(x.json<{ sections: { consentHistory: { rows: unknown[] } } }>().sections.consentHistory.rows).toHaveLength(2)
  })

  it('reach the pulls’ withdrawal index, as a withdrawal through the API does', async () => {
    const tid = bank.tenant.id
    const index = createWithdrawalIndex({ db: t.engine.db, windowMs: 3 * 86_400_000, refreshMs: 1 })
    await index.refresh(tid)
    const api = await t.app.inject({
      method: 'PUT',
      url: '/v1/customers/K0002/consents',
      headers: auth(bank.admin),
      payload: { purpose: 'service', channel: 'push', granted: false, source: 'counter', noticeVersion: 'v1' },
    })
    expect(api.statusCode, api.body).toBe(200)
    await load('consents', ['customer_no,purpose,channel,granted,source,updated_at', `K0003,service,push,0,counter,${at(1000)}`])
    await new Promise((r) => setTimeout(r, 5))
    await index.refresh(tid)
    const withdrawn = { api: index.withdrawn(tid, await keyOf('K0002'), 'service', 'push'), imported: index.withdrawn(tid, await keyOf('K0003'), 'service', 'push') }
    expect(withdrawn).toEqual({ api: true, imported: true })
  })

  it('do not take over from a newer decision: an older file is history only', async () => {
    const api = await t.app.inject({
      method: 'PUT',
      url: '/v1/customers/K0003/consents',
      headers: auth(bank.admin),
      payload: { purpose: 'marketing', channel: 'push', granted: true, source: 'app', noticeVersion: 'v3' },
    })
    expect(api.statusCode, api.body).toBe(200)
    await load('consents', ['customer_no,purpose,channel,granted,source,updated_at', `K0003,marketing,push,0,counter,${at(86_400_000)}`])
    const state = (await t.app.inject({ url: '/v1/customers/K0003/consents', headers: auth(bank.admin) })).json<{ current: { purpose: string; channel: string; granted: boolean }[]; history: History[] }>()
    expect(state.current.find((c) => c.purpose === 'marketing' && c.channel === 'push')?.granted).toBe(true)
    expect(state.history.filter((h) => h.purpose === 'marketing' && h.channel === 'push').map((h) => h.granted).sort()).toEqual([false, true])
  })
})
