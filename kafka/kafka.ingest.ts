import { Kafka, logLevel } from 'kafkajs'
import type { Config } from '../core/config.js'
import { AppError, errText } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { EventSink } from '../ingest/ingest.service.js'
import type { PendingEvent } from '../ingest/normalize.js'
import { createFreshProducer } from './fresh-producer.js'
import { encodeEvent } from './kafka.message.js'
import { BROKER_DEFAULT_MAX_MESSAGE_BYTES, partitionTracker, recordSize, sendCap, tooLarge } from './send-limits.js'
import { createSerialSender } from './serial-send.js'

export { startKafkaWorker, type KafkaWorker } from './kafka.worker.js'

/**
 * Kafka between the HTTP edge and ClickHouse. The edge's sink produces each accepted event and
 * answers only once the broker acknowledged it to all in-sync replicas (idempotent producer,
 * acks -1, send awaited). The worker consumes in a group, hands events to the same writer the
 * direct path uses (which deduplicates by messageId, so a redelivery stores nothing twice), and
 * commits an offset only after the insert holding it succeeded, up to the first gap
 * (kafka.worker.ts).
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

/**
 * Creates the events and dead-letter topics if missing, taking messages up to KAFKA_MAX_MESSAGE_BYTES
 * (the cap the edge and the worker send under; send-limits.ts).
 */
export async function ensureTopics(kafka: Kafka, cfg: KafkaConfig): Promise<void> {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const existing = new Set(await admin.listTopics())
    const topics = [cfg.topic, cfg.dlqTopic].filter((t) => !existing.has(t))
    if (topics.length) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: topics.map((topic) => ({
          topic,
          numPartitions: topic === cfg.topic ? cfg.partitions : 1,
          replicationFactor: cfg.replicationFactor,
          configEntries: [{ name: 'max.message.bytes', value: String(cfg.maxMessageBytes ?? BROKER_DEFAULT_MAX_MESSAGE_BYTES) }],
        })),
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
  const tooBig = deps.metrics.counter('qianmian_kafka_produce_too_large_total', 'Edge requests answered 413: an event larger than one Kafka message may be')
  // Which partition each message goes to, as kafkajs will decide it: sends are capped per partition.
  const partitions = partitionTracker()
  // Idempotent: a retried send after a lost acknowledgement does not duplicate in the log; a new
  // producer after a failed send (fresh-producer.ts says why).
  const producer = createFreshProducer(() =>
    deps.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: 3, maxRetryTime: 2000 }, createPartitioner: partitions.createPartitioner }),
  )
  await producer.connect()

  // One send at a time (see serial-send.ts for why a second concurrent send could be dropped by
  // the broker and still acknowledged); what arrives meanwhile goes out together in the next
  // send, up to the broker's size limit for each partition (send-limits.ts).
  const cap = sendCap(cfg.maxMessageBytes)
  const sender = createSerialSender<{ key: string; value: string }>((messages) => producer.send({ topic: cfg.topic, acks: -1, messages }), cfg.sendTimeoutMs, {
    maxBytes: cap,
    sizeOf: recordSize,
    partitionOf: (m) => partitions.partitionOf(cfg.topic, m),
    tooLarge,
  })
  const refuseTooLarge = (message: string, cause?: unknown) => {
    tooBig.inc()
    return new AppError('PAYLOAD_TOO_LARGE', message, { cause })
  }

  return {
    async submit(tenantId: number, events: PendingEvent[], actor: string) {
      const messages = events.map((e) => encodeEvent(tenantId, actor, e))
      // No event the route accepts is this large under the broker's default limit (send-limits.ts
      // measures the worst case); a lower limit configured refuses it here, not at every retry.
      const over = messages.findIndex((m) => recordSize(m) > cap)
      if (over >= 0) {
        throw refuseTooLarge(`Event ${events[over]!.messageId} encodes to more than one message of the event queue may hold (${cap} bytes, under KAFKA_MAX_MESSAGE_BYTES); nothing of this request was queued.`)
      }
      try {
        await sender.submit(messages)
      } catch (e) {
        if (tooLarge(e)) {
          // The broker's limit is below the one configured: sending it again fails the same way.
          log.error({ err: errText(e), events: events.length }, 'kafka refused the events as too large; answering 413 (is the topic max.message.bytes below KAFKA_MAX_MESSAGE_BYTES?)')
          throw refuseTooLarge("The event queue refused these events as larger than its message size limit; send fewer events per request.", e)
        }
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
