import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { loadConfig } from '../core/config.js'
import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import { createIngestModule, type IngestModule } from '../ingest/ingest.module.js'
import { createPushModule, type PushModule } from '../push/push.module.js'
import { createRecommendModule, type RecommendModule } from '../recommend/recommend.module.js'
import { createBitmapStore } from '../segments/bitmap.store.js'
import { loadRoaring } from '../segments/roaring.js'
import { createSegmentsModule } from '../segments/segments.module.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../tags/tag.pack.js'
import { createTagsModule } from '../tags/tags.module.js'
import { createKeyService } from '../tenants/keys.service.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { moduleApp, openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import type { ForgetHook } from './erasure.job.js'
import { createPrivacyModule, createPrivacyTombstones, type PrivacyModule } from './privacy.module.js'
import { createErasureWatch } from './erasure.watch.js'
import { antiFraudCampaign } from '../test/fixtures.js'

/**
 * An erasure run by one process reaches another's memory. Process A (the test app) runs the job;
 * process B is a second composition over the same data, as an API pod beside the worker would be:
 * its own bitmap store, layout snapshots, push lease queue and identity cache, loaded before the
 * erasure. Its memory keeps serving the customer (a preview from its bitmaps, a known layout, a
 * queued push target) until its erasure watch looks at the jobs; after one look, none of them
 * shows a trace, the neighbour is untouched, and a second look does nothing.
 */

let a: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const V = 'W0001' // erased
const N = 'W0002' // the neighbour
const RULE = { purpose: 'service', rule: { tag: 'active_7d', op: 'eq', value: true } }

/** Process B: the in-memory structures an API pod holds, and the watch that must reach them. */
interface Other {
  app: FastifyInstance
  ingest: IngestModule
  recommend: RecommendModule
  push: PushModule
  privacy: PrivacyModule
  rounds: { tenant: number; keys: number[]; ids: string[] }[]
  close(): Promise<void>
}

async function openOther(): Promise<Other> {
  const db = a.engine.db
  const log = a.engine.log
  const metrics = createMetrics({ collectDefault: false })
  const config = loadConfig({ QIANMIAN_DATA_DIR: a.engine.dataDir, INGEST_FLUSH_MS: '5' })
  const tenants = createTenantService({ system: db.system, defaultTimeZone: 'Asia/Shanghai' })
  const keys = createKeyService({ system: db.system, tenants, cacheTtlMs: 60_000 })
  const pii = createPii('test-secret-test-secret-test-secret')
  const tombstones = createPrivacyTombstones({ db, pii, metrics })
  const ingest = createIngestModule({ db, log, metrics, pii, config: config.ingest, dropped: (t, evs) => tombstones.dropped(t, evs) })
  const tags = createTagsModule({ db, tenants, log, metrics, runner: config.pipelines })
  const roaring = await loadRoaring()
  if (!roaring) throw new Error('the optional "roaring" package is not installed: layouts and bitmap previews cannot be served')
  // Nothing here reloads on its own during the test: only the watch may make B drop the customer.
  const bitmaps = createBitmapStore({ roaring, maxBytes: 64 * 1024 ** 2, freshMs: 600_000 })
  const segments = createSegmentsModule({ db, tenants, tags: tags.repo, runner: tags.runner, bitmaps })
  const recommend = createRecommendModule({ db, tenants, tags: tags.repo, bitmaps, runner: tags.runner, log, metrics, refreshMs: 600_000 })
  const push = createPushModule({ db, tenants, log, metrics, tags: tags.repo, segments: segments.repo, lease: { refreshMs: 600_000, idleRefreshMs: 600_000 } })
  const rounds: Other['rounds'] = []
  const forget: ForgetHook[] = [
    (t, k, ids) => rounds.push({ tenant: t, keys: [...k], ids: ids.map((i) => `${i.kind}:${i.value}`) }),
    (t) => bitmaps.forgetCustomers(t),
    (t, k) => recommend.layouts.forgetCustomers(t, k),
    (t, k) => push.leases.forgetCustomers(t, k),
    (t, k, ids) => (ids.length ? ingest.identities.forget(t, ids) : ingest.identities.forgetKeys(t, k)),
  ]
  const privacy = createPrivacyModule({ db, tenants, log, tombstones, forget })
  const app = await moduleApp({ db, log, metrics, tenants, keys }, [segments.routes, recommend.routes, push.routes])
  return {
    app,
    ingest,
    recommend,
    push,
    privacy,
    rounds,
    async close() {
      await app.close()
      await privacy.close()
      await tags.runner.stop()
      await recommend.close()
      await push.close()
      await ingest.close(5000)
    },
  }
}

let b: Other
let vKey: number

