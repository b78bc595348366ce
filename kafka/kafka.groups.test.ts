import crypto from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Kafka } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import { AppError } from '../core/errors.js'
import { createLogger } from '../core/log.js'
import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import type { EventWriter } from '../ingest/event-writer.js'
import { createIngestModule, type IngestModule } from '../ingest/ingest.module.js'
import { moduleApp } from '../test/app.js'
import { createKeyService } from '../tenants/keys.service.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { pendingEvent } from '../test/fixtures.js'
import { createKafka, createKafkaSink, ensureTopics, startKafkaWorker, type KafkaConfig, type KafkaSink, type KafkaWorker } from './kafka.ingest.js'
import { encodeEvent } from './kafka.message.js'

const brokers = process.env.KAFKA_BROKERS
if (!brokers) console.warn('Kafka tenant-group tests skipped: run `bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npm test`')

/**
 * A partition carries every tenant's events: one tenant's events that cannot be written must not
 * hold back the others'. What fails for good is dead-lettered with its reason and the partition
 * moves on; what fails for now (the engine down, the writer's queue full) is kept and tried
 * again later, without crashing the consumer.
 */
describe.skipIf(!brokers)('tenant groups of a Kafka batch (needs KAFKA_BROKERS)', () => {
  const suffix = crypto.randomBytes(4).toString('hex')
  let engine: TestEngine
  let ingest: IngestModule
  const kafkaLog: string[] = []
  let kafka: Kafka
  const topics: string[] = []
  const workers: KafkaWorker[] = []
  const sinks: KafkaSink[] = []

  beforeAll(async () => {
    engine = await openTestEngine()
    // Everything the Kafka clients and the worker say, to find a consumer crash in it.
    const log = createLogger({ level: 'info', destination: { write: (line: string) => void kafkaLog.push(line) } })
    const config = loadConfig({ QIANMIAN_DATA_DIR: engine.dataDir, KAFKA_BROKERS: brokers })
    kafka = createKafka(config.kafka!, log)
    const metrics = createMetrics({ collectDefault: false })
    ingest = createIngestModule({ db: engine.db, log: engine.log, metrics, pii: createPii('k'.repeat(40)), config: config.ingest })
  }, 120_000)

  afterAll(async () => {
    for (const w of workers) await w.stop()
    for (const s of sinks) await s.close()
    await ingest?.close(5000)
    const admin = kafka?.admin()
    if (admin) {
      await admin.connect()
      await admin.deleteTopics({ topics }).catch(() => undefined)
      await admin.disconnect()
    }
    await engine?.close()
  })

  /** A one-partition topic and a worker on it writing through `writer`. */
  async function lane(name: string, writer: EventWriter): Promise<KafkaConfig> {
    const cfg = loadConfig({
      QIANMIAN_DATA_DIR: engine.dataDir,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: `qm-grp-${name}-${suffix}`,
      KAFKA_DLQ_TOPIC: `qm-grp-${name}-${suffix}-dlq`,
      KAFKA_GROUP_ID: `qm-grp-${name}-${suffix}`,
      KAFKA_PARTITIONS: '1',
    }).kafka!
    topics.push(cfg.topic, cfg.dlqTopic)
    await ensureTopics(kafka, cfg)
    workers.push(await startKafkaWorker({ kafka, cfg, writer, log: engine.log, metrics: createMetrics({ collectDefault: false }) }))
    return cfg
  }

  /** The writer, with `fault` asked first for every submission. */
  const faulty = (fault: (events: readonly { messageId: string }[]) => void): EventWriter => {
    const w = Object.create(ingest.writer) as EventWriter
    w.submit = async (tenant, events, actor, opts) => {
      fault(events)
      return ingest.writer.submit(tenant, events, actor, opts)
    }
    return w
  }

  const storedCount = async (prefix: string) => {
    const [r] = await engine.db.system.query<{ n: string }>('SELECT count() AS n FROM events WHERE startsWith(message_id, {p:String})', { p: prefix })
    return Number(r!.n)
  }
  const committed = async (cfg: KafkaConfig) => {
    const admin = kafka.admin()
    await admin.connect()
    try {
      const [o] = await admin.fetchOffsets({ groupId: cfg.groupId, topics: [cfg.topic] })
      const [end] = await admin.fetchTopicOffsets(cfg.topic)
      return { committed: o!.partitions[0]!.offset, end: end!.high }
    } finally {
      await admin.disconnect()
    }
  }
  const until = async (ok: () => Promise<boolean>, ms: number) => {
    const deadline = Date.now() + ms
    while (!(await ok()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250))
  }
  const deadLetters = async (cfg: KafkaConfig, n: number) => {
    const consumer = kafka.consumer({ groupId: `dlq-${cfg.groupId}` })
    await consumer.connect()
    await consumer.subscribe({ topic: cfg.dlqTopic, fromBeginning: true })
    const dead: { id: string; reason: string }[] = []
    await consumer.run({
      eachMessage: async ({ message }) => {
        dead.push({ id: (JSON.parse(String(message.value)) as { event: { messageId: string } }).event.messageId, reason: String(message.headers?.reason ?? '') })
      },
    })
    await until(async () => dead.length >= n, 30_000)
    await consumer.disconnect()
    return dead
  }
  const produce = async (cfg: KafkaConfig, messages: { key: string; value: string }[]) => {
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({ topic: cfg.topic, messages: messages.map((m) => ({ ...m, key: 'one-partition' })) })
    await producer.disconnect()
  }

  it('an identify trait the writer used to cut inside an emoji, and a trait of half an emoji, no longer stall the partition for another tenant', async () => {
    const cfg = await lane('emoji', ingest.writer)
    const metrics = createMetrics({ collectDefault: false })
    const sink = await createKafkaSink({ kafka, cfg, log: engine.log, metrics })
    sinks.push(sink)
    const edge = createIngestModule({ db: engine.db, log: engine.log, metrics, pii: createPii('k'.repeat(40)), config: loadConfig({ QIANMIAN_DATA_DIR: engine.dataDir }).ingest, sink: () => sink })
    const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
    const keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 60_000 })
    const app: FastifyInstance = await moduleApp({ db: engine.db, log: engine.log, metrics, tenants, keys }, [edge.routes])
    try {
      const a = await tenants.create({ slug: `emoji-a-${suffix}`, name: 'A' })
      const b = await tenants.create({ slug: `emoji-b-${suffix}`, name: 'B' })
      const keyA = (await keys.issue(a.id, { roles: ['ingest'], holder: 'app a' })).key
      const keyB = (await keys.issue(b.id, { roles: ['ingest'], holder: 'app b' })).key
      const post = (key: string, url: string, payload: string) => app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, payload })
      expect((await post(keyA, '/v1/identify', JSON.stringify({ userId: 'A1', traits: { bio: `${'a'.repeat(999)}😀` } }))).statusCode).toBe(200)
      expect((await post(keyA, '/v1/identify', '{"userId":"A2","traits":{"nick":"\\ud83d"}}')).statusCode).toBe(200)
      const prefix = `emoji-${suffix}-`
      for (let n = 0; n < 5; n++) {
        const batch = Array.from({ length: 100 }, (_, i) => ({ type: 'track', messageId: `${prefix}${n}-${i}`, userId: `B${i % 20}`, event: 'transfer_completed' }))
        expect((await post(keyB, '/v1/batch', JSON.stringify({ batch }))).statusCode).toBe(200)
      }
      await until(async () => {
        const c = await committed(cfg)
        return c.committed === c.end
      }, 40_000)
      expect(await committed(cfg)).toEqual({ committed: '502', end: '502' })
      expect(await storedCount(prefix)).toBe(500)
      const traits = await engine.db.system.query<{ t: string; v: string }>('SELECT trait AS t, value AS v FROM customer_traits FINAL WHERE tenant_id = {a:UInt16} ORDER BY t', { a: a.id })
      expect(traits).toEqual([
        { t: 'bio', v: 'a'.repeat(999) },
        { t: 'nick', v: '\ufffd' },
      ])
    } finally {
      await app.close()
      await edge.close(5000)
    }
  }, 90_000)

  it('a tenant group failing for good: its events go one by one, the one that fails alone is dead-lettered with the reason, every other event is stored and the partition committed', async () => {
    const MARK = `poison-${suffix}`
    const cfg = await lane('broken', faulty((events) => {
      if (events.some((e) => e.messageId.includes(MARK))) throw new AppError('INTERNAL', 'The events could not be stored.', { cause: new TypeError("Cannot read properties of undefined (reading 'key')") })
    }))
    const prefix = `broken-${suffix}-`
    const ev = (id: string, userId: string) => pendingEvent({ messageId: `${prefix}${id}`, userId })
    await produce(cfg, [
      encodeEvent(1, 'k', ev('0', 'G1')),
      encodeEvent(2, 'k', ev('1', 'H1')),
      encodeEvent(1, 'k', ev(`2-${MARK}`, 'G2')),
      encodeEvent(1, 'k', ev('3', 'G3')),
      encodeEvent(2, 'k', ev('4', 'H2')),
    ])
    await until(async () => (await committed(cfg)).committed === '5', 40_000)
    expect(await committed(cfg)).toEqual({ committed: '5', end: '5' })
    expect(await storedCount(prefix)).toBe(4)
    const dead = await deadLetters(cfg, 1)
    expect(dead.map((d) => d.id)).toEqual([`${prefix}2-${MARK}`])
    expect(dead[0]!.reason).toMatch(/^failed \(INTERNAL\): .*reading 'key'/)
  }, 90_000)

  it('a failure for now (the writer’s queue full) keeps the batch and tries again later, without crashing the consumer in a loop', async () => {
    const healedAt = Date.now() + 8_000
    let attempts = 0
    const cfg = await lane('busy', faulty(() => {
      if (Date.now() < healedAt) {
        attempts++
        throw new AppError('OVERLOADED', 'The ingest queue is full; retry shortly.')
      }
    }))
    const prefix = `busy-${suffix}-`
    const from = kafkaLog.length
    await produce(cfg, [encodeEvent(1, 'k', pendingEvent({ messageId: `${prefix}0`, userId: 'J1' })), encodeEvent(2, 'k', pendingEvent({ messageId: `${prefix}1`, userId: 'K1' }))])
    await until(async () => (await committed(cfg)).committed === '2', 40_000)
    expect(await committed(cfg)).toEqual({ committed: '2', end: '2' })
    expect(await storedCount(prefix)).toBe(2)
    // This lane's consumer only (the client's log is shared with the other lanes).
    const said = kafkaLog.slice(from).filter((l) => l.includes(cfg.groupId))
    expect(said.filter((l) => /Crash|Restarting the consumer/.test(l))).toEqual([])
    // Backing off: a handful of tries in 8 s (two tenants each), not one every few hundred ms.
    expect(attempts).toBeLessThanOrEqual(12)
  }, 90_000)
})
