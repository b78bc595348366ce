import type { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromBufferPromise } from 'yauzl'
import { z } from 'zod'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Erasure and export across the links between identifiers: a merge into the customer (active or
 * undone), the app ids a customer used before signing in, and consent carried by a late event.
 * Each case starts from its own customers, sent through /v1/batch and the identity routes.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const post = (url: string, payload: unknown, key = bank.admin) => t.app.inject({ method: 'POST', url, headers: auth(key), payload: payload as object })

async function count(sql: string, params: Record<string, unknown> = {}): Promise<number> {
  const [r] = await t.engine.db.forTenant(bank.tenant.id).query(sql, params, z.object({ n: z.coerce.number() }))
  return r?.n ?? 0
}

async function erase(no: string): Promise<void> {
  const r = await post(`/v1/customers/${no}/erasure`, { reason: 'the customer asked' })
  expect(r.statusCode, r.body).toBe(202)
  await t.privacy.erasure.idle()
  const j = await t.app.inject({ url: `/v1/erasures/${r.json<{ id: string }>().id}`, headers: auth(bank.admin) })
  expect(j.json<{ status: string }>().status).toBe('done')
}

async function send(batch: Record<string, unknown>[]): Promise<{ accepted: number }> {
  const r = await post('/v1/batch', { batch }, bank.write)
  expect(r.statusCode, r.body).toBe(200)
  return r.json()
}

async function collect(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** The message ids of every events file of an export archive. */
async function archivedEvents(zipped: Buffer): Promise<string[]> {
  const zip = await fromBufferPromise(zipped)
  const ids: string[] = []
  for await (const entry of zip.eachEntry()) {
    if (!entry.fileName.startsWith('events/')) continue
    const lines = (await collect(await zip.openReadStreamPromise(entry))).toString('utf8').split('\n').filter(Boolean)
    ids.push(...lines.map((l) => (JSON.parse(l) as { message_id: string }).message_id))
  }
  return ids.sort()
}

const opened = (no: string, id: string, at: number) => ({ type: 'track', userId: no, event: 'opened', timestamp: new Date(at).toISOString(), messageId: id })

async function merge(from: string, to: string): Promise<string> {
  const m = await post('/v1/identities/merge', { from, to, reason: 'the same person' })
  expect(m.statusCode, m.body).toBe(200)
  return m.json<{ changeId: string }>().changeId
}

beforeAll(async () => {
  t = await openTestApp({ PIPELINE_RETRIES: '0' })
  bank = await tenantWithKeys(t, 'links-bank')
}, 120_000)
afterAll(async () => t?.close())

describe('erasure across merges', () => {
  it('leaves a customer whose merge into the erased one was undone', async () => {
    const now = Date.now()
    expect((await send([opened('L0101', 'l1-a', now - 2000), opened('L0102', 'l1-b', now - 1000)])).accepted).toBe(2)
    const change = await merge('L0101', 'L0102')
    const undo = await post(`/v1/identities/changes/${change}/undo`, {})
    expect(undo.statusCode, undo.body).toBe(200)
    await erase('L0102')
    const events = await count(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND user_id = 'L0101'`)
    const ids = await count(`SELECT count() AS n FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = 'L0101'`)
    expect({ events, ids }).toEqual({ events: 1, ids: 1 })
    // The undone customer is still a customer: a new event of theirs is stored.
    expect((await send([opened('L0101', 'l1-c', Date.now())])).accepted).toBe(1)
  })

  it('covers the number merged into the erased customer: its late events are dropped and the audit trail keeps neither number in clear', async () => {
    const now = Date.now()
    expect((await send([opened('L0201', 'l2-a', now - 2000), opened('L0202', 'l2-b', now - 1000)])).accepted).toBe(2)
    await merge('L0201', 'L0202')
    await erase('L0202')
    const inClear = await count(
      `SELECT count() AS n FROM audit_log WHERE tenant_id = {tenant:UInt16}
       AND (customer_no IN ('L0201', 'L0202') OR object_id IN ('L0201', 'L0202') OR position(detail, 'L0201') > 0 OR position(detail, 'L0202') > 0)`,
    )
    expect(inClear).toBe(0)
    // The merge entry is still there, with the numbers as digests.
    const merges = await count(`SELECT count() AS n FROM audit_log WHERE tenant_id = {tenant:UInt16} AND action = 'identity.merge' AND customer_no LIKE 'erased:%' AND position(detail, '"into":"erased:') > 0`)
    expect(merges).toBe(1)
    const late = await send([opened('L0201', 'l2-late', Date.now())])
    expect(late.accepted).toBe(0)
    expect(await count(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND user_id = 'L0201'`)).toBe(0)
    expect(await count(`SELECT count() AS n FROM identities WHERE tenant_id = {tenant:UInt16} AND id_value = 'L0201'`)).toBe(0)
  })
})

