import type { Consumer, Kafka, Message } from 'kafkajs'
import { errText } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { EventWriter } from '../ingest/event-writer.js'
import type { PendingEvent } from '../ingest/normalize.js'
import { createFreshProducer } from './fresh-producer.js'
import type { KafkaConfig } from './kafka.ingest.js'
import { decodeEvent } from './kafka.message.js'
import { PartitionOffsets } from './offsets.js'
import { BROKER_DEFAULT_MAX_MESSAGE_BYTES, recordSize, sendCap, tooLarge } from './send-limits.js'
import { createSerialSender } from './serial-send.js'
import { writeTenantGroup } from './tenant-groups.js'

/**
 * The ingest worker: consumes the events topic in a group, hands each tenant's events to the same
 * writer the direct path uses (which deduplicates by messageId, so a redelivery stores nothing
 * twice), and commits an offset only after the insert holding it succeeded, up to the first gap.
 *
 * A partition carries every tenant's events, so one tenant's events never hold it: what cannot be
 * written for good (a message it cannot read, an event the engine refuses, an event the writer
 * fails on alone) goes to the dead-letter topic with the reason (tenant-groups.ts). A failure of
 * the moment (the engine down, the writer's queue full) keeps the batch: what was stored before
 * the first gap is committed, the partition is paused and read again from the gap after a delay
 * that doubles while it lasts, rather than failing the batch and crashing the consumer (a rejoin
 * of the whole group) about once a second.
 */

/** kafkajs' default maxBytesPerPartition: the most one fetch (one batch in flight) holds of a partition, unless one record batch is larger. */
const VERIFY_AFTER_ASSIGNMENT_BYTES = 1_048_576
/** How long a batch waits for its dead letters to be acknowledged before it fails and is redelivered. */
const DLQ_SEND_DEADLINE_MS = 30_000
/** A partition held back after a failure of the moment is read again after this, doubling to the most. */
const BACKOFF_FIRST_MS = 1_000
const BACKOFF_MAX_MS = 30_000

export interface KafkaWorker {
  stop(): Promise<void>
}

type Dead = { offset: string; reason: string; value: Buffer | null; key: Buffer | null }

