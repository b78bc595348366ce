import crypto from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Kafka } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import { createIngestModule, type IngestModule } from '../ingest/ingest.module.js'
import { MAX_BATCH_BYTES } from '../ingest/segment.schema.js'
import { moduleApp } from '../test/app.js'
import { createKeyService } from '../tenants/keys.service.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { pendingEvent } from '../test/fixtures.js'
import { createKafka, createKafkaSink, ensureTopics, startKafkaWorker, type KafkaConfig, type KafkaSink, type KafkaWorker } from './kafka.ingest.js'

const brokers = process.env.KAFKA_BROKERS
if (!brokers) console.warn('Kafka size tests skipped: run `bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npm test`')

/**
 * The broker takes at most about 1 MB of one partition in one produce request (message.max.bytes)
 * and kafkajs does not split a send: what the edge groups into one send must fit, and every body
 * the route accepts must reach the log, however much its personal data grows when digested.
 */
describe.skipIf(!brokers)('event sizes through Kafka (needs KAFKA_BROKERS)', () => {
  const suffix = crypto.randomBytes(4).toString('hex')
  let engine: TestEngine
  let app: FastifyInstance
  let kafka: Kafka
  let cfg: KafkaConfig
  let ingest: IngestModule
  let sink: KafkaSink
  let worker: KafkaWorker
  let key = ''

  beforeAll(async () => {
    engine = await openTestEngine()
    const config = loadConfig({
      QIANMIAN_DATA_DIR: engine.dataDir,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: `qm-size-${suffix}`,
      KAFKA_DLQ_TOPIC: `qm-size-${suffix}-dlq`,
      KAFKA_GROUP_ID: `qm-size-${suffix}`,
      // One partition: every request's share lands on it.
      KAFKA_PARTITIONS: '1',
      INGEST_FLUSH_MS: '20',
    })
    cfg = config.kafka!
    const metrics = createMetrics({ collectDefault: false })
    kafka = createKafka(cfg, engine.log)
    await ensureTopics(kafka, cfg)
    sink = await createKafkaSink({ kafka, cfg, log: engine.log, metrics })
    const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
    const keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 60_000 })
    ingest = createIngestModule({ db: engine.db, log: engine.log, metrics, pii: createPii('k'.repeat(40)), config: config.ingest, sink: () => sink })
    worker = await startKafkaWorker({ kafka, cfg, writer: ingest.writer, log: engine.log, metrics })
    app = await moduleApp({ db: engine.db, log: engine.log, metrics, tenants, keys }, [ingest.routes])
    const t = await tenants.create({ slug: 'size-bank', name: 'Size Bank' })
    key = (await keys.issue(t.id, { roles: ['ingest'], holder: 'test app' })).key
  }, 120_000)

  afterAll(async () => {
    await app?.close()
    await worker?.stop()
    await sink?.close()
    await ingest?.close(5000)
    const admin = kafka?.admin()
    if (admin) {
      await admin.connect()
      await admin.deleteTopics({ topics: [cfg.topic, cfg.dlqTopic] }).catch(() => undefined)
      await admin.disconnect()
    }
    await engine?.close()
  })

  const stored = async (prefix: string) => {
    const [r] = await engine.db.system.query<{ n: string }>('SELECT count() AS n FROM events WHERE startsWith(message_id, {p:String})', { p: prefix })
    return Number(r!.n)
  }
  const waitStored = async (prefix: string, n: number, ms = 60_000) => {
    const until = Date.now() + ms
    while ((await stored(prefix)) < n && Date.now() < until) await new Promise((r) => setTimeout(r, 200))
    return stored(prefix)
  }
  const status = (p: Promise<unknown>) => p.then(() => 200, (e: { status?: number; message?: string }) => `${e.status} ${e.message}`)
  const post = (payload: string) => app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, payload })

  it('requests that waited during a send go out in sends the broker takes: two 540 KB requests beside two small ones are all acknowledged', async () => {
    const prefix = `group-${suffix}-`
    const big = (t: number) => Array.from({ length: 20 }, (_, i) => pendingEvent({ messageId: `${prefix}${t}-${i}`, userId: `U${t}`, properties: JSON.stringify({ note: 'x'.repeat(27_000) }) }))
    const small = (t: number) => [pendingEvent({ messageId: `${prefix}${t}-s`, userId: `U${t}` })]
    // The same tick: the first send starts, the other three wait for it and go out after it.
    const r = await Promise.all([status(sink.submit(1, small(1), 'k')), status(sink.submit(1, big(2), 'k')), status(sink.submit(1, big(3), 'k')), status(sink.submit(1, small(4), 'k'))])
    expect(r).toEqual([200, 200, 200, 200])
    expect(await waitStored(prefix, 42)).toBe(42)
  })

  it('a 415 KB body of phone numbers (a digest is 75 bytes for 12) is acknowledged and stored, as on the direct path', async () => {
    const prefix = `phones-${suffix}-`
    const text = Array.from({ length: 2300 }, (_, i) => `1381${String(1_000_000 + i).slice(0, 7)}`).join(' ')
    const body = JSON.stringify({ batch: Array.from({ length: 15 }, (_, i) => ({ type: 'track', messageId: `${prefix}${i}`, userId: 'PN1', event: 'contacts_synced', properties: { contacts: text } })) })
    expect(Buffer.byteLength(body)).toBeGreaterThan(400_000)
    const res = await post(body)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ accepted: 15, queued: true })
    expect(await waitStored(prefix, 15)).toBe(15)
  })

  it('the largest expansion measured (e-mail addresses, 10.7x) fits: a body at the batch limit that encodes to about 5 MB is acknowledged and stored', async () => {
    const prefix = `emails-${suffix}-`
    const event = (i: number) => ({ type: 'track', messageId: `${prefix}${i}`, userId: `EM${i}`, event: 'contacts_synced', properties: { contacts: 'a@b.cn '.repeat(4_600) } })
    const events: unknown[] = []
    while (Buffer.byteLength(JSON.stringify({ batch: [...events, event(events.length)] })) < MAX_BATCH_BYTES) events.push(event(events.length))
    const res = await post(JSON.stringify({ batch: events }))
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ accepted: events.length, queued: true })
    expect(await waitStored(prefix, events.length)).toBe(events.length)
  }, 90_000)
})
