import cluster, { type Worker } from 'node:cluster'
import crypto from 'node:crypto'
import path from 'node:path'
import type { Config } from '../core/config.js'
import { ENGINE_USER, startEngineHttp, type EngineHttp } from '../core/engine-http.js'
import type { Logger } from '../core/log.js'
import { resolvePiiSecret } from '../core/pii.js'
import { serveClusterMetrics } from './cluster.metrics.js'
import { answerLeaseMessage } from '../push/lease.remote.js'
import { serveLocks, type ProcessChannel } from '../core/cluster-locks.js'
import { isRelayed, serveBroadcast } from '../core/cluster-broadcast.js'
import { startServer, type Started } from './start.js'

/**
 * `qianmian start` with `QIANMIAN_API_PROCESSES=N` (N > 1): the API on N processes, one per core.
 *
 * One Node process answers requests on one core; a layout costs ~200 µs of its main thread, so
 * one process tops out well below what the machine can serve (bench/results/recommend.md). Node's
 * cluster module shares the port: this process (the primary) accepts connections and hands each
 * to an API process in turn.
 *
 * - The primary is the engine process: it opens the embedded engine (which one process may hold),
 *   migrates, seeds the demo, and runs every role but the API (scheduler, Kafka ingest worker,
 *   retention, erasures left running). Its own health and metrics listen on the loopback.
 * - Each API process is an ordinary `qianmian start` with the api role, reaching the data as it
 *   would reach a ClickHouse server: through the engine endpoint (core/engine-http.ts) on the
 *   loopback, with a password made for this start. Against a ClickHouse server (`CLICKHOUSE_URL`)
 *   every process goes to the server itself.
 * - They start once the engine process is ready, so none migrates or seeds, and each digests with
 *   the engine process's secret. Each keeps its own layout snapshots and key cache; `/metrics`
 *   answers for all of them and the engine process (server/cluster.metrics.ts).
 * - Push leases and the services' locks are the engine process's: API processes forward pulls and
 *   acknowledgements (push/lease.remote.ts) and ask for locks (core/cluster-locks.ts) over the
 *   cluster's channel, so what one process did one at a time stays so across all of them.
 * - A change of keys, tenants or a personalization switch is applied by every API process before
 *   it is answered, and the rates granted and capped items served are relayed every 100 ms
 *   (core/cluster-broadcast.ts).
 * - An API process that dies is started again (after 1 s, doubling while it keeps dying young).
 * - Stopping (SIGTERM or SIGINT to the primary): the API processes stop first, each finishing its
 *   requests and writing what it accepted through the engine endpoint; then the endpoint, then the
 *   engine process's own work and the engine.
 */

const STOP_MESSAGE = 'qianmian:stop'

export interface ClusterStarted {
  log: Logger
  stop(reason?: string): Promise<void>
  /** Resolves when the engine process is ready and the API processes were started. */
  startup: Promise<void>
}

