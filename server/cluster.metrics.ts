import cluster, { type Worker } from 'node:cluster'
import client from 'prom-client'
import { AppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'

/**
 * `/metrics` of the API on several processes (server/cluster.ts): any process that takes the
 * scrape answers for all of them. Without it, each scrape of the shared port counted the requests
 * and events of whichever process the connection landed on, so rates jumped between processes
 * and the pipelines' metrics (in the engine process) were never there.
 *
 * The API process asks the primary; the primary asks every API process for its registry as JSON,
 * adds its own, and sums them with prom-client's own aggregation (`AggregatorRegistry.aggregate`:
 * counters and histograms summed, gauges as each declares). prom-client's `clusterMetrics()`
 * gathers the workers only, as text, so the primary's registry could not join the same sum.
 * `qianmian_metrics_processes{state}` says how many processes answered within the deadline.
 */

const ASK = 'qianmian:metrics:ask'
const ANSWER = 'qianmian:metrics:answer'
const GATHER = 'qianmian:metrics:gather'
const PART = 'qianmian:metrics:part'

type Part = client.MetricObjectWithValues<client.MetricValue<string>>[]
interface Message {
  type?: unknown
  id?: unknown
  text?: unknown
  metrics?: unknown
}

/** In the primary: answers API processes' scrapes. Returns a function that stops answering. */
export function serveClusterMetrics(registry: client.Registry, log: Logger, timeoutMs = 2000): () => void {
  let seq = 0
  const gathering = new Map<number, { parts: Part[]; pending: Set<number>; finish(): void }>()

  async function gather(): Promise<string> {
    const id = seq++
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected())
    const parts: Part[] = [(await registry.getMetricsAsJSON()) as Part]
    let missing = 0
    await new Promise<void>((resolve) => {
      const pending = new Set(workers.map((w) => w.id))
      const finish = () => {
        clearTimeout(timer)
        gathering.delete(id)
        missing = pending.size
        resolve()
      }
      const timer = setTimeout(finish, timeoutMs)
      gathering.set(id, { parts, pending, finish })
      for (const w of workers) w.send({ type: GATHER, id })
      if (!pending.size) finish()
    })
    if (missing) log.warn({ missing, timeoutMs }, 'metrics: API processes did not answer in time; the scrape sums the others')
    const sum = client.AggregatorRegistry.aggregate(parts)
    const processes = new client.Gauge({ name: 'qianmian_metrics_processes', help: 'Processes summed in this scrape (the engine process and the API processes), and API processes that did not answer', labelNames: ['state'], registers: [sum] })
    processes.set({ state: 'answered' }, parts.length)
    processes.set({ state: 'missing' }, missing)
    return sum.metrics()
  }

  const onMessage = (worker: Worker, m: Message) => {
    if (m?.type === ASK && typeof m.id === 'number') {
      const id = m.id
      gather().then(
        (text) => worker.isConnected() && worker.send({ type: ANSWER, id, text }),
        (err: unknown) => {
          log.error({ err }, 'metrics: summing the processes failed')
          if (worker.isConnected()) worker.send({ type: ANSWER, id, text: null })
        },
      )
    } else if (m?.type === PART && typeof m.id === 'number') {
      const g = gathering.get(m.id)
      if (g?.pending.delete(worker.id)) {
        g.parts.push(m.metrics as Part)
        if (!g.pending.size) g.finish()
      }
    }
  }
  cluster.on('message', onMessage)
  return () => cluster.off('message', onMessage)
}

/**
 * In an API process: the scrape of `/metrics`, summed over the cluster by the primary, and this
 * process's part of other processes' scrapes.
 */
export function clusterMetricsExposition(registry: client.Registry, timeoutMs = 5000): () => Promise<string> {
  let seq = 0
  const waiting = new Map<number, (text: string | null) => void>()
  process.on('message', (m: Message) => {
    if (m?.type === GATHER) {
      void registry.getMetricsAsJSON().then((metrics) => process.send?.({ type: PART, id: m.id, metrics }))
    } else if (m?.type === ANSWER && typeof m.id === 'number') {
      waiting.get(m.id)?.(typeof m.text === 'string' ? m.text : null)
    }
  })
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = seq++
      const fail = () => reject(new AppError('METRICS_UNAVAILABLE'))
      const timer = setTimeout(() => {
        waiting.delete(id)
        fail()
      }, timeoutMs)
      waiting.set(id, (text) => {
        clearTimeout(timer)
        waiting.delete(id)
        if (text === null) fail()
        else resolve(text)
      })
      if (!process.connected || !process.send) {
        clearTimeout(timer)
        waiting.delete(id)
        fail()
        return
      }
      process.send({ type: ASK, id })
    })
}
