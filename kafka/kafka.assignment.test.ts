import type { Kafka } from 'kafkajs'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../core/log.js'
import { createMetrics } from '../core/metrics.js'
import type { EventWriter, SubmitOptions } from '../ingest/event-writer.js'
import { pendingEvent } from '../test/fixtures.js'
import type { KafkaConfig } from './kafka.ingest.js'
import { encodeEvent } from './kafka.message.js'
import { startKafkaWorker } from './kafka.worker.js'
import { BROKER_DEFAULT_MAX_MESSAGE_BYTES } from './send-limits.js'

/**
 * What the worker asks the writer after the group's assignment changes. A partition that went to
 * another worker may have had a batch stored there and not indexed (that worker killed between
 * its insert and the dedup index); whatever this worker held before, the first messages after an
 * assignment are checked against the stored events. The consumer and the writer are stand-ins:
 * what is under test is which batches ask for that check (kafka.rebalance.test.ts does the same
 * against a broker and the engine).
 */

const TOPIC = 'qm-assignment'
// No broker is reached: the consumer and the producer are stand-ins.
const cfg: KafkaConfig = {
  brokers: ['127.0.0.1:1'],
  clientId: 'qianmian',
  topic: TOPIC,
  dlqTopic: `${TOPIC}.dlq`,
  groupId: TOPIC,
  partitions: 1,
  replicationFactor: -1,
  sendTimeoutMs: 5_000,
  maxMessageBytes: BROKER_DEFAULT_MAX_MESSAGE_BYTES,
}

type EachBatch = (p: unknown) => Promise<void>

/** A consumer that this test drives: it joins when told and hands the worker the batches given. */
function fakeKafka() {
  const listeners = new Map<string, ((e: unknown) => void)[]>()
  let eachBatch: EachBatch | undefined
  const commits: string[] = []
  const events = { GROUP_JOIN: 'consumer.group_join', REBALANCING: 'consumer.rebalancing', CRASH: 'consumer.crash' }
  const consumer = {
    events,
    connect: async () => undefined,
    subscribe: async () => undefined,
    disconnect: async () => undefined,
    on: (ev: string, fn: (e: unknown) => void) => {
      listeners.set(ev, [...(listeners.get(ev) ?? []), fn])
      return () => undefined
    },
    run: async (o: { eachBatch: EachBatch }) => {
      eachBatch = o.eachBatch
    },
    pause: () => undefined,
    resume: () => undefined,
    seek: () => undefined,
    commitOffsets: async (list: { offset: string }[]) => {
      for (const c of list) commits.push(c.offset)
    },
  }
  const producer = { connect: async () => undefined, send: async () => [], disconnect: async () => undefined }
  let next = 0
  return {
    kafka: { consumer: () => consumer, producer: () => producer } as unknown as Kafka,
    commits,
    join(partitions: number[]) {
      for (const fn of listeners.get(events.GROUP_JOIN) ?? []) fn({ type: events.GROUP_JOIN, payload: { memberAssignment: { [TOPIC]: partitions } } })
    },
    /** Delivers `n` messages of about `bytes` each on partition 0, from `from` (default: where the last batch ended). */
    async deliver(n: number, bytes: number, from = next) {
      const messages = Array.from({ length: n }, (_, i) => {
        const offset = from + i
        const m = encodeEvent(1, 'k', pendingEvent({ messageId: `m-${offset}`, userId: `U${offset % 7}`, properties: JSON.stringify({ pad: 'x'.repeat(bytes) }) }))
        return { offset: String(offset), key: Buffer.from(m.key), value: Buffer.from(m.value) }
      })
      next = from + n
      await eachBatch!({
        batch: { topic: TOPIC, partition: 0, messages, offsetLag: () => '0' },
        heartbeat: async () => undefined,
        isRunning: () => true,
        isStale: () => false,
      })
    },
  }
}

/** A writer that stores everything and remembers, per submission, whether it was asked to verify. */
function recordingWriter() {
  const asked: boolean[] = []
  const writer = {
    submit: async (_tenant: number, events: unknown[], _actor: string, opts?: SubmitOptions) => {
      asked.push(opts?.verifyStored === true)
      return { stored: events.length, duplicates: 0 }
    },
  } as unknown as EventWriter
  return { writer, asked }
}

async function worker() {
  const k = fakeKafka()
  const w = recordingWriter()
  const log = createLogger({ level: 'silent' })
  const running = await startKafkaWorker({ kafka: k.kafka, cfg, writer: w.writer, log, metrics: createMetrics({ collectDefault: false }) })
  return { ...k, ...w, stop: () => running.stop() }
}

describe('the first messages of a partition after each assignment', () => {
  it('are checked against the stored events again when the partition comes back with nothing outstanding here', async () => {
    const w = await worker()
    w.join([0])
    // More than the check covers (a fetch's most, about 1 MB), all committed.
    await w.deliver(600, 2_000)
    await w.deliver(10, 2_000)
    expect(w.asked).toEqual([true, false])
    expect(w.commits).toEqual(['600', '610'])
    // The partition went to another worker and came back: nothing was outstanding here.
    w.join([0])
    await w.deliver(10, 2_000)
    expect(w.asked).toEqual([true, false, true])
    expect(w.commits.at(-1)).toBe('620')
    await w.stop()
  })

  it('are checked after a join that kept the partition here too: the assignment event does not say who held it between', async () => {
    const w = await worker()
    w.join([0])
    await w.deliver(600, 2_000)
    w.join([0])
    // Redelivered from the commit: whoever held it between may have stored and not indexed these.
    await w.deliver(5, 100, 600)
    await w.deliver(5, 100)
    expect(w.asked).toEqual([true, true, true])
    await w.stop()
  })

  it('are checked on a partition never held here before, and the check ends once its bytes are read', async () => {
    const w = await worker()
    w.join([0])
    await w.deliver(10, 100)
    await w.deliver(600, 2_000)
    await w.deliver(10, 100)
    expect(w.asked).toEqual([true, true, false])
    await w.stop()
  })
})
