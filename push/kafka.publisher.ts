import type { Producer } from 'kafkajs'
import type { LeaseManager } from './lease.manager.js'

/**
 * Delivery through Kafka instead of pulls: due targets are leased as a pull would lease them,
 * produced to a topic (acks from all in-sync replicas, awaited), and only then acknowledged as
 * delivered. A failed send acknowledges nothing, so the leases run out and the targets come back
 * on a later call: delivery is at least once, and consumers deduplicate by the idempotency key
 * (a header and a field of the message). Messages are keyed by tenant and customer, so one
 * customer's messages keep their order on one partition, and a consumer group shares the work
 * across processes without two of them getting the same message.
 */

export interface PublishOptions {
  topic: string
  /** Targets per produce request (default 1,000). */
  batch?: number
  /** Lease per batch; long enough for a send with retries (default 60 s). */
  leaseSeconds?: number
  /** Stop after this many (default: until nothing is due). */
  max?: number
}

export async function publishDueTargets(deps: { leases: LeaseManager; producer: Producer }, tenantId: number, o: PublishOptions): Promise<{ published: number }> {
  const batch = o.batch ?? 1000
  const max = o.max ?? Infinity
  let published = 0
  while (published < max) {
    const targets = await deps.leases.pull(tenantId, { limit: Math.min(batch, max - published), leaseSeconds: o.leaseSeconds ?? 60 })
    if (!targets.length) break
    await deps.producer.send({
      topic: o.topic,
      acks: -1,
      messages: targets.map((t) => ({
        key: `${tenantId}:${t.customerNo}`,
        value: JSON.stringify({ v: 1, tenantId, ...t }),
        headers: { 'idempotency-key': t.idempotencyKey, 'lease-id': t.leaseId },
      })),
    })
    await deps.leases.ack(tenantId, targets.map((t) => ({ targetId: t.targetId, status: 'delivered' as const, reason: 'published to kafka' })))
    published += targets.length
  }
  return { published }
}
