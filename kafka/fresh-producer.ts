import type { Producer, ProducerRecord, RecordMetadata } from 'kafkajs'

/**
 * An idempotent producer that starts over after a failed send.
 *
 * kafkajs gives a failed batch's sequence numbers back (producer/sendMessages.js:
 * `updateSequence(-n)` when the request fails), so the next send reuses them. When the failed
 * batch was in fact appended (the broker wrote it and went down before answering), the broker takes
 * the next batch (other messages under the same producer id and sequence) for a retry of that one:
 * it answers success and does not append it, so the edge acknowledged events that never reached
 * the log. kafka.crash.test.ts caught it once across a broker restart (8,040 of 8,060 acknowledged
 * events stored). A new producer gets a new producer id from the broker, whose sequences no
 * earlier batch used; librdkafka bumps the epoch for the same reason. Callers send one batch at a
 * time (serial-send.ts), so no send is in flight when the producer is replaced.
 */
export interface FreshProducer {
  /** Connects the first producer (a start-up check that the broker answers). */
  connect(): Promise<void>
  send(record: ProducerRecord): Promise<RecordMetadata[]>
  disconnect(): Promise<void>
}

export function createFreshProducer(make: () => Producer): FreshProducer {
  let current: Producer | undefined
  async function producer(): Promise<Producer> {
    if (current) return current
    const p = make()
    await p.connect()
    current = p
    return p
  }
  return {
    async connect() {
      await producer()
    },
    async send(record) {
      const p = await producer()
      try {
        return await p.send(record)
      } catch (e) {
        // The next send gets a new producer id; this one goes, its errors no longer matter.
        if (current === p) current = undefined
        void p.disconnect().catch(() => undefined)
        throw e
      }
    },
    async disconnect() {
      const p = current
      current = undefined
      await p?.disconnect()
    },
  }
}
