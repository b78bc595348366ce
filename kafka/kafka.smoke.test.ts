// Smoke test against a real Kafka broker: admin creates a topic, an idempotent producer (acks=all) writes keyed
// messages, a consumer group reads them all back, in order per key.
//
// Needs a broker and KAFKA_BROKERS; without it the suite is skipped:
//   bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npm test
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Kafka, Partitioners, logLevel } from 'kafkajs'
import type { Admin, Consumer, EachMessagePayload, LogEntry, Producer } from 'kafkajs'

const brokers = process.env.KAFKA_BROKERS?.split(',').map((b) => b.trim()).filter(Boolean) ?? []
const HOW_TO_RUN = 'bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npm test'

if (brokers.length === 0) {
  console.warn(`kafka smoke test skipped: KAFKA_BROKERS is not set. Run it with: ${HOW_TO_RUN}`)
}

// On a freshly started broker the first transactional/group request meets the coordinator still loading its
// internal topic; kafkajs retries it but logs each try as an ERROR. Keep the log for everything else.
const RETRIED_ON_A_FRESH_BROKER = /coordinator is loading|coordinator is not available/i
const logCreator =
  () =>
  ({ level, log }: LogEntry): void => {
    if (level > logLevel.WARN || RETRIED_ON_A_FRESH_BROKER.test(String(log.error ?? ''))) return
    console.warn(`kafkajs ${level === logLevel.ERROR ? 'ERROR' : 'WARN'}: ${log.message}${log.error ? ` (${String(log.error)})` : ''}`)
  }

const PARTITIONS = 3
const KEYS = 10
const PER_KEY = 20
const TOTAL = KEYS * PER_KEY

describe.skipIf(brokers.length === 0)(`kafka smoke (needs KAFKA_BROKERS; run: ${HOW_TO_RUN})`, () => {
  const run = randomUUID().slice(0, 8)
  const topic = `qianmian.smoke.${run}`
  const groupId = `qianmian-smoke-${run}`
  const kafka = new Kafka({
    clientId: `qianmian-smoke-${run}`,
    brokers,
    logLevel: logLevel.WARN,
    logCreator,
    connectionTimeout: 5_000,
    requestTimeout: 15_000,
  })
  let admin: Admin
  let producer: Producer
  let consumer: Consumer | undefined

  beforeAll(async () => {
    admin = kafka.admin()
    await admin.connect()
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 30_000,
    })
    expect(created).toBe(true)
  })

  afterAll(async () => {
    await consumer?.disconnect().catch(() => undefined)
    await producer?.disconnect().catch(() => undefined)
    if (admin) {
      await admin.deleteTopics({ topics: [topic], timeout: 30_000 }).catch(() => undefined)
      await admin.deleteGroups([groupId]).catch(() => undefined)
      await admin.disconnect().catch(() => undefined)
    }
  })

  it('lists the created topic with its partitions', async () => {
    expect(await admin.listTopics()).toContain(topic)
    const meta = await admin.fetchTopicMetadata({ topics: [topic] })
    expect(meta.topics[0]?.partitions).toHaveLength(PARTITIONS)
  })

  it('produces with an idempotent producer and consumes everything back in a group', async () => {
    producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    })
    await producer.connect()

    const sent: { key: string; value: string }[] = []
    for (let k = 0; k < KEYS; k++) {
      for (let i = 0; i < PER_KEY; i++) sent.push({ key: `user-${k}`, value: JSON.stringify({ user: `user-${k}`, seq: i, run }) })
    }
    // Several batches, so the sequence numbers of the idempotent producer move across requests.
    for (let b = 0; b < sent.length; b += 50) {
      const meta = await producer.send({
        topic,
        acks: -1,
        messages: sent.slice(b, b + 50).map((m) => ({ key: m.key, value: m.value, headers: { run } })),
      })
      for (const r of meta) expect(r.errorCode).toBe(0)
    }

    const offsets = await admin.fetchTopicOffsets(topic)
    expect(offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0)).toBe(TOTAL)

    consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1_000, allowAutoTopicCreation: false })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })

    const received: { key: string; value: string; partition: number; header: string }[] = []
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out with ${received.length}/${TOTAL} messages`)), 45_000)
      void consumer!.run({
        eachMessage: async ({ partition, message }: EachMessagePayload) => {
          received.push({
            key: message.key?.toString() ?? '',
            value: message.value?.toString() ?? '',
            partition,
            header: message.headers?.run?.toString() ?? '',
          })
          if (received.length >= TOTAL) {
            clearTimeout(timer)
            resolve()
          }
        },
      }).catch(reject)
    })
    await done

    expect(received).toHaveLength(TOTAL)
    expect(received.every((m) => m.header === run)).toBe(true)
    // Exactly what was sent, no duplicates.
    expect(new Set(received.map((m) => m.value)).size).toBe(TOTAL)
    expect([...received.map((m) => m.value)].sort()).toEqual([...sent.map((m) => m.value)].sort())
    // One key lives in one partition, and its messages arrive in the order they were sent.
    for (let k = 0; k < KEYS; k++) {
      const mine = received.filter((m) => m.key === `user-${k}`)
      expect(new Set(mine.map((m) => m.partition)).size).toBe(1)
      expect(mine.map((m) => (JSON.parse(m.value) as { seq: number }).seq)).toEqual([...Array(PER_KEY).keys()])
    }
    // The keys spread over more than one partition.
    expect(new Set(received.map((m) => m.partition)).size).toBeGreaterThan(1)

    // The group commits its offsets: once committed, its lag is zero on every partition.
    await consumer.stop()
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] })
    const high = new Map(offsets.map((p) => [p.partition, p.high]))
    for (const p of committed[0]?.partitions ?? []) expect(p.offset).toBe(high.get(p.partition))
  })
})
