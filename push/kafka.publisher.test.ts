import { randomUUID } from 'node:crypto'
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { campaign, openPush, seedBank, type PushFixture } from './push.fixture.js'
import { publishDueTargets } from './kafka.publisher.js'

/**
 * Due targets published to a Kafka topic instead of pulled. It needs a broker, so it runs only
 * when KAFKA_BROKERS names one (CI starts the local broker); without it the suite is skipped,
 * saying so, because a publisher tested against a mock would prove nothing about acks and keys.
 */

const brokers = process.env.KAFKA_BROKERS?.split(',').map((b) => b.trim()).filter(Boolean) ?? []
const HOW_TO_RUN = 'bash scripts/kafka-local.sh start && KAFKA_BROKERS=127.0.0.1:9092 npx vitest run push'
if (!brokers.length) console.warn(`push Kafka publisher test skipped: KAFKA_BROKERS is not set. Run it with: ${HOW_TO_RUN}`)

describe.skipIf(!brokers.length)(`push targets to Kafka (needs KAFKA_BROKERS; run: ${HOW_TO_RUN})`, () => {
  let fx: PushFixture
  let producer: Producer
  const run = randomUUID().slice(0, 8)
  const topic = `qianmian.push.test.${run}`
  const kafka = new Kafka({ clientId: `qianmian-push-${run}`, brokers, logLevel: logLevel.NOTHING })

  beforeAll(async () => {
    // Not about approval (approval.routes.test.ts is): marketing campaigns here run unapproved.
    fx = await openPush({ requireApproval: false })
    const admin = kafka.admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })
    await admin.disconnect()
    producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
  }, 120_000)
  afterAll(async () => {
    await producer?.disconnect()
    await fx?.close()
  })

  it('publishes each due target once, keyed by customer, then acknowledges it', async () => {
    const now = new Date()
    const t = await seedBank(fx, { slug: 'kafka', timeZone: 'Asia/Shanghai', prefix: 'KF', n: 25, loanDay: '2026-03-18', asOf: now })
    await fx.push.campaigns.save(t, 'alert', campaign({ purpose: 'security', priority: 'critical', schedule: { kind: 'once', at: new Date(now.getTime() - 60_000).toISOString() } }), 'test')
    expect((await fx.push.runTargeting(t, { asOf: now })).campaigns[0]).toMatchObject({ queued: 25 })
    expect(await publishDueTargets({ leases: fx.push.leases, producer }, t, { topic, batch: 10 })).toEqual({ published: 25 })
    expect(await publishDueTargets({ leases: fx.push.leases, producer }, t, { topic })).toEqual({ published: 0 })

    const consumer = kafka.consumer({ groupId: `qianmian-push-${run}` })
    const seen: { key: string; id: string; header: string }[] = []
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out reading the topic')), 30_000)
      void consumer.run({
        eachMessage: async ({ message }) => {
          const v = JSON.parse(message.value!.toString()) as { targetId: string; tenantId: number }
          seen.push({ key: message.key!.toString(), id: v.targetId, header: String(message.headers?.['idempotency-key']) })
          if (seen.length === 25) {
            clearTimeout(timer)
            resolve()
          }
        },
      })
    })
    await consumer.disconnect()
    expect(new Set(seen.map((s) => s.id)).size).toBe(25)
    expect(seen.every((s) => s.header === s.id && s.key.startsWith(`${t}:KF`))).toBe(true)
  }, 60_000)
})
