import { relayEvery } from '../core/cluster-broadcast.js'
import type { ProcessChannel } from '../core/cluster-locks.js'
import type { IngestLimits, RateReport } from './rate-limit.js'

/**
 * A tenant's ingest rate across the API processes of one host (server/cluster.ts). Each process
 * held its own buckets, so a tenant whose connections spread over N processes got N times its
 * rate (server/cluster.rates.test.ts), and one bank's flood took N times its share of the edge
 * the others use.
 *
 * Every `intervalMs` each process sends what it granted since its last report; the engine
 * process relays it to the other API processes, which take it from their own buckets. A bucket
 * then follows what the whole host granted, behind by one interval: a burst inside it may pass
 * the limit once, not go on passing it.
 */
export function shareIngestLimits(limits: IngestLimits, channel: ProcessChannel, intervalMs = 100): () => void {
  return relayEvery(
    channel,
    'ingest-rates',
    intervalMs,
    () => {
      const report = limits.drain()
      return report.requests.length || report.events.length ? report : undefined
    },
    (report) => limits.apply(report as RateReport),
  )
}