export async function startCluster(config: Config, opts: { version: string; print?: (line: string) => void }): Promise<ClusterStarted> {
  const print = opts.print ?? ((l: string) => process.stdout.write(l + '\n'))
  const roles = new Set([...config.roles].filter((r) => r !== 'api'))
  const engineConfig: Config = Object.freeze({ ...config, host: '127.0.0.1', port: 0, roles: Object.freeze(roles) })
  const started: Started = await startServer(engineConfig, { version: opts.version, print, engine: true })
  const log = started.runtime.log.child({ component: 'cluster' })
  const stopMetrics = serveClusterMetrics(started.runtime.metrics.registry, log)
  // Every API process's pulls are this process's: one lease manager hands out each target once.
  // Its services' locks are theirs too: what one process did one at a time stays so.
  const locks = serveLocks(started.runtime.locks)
  // A key, tenant or personalization switch changed through one API process: the others apply
  // it before it is answered. This process reloads its keys (its jobs read tenants' status); its
  // pulls already had the consent (push/lease.remote.ts) and it serves no layouts.
  const broadcast = serveBroadcast({
    appliers: { registry: () => started.runtime.keys.refresh(), consent: () => undefined },
    workers: () => [...index.keys()].filter((w) => w.isConnected()).map((w) => ({ id: w.id, send: (m: object) => void w.send(m) })),
    onError: (topic, err) => log.warn({ topic, err }, 'a change an API process made was not applied here'),
  })
  const onMessage = (w: Worker, m: unknown) => {
    // What may lag by a moment (the rates each process granted) goes to the others as it is.
    if (isRelayed(m)) {
      for (const other of index.keys()) if (other !== w && other.isConnected()) other.send(m as object)
      return
    }
    const send = (r: unknown) => w.isConnected() && w.send(r as object)
    if (!locks.handle(w.id, m, send) && !broadcast.handle(w.id, m, send)) answerLeaseMessage(started.runtime.push, m, send, log)
  }
  cluster.on('message', onMessage)
  const token = crypto.randomBytes(32).toString('hex')
  let endpoint: EngineHttp | undefined
  let stopping = false
  const index = new Map<Worker, number>()
  const backoff = new Map<number, { ms: number; startedAt: number }>()

  const workerEnv = (i: number, url: string | undefined): Record<string, string> => ({
    QIANMIAN_API_PROCESSES: '1',
    QIANMIAN_API_PROCESS: String(i),
    QIANMIAN_ROLES: 'api',
    QIANMIAN_DEMO: 'false',
    QIANMIAN_DATA_DIR: path.join(config.dataDir, 'api', String(i)),
    QIANMIAN_PII_SECRET: resolvePiiSecret(config.piiSecret, config.dataDir),
    ...(url ? { CLICKHOUSE_URL: url, CLICKHOUSE_USER: ENGINE_USER, CLICKHOUSE_PASSWORD: token, CLICKHOUSE_DATABASE: config.clickhouse.database } : {}),
  })

  function fork(i: number): void {
    const w = cluster.fork(workerEnv(i, endpoint?.url))
    index.set(w, i)
    const b = backoff.get(i) ?? { ms: 1000, startedAt: 0 }
    b.startedAt = Date.now()
    backoff.set(i, b)
  }

  cluster.on('exit', (w, code, signal) => {
    // The locks it held (it died inside a task) are free for the others.
    locks.workerGone(w.id)
    const i = index.get(w)
    index.delete(w)
    if (stopping || i === undefined) return
    const b = backoff.get(i)!
    // One that lived a minute starts again after 1 s; one that keeps dying young waits longer.
    b.ms = Date.now() - b.startedAt > 60_000 ? 1000 : Math.min(b.ms * 2, 30_000)
    log.error({ apiProcess: i, code, signal, restartInMs: b.ms }, 'an API process exited; starting another')
    setTimeout(() => {
      if (!stopping) fork(i)
    }, b.ms).unref()
  })

  const startup = (async () => {
    await started.startup
    if (started.runtime.ch.mode === 'embedded') endpoint = await startEngineHttp({ handle: started.runtime.ch, token, log })
    for (let i = 1; i <= config.apiProcesses; i++) fork(i)
    print(`Starting ${config.apiProcesses} API processes on port ${config.port}${endpoint ? ', reaching the engine through this process' : ''}`)
  })()

  const stop = async (reason = 'stop') => {
    if (stopping) return
    stopping = true
    log.info({ reason }, 'stopping the API processes')
    const workers = [...index.keys()]
    const exited = Promise.all(workers.map((w) => (w.isDead() ? undefined : new Promise((r) => w.once('exit', r)))))
    for (const w of workers) if (w.isConnected()) w.send(STOP_MESSAGE)
    // Each has its own shutdown deadline; past it and a margin, it is killed.
    const deadline = setTimeout(() => workers.forEach((w) => w.isDead() || w.process.kill('SIGKILL')), config.shutdownTimeoutMs + 5000)
    await exited
    clearTimeout(deadline)
    stopMetrics()
    cluster.off('message', onMessage)
    await endpoint?.close()
    await started.stop(reason)
  }
  return { log, stop, startup }
}

/**
 * In an API process: stop when the primary says so, or when it is gone (its channel closes). A
 * Ctrl-C reaches every process of the terminal's group; the primary orders the stopping, so the
 * API process leaves SIGINT to it. SIGTERM sent to the API process itself still stops it.
 */
export function installApiProcessHandlers(started: Started, log: Logger): void {
  const stop = (why: string) =>
    void started.stop(why).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  process.on('message', (m) => m === STOP_MESSAGE && stop('primary'))
  process.on('disconnect', () => stop('primary gone'))
  process.on('SIGINT', () => undefined)
  process.on('SIGTERM', () => stop('SIGTERM'))
}

export const isApiProcess = () => cluster.isWorker

/** In an API process: the channel to the engine process, for push leases and locks. */
export function apiProcessChannel(): ProcessChannel {
  return {
    send(m) {
      if (!process.send || !process.connected) throw new Error('the channel to the engine process is closed')
      process.send(m)
    },
    onMessage(listener) {
      process.on('message', listener)
      return () => void process.off('message', listener)
    },
  }
}
