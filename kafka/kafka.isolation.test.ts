import crypto from 'node:crypto'
import type { Kafka } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import type { Db, SystemDb } from '../core/db.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { createEventWriter, type EventWriter } from '../ingest/event-writer.js'
import { createIdentityService } from '../ingest/identity.service.js'
import { createKeyAllocator } from '../ingest/key-allocator.js'
import type { PendingEvent } from '../ingest/normalize.js'
import { pendingEvent } from '../test/fixtures.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createKafka, ensureTopics, startKafkaWorker, type KafkaConfig, type KafkaWorker } from './kafka.ingest.js'
import { encodeEvent } from './kafka.message.js'

const brokers = process.env.KAFKA_BROKERS
if (!brokers) console.warn('Kafka isolation tests skipped: run `bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npm test`')

/**
 * A message whose row the engine refuses goes to the dead-letter topic with the reason; the
 * messages around it (same partition) are stored and the partition's offset moves past it.
 */
describe.skipIf(!brokers)('the Kafka worker and rows the engine refuses (needs KAFKA_BROKERS)', () => {
  const suffix = crypto.randomBytes(4).toString('hex')
  const MARK = `refuse-${suffix}`
  let engine: TestEngine
  let kafka: Kafka
  let cfg: KafkaConfig
  let writer: EventWriter
  let worker: KafkaWorker
  let metrics: Metrics

  beforeAll(async () => {
    engine = await openTestEngine()
    const config = loadConfig({
      QIANMIAN_DATA_DIR: engine.dataDir,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: `qm-iso-${suffix}`,
      KAFKA_DLQ_TOPIC: `qm-iso-${suffix}-dlq`,
      KAFKA_GROUP_ID: `qm-iso-${suffix}`,
      KAFKA_PARTITIONS: '1',
    })
    cfg = config.kafka!
    metrics = createMetrics({ collectDefault: false })
    kafka = createKafka(cfg, engine.log)
    await ensureTopics(kafka, cfg)
    // The engine as if it refused a value validation did not know about: any insert holding a
    // row whose message id carries the mark fails the way a parse error does.
    const system = Object.create(engine.db.system) as SystemDb
    system.insertTsv = async (table, columns, rows) => {
      if (table === 'events' && rows.some((r) => String(r[columns.indexOf('message_id')]).includes(MARK))) {
        throw new Error('Code: 27. DB::Exception: Cannot parse input: expected \\t before: … (CANNOT_PARSE_INPUT_ASSERTION_FAILED)')
      }
      return engine.db.system.insertTsv(table, columns, rows)
    }
    const db: Db = { system, forTenant: (t) => engine.db.forTenant(t), laneName: engine.db.laneName, lane: () => db }
    writer = createEventWriter({
      db,
      identities: createIdentityService({ db, allocator: createKeyAllocator({ system: engine.db.system }) }),
      log: engine.log,
      metrics,
      options: { flushRows: 10_000, flushMs: 20, maxQueueEvents: 100_000 },
    })
    worker = await startKafkaWorker({ kafka, cfg, writer, log: engine.log, metrics })
  }, 120_000)

  afterAll(async () => {
    await worker?.stop()
    await writer?.close(5000)
    const admin = kafka?.admin()
    if (admin) {
      await admin.connect()
      await admin.deleteTopics({ topics: [cfg.topic, cfg.dlqTopic] }).catch(() => undefined)
      await admin.disconnect()
    }
    await engine?.close()
  })

  const event = (messageId: string, over: Partial<PendingEvent> = {}): PendingEvent => pendingEvent({ messageId, userId: 'P1', ...over })

  it('dead-letters the refused and the unstorable messages with their reasons, stores the rest, and commits past them', async () => {
    const prefix = `iso-${suffix}-`
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({
      topic: cfg.topic,
      messages: [
        encodeEvent(1, 'k', event(`${prefix}0`)),
        encodeEvent(1, 'k', event(`${prefix}1-${MARK}`)),
        encodeEvent(2, 'k', event(`${prefix}2`)),
        // From an edge that did not check the device clock: refused when read.
        encodeEvent(2, 'k', event(`${prefix}3`, { sentAt: Date.UTC(-1, 0, 1) })),
        encodeEvent(1, 'k', event(`${prefix}4`)),
      ].map((m) => ({ ...m, key: 'one-partition' })),
    })
    await producer.disconnect()

    const stored = async () => {
      const r = await engine.db.system.query<{ m: string }>('SELECT message_id AS m FROM events WHERE startsWith(message_id, {p:String}) ORDER BY m', { p: prefix })
      return r.map((x) => x.m)
    }
    const until = Date.now() + 60_000
    while ((await stored()).length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 200))
    expect(await stored()).toEqual([`${prefix}0`, `${prefix}2`, `${prefix}4`])

    const consumer = kafka.consumer({ groupId: `dlq-iso-${suffix}` })
    await consumer.connect()
    await consumer.subscribe({ topic: cfg.dlqTopic, fromBeginning: true })
    const dead: { id: string; reason: string; offset: string }[] = []
    await consumer.run({
      eachMessage: async ({ message }) => {
        const id = (JSON.parse(String(message.value)) as { event: { messageId: string } }).event.messageId
        dead.push({ id, reason: String(message.headers?.reason ?? ''), offset: String(message.headers?.['source-offset'] ?? '') })
      },
    })
    while (dead.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 200))
    await consumer.disconnect()
    dead.sort((a, b) => a.id.localeCompare(b.id))
    expect(dead.map((d) => [d.id, d.offset])).toEqual([
      [`${prefix}1-${MARK}`, '1'],
      [`${prefix}3`, '3'],
    ])
    expect(dead[0]!.reason).toMatch(/^unstorable \(event\): the storage engine refused a value \(CANNOT_PARSE_INPUT_ASSERTION_FAILED\)/)
    expect(dead[1]!.reason).toMatch(/^invalid event\.sentAt: before 1900-01-01/)

    // The group's committed offset is past every message: nothing is stuck or redelivered.
    const admin = kafka.admin()
    await admin.connect()
    const deadline = Date.now() + 30_000
    let committed = ''
    while (Date.now() < deadline) {
      const [o] = await admin.fetchOffsets({ groupId: cfg.groupId, topics: [cfg.topic] })
      committed = o!.partitions[0]!.offset
      if (committed === '5') break
      await new Promise((r) => setTimeout(r, 200))
    }
    await admin.disconnect()
    expect(committed).toBe('5')
    expect(await metrics.registry.getSingleMetricAsString('qianmian_kafka_dead_letters_total')).toMatch(/reason="unstorable"[^}]*} 1/)
  })
})
