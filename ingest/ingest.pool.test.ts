import crypto from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import { isAppError } from '../core/errors.js'
import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import type { ValuePolicy } from '../core/pii.scan.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import type { FoundConsent } from './consent.extract.js'
import { createIngestPool, type IngestPool } from './ingest.pool.js'
import { createIngestService, INVALID_BODY } from './ingest.service.js'
import type { PendingEvent } from './normalize.js'
import type { TrackingPlan, TrackingPlans, TrackingPlanView } from './tracking-plan.js'

/**
 * The edge's worker threads: the same answers as the in-thread path, a dead worker's requests
 * refused with 503 and nothing stored, the tenant's policy and plan as of each request.
 */

const SECRET = 'test-secret-test-secret-test-secret'
const NOW = Date.parse('2026-06-01T08:00:00Z')
const config = loadConfig({}).ingest
const plan: TrackingPlanView = {
  mode: 'flag',
  allowUnplannedEvents: true,
  events: { transfer_completed: { properties: { amount: { type: 'number', required: true } }, allowAdditionalProperties: true } },
  version: 1,
  createdAt: '2026-06-01 00:00:00',
  createdBy: 'test',
}

function service(pool: IngestPool | undefined, policy: { v: ValuePolicy }) {
  const stored: PendingEvent[] = []
  const consents: FoundConsent[][] = []
  // Announcements (event-writer.ts `announce`): each request makes one and gives it back, when it
  // submits (before its insert is answered: the writer must not wait for it any longer) or fails.
  const announced = { made: 0, open: 0, openWhileInserting: [] as number[] }
  const svc = createIngestService({
    sink: {
      submit: async (_t, events) => {
        queueMicrotask(() => announced.openWhileInserting.push(announced.open))
        await new Promise((r) => setTimeout(r, 1))
        stored.push(...events)
        return { stored: events.length, duplicates: 0 }
      },
      announce: () => {
        announced.made++
        announced.open++
        let done = false
        return () => {
          if (!done) announced.open--
          done = true
        }
      },
    },
    plans: { current: async () => plan } as unknown as TrackingPlans,
    pii: createPii(SECRET),
    metrics: createMetrics({ collectDefault: false }),
    config,
    now: () => NOW,
    consent: async (_t, found) => consents.push(found),
    // C9 is a known customer: an alias from it merges two.
    aliases: { mergingAliases: async (_t, ms) => new Set(ms.flatMap((m, i) => ((m as { previousId?: unknown })?.previousId === 'C9' ? [i] : []))) },
    valuePolicy: async () => policy.v,
    pool,
  })
  return { svc, stored, consents, announced }
}

const ID = '11010519491231002X'
const big = 'x'.repeat(33 * 1024)
let deep: Record<string, unknown> = { v: 1 }
for (let i = 0; i < 12; i++) deep = { d: deep }
const at = (s: number) => new Date(NOW - s * 1000).toISOString()
/** Every kind of event the edge decides about: stored, scrubbed, flagged, refused for each reason. */
const CORPUS: unknown[] = [
  { type: 'track', messageId: 'm1', userId: 'C1', event: 'product_viewed', timestamp: at(5), properties: { product_id: 'wm-1', note: '请回电13912345678', idNo: ID, password: 'secret' }, context: { ip: '1.2.3.4', app: { version: '1' }, page: { url: 'https://x.cn/?m=13712345678' } } },
  { type: 'identify', messageId: 'm2', userId: 'C2', traits: { phone: '13812345678', tel: '13612345678', name: '张三', email: 'a@b.cn', tier: 'gold' } },
  { type: 'track', userId: 'C3', event: 'no_message_id', properties: { a: 1 } },
  { type: 'track', messageId: 'm4', userId: 'C4', event: 'transfer_completed', properties: { to: 'x' } },
  { type: 'track', messageId: 'm5', event: 'anonymous_missing' },
  { type: 'track', messageId: 'm6', userId: 'C6', event: 'big', properties: { big } },
  { type: 'track', messageId: 'm7', userId: 'C7', event: 'deep', properties: deep },
  { type: 'track', messageId: 'm8', userId: 'C8', event: 'future', timestamp: new Date(NOW + 3 * 86_400_000).toISOString() },
  { type: 'track', messageId: 'm9', userId: 'C9', event: 'old', sentAt: '1970-01-01T00:00:00Z' },
  { type: 'alias', messageId: 'm10', previousId: 'C9', userId: 'C10' },
  { type: 'alias', messageId: 'm11', previousId: 'dev-1', userId: 'C11' },
  { type: 'track', messageId: 'm12', userId: 'C12', event: 'Segment Consent Preference Updated', context: { consent: { categoryPreferences: { marketing: true } } } },
  { type: 'track', messageId: 'm13', userId: 'C13', event: 'bad_consent', context: { consent: { categoryPreferences: { marketing: 'yes' } } } },
  { type: 'page', messageId: 'm14', anonymousId: 'dev-14', name: 'Home', category: 'main', properties: { n: 2 ** 60 } },
  { type: 'group', messageId: 'm15', userId: 'C15', groupId: 'g1', traits: { size: 3 } },
  { type: 'screen', messageId: 'm16', userId: 'C16', name: ' ' },
  { type: 'nope', messageId: 'm17', userId: 'C17' },
  'not an object',
  { type: 'track', messageId: 'm19', userId: 'C19', event: 'e', properties: { card: 'card 6222021234567890128, mail wang@example.cn' } },
]

