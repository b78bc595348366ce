import { loadConfig } from '../../core/config.js'
import type { BenchScenario } from '../harness.js'
import { runLoad, startBenchServer } from '../load.js'

/**
 * The same HTTP load through the direct path and through Kafka (edge produces, worker consumes
 * and writes), one after the other in the same run: events/s and the time from the edge's 2xx
 * to the row written.
 */
export const scenario: BenchScenario = {
  name: 'kafka',
  description: 'HTTP ingest through Kafka (edge → topic → worker → ClickHouse) beside the direct path, same load, same run.',
  async run(ctx) {
    const brokers = ctx.args.brokers ?? loadConfig(process.env).kafka?.brokers.join(',')
    if (!brokers) throw new Error('Set KAFKA_BROKERS (bash scripts/kafka-local.sh start) or --set brokers=host:port')
    const seconds = Number(ctx.args.duration ?? 15)
    const connections = Number(ctx.args.connections ?? 64)
    const size = Number(ctx.args.batch ?? 100)
    const figures: Record<string, number> = {}
    const suffix = Date.now().toString(36)
    for (const [name, env] of [
      ['direct', {}],
      ['kafka', { KAFKA_BROKERS: brokers, KAFKA_TOPIC: `qm-bench-${suffix}`, KAFKA_DLQ_TOPIC: `qm-bench-${suffix}-dlq`, KAFKA_GROUP_ID: `qm-bench-${suffix}` }],
    ] as const) {
      const srv = await startBenchServer(env)
      try {
        await runLoad(srv, { seconds: 3, connections, size, settleMs: name === 'kafka' ? 3000 : 0 })
        const r = await runLoad(srv, { seconds, connections, size, settleMs: name === 'kafka' ? 5000 : 0 })
        Object.assign(figures, {
          [`${name}_events_per_s`]: r.eventsPerS,
          [`${name}_http_p50_ms`]: r.latencyP50Ms,
          [`${name}_http_p99_ms`]: r.latencyP99Ms,
          [`${name}_visible_p50_s_le`]: r.visibleP50S,
          [`${name}_visible_p99_s_le`]: r.visibleP99S,
          [`${name}_non_2xx`]: r.non2xx,
        })
      } finally {
        await srv.close()
      }
    }
    return {
      params: { duration_s: seconds, connections, events_per_batch: size, brokers },
      figures,
      ratios: { kafka_vs_direct_events_per_s: figures.kafka_events_per_s! / figures.direct_events_per_s! },
      notes: [
        'events/s count events written to ClickHouse (server metric), for Kafka including what the worker wrote in the 5 s after the load stopped.',
        'visible_*: from the edge receiving the event to its row written (server histogram, bucket upper bounds); through Kafka it includes produce, consume and the insert.',
        'One process runs the edge and the worker (the embedded engine is one process per data directory); the broker is the local single-node one.',
      ],
    }
  },
}