async function keyOf(no: string): Promise<number> {
  const [r] = await a.engine.db
    .forTenant(bank.tenant.id)
    .query(`SELECT customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = {no:String}`, { no }, z.object({ k: z.coerce.number() }))
  return r?.k ?? 0
}

function events(no: string, now: number) {
  const base = { userId: no, anonymousId: `anon-${no}` }
  return [
    { ...base, type: 'identify', traits: { plan: 'gold' }, timestamp: new Date(now - 120_000).toISOString(), messageId: `${no}-id` },
    { ...base, type: 'track', event: 'signed_in', properties: { new_device: true }, timestamp: new Date(now - 60_000).toISOString(), messageId: `${no}-si` },
    { ...base, type: 'track', event: 'transfer_completed', properties: { amount: 80_000 }, timestamp: new Date(now).toISOString(), messageId: `${no}-tc` },
  ]
}

const on = (app: FastifyInstance, method: 'GET' | 'POST', url: string, key: string, payload?: unknown) =>
  app.inject({ method, url, headers: auth(key), ...(payload === undefined ? {} : { payload: payload as object }) })

beforeAll(async () => {
  a = await openTestApp({ PIPELINE_RETRIES: '0' })
  bank = await tenantWithKeys(a, 'watch-bank')
  // The bank's customer file (previews count within it), through the import route.
  const at = new Date().toISOString().slice(0, 19).replace('T', ' ') + 'Z'
  const csv = ['customer_no,gender,birth_date,region_code,branch_code,opened_at', ...[V, N].map((no) => `${no},female,1960-05-01,3301,b1,${at}`)].join('\n') + '\n'
  const imported = await a.app.inject({ method: 'POST', url: '/v1/import/customers', headers: { ...auth(bank.admin), 'content-type': 'text/csv' }, payload: csv })
  expect(imported.statusCode, imported.body).toBe(200)
  await applyDefinitions(a.tags.repo, bank.tenant.id, readDefinitionFiles(BANKING_PACK), 'test')
  const campaign = antiFraudCampaign
  const put = await a.app.inject({ method: 'PUT', url: '/v1/push/campaigns/anti-fraud', headers: auth(bank.admin), payload: campaign })
  expect(put.statusCode, put.body).toBe(201)
  const sent = await on(a.app, 'POST', '/v1/batch', bank.write, { batch: [...events(V, Date.now()), ...events(N, Date.now())] })
  expect(sent.json().accepted, sent.body).toBe(6)
  // Tags, then the segments, the layout model and push targeting, in process A.
  const run = await a.tags.runner.run({ tenantId: bank.tenant.id, pipeline: 'tags', trigger: 'api' })
  expect(run.status, run.error).toBe('succeeded')
  for (let i = 0; i < 300 && a.tags.runner.running(bank.tenant.id).length; i++) await new Promise((r) => setTimeout(r, 100))
  const done = await a.tags.runner.runs(bank.tenant.id, { limit: 50 })
  expect(done.some((r) => r.pipeline === 'recommend' && r.status === 'succeeded'), JSON.stringify(done.map((r) => [r.pipeline, r.status, r.error]))).toBe(true)
  // The trigger's targets are queued once the writer flushed.
  const db = a.engine.db.forTenant(bank.tenant.id)
  for (let i = 0; i < 100; i++) {
    const [r] = await db.query(`SELECT count() AS n FROM push_targets WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ n: z.coerce.number() }))
    if (r!.n >= 2) break
    await new Promise((res) => setTimeout(res, 100))
  }
  vKey = await keyOf(V)
  expect(vKey).toBeGreaterThan(0)
  b = await openOther()
}, 300_000)
afterAll(async () => {
  await b?.close()
  await a?.close()
})

describe('an erasure run by another process', () => {
  it('leaves no trace in this process after one look of the watch; a second look does nothing', async () => {
    // B loads its memory: bitmaps (preview), the layout snapshot, the push queue, the identity cache.
    const previewBefore = await on(b.app, 'POST', '/v1/segments/preview', bank.admin, RULE)
    expect(previewBefore.statusCode, previewBefore.body).toBe(200)
    expect(previewBefore.json().count).toBeGreaterThan(0)
    expect((await on(b.app, 'GET', `/v1/layout?customerId=${V}`, bank.read)).json().known).toBe(true)
    // One target pulled; the other stays queued in B's memory (which one depends on the order).
    const first = await on(b.app, 'POST', '/v1/push/pull', bank.read, { limit: 1, leaseSeconds: 60 })
    expect(first.json().targets).toHaveLength(1)
    const leasedNo = first.json().targets[0].customerNo as string
    expect([V, N]).toContain(leasedNo)
    expect(await b.ingest.identities.resolve(bank.tenant.id, [{ userId: V }])).toEqual([vKey])

    // Process A erases the customer; B ran none of it.
    const started = await on(a.app, 'POST', `/v1/customers/${V}/erasure`, bank.admin, { reason: 'PIPL art. 47 request' })
    expect(started.statusCode, started.body).toBe(202)
    await a.privacy.erasure.idle()
    expect((await on(a.app, 'GET', `/v1/erasures/${started.json().id}`, bank.admin)).json().status).toBe('done')
    expect(b.rounds).toEqual([])
    // A's own watch skips the job its runner already applied.
    expect(await a.privacy.watch.poll()).toBe(0)

    // Before B looks, its memory still serves the customer (what the watch exists for).
    expect((await on(b.app, 'GET', `/v1/layout?customerId=${V}`, bank.read)).json().known).toBe(true)

    expect(await b.privacy.watch.poll()).toBe(1)
    // Seen only once finished: keys, no identifier in clear (the job's record no longer holds any).
    expect(b.rounds).toEqual([{ tenant: bank.tenant.id, keys: [vKey], ids: [] }])
    const previewAfter = await on(b.app, 'POST', '/v1/segments/preview', bank.admin, RULE)
    expect(previewAfter.json().count).toBe(previewBefore.json().count - 1)
    expect(previewAfter.body).not.toContain(V)
    expect((await on(b.app, 'GET', `/v1/layout?customerId=${V}`, bank.read)).json().known).toBe(false)
    expect((await on(b.app, 'GET', `/v1/layout?customerId=${N}`, bank.read)).json().known).toBe(true)
    const pulled = await on(b.app, 'POST', '/v1/push/pull', bank.read, { limit: 100, leaseSeconds: 60 })
    expect(pulled.statusCode, pulled.body).toBe(200)
    expect(pulled.body).not.toContain(V)
    if (leasedNo === V) expect(pulled.json().targets.map((t: { customerNo: string }) => t.customerNo)).toEqual([N])

    // A second look finds nothing new and calls no hook.
    expect(await b.privacy.watch.poll()).toBe(0)
    expect(b.rounds).toHaveLength(1)

    // B's identity cache dropped the number: once the bank re-registers it, B gives it a new key.
    expect((await on(a.app, 'POST', `/v1/customers/${V}/reregistration`, bank.admin, { reason: 'new relationship' })).statusCode).toBe(200)
    const [again] = await b.ingest.identities.resolve(bank.tenant.id, [{ userId: V }])
    expect(again).toBeGreaterThan(0)
    expect(again).not.toBe(vKey)
  })

  it('applies a job it sees running (identifiers still in clear) and again once it is finished, each once', async () => {
    const X = 'W0003'
    const sent = await on(a.app, 'POST', '/v1/batch', bank.write, { batch: [{ type: 'track', userId: X, anonymousId: `anon-${X}`, event: 'signed_in', timestamp: new Date().toISOString(), messageId: `${X}-1` }] })
    expect(sent.json().accepted).toBe(1)
    for (let i = 0; i < 100 && !(await keyOf(X)); i++) await new Promise((r) => setTimeout(r, 50))
    const xKey = await keyOf(X)
    expect(xKey).toBeGreaterThan(0)
    const rounds: { keys: number[]; ids: string[] }[] = []
    const watch = createErasureWatch({ db: a.engine.db, log: a.engine.log, forget: [(_t, k, ids) => rounds.push({ keys: [...k], ids: ids.map((i) => `${i.kind}:${i.value}`) })] })
    // Jobs finished before this watch began are within its first window: applied once, harmlessly.
    await watch.poll()
    rounds.length = 0
    // A worker that dies half-way leaves the job running.
    let steps = 0
    const dying = createPrivacyModule({
      db: a.engine.db,
      tenants: a.tenants,
      log: a.engine.log,
      tombstones: a.privacy.tombstones,
      forget: [],
      beforeStep: () => {
        if (++steps === 3) throw new Error('killed')
      },
    })
    await expect(dying.erasure.start(bank.tenant.id, { customers: [X], reason: 'request 8' }, { keyId: 'k', holder: 'test' }, { wait: true })).rejects.toThrow('killed')
    expect(await watch.poll()).toBe(1)
    expect(rounds).toEqual([{ keys: [xKey], ids: expect.arrayContaining([`customer_no:${X}`, `anonymous_id:anon-${X}`]) as unknown as string[] }])
    expect(await watch.poll()).toBe(0)
    // The job resumes elsewhere and finishes: one more round, then nothing.
    const restarted = createPrivacyModule({ db: a.engine.db, tenants: a.tenants, log: a.engine.log, tombstones: a.privacy.tombstones, forget: [] })
    expect(await restarted.erasure.resume()).toBe(1)
    expect(await watch.poll()).toBe(1)
    expect(rounds[1]).toEqual({ keys: [xKey], ids: [] })
    expect(await watch.poll()).toBe(0)
    await watch.stop()
  })
})