describe('the ingest worker pool against the in-thread path', () => {
  let pool: IngestPool
  beforeAll(() => {
    pool = createIngestPool({ size: 2, seed: { secret: SECRET, cacheEntries: 1000 }, config })
  })
  afterAll(async () => pool?.close())

  const bytes = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v))
  const outcome = async (p: Promise<unknown>) => p.then((r) => ({ ok: r }), (e: unknown) => ({ err: isAppError(e) ? e.toJSON() : String(e) }))

  it('gives the same answers, rows, consents and digests for a corpus of events, under either policy', async () => {
    for (const v of ['digest', 'mask'] as const) {
      const inThread = service(undefined, { v })
      const pooled = service(pool, { v })
      const body = { batch: CORPUS, sentAt: at(0), context: { locale: 'zh-CN', traits: { phone: '13812345678' } } }
      const a = await outcome(inThread.svc.ingest({ tenantId: 3, actor: 'k', messages: structuredClone(CORPUS), envelope: { sentAt: body.sentAt, context: body.context }, single: false }))
      const b = await outcome(pooled.svc.ingestBody({ tenantId: 3, actor: 'k', body: bytes(body), type: undefined }))
      expect(b).toEqual(a)
      const answer = (a as { ok: { accepted: number; rejected: { code: string }[] } }).ok
      // The corpus reaches every outcome: stored, scrubbed, refused for each reason.
      expect(answer.accepted).toBe(9)
      expect(new Set(answer.rejected.map((r) => r.code))).toEqual(
        new Set(['VALIDATION_FAILED', 'EVENT_TOO_LARGE', 'NESTING_TOO_DEEP', 'TIMESTAMP_OUT_OF_RANGE', 'ALIAS_MERGE_FORBIDDEN', 'CONSENT_INVALID']),
      )
      expect(pooled.stored).toEqual(inThread.stored)
      expect(pooled.consents).toEqual(inThread.consents)
      expect(pooled.stored.map((e) => e.properties).join()).not.toContain('13912345678')
      for (const { announced } of [inThread, pooled]) expect(announced).toEqual({ made: 1, open: 0, openWhileInserting: [0] })
    }
  })

  it('answers single-message endpoints and refused bodies as the in-thread path does', async () => {
    const { svc: inThread, announced: a1 } = service(undefined, { v: 'digest' })
    const { svc: pooled, announced: a2 } = service(pool, { v: 'digest' })
    for (const m of CORPUS.filter((x) => typeof x === 'object')) {
      const a = await outcome(inThread.ingest({ tenantId: 4, actor: 'k', messages: [structuredClone(m)], envelope: { type: 'track' }, single: true }))
      const b = await outcome(pooled.ingestBody({ tenantId: 4, actor: 'k', body: bytes(m), type: 'track' }))
      expect(b).toEqual(a)
    }
    // Not JSON, not UTF-8, empty: the server's own parser's answers.
    for (const [raw, code] of [[Buffer.from('{"batch": ['), 'INVALID_JSON'], [Buffer.from([0x7b, 0xff, 0x7d]), 'INVALID_ENCODING'], [Buffer.from('  '), 'INVALID_JSON']] as const) {
      const r = await outcome(pooled.ingestBody({ tenantId: 4, actor: 'k', body: raw, type: undefined }))
      expect(r).toMatchObject({ err: { error: { code } } })
    }
    // JSON of the wrong shape: handed back, for the route's schema to answer.
    for (const body of [{ batch: [] }, { nobatch: 1 }, [1, 2]]) expect(await pooled.ingestBody({ tenantId: 4, actor: 'k', body: bytes(body), type: undefined })).toBe(INVALID_BODY)
    expect(await pooled.ingestBody({ tenantId: 4, actor: 'k', body: bytes([{ type: 'track' }]), type: 'track' })).toBe(INVALID_BODY)
    // Every request, refused or not, gave its announcement back: none holds the writer's inserts.
    const requests = CORPUS.filter((x) => typeof x === 'object').length
    expect(a1).toMatchObject({ made: requests, open: 0 })
    expect(a2).toMatchObject({ made: requests + 3 + 3 + 1, open: 0 })
    expect([...a1.openWhileInserting, ...a2.openWhileInserting].every((n) => n === 0)).toBe(true)
  })

  it('refuses with INGEST_WORKER_FAILED (503) and stores nothing when a worker dies with the request, then goes on', async () => {
    const { svc, stored, announced } = service(pool, { v: 'digest' })
    // A large batch, so the workers are still at it when they are stopped.
    const batch = Array.from({ length: 5000 }, (_, i) => ({ type: 'track', messageId: `crash-${i}`, userId: `C${i}`, event: 'e', properties: { note: `请回电139${String(i).padStart(8, '0')}` } }))
    const pending = outcome(svc.ingestBody({ tenantId: 5, actor: 'k', body: bytes({ batch }), type: undefined }))
    await new Promise((r) => setTimeout(r, 5))
    await Promise.all(pool.threads.map((w) => w.terminate()))
    const r = await pending
    expect(r).toMatchObject({ err: { error: { code: 'INGEST_WORKER_FAILED' } } })
    expect(stored).toEqual([])
    expect(announced).toMatchObject({ made: 1, open: 0 })
    // The pool starts new workers: the next request is served.
    const next = await svc.ingestBody({ tenantId: 5, actor: 'k', body: bytes({ batch: batch.slice(0, 3) }), type: undefined })
    expect(next).toMatchObject({ accepted: 3 })
    expect(stored.map((e) => e.messageId)).toEqual(['crash-0', 'crash-1', 'crash-2'])
  })
})

