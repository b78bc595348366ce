import crypto from 'node:crypto'
import type { Consumer, Kafka } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import { createLogger } from '../core/log.js'
import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import { createIngestModule, type IngestModule } from '../ingest/ingest.module.js'
import type { PendingEvent } from '../ingest/normalize.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { pendingEvent } from '../test/fixtures.js'
import { createKafka, ensureTopics, startKafkaWorker, type KafkaConfig, type KafkaWorker } from './kafka.ingest.js'
import { encodeEvent } from './kafka.message.js'

const brokers = process.env.KAFKA_BROKERS
if (!brokers) console.warn('Kafka rebalance tests skipped: run `bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npm test`')

/**
 * A partition that leaves a worker and comes back after a rebalance. While another member held
 * it, that member may have stored a batch and been killed before the dedup index had it (the
 * index is written by a view after the events part): the batch is delivered again from the last
 * commit. The worker it comes back to must check those messages against the stored events, even
 * though its own offsets of the partition were all committed when it left.
 */
describe.skipIf(!brokers)('a Kafka partition back after a rebalance (needs KAFKA_BROKERS)', () => {
  const suffix = crypto.randomBytes(4).toString('hex')
  let engine: TestEngine
  let ingest: IngestModule
  let kafka: Kafka
  let cfg: KafkaConfig
  let worker: KafkaWorker | undefined
  let other: Consumer | undefined
  const said: string[] = []

  beforeAll(async () => {
    engine = await openTestEngine()
    cfg = loadConfig({
      QIANMIAN_DATA_DIR: engine.dataDir,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: `qm-rebalance-${suffix}`,
      KAFKA_DLQ_TOPIC: `qm-rebalance-${suffix}-dlq`,
      KAFKA_GROUP_ID: `qm-rebalance-${suffix}`,
      KAFKA_PARTITIONS: '1',
    }).kafka!
    // What the worker says, to see it join the group again.
    const log = createLogger({ level: 'info', destination: { write: (line: string) => void said.push(line) } })
    kafka = createKafka(cfg, log)
    ingest = createIngestModule({ db: engine.db, log: engine.log, metrics: createMetrics({ collectDefault: false }), pii: createPii('k'.repeat(40)), config: loadConfig({ QIANMIAN_DATA_DIR: engine.dataDir }).ingest })
    await ensureTopics(kafka, cfg)
    worker = await startKafkaWorker({ kafka, cfg, writer: ingest.writer, log, metrics: createMetrics({ collectDefault: false }) })
  }, 120_000)

  afterAll(async () => {
    await other?.disconnect()
    await worker?.stop()
    await ingest?.close(5000)
    if (kafka) {
      const admin = kafka.admin()
      await admin.connect()
      await admin.deleteTopics({ topics: [cfg.topic, cfg.dlqTopic] }).catch(() => undefined)
      await admin.disconnect()
    }
    await engine?.close()
  })

  const until = async (ok: () => Promise<boolean> | boolean, ms: number) => {
    const deadline = Date.now() + ms
    while (!(await ok()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250))
  }
  const committed = async () => {
    const admin = kafka.admin()
    await admin.connect()
    try {
      const [o] = await admin.fetchOffsets({ groupId: cfg.groupId, topics: [cfg.topic] })
      return o!.partitions[0]!.offset
    } finally {
      await admin.disconnect()
    }
  }
  const produce = async (events: PendingEvent[]) => {
    const producer = kafka.producer()
    await producer.connect()
    for (let i = 0; i < events.length; i += 200) await producer.send({ topic: cfg.topic, messages: events.slice(i, i + 200).map((e) => encodeEvent(1, 'k', e)) })
    await producer.disconnect()
  }
  const joins = () => said.filter((l) => l.includes('consumer group event') && l.includes('group_join')).length
  const copies = async (ids: string[]) => {
    const rows = await engine.db.system.query<{ n: string }>('SELECT count() AS n FROM events WHERE message_id IN {ids:Array(String)}', { ids })
    return Number(rows[0]!.n)
  }

  it('stores once what another member stored and did not index before it was killed', async () => {
    const prefix = `rebalance-${suffix}-`
    const ev = (i: number) => pendingEvent({ messageId: `${prefix}${i}`, userId: `R${i % 50}`, properties: JSON.stringify({ pad: 'x'.repeat(1_000) }) })
    // More than the first fetch after an assignment, which is checked against the events: past
    // it, this worker relies on the dedup index alone.
    const first = Array.from({ length: 2_000 }, (_, i) => ev(i))
    await produce(first)
    await until(async () => (await committed()) === '2000', 90_000)
    expect(await committed()).toBe('2000')
    const joined = joins()
    expect(joined).toBeGreaterThan(0)

    // Another member joins; the worker joins again, and one of the two holds the partition.
    other = kafka.consumer({ groupId: cfg.groupId })
    await other.connect()
    await other.subscribe({ topic: cfg.topic, fromBeginning: true })
    let otherJoined = false
    other.on(other.events.GROUP_JOIN, () => (otherJoined = true))
    // It commits nothing: what it is handed stays uncommitted, as with a member killed mid-batch.
    await other.run({ autoCommit: false, eachBatch: async () => undefined })
    await until(() => otherJoined && joins() > joined, 60_000)
    expect(otherJoined && joins() > joined).toBe(true)

    // The other member stored the next messages and was killed before the dedup index had them.
    const next = Array.from({ length: 20 }, (_, i) => ev(2_000 + i))
    const ids = next.map((e) => e.messageId)
    expect(await ingest.writer.submit(1, next, 'k')).toMatchObject({ stored: 20 })
    await engine.db.system.command('DELETE FROM ingest_dedup WHERE message_id IN {ids:Array(String)}', { ids })
    await engine.db.system.command('DELETE FROM ingest_dedup_digests WHERE message_id IN {ids:Array(String)}', { ids })
    await produce(next)
    // It leaves; the partition is the worker's, from the last commit.
    await other.disconnect()
    other = undefined
    await until(async () => (await committed()) === '2020', 90_000)
    expect(await committed()).toBe('2020')
    expect(await copies(ids)).toBe(20)
    expect(await copies(first.map((e) => e.messageId))).toBe(2_000)
  }, 240_000)
})
