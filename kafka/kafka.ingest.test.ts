import crypto from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Kafka } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import { createIngestModule, type IngestModule } from '../ingest/ingest.module.js'
import { moduleApp } from '../test/app.js'
import { createKeyService } from '../tenants/keys.service.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createKafka, createKafkaSink, ensureTopics, startKafkaWorker, type KafkaConfig, type KafkaSink, type KafkaWorker } from './kafka.ingest.js'
import { encodeEvent } from './kafka.message.js'
import { pendingEvent } from '../test/fixtures.js'

const brokers = process.env.KAFKA_BROKERS
if (!brokers) console.warn('Kafka ingest tests skipped: run `bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npm test`')

describe.skipIf(!brokers)('HTTP -> Kafka -> ClickHouse (needs KAFKA_BROKERS; see scripts/kafka-local.sh)', () => {
  const suffix = crypto.randomBytes(4).toString('hex')
  let engine: TestEngine
  let app: FastifyInstance
  let kafka: Kafka
  let cfg: KafkaConfig
  let ingest: IngestModule
  let sink: KafkaSink
  let worker: KafkaWorker
  let metrics: Metrics
  let key = ''
  let tenantId = 0

  beforeAll(async () => {
    engine = await openTestEngine()
    const config = loadConfig({
      QIANMIAN_DATA_DIR: engine.dataDir,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: `qm-test-${suffix}`,
      KAFKA_DLQ_TOPIC: `qm-test-${suffix}-dlq`,
      KAFKA_GROUP_ID: `qm-test-${suffix}`,
      KAFKA_PARTITIONS: '3',
      INGEST_FLUSH_MS: '20',
    })
    cfg = config.kafka!
    metrics = createMetrics({ collectDefault: false })
    kafka = createKafka(cfg, engine.log)
    await ensureTopics(kafka, cfg)
    sink = await createKafkaSink({ kafka, cfg, log: engine.log, metrics })
    const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
    const keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 60_000 })
    ingest = createIngestModule({ db: engine.db, log: engine.log, metrics, pii: createPii('k'.repeat(40)), config: config.ingest, sink: () => sink })
    worker = await startKafkaWorker({ kafka, cfg, writer: ingest.writer, log: engine.log, metrics })
    app = await moduleApp({ db: engine.db, log: engine.log, metrics, tenants, keys }, [ingest.routes])
    const t = await tenants.create({ slug: 'kafka-bank', name: 'Kafka Bank' })
    tenantId = t.id
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
    const [r] = await engine.db.system.query<{ n: string; d: string }>(
      'SELECT count() AS n, uniqExact(message_id) AS d FROM events WHERE startsWith(message_id, {p:String})',
      { p: prefix },
    )
    return { n: Number(r!.n), d: Number(r!.d) }
  }
  const waitFor = async (prefix: string, n: number, ms = 60_000) => {
    const until = Date.now() + ms
    let s = await stored(prefix)
    while (s.n < n && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200))
      s = await stored(prefix)
    }
    return s
  }
  const batch = (prefix: string, b: number, size: number) => ({
    batch: Array.from({ length: size }, (_, i) => ({ type: 'track', messageId: `${prefix}${b}-${i}`, userId: `K${i % 37}`, event: 'transfer_completed', properties: { amount: i } })),
  })

  it('stores every event the edge acknowledged, once', async () => {
    const prefix = `e2e-${suffix}-`
    for (let b = 0; b < 20; b++) {
      const res = await app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${key}` }, payload: batch(prefix, b, 50) })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({ accepted: 50, queued: true })
    }
    expect(await waitFor(prefix, 1000)).toEqual({ n: 1000, d: 1000 })
  })

  it('drops a redelivered event (same messageId) instead of storing it twice', async () => {
    const prefix = `redeliver-${suffix}-`
    const body = batch(prefix, 0, 30)
    for (let i = 0; i < 2; i++) {
      expect((await app.inject({ method: 'POST', url: '/v1/batch', headers: { authorization: `Bearer ${key}` }, payload: body })).statusCode).toBe(200)
    }
    await waitFor(prefix, 30)
    await new Promise((r) => setTimeout(r, 1500)) // let the second copy reach the writer too
    expect(await stored(prefix)).toEqual({ n: 30, d: 30 })
    const text = await metrics.registry.getSingleMetricAsString('qianmian_kafka_consumed_total')
    expect(text).toMatch(/outcome="duplicate"[^}]*} [1-9]/)
  })

  it('sends a poison message to the dead-letter topic with its reason, and keeps the partition flowing', async () => {
    const prefix = `poison-${suffix}-`
    const producer = kafka.producer()
    await producer.connect()
    const good = (i: number) =>
      encodeEvent(tenantId, 'test', pendingEvent({ messageId: `${prefix}${i}`, userId: 'P1' }))
    // Same key, so the same partition: the good messages after the bad ones must still land.
    await producer.send({
      topic: cfg.topic,
      messages: [
        { ...good(0), key: 'poison-key' },
        { key: 'poison-key', value: '{not json' },
        { key: 'poison-key', value: JSON.stringify({ v: 99, tenant: tenantId }) },
        { ...good(1), key: 'poison-key' },
      ],
    })
    await producer.disconnect()
    expect(await waitFor(prefix, 2)).toEqual({ n: 2, d: 2 })

    const consumer = kafka.consumer({ groupId: `dlq-reader-${suffix}` })
    await consumer.connect()
    await consumer.subscribe({ topic: cfg.dlqTopic, fromBeginning: true })
    const reasons: string[] = []
    await consumer.run({
      eachMessage: async ({ message }) => {
        reasons.push(String(message.headers?.reason ?? ''))
      },
    })
    const until = Date.now() + 30_000
    while (reasons.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 200))
    await consumer.disconnect()
    expect(reasons.sort()).toEqual(['not JSON', 'unknown message version 99'])
    expect(await metrics.registry.getSingleMetricAsString('qianmian_kafka_dead_letters_total')).toMatch(/ 1$/m)
  })
})