describe('erasure on a shared device', () => {
  it('leaves the customer the device is linked to now: their events stay and their later events are stored', async () => {
    const now = Date.now()
    await send([
      { type: 'identify', userId: 'L0601', anonymousId: 'dev-shared', timestamp: new Date(now - 4000).toISOString(), messageId: 'l6-1' },
      { type: 'track', userId: 'L0601', anonymousId: 'dev-shared', event: 'opened', timestamp: new Date(now - 3900).toISOString(), messageId: 'l6-2' },
    ])
    await send([
      { type: 'identify', userId: 'L0602', anonymousId: 'dev-shared', timestamp: new Date(now - 2000).toISOString(), messageId: 'l6-3' },
      { type: 'track', userId: 'L0602', anonymousId: 'dev-shared', event: 'opened', timestamp: new Date(now - 1900).toISOString(), messageId: 'l6-4' },
    ])
    const other = `SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND user_id = 'L0602'`
    expect(await count(other)).toBe(2)
    await erase('L0601')
    expect(await count(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND user_id = 'L0601'`)).toBe(0)
    expect(await count(other)).toBe(2)
    const later = await send([{ type: 'track', userId: 'L0602', anonymousId: 'dev-shared', event: 'opened', timestamp: new Date().toISOString(), messageId: 'l6-5' }])
    expect(later.accepted).toBe(1)
    expect(await count(`SELECT count() AS n FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_value = 'dev-shared' AND customer_key > 0`)).toBe(1)
  })

  it('leaves the customer who used the device before the erased one', async () => {
    const now = Date.now()
    await send([{ type: 'track', userId: 'L0701', anonymousId: 'dev-handed-on', event: 'opened', timestamp: new Date(now - 4000).toISOString(), messageId: 'l7-1' }])
    await send([{ type: 'identify', userId: 'L0702', anonymousId: 'dev-handed-on', timestamp: new Date(now - 2000).toISOString(), messageId: 'l7-2' }])
    await erase('L0702')
    expect(await count(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND user_id = 'L0701'`)).toBe(1)
    expect((await send([opened('L0701', 'l7-3', Date.now())])).accepted).toBe(1)
  })
})

