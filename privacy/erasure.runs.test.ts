import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { chDateTime } from '../core/time.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'

/**
 * A pipeline run in progress when an erasure runs (a tag run, a segment or model build, in this
 * process or another) may have read the customer before the erasure's steps and write after
 * them. The erasure's last check waits for such runs to end, so what they wrote is found and
 * erased before the job is done.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const countRow = z.object({ n: z.coerce.number() })

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'runs-bank')
}, 120_000)
afterAll(async () => t?.close())

interface JobView {
  status: string
  progress: { done: number; total: number }
  proof: { verified: boolean } | null
}

describe('an erasure while a pipeline run is in progress', () => {
  it('waits for the run to end before its last check, and erases what the run wrote after the steps', async () => {
    const db = t.engine.db.forTenant(bank.tenant.id)
    const now = Date.now()
    const events = [{ type: 'identify', userId: 'W0001', traits: { plan: 'x' }, timestamp: new Date(now - 1000).toISOString(), messageId: 'w-1' }]
    const sent = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch: events } })
    expect(sent.json().accepted, sent.body).toBe(1)
    const [k] = await db.query(`SELECT customer_key AS n FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_value = 'W0001'`, {}, countRow)
    const key = k!.n
    // A tag run holds its lease in another process.
    await db.insert('pipeline_locks', [{ pipeline: 'tags', owner: 'another-process', expires_at: chDateTime(Date.now() + 10 * 60_000) }])
    const started = await t.app.inject({ method: 'POST', url: '/v1/customers/W0001/erasure', headers: auth(bank.admin), payload: { reason: 'the customer asked' } })
    expect(started.statusCode, started.body).toBe(202)
    const id = started.json<{ id: string }>().id
    const view = async () => (await t.app.inject({ url: `/v1/erasures/${id}`, headers: auth(bank.admin) })).json<JobView>()
    let v = await view()
    for (let i = 0; i < 600 && v.progress.done < v.progress.total; i++) {
      await new Promise((r) => setTimeout(r, 100))
      v = await view()
    }
    expect(v.progress.done).toBe(v.progress.total)
    // Every step is done and the run is still going: the job is not.
    expect(v.status).toBe('running')
    // The run writes the customer's value after the steps, then ends.
    await db.insert('tag_values', [{ tag: 'late_tag', customer_key: key, value: '1', num: 1, list: [], run_id: '1', is_deleted: 0 }])
    await db.command(`DELETE FROM pipeline_locks WHERE tenant_id = {tenant:UInt16} AND owner = 'another-process'`)
    await t.privacy.erasure.idle()
    const done = await view()
    expect(done.status).toBe('done')
    expect(done.proof?.verified).toBe(true)
    const [left] = await db.query(`SELECT count() AS n FROM tag_values WHERE tenant_id = {tenant:UInt16} AND customer_key = {k:UInt32}`, { k: key }, countRow)
    expect(left!.n).toBe(0)
  })
})