describe('the server with its worker pool (the default)', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await openTestApp({ INGEST_WORKERS: '1' })
  })
  afterAll(async () => t?.close())

  const rows = (tenantId: number) =>
    t.engine.db.forTenant(tenantId).query<{ m: string; p: string }>('SELECT message_id AS m, properties AS p FROM events WHERE tenant_id = {tenant:UInt16} ORDER BY m')

  it("applies the tenant's policy and tracking plan as they are when each request arrives", async () => {
    expect(t.ingest.pool?.size).toBe(1)
    const k = await tenantWithKeys(t, 'pool-policy')
    const headers = { authorization: `Bearer ${k.write}` }
    const admin = { authorization: `Bearer ${k.admin}` }
    const send = (messageId: string, event = 'e') => t.app.inject({ method: 'POST', url: '/v1/batch', headers, payload: { batch: [{ messageId, userId: 'C1', event, type: 'track', properties: { tel: '13812345678' } }] } })
    const done0 = t.ingest.pool!.completed
    expect((await send('p1')).statusCode).toBe(200)
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tenant/privacy', headers: admin, payload: { valuePolicy: 'mask' } })).statusCode).toBe(200)
    expect((await send('p2')).statusCode).toBe(200)
    const plan: TrackingPlan = { mode: 'block', allowUnplannedEvents: false, events: { planned: { properties: {}, allowAdditionalProperties: true } } }
    expect((await t.app.inject({ method: 'PUT', url: '/v1/tracking-plan', headers: admin, payload: plan })).statusCode).toBe(200)
    const blocked = await send('p3', 'unplanned')
    expect(blocked.statusCode).toBe(400)
    expect(blocked.json().error.issues[0]).toMatchObject({ code: 'TRACKING_PLAN_VIOLATION', field: 'batch.0.event' })
    expect((await send('p4', 'planned')).statusCode).toBe(200)
    // Every one of these bodies went through the worker.
    expect(t.ingest.pool!.completed - done0).toBe(4)
    expect((await rows(k.tenant.id)).map((r) => [r.m, JSON.parse(r.p).tel])).toEqual([
      ['p1', expect.stringMatching(/^\[phone:k2:[0-9a-f]{64}\]$/)],
      ['p2', '138****5678'],
      ['p4', '138****5678'],
    ])
  })

  it('answers 503 INGEST_WORKER_FAILED with nothing written when the worker dies, and keeps serving', async () => {
    const k = await tenantWithKeys(t, 'pool-crash')
    const headers = { authorization: `Bearer ${k.write}` }
    const ids = Array.from({ length: 2000 }, () => crypto.randomUUID())
    const batch = ids.map((messageId, i) => ({ type: 'track', messageId, userId: `C${i}`, event: 'e', properties: { note: `请回电139${String(i).padStart(8, '0')}` } }))
    const pending = t.app.inject({ method: 'POST', url: '/v1/batch', headers, payload: { batch } })
    // Stopped as soon as the body is with it.
    while (t.ingest.pool!.pending === 0) await new Promise((r) => setImmediate(r))
    await Promise.all(t.ingest.pool!.threads.map((w) => w.terminate()))
    const res = await pending
    expect(res.statusCode).toBe(503)
    expect(res.json().error.code).toBe('INGEST_WORKER_FAILED')
    expect(res.headers['retry-after']).toBe('1')
    expect(await rows(k.tenant.id)).toEqual([])
    const again = await t.app.inject({ method: 'POST', url: '/v1/batch', headers, payload: { batch: batch.slice(0, 5) } })
    expect(again.statusCode).toBe(200)
    expect((await rows(k.tenant.id)).length).toBe(5)
  })
})
