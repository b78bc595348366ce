import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chDateTime } from '../core/time.js'
import { antiFraudCampaign } from '../test/fixtures.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * Event triggers see a customer's events as every other reader does, with identities resolved:
 * a step sent before the customer signed in (under an anonymous id identify links later) and a
 * step of a customer merged into another count towards the sequence of the customer they belong
 * to now. Events go through /v1/batch and the merge route; the trigger fires from the ingest
 * writer as in the server.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const MIN = 60_000

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'trigger-ids')
  const saved = await t.app.inject({ method: 'PUT', url: '/v1/push/campaigns/anti-fraud', headers: auth(bank.admin), payload: antiFraudCampaign })
  expect(saved.statusCode, saved.body).toBe(201)
}, 60_000)
afterAll(async () => t?.close())

type Message = Record<string, unknown>
const signedIn = (who: Message, at: number): Message => ({ type: 'track', event: 'signed_in', properties: { new_device: true }, timestamp: new Date(at).toISOString(), ...who })
const transfer = (who: Message, at: number): Message => ({ type: 'track', event: 'transfer_completed', properties: { amount: 80_000 }, timestamp: new Date(at).toISOString(), ...who })

async function send(...batch: Message[]): Promise<void> {
  const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch: batch.map((m) => ({ messageId: crypto.randomUUID(), ...m })) } })
  expect(res.statusCode, res.body).toBe(200)
  expect(res.json().rejected ?? []).toEqual([])
}

async function merge(from: string, to: string): Promise<void> {
  const res = await t.app.inject({ method: 'POST', url: '/v1/identities/merge', headers: auth(bank.admin), payload: { from, to, reason: 'one person, two registrations' } })
  expect(res.statusCode, res.body).toBe(200)
}

const keyOf = async (no: string) => (await t.ingest.identities.keysFor(bank.tenant.id, [no], 'test'))[0]!

/** The campaign's targets among these customer numbers, waiting up to 10 s for the trigger the writer runs after storing. */
async function targetsFor(...nos: string[]): Promise<{ key: number; no: string }[]> {
  const db = t.engine.db.forTenant(bank.tenant.id)
  const deadline = performance.now() + 10_000
  for (;;) {
    const rows = await db.query(
      `SELECT customer_key AS key, customer_no AS no FROM push_targets FINAL
       WHERE tenant_id = {tenant:UInt16} AND campaign_id = 'anti-fraud' AND customer_no IN {nos:Array(String)} ORDER BY customer_key`,
      { nos },
      z.object({ key: z.coerce.number(), no: z.string() }),
    )
    if (rows.length || performance.now() > deadline) return rows
    await new Promise((r) => setTimeout(r, 200))
  }
}

describe('event triggers over resolved identities', () => {
  it('counts a step sent before sign-in, once identify links the device to the customer', async () => {
    const now = Date.now()
    await send(signedIn({ anonymousId: 'dev-an1' }, now - 5 * MIN))
    await send({ type: 'identify', anonymousId: 'dev-an1', userId: 'AN1', timestamp: new Date(now - 4 * MIN).toISOString() })
    await send(transfer({ userId: 'AN1' }, now))
    expect(await targetsFor('AN1')).toEqual([{ key: await keyOf('AN1'), no: 'AN1' }])
  })

  it('counts a step of a customer merged into the one who completes the sequence', async () => {
    const now = Date.now()
    await send(signedIn({ userId: 'MG-A' }, now - 5 * MIN), { type: 'track', event: 'page_viewed', userId: 'MG-B', timestamp: new Date(now - 5 * MIN).toISOString() })
    await merge('MG-A', 'MG-B')
    await send(transfer({ userId: 'MG-B' }, now))
    expect(await targetsFor('MG-A', 'MG-B')).toEqual([{ key: await keyOf('MG-B'), no: 'MG-B' }])
  })

  it('targets the customer a merged customer’s step leads to, not the key merged away', async () => {
    const now = Date.now()
    await send(signedIn({ userId: 'MF-B' }, now - 5 * MIN), { type: 'track', event: 'page_viewed', userId: 'MF-A', timestamp: new Date(now - 5 * MIN).toISOString() })
    const into = await keyOf('MF-B')
    // The bank's profile of the customer kept: the merged-away number is not who is addressed.
    const at = chDateTime(new Date('2026-01-01T00:00:00Z'))
    await t.engine.db.forTenant(bank.tenant.id).insert('customers', [{ customer_key: into, customer_no: 'MF-B', gender: 'unknown', birth_date: '1980-01-01', region_code: 'r', branch_code: 'b', opened_at: at, updated_at: at }])
    await merge('MF-A', 'MF-B')
    await send(transfer({ userId: 'MF-A' }, now))
    expect(await targetsFor('MF-A', 'MF-B')).toEqual([{ key: into, no: 'MF-B' }])
  })

  it('wakes on a last step sent without the customer number, from a device linked to the customer', async () => {
    const now = Date.now()
    await send({ type: 'identify', anonymousId: 'dev-an2', userId: 'AN2', timestamp: new Date(now - 6 * MIN).toISOString() })
    await send(signedIn({ userId: 'AN2' }, now - 5 * MIN))
    // The app sent the transfer before the session carried the number again.
    await send(transfer({ anonymousId: 'dev-an2' }, now))
    expect(await targetsFor('AN2')).toEqual([{ key: await keyOf('AN2'), no: 'AN2' }])
  })

  it('does not wake on a last step from a device linked to no one', async () => {
    const now = Date.now()
    await send(signedIn({ anonymousId: 'dev-an3' }, now - 5 * MIN), transfer({ anonymousId: 'dev-an3' }, now))
    const rows = await t.engine.db.forTenant(bank.tenant.id).query(
      `SELECT count() AS n FROM push_targets FINAL WHERE tenant_id = {tenant:UInt16} AND campaign_id = 'anti-fraud' AND customer_key = 0`,
      {},
      z.object({ n: z.coerce.number() }),
    )
    expect(rows[0]!.n).toBe(0)
  })
})
