import client from 'prom-client'

/**
 * One registry per process (not prom-client's global one), so a test can build several apps in
 * one process without "metric already registered" errors.
 */
export interface Metrics {
  readonly registry: client.Registry
  readonly httpDuration: client.Histogram<'method' | 'route' | 'status'>
  readonly errors: client.Counter<'code'>
  counter<L extends string>(name: string, help: string, labelNames?: readonly L[]): client.Counter<L>
  gauge<L extends string>(name: string, help: string, labelNames?: readonly L[]): client.Gauge<L>
  histogram<L extends string>(name: string, help: string, labelNames?: readonly L[], buckets?: number[]): client.Histogram<L>
}

export function createMetrics(opts: { collectDefault: boolean }): Metrics {
  const registry = new client.Registry()
  registry.setDefaultLabels({ app: 'qianmian' })
  if (opts.collectDefault) client.collectDefaultMetrics({ register: registry, prefix: 'qianmian_' })

  const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    existing<client.Counter<L>>(name) ?? new client.Counter<L>({ name, help, labelNames, registers: [registry] })
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    existing<client.Gauge<L>>(name) ?? new client.Gauge<L>({ name, help, labelNames, registers: [registry] })
  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[] = [], buckets?: number[]) =>
    existing<client.Histogram<L>>(name) ??
    new client.Histogram<L>({ name, help, labelNames, registers: [registry], ...(buckets ? { buckets } : {}) })

  return {
    registry,
    httpDuration: histogram('qianmian_http_request_duration_seconds', 'HTTP request latency', ['method', 'route', 'status'], [
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
    ]),
    errors: counter('qianmian_errors_total', 'Errors answered, by catalogue code', ['code']),
    counter,
    gauge,
    histogram,
  }
}