export async function startKafkaWorker(deps: { kafka: Kafka; cfg: KafkaConfig; writer: EventWriter; log: Logger; metrics: Metrics }): Promise<KafkaWorker> {
  const { cfg, writer } = deps
  const log = deps.log.child({ component: 'kafka-worker' })
  const consumed = deps.metrics.counter('qianmian_kafka_consumed_total', 'Events consumed from Kafka and written', ['outcome'])
  const deadLettered = deps.metrics.counter('qianmian_kafka_dead_letters_total', 'Messages sent to the dead-letter topic', ['reason'])
  const heldBack = deps.metrics.counter('qianmian_kafka_batches_held_total', 'Batches kept for redelivery after a failure of the moment (the partition paused, then read again)')
  const lag = deps.metrics.gauge('qianmian_kafka_batch_lag', 'Offset lag of the last batch per partition', ['partition'])
  const consumer: Consumer = deps.kafka.consumer({ groupId: cfg.groupId, allowAutoTopicCreation: false, sessionTimeout: 30_000, heartbeatInterval: 3_000 })
  const dlq = createFreshProducer(() => deps.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false }))
  const trackers = new Map<number, PartitionOffsets>()
  /**
   * Per partition, how many bytes of messages from the start of an assignment are still checked
   * against the events themselves (SubmitOptions.verifyStored). Whoever held the partition before
   * may have been killed after its insert and before the dedup index had them, and it had at most
   * one batch in flight: a fetch holds at most maxBytesPerPartition of a partition (kafkajs'
   * default, which this consumer keeps), or one record batch when that is larger.
   */
  const verifyBytes = new Map<number, number>()
  const verifyAfterAssignment = Math.max(VERIFY_AFTER_ASSIGNMENT_BYTES, cfg.maxMessageBytes ?? BROKER_DEFAULT_MAX_MESSAGE_BYTES)
  /** Per partition held back, the delay before it is read again next time. */
  const backoff = new Map<number, number>()
  const resumeTimers = new Set<NodeJS.Timeout>()
  // Partitions are consumed concurrently and may dead-letter at the same moment: their sends go
  // one at a time (serial-send.ts says why), under the broker's size limit. The deadline only
  // bounds how long a batch waits; a failed dead-letter holds the batch back like any failure.
  const dlqSender = createSerialSender<Message>((messages) => dlq.send({ topic: cfg.dlqTopic, acks: -1, messages }), DLQ_SEND_DEADLINE_MS, {
    maxBytes: sendCap(cfg.maxMessageBytes),
    sizeOf: recordSize,
    tooLarge,
  })

  await dlq.connect()
  await consumer.connect()
  await consumer.subscribe({ topic: cfg.topic, fromBeginning: true })
  for (const ev of [consumer.events.GROUP_JOIN, consumer.events.REBALANCING, consumer.events.CRASH] as const) {
    consumer.on(ev, (e) => log.info({ event: e.type, payload: e.payload }, 'consumer group event'))
  }
  // Every join of the group is a new assignment of every partition: between this member's
  // generations another may have held it and been killed between its insert and the dedup index,
  // however much of the partition was committed here before. Forgetting the trackers makes each
  // partition's next batch start a new one, checked against the events. kafkajs rejoins only once
  // the batches in flight have ended and emits this before it fetches again, so no batch of the
  // new assignment has begun.
  consumer.on(consumer.events.GROUP_JOIN, () => {
    trackers.clear()
    verifyBytes.clear()
  })

  /** Pauses the partition and reads it again from `from` after the backoff delay. */
  function holdBack(topic: string, partition: number, from: string, err: unknown) {
    const delay = backoff.get(partition) ?? BACKOFF_FIRST_MS
    backoff.set(partition, Math.min(delay * 2, BACKOFF_MAX_MS))
    consumer.pause([{ topic, partitions: [partition] }])
    // Applied at the partition's next fetch, after this batch: kafkajs would otherwise go on past it.
    consumer.seek({ topic, partition, offset: from })
    const timer = setTimeout(() => {
      resumeTimers.delete(timer)
      consumer.resume([{ topic, partitions: [partition] }])
    }, delay)
    resumeTimers.add(timer)
    heldBack.inc()
    log.warn({ partition, from, delayMs: delay, err: errText(err) }, 'batch kept for redelivery after a failure of the moment; partition paused')
  }

  await consumer.run({
    autoCommit: false,
    // Several partitions at once, so the writer can coalesce them into one large insert.
    partitionsConsumedConcurrently: Math.min(cfg.partitions, 8),
    eachBatch: async ({ batch, heartbeat, isRunning, isStale }) => {
      if (!batch.messages.length) return
      // A new assignment (a join of the group forgets the trackers), or a redelivery after a
      // held-back batch, starts a new tracker: offsets before it were committed.
      let tracker = trackers.get(batch.partition)
      const first = batch.messages[0]!.offset
      if (!tracker || tracker.outstanding > 0) {
        trackers.set(batch.partition, (tracker = new PartitionOffsets()))
        verifyBytes.set(batch.partition, verifyAfterAssignment)
      }
      const verifyLeft = verifyBytes.get(batch.partition) ?? 0
      const verifyStored = verifyLeft > 0
      if (verifyStored) verifyBytes.set(batch.partition, verifyLeft - batch.messages.reduce((n, m) => n + (m.value?.length ?? 0) + (m.key?.length ?? 0), 0))
      tracker.received(batch.messages.map((m) => m.offset))
      lag.set({ partition: String(batch.partition) }, Number(batch.offsetLag()))

      const byTenant = new Map<number, { actor: string; events: PendingEvent[]; offsets: string[]; raw: { key: Buffer | null; value: Buffer | null }[] }>()
      const poison: Dead[] = []
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
      const deadLetter = async (list: Dead[]) => {
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
      // Each tenant's group on its own: one group's failure leaves the others' events stored and
      // their offsets completed.
      let failure: { err: unknown } | undefined
      try {
        await deadLetter(poison)
        const groups = await Promise.allSettled(
          [...byTenant].map(async ([tenant, g]) => {
            const r = await writeTenantGroup(writer, tenant, g.events, g.actor, { verifyStored })
            const dead = r.dead.map((x) => ({ offset: g.offsets[x.index]!, reason: x.reason, ...g.raw[x.index]! }))
            await deadLetter(dead)
            const bad = new Set(dead.map((x) => x.offset))
            tracker!.completed(g.offsets.filter((o) => !bad.has(o)))
            consumed.inc({ outcome: 'stored' }, r.stored)
            if (r.duplicates) consumed.inc({ outcome: 'duplicate' }, r.duplicates)
          }),
        )
        const rejected = groups.find((x) => x.status === 'rejected')
        if (rejected) failure = { err: rejected.reason }
      } catch (err) {
        failure = { err }
      }
      const commit = tracker.takeCommittable()
      if (commit && isRunning() && !isStale()) {
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: commit }])
      }
      if (failure) {
        // Stopping: whoever gets the partition next starts from the commit.
        const from = tracker.firstOutstanding
        if (isRunning() && from !== undefined) holdBack(batch.topic, batch.partition, from, failure.err)
        return
      }
      backoff.delete(batch.partition)
      await heartbeat()
      log.debug({ partition: batch.partition, first, commit }, 'batch stored')
    },
  })
  return {
    async stop() {
      for (const t of resumeTimers) clearTimeout(t)
      resumeTimers.clear()
      await consumer.disconnect()
      await dlqSender.idle()
      await dlq.disconnect()
    },
  }
}
