import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { countIn, createErasureRunner, type Subject } from './erasure.job.js'
import { placeOrder } from './erasure.places.js'
import { createPrivacyModule } from './privacy.module.js'

/**
 * An erasure interrupted half-way (the process killed between two steps) stays `running` with
 * the steps it finished recorded; a second request for the customer meanwhile is a 409 naming
 * it; the next start resumes it to the end, and running its steps again finds and changes
 * nothing.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const V = 'R0001'
const N = 'R0002'
const subjectOf = (no: string, key: number): Subject => ({ customerNos: [no], keys: [key], anonymousIds: [`anon-${no}`], deviceIds: [], digests: [] })

async function keyOf(no: string): Promise<number> {
  const [r] = await t.engine.db
    .forTenant(bank.tenant.id)
    .query(`SELECT customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = {no:String}`, { no }, z.object({ k: z.coerce.number() }))
  return r?.k ?? 0
}
async function counts(s: Subject) {
  const out: Record<string, number> = {}
  for (const table of placeOrder()) out[table] = await countIn(t.engine.db.forTenant(bank.tenant.id), table, s)
  return out
}

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'resume-bank')
  const now = Date.now()
  const batch = [V, N].flatMap((no) => [
    { type: 'identify', userId: no, anonymousId: `anon-${no}`, traits: { plan: 'gold' }, timestamp: new Date(now - 1000).toISOString(), messageId: `${no}-1` },
    { type: 'track', userId: no, anonymousId: `anon-${no}`, event: 'product_viewed', properties: { product_id: 'p1' }, timestamp: new Date(now).toISOString(), messageId: `${no}-2` },
  ])
  const sent = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch } })
  expect(sent.json().accepted).toBe(4)
}, 120_000)
afterAll(async () => t?.close())

describe('an interrupted erasure', () => {
  it('resumes at the next start, and its steps run again change nothing', async () => {
    const vKey = await keyOf(V)
    const nKey = await keyOf(N)
    const n0 = await counts(subjectOf(N, nKey))
    expect(n0.events).toBe(2)
    // A process that dies before its fourth step.
    let steps = 0
    const dying = createPrivacyModule({
      db: t.engine.db,
      tenants: t.tenants,
      log: t.engine.log,
      tombstones: t.privacy.tombstones,
      forget: [],
      beforeStep: () => {
        if (++steps === 4) throw new Error('killed')
      },
    })
    await expect(dying.erasure.start(bank.tenant.id, { customers: [V], reason: 'request 7' }, { keyId: 'k', holder: 'test' }, { wait: true })).rejects.toThrow('killed')
    const [running] = await t.engine.db
      .forTenant(bank.tenant.id)
      .query(`SELECT job_id FROM erasure_jobs WHERE tenant_id = {tenant:UInt16} ORDER BY updated_at DESC LIMIT 1`, {}, z.object({ job_id: z.string() }))
    const jobId = running!.job_id
    const half = (await t.app.inject({ url: `/v1/erasures/${jobId}`, headers: auth(bank.admin) })).json()
    expect(half.status).toBe('running')
    expect(half.progress.done).toBe(3)
    expect(half.proof).toBeNull()
    // Meanwhile a second request for the customer: 409 naming the running job.
    const again = await t.app.inject({ method: 'POST', url: `/v1/customers/${V}/erasure`, headers: auth(bank.admin), payload: { reason: 'again' } })
    expect(again.statusCode).toBe(409)
    expect(again.json().error.code).toBe('ERASURE_RUNNING')
    expect(again.json().error.issues[0].jobId).toBe(jobId)
    // The next start (a fresh module, as a restarted process builds it).
    const restarted = createPrivacyModule({ db: t.engine.db, tenants: t.tenants, log: t.engine.log, tombstones: t.privacy.tombstones, forget: [] })
    expect(await restarted.erasure.resume()).toBe(1)
    const done = await restarted.erasure.get(bank.tenant.id, jobId)
    expect(done.status).toBe('done')
    expect(done.proof?.verified).toBe(true)
    expect(done.steps.every((s) => s.done)).toBe(true)
    // The steps done before the kill kept their counts; the events were found once.
    expect(done.steps.find((s) => s.table === 'events')?.before).toBe(2)
    const left = await counts(subjectOf(V, vKey))
    for (const table of placeOrder()) expect(left[table], table).toBe(0)
    expect(await counts(subjectOf(N, nKey))).toEqual(n0)
    // Nothing resumes twice.
    expect(await restarted.erasure.resume()).toBe(0)
    // Idempotent: every step again, from scratch, finds nothing and touches no one else.
    const saved: string[] = []
    const runner = createErasureRunner({ db: t.engine.db, log: t.engine.log, forget: [], save: async (j) => void saved.push(j.status) })
    const again2 = await runner.run({ ...done, status: 'running', subject: subjectOf(V, vKey), steps: done.steps.map((s) => ({ ...s, before: null, after: null, done: false })), proof: null })
    expect(again2.status).toBe('done')
    expect(again2.steps.every((s) => s.before === 0 && s.after === 0)).toBe(true)
    expect(await counts(subjectOf(N, nKey))).toEqual(n0)
    // The finished record keeps keys and digests, no identifier in clear, one version.
    const rows = await t.engine.db
      .forTenant(bank.tenant.id)
      .query(`SELECT subject FROM erasure_jobs WHERE tenant_id = {tenant:UInt16} AND job_id = {id:UUID}`, { id: jobId }, z.object({ subject: z.string() }))
    expect(rows).toHaveLength(1)
    expect(rows[0]!.subject).not.toContain(V)
    expect(rows[0]!.subject).not.toContain(`anon-${V}`)
  })
})
