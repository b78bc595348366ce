import { Partitioners, type ICustomPartitioner, type PartitionMetadata } from 'kafkajs'

/**
 * The broker's size limit, as the edge and the worker meet it. The broker refuses a partition's
 * share of a produce request (one record batch) larger than the topic's max.message.bytes
 * (message.max.bytes by default, 1,048,588 bytes), and kafkajs does not split a send: so sends are
 * capped by bytes per partition (serial-send.ts), and a message larger than the cap alone is
 * refused before it is sent.
 *
 * What an accepted body can grow to: an event is at most 32 KB as sent, and normalization grows
 * it when it replaces personal data with digests (a 6-character e-mail address becomes a
 * 75-character `[email:k2:…]`) and the Kafka message escapes the properties' JSON once more.
 * Measured on events filled to 32 KB: e-mail addresses 10.7x (349 KB), phone numbers 6.2x,
 * quotes or backslashes 2.0x, control characters 1.2x (send-limits.test.ts). So any event fits
 * the default limit, and a 500 KB body (up to about 5.3 MB encoded) goes out in several sends.
 * Producer compression is left off: no accepted body needs it to fit, and it would cost the edge
 * CPU for every event.
 */

/** message.max.bytes of a broker left at its default. */
export const BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588

/** Room for the record batch header (61 bytes) and rounding: the cap is the limit less this. */
const BATCH_MARGIN = 1024
/** A record's length, attributes, timestamp and offset deltas, key and value lengths and header count: varints, 36 bytes at most. */
const RECORD_OVERHEAD = 40

/** The most bytes of messages one send may carry for one partition under a broker limit of `maxMessageBytes`. */
export function sendCap(maxMessageBytes: number | undefined): number {
  return (maxMessageBytes ?? BROKER_DEFAULT_MAX_MESSAGE_BYTES) - BATCH_MARGIN
}

const len = (b: unknown): number => (typeof b === 'string' ? Buffer.byteLength(b) : Buffer.isBuffer(b) ? b.length : Array.isArray(b) ? b.reduce((n: number, x) => n + 10 + len(x), 0) : 0)

/** A message's size in a record batch, or a little more. */
export function recordSize(m: { key?: string | Buffer | null; value: string | Buffer | null; headers?: object | undefined }): number {
  let n = RECORD_OVERHEAD + len(m.key) + len(m.value)
  for (const [k, v] of Object.entries(m.headers ?? {})) n += 10 + Buffer.byteLength(k) + len(v)
  return n
}

/** Whether kafkajs reports the broker refused a send as too large (the error, or what caused it). */
export function tooLarge(e: unknown): boolean {
  for (let x: unknown = e, i = 0; x && i < 5; x = (x as { cause?: unknown }).cause, i++) {
    const type = (x as { type?: unknown }).type
    if (type === 'MESSAGE_TOO_LARGE' || type === 'RECORD_LIST_TOO_LARGE') return true
  }
  return false
}

/**
 * kafkajs' default partitioner, remembering the partitions it last saw per topic, so the edge can
 * tell which partition each message of the next send goes to. Before the producer's first send no
 * partition is known: every message counts toward one cap, the safe side.
 */
export function partitionTracker(): { createPartitioner: ICustomPartitioner; partitionOf(topic: string, m: { key: string }): number } {
  const seen = new Map<string, PartitionMetadata[]>()
  const ours = Partitioners.DefaultPartitioner()
  return {
    createPartitioner: () => {
      const partition = Partitioners.DefaultPartitioner()
      return (args) => {
        seen.set(args.topic, args.partitionMetadata)
        return partition(args)
      }
    },
    partitionOf(topic, m) {
      const partitionMetadata = seen.get(topic)
      return partitionMetadata?.length ? ours({ topic, partitionMetadata, message: { key: m.key, value: null } }) : 0
    },
  }
}