describe('erasure across a chain of merges', () => {
  it('follows merges stored as a chain (A into B, B into C): erasing C erases A too', async () => {
    const now = Date.now()
    expect((await send([opened('L0801', 'l8-a', now - 3000), opened('L0802', 'l8-b', now - 2000), opened('L0803', 'l8-c', now - 1000)])).accepted).toBe(3)
    const keys = await t.ingest.identities.keysFor(bank.tenant.id, ['L0801', 'L0802', 'L0803'], 'test')
    // A chain as merges made before chains were flattened left it.
    const at = new Date().toISOString().replace('T', ' ').replace('Z', '')
    await t.engine.db.forTenant(bank.tenant.id).insert('customer_merges', [
      { from_key: keys[0], into_key: keys[1], change_id: '00000000-0000-0000-0000-0000000000a1', active: 1, updated_at: at },
      { from_key: keys[1], into_key: keys[2], change_id: '00000000-0000-0000-0000-0000000000a2', active: 1, updated_at: at },
    ])
    await erase('L0803')
    expect(await count(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND user_id IN ('L0801', 'L0802', 'L0803')`)).toBe(0)
  })
})

describe('consent carried by an event of an erased customer', () => {
  it('is dropped with the event: no key, link, history or audit entry comes back', async () => {
    const now = Date.now()
    const id = { type: 'identify', userId: 'L0301', anonymousId: 'anon-l3', traits: { plan: 'x' }, timestamp: new Date(now - 5000).toISOString(), messageId: 'l3-id' }
    expect((await send([id])).accepted).toBe(1)
    await erase('L0301')
    const consent = { consent: { categoryPreferences: { push_marketing: false } } }
    const late = [
      { type: 'track', userId: 'L0301', event: 'Segment Consent Preference Updated', timestamp: new Date().toISOString(), messageId: 'l3-late', context: consent },
      { type: 'track', anonymousId: 'anon-l3', event: 'Segment Consent Preference Updated', timestamp: new Date().toISOString(), messageId: 'l3-late-anon', context: consent },
    ]
    expect((await send(late)).accepted).toBe(0)
    expect(await count(`SELECT count() AS n FROM identities WHERE tenant_id = {tenant:UInt16} AND id_value IN ('L0301', 'anon-l3')`)).toBe(0)
    expect(await count(`SELECT count() AS n FROM consent_history WHERE tenant_id = {tenant:UInt16} AND customer_no = 'L0301'`)).toBe(0)
    expect(await count(`SELECT count() AS n FROM audit_log WHERE tenant_id = {tenant:UInt16} AND customer_no = 'L0301'`)).toBe(0)
  })

  it('is still recorded for a customer who is not erased, sent in the same batch', async () => {
    const consent = { consent: { categoryPreferences: { push_marketing: false } } }
    const batch = [
      { type: 'track', userId: 'L0301', event: 'Segment Consent Preference Updated', timestamp: new Date().toISOString(), messageId: 'l3-late-2', context: consent },
      { type: 'track', userId: 'L0302', event: 'Segment Consent Preference Updated', timestamp: new Date().toISOString(), messageId: 'l3-live', context: consent },
    ]
    expect((await send(batch)).accepted).toBe(1)
    expect(await count(`SELECT count() AS n FROM consent_history WHERE tenant_id = {tenant:UInt16} AND customer_no = 'L0302'`)).toBeGreaterThan(0)
    expect(await count(`SELECT count() AS n FROM consent_history WHERE tenant_id = {tenant:UInt16} AND customer_no = 'L0301'`)).toBe(0)
  })
})

describe('an alias naming an erased identifier', () => {
  it('is dropped: the erased number or app id is not linked to anyone again', async () => {
    const now = Date.now()
    const id = { type: 'identify', userId: 'L0501', anonymousId: 'anon-l5', timestamp: new Date(now - 5000).toISOString(), messageId: 'l5-id' }
    expect((await send([id])).accepted).toBe(1)
    await erase('L0501')
    const aliases = [
      { type: 'alias', previousId: 'L0501', userId: 'L0502', timestamp: new Date().toISOString(), messageId: 'l5-alias-no' },
      { type: 'alias', previousId: 'anon-l5', userId: 'L0502', timestamp: new Date().toISOString(), messageId: 'l5-alias-anon' },
      { type: 'alias', previousId: 'anon-l5-new', userId: 'L0502', timestamp: new Date().toISOString(), messageId: 'l5-alias-live' },
    ]
    expect((await send(aliases)).accepted).toBe(1)
    expect(await count(`SELECT count() AS n FROM identities WHERE tenant_id = {tenant:UInt16} AND id_value IN ('L0501', 'anon-l5')`)).toBe(0)
    expect(await count(`SELECT count() AS n FROM identities WHERE tenant_id = {tenant:UInt16} AND id_value = 'anon-l5-new'`)).toBe(1)
  })
})

describe('the export across links', () => {
  it('holds the events a customer sent under an app id before signing in, in pages and in the archive', async () => {
    const now = Date.now()
    const before = { type: 'track', anonymousId: 'anon-l4', event: 'product_viewed', properties: { product_id: 'wm-01' }, timestamp: new Date(now - 10_000).toISOString(), messageId: 'l4-anon' }
    expect((await send([before])).accepted).toBe(1)
    const signIn = { type: 'identify', userId: 'L0401', anonymousId: 'anon-l4', timestamp: new Date(now).toISOString(), messageId: 'l4-id' }
    expect((await send([signIn])).accepted).toBe(1)
    // Someone else's anonymous events stay out.
    expect((await send([{ ...before, anonymousId: 'anon-other', messageId: 'l4-other' }])).accepted).toBe(1)
    const x = await t.app.inject({ url: '/v1/customers/L0401/export', headers: auth(bank.admin) })
    expect(x.statusCode, x.body).toBe(200)
    const ids = x.json<{ events: { rows: { message_id: string }[] } }>().events.rows.map((r) => r.message_id).sort()
    expect(ids).toEqual(['l4-anon', 'l4-id'])
    // Pages of one event each reach both.
    const first = await t.app.inject({ url: '/v1/customers/L0401/export?limit=1', headers: auth(bank.admin) })
    const page1 = first.json<{ events: { rows: { message_id: string }[]; next: string | null } }>().events
    expect(page1.rows.map((r) => r.message_id)).toEqual(['l4-id'])
    const second = await t.app.inject({ url: `/v1/customers/L0401/export?limit=1&after=${page1.next}`, headers: auth(bank.admin) })
    expect(second.json<{ events: { rows: { message_id: string }[] } }>().events.rows.map((r) => r.message_id)).toEqual(['l4-anon'])
    const zipped = await t.app.inject({ url: '/v1/customers/L0401/export?format=zip', headers: auth(bank.admin) })
    expect(zipped.statusCode).toBe(200)
    expect(await archivedEvents(zipped.rawPayload)).toEqual(['l4-anon', 'l4-id'])
  })
})
