import { Kafka, logLevel, type Consumer, type Message } from 'kafkajs'
import type { Config } from '../core/config.js'
import { AppError, errText } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { EventWriter } from '../ingest/event-writer.js'
import type { EventSink } from '../ingest/ingest.service.js'
import type { PendingEvent } from '../ingest/normalize.js'
import { decodeEvent, encodeEvent } from './kafka.message.js'
import { PartitionOffsets } from './offsets.js'
import { createFreshProducer } from './fresh-producer.js'
import { createSerialSender } from './serial-send.js'

/**
 * Kafka between the HTTP edge and ClickHouse. The edge's sink produces each accepted event and
 * answers only once the broker acknowledged it to all in-sync replicas (idempotent producer,
 * acks -1, send awaited). The worker consumes in a group, hands events to the same writer the
 * direct path uses (which deduplicates by messageId, so a redelivery stores nothing twice), and
 * commits an offset only after the insert holding it succeeded, up to the first gap.
 */

export type KafkaConfig = NonNullable<Config['kafka']>

export function createKafka(cfg: KafkaConfig, log: Logger): Kafka {
  const klog = log.child({ component: 'kafka' })
  const toPino = (level: logLevel) => (level === logLevel.ERROR ? 'error' : level === logLevel.WARN ? 'warn' : level === logLevel.INFO ? 'info' : 'debug')
  return new Kafka({
    clientId: cfg.clientId,
    brokers: [...cfg.brokers],
    logLevel: logLevel.WARN,
    logCreator: () => (entry) => klog[toPino(entry.level)]({ kafka: entry.namespace, ...entry.log }, entry.log.message),
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 5000 },
  })
}

/** Creates the events and dead-letter topics if missing. */
export async function ensureTopics(kafka: Kafka, cfg: KafkaConfig): Promise<void> {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const existing = new Set(await admin.listTopics())
    const topics = [cfg.topic, cfg.dlqTopic].filter((t) => !existing.has(t))
    if (topics.length) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: topics.map((topic) => ({ topic, numPartitions: topic === cfg.topic ? cfg.partitions : 1, replicationFactor: cfg.replicationFactor })),
      })
    }
  } finally {
    await admin.disconnect()
  }
}

export interface KafkaSink extends EventSink {
  close(): Promise<void>
}

export async function createKafkaSink(deps: { kafka: Kafka; cfg: KafkaConfig; log: Logger; metrics: Metrics }): Promise<KafkaSink> {
  const { cfg, log } = deps
  const produced = deps.metrics.counter('qianmian_kafka_produced_total', 'Events produced to Kafka by the edge')
  const failures = deps.metrics.counter('qianmian_kafka_produce_failures_total', 'Edge requests answered 503 because Kafka did not acknowledge')
  // Idempotent: a retried send after a lost acknowledgement does not duplicate in the log; a new
  // producer after a failed send (fresh-producer.ts says why).
  const producer = createFreshProducer(() => deps.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: 3, maxRetryTime: 2000 } }))
  await producer.connect()

  // One send at a time (see serial-send.ts for why a second concurrent send could be dropped by
  // the broker and still acknowledged); what arrives meanwhile goes out together in the next send.
  const sender = createSerialSender<{ key: string; value: string }>((messages) => producer.send({ topic: cfg.topic, acks: -1, messages }), cfg.sendTimeoutMs)

  return {
    async submit(tenantId: number, events: PendingEvent[], actor: string) {
      const messages = events.map((e) => encodeEvent(tenantId, actor, e))
      try {
        await sender.submit(messages)
      } catch (e) {
        // Not acknowledged means not accepted: the client retries, and if the send did land
        // after all, the writer drops the second copy by messageId.
        failures.inc()
        log.warn({ err: errText(e), events: events.length }, 'kafka produce failed; answering 503')
        throw new AppError('STORAGE_UNAVAILABLE', 'The event queue did not acknowledge the events; retry.', { headers: { 'retry-after': '2' }, cause: e })
      }
      produced.inc(events.length)
      return { stored: events.length, duplicates: 0, queued: true }
    },
    async close() {
      await sender.idle()
      await producer.disconnect()
    },
  }
}

/** kafkajs' default maxBytesPerPartition: the most one fetch (one batch in flight) holds of a partition. */
const VERIFY_AFTER_ASSIGNMENT_BYTES = 1_048_576
/** How long a batch waits for its dead letters to be acknowledged before it fails and is redelivered. */
const DLQ_SEND_DEADLINE_MS = 30_000

export interface KafkaWorker {
  stop(): Promise<void>
}

export async function startKafkaWorker(deps: { kafka: Kafka; cfg: KafkaConfig; writer: EventWriter; log: Logger; metrics: Metrics }): Promise<KafkaWorker> {
  const { cfg, writer } = deps
  const log = deps.log.child({ component: 'kafka-worker' })
  const consumed = deps.metrics.counter('qianmian_kafka_consumed_total', 'Events consumed from Kafka and written', ['outcome'])
  const deadLettered = deps.metrics.counter('qianmian_kafka_dead_letters_total', 'Messages sent to the dead-letter topic', ['reason'])
  const lag = deps.metrics.gauge('qianmian_kafka_batch_lag', 'Offset lag of the last batch per partition', ['partition'])
  const consumer: Consumer = deps.kafka.consumer({ groupId: cfg.groupId, allowAutoTopicCreation: false, sessionTimeout: 30_000, heartbeatInterval: 3_000 })
  const dlq = createFreshProducer(() => deps.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false }))
  const trackers = new Map<number, PartitionOffsets>()
  /**
   * Per partition, how many bytes of messages from the start of an assignment are still checked
   * against the events themselves (SubmitOptions.verifyStored). Whoever held the partition before
   * may have been killed after its insert and before the dedup index had them, and it had at most
   * one batch in flight: a fetch holds at most maxBytesPerPartition of a partition (kafkajs'
   * default, which this consumer keeps), so that many bytes cover it.
   */
  const verifyBytes = new Map<number, number>()
  // Partitions are consumed concurrently and may dead-letter at the same moment: their sends go
  // one at a time (serial-send.ts says why). The deadline only bounds how long a batch waits;
  // a failed dead-letter fails the batch, which is delivered again.
  const dlqSender = createSerialSender<Message>((messages) => dlq.send({ topic: cfg.dlqTopic, acks: -1, messages }), DLQ_SEND_DEADLINE_MS)

  await dlq.connect()
  await consumer.connect()
  await consumer.subscribe({ topic: cfg.topic, fromBeginning: true })
  for (const ev of [consumer.events.GROUP_JOIN, consumer.events.REBALANCING, consumer.events.CRASH] as const) {
    consumer.on(ev, (e) => log.info({ event: e.type, payload: e.payload }, 'consumer group event'))
  }

  await consumer.run({
    autoCommit: false,
    // Several partitions at once, so the writer can coalesce them into one large insert.
    partitionsConsumedConcurrently: Math.min(cfg.partitions, 8),
    eachBatch: async ({ batch, heartbeat, isRunning, isStale }) => {
      if (!batch.messages.length) return
      // A new assignment starts a new tracker: offsets before it were committed by whoever
      // held the partition.
      let tracker = trackers.get(batch.partition)
      const first = batch.messages[0]!.offset
      if (!tracker || tracker.outstanding > 0) {
        trackers.set(batch.partition, (tracker = new PartitionOffsets()))
        verifyBytes.set(batch.partition, VERIFY_AFTER_ASSIGNMENT_BYTES)
      }
      const verifyLeft = verifyBytes.get(batch.partition) ?? 0
      const verifyStored = verifyLeft > 0
      if (verifyStored) verifyBytes.set(batch.partition, verifyLeft - batch.messages.reduce((n, m) => n + (m.value?.length ?? 0) + (m.key?.length ?? 0), 0))
      tracker.received(batch.messages.map((m) => m.offset))
      lag.set({ partition: String(batch.partition) }, Number(batch.offsetLag()))

      const byTenant = new Map<number, { actor: string; events: PendingEvent[]; offsets: string[]; raw: { key: Buffer | null; value: Buffer | null }[] }>()
      const poison: { offset: string; reason: string; value: Buffer | null; key: Buffer | null }[] = []
      for (const m of batch.messages) {
        const d = decodeEvent(m.value)
        if (!d.ok) {
          poison.push({ offset: m.offset, reason: d.reason, value: m.value, key: m.key })
          continue
        }
        let g = byTenant.get(d.message.tenant)
        if (!g) byTenant.set(d.message.tenant, (g = { actor: d.message.actor, events: [], offsets: [], raw: [] }))
        g.events.push(d.message.event)
        g.offsets.push(m.offset)
        g.raw.push({ key: m.key, value: m.value })
      }
      /** Dead-letters messages with their reason; their offsets complete only once the DLQ has them. */
      const deadLetter = async (list: typeof poison) => {
        if (!list.length) return
        await dlqSender.submit(
          list.map((p) => ({
            key: p.key,
            value: p.value,
            headers: { reason: p.reason, 'source-topic': batch.topic, 'source-partition': String(batch.partition), 'source-offset': p.offset },
          })),
        )
        for (const p of list) deadLettered.inc({ reason: p.reason.split(' ')[0] ?? 'invalid' })
        log.warn({ partition: batch.partition, count: list.length, first: list[0]!.reason }, 'messages dead-lettered')
        tracker!.completed(list.map((p) => p.offset))
      }
      await deadLetter(poison)
      // The writer answers when the insert holding these events is acknowledged; a failure
      // throws, nothing is committed, and kafkajs redelivers from the last commit. Events the
      // engine refused on their own (the writer isolated them; the others are stored) go to the
      // dead-letter topic with the reason, so the partition keeps moving.
      const results = await Promise.all(
        [...byTenant].map(async ([tenant, g]) => {
          const r = await writer.submit(tenant, g.events, g.actor, { verifyStored })
          const refused = (r.refused ?? []).map((x) => ({ offset: g.offsets[x.position]!, reason: `unstorable ${x.field}: ${x.message}`, ...g.raw[x.position]! }))
          await deadLetter(refused)
          const bad = new Set(refused.map((x) => x.offset))
          tracker!.completed(g.offsets.filter((o) => !bad.has(o)))
          return r
        }),
      )
      for (const r of results) {
        consumed.inc({ outcome: 'stored' }, r.stored)
        if (r.duplicates) consumed.inc({ outcome: 'duplicate' }, r.duplicates)
      }
      const commit = tracker.takeCommittable()
      if (commit && isRunning() && !isStale()) {
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: commit }])
      }
      await heartbeat()
      log.debug({ partition: batch.partition, first, commit }, 'batch stored')
    },
  })
  return {
    async stop() {
      await consumer.disconnect()
      await dlqSender.idle()
      await dlq.disconnect()
    },
  }
}
