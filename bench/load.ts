import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { startServerProcess, tenantWriteKey, type ServerProcess } from '../test/server-process.js'

/**
 * HTTP ingest load against a `qianmian start` child process: realistic Segment batches from
 * autocannon in this process, and what the server says it stored (its own metrics), so only
 * acknowledged and written events count.
 */

const EVENTS = ['product_viewed', 'screen_viewed', 'transfer_completed', 'bill_paid', 'loan_repaid', 'push_opened', 'voice_assistant_used']

/** Customers the load is spread over; each uses its own device. */
export const LOAD_CUSTOMERS = 20_000

export function makeEvent(seq: number, now: number) {
  // A device id stays with its customer, as in the app: a link is made once, then found in the
  // cache. The warm-up run meets every customer, so the measured run is the steady state.
  const customer = (seq * 7919) % LOAD_CUSTOMERS
  return {
    type: 'track',
    messageId: `b-${seq.toString(36)}-${crypto.randomBytes(6).toString('hex')}`,
    userId: `C${customer}`,
    anonymousId: `dev-${customer}`,
    event: EVENTS[seq % EVENTS.length]!,
    timestamp: new Date(now - (seq % 600) * 1000).toISOString(),
    properties: { product_id: `wm-${seq % 40}`, amount: (seq % 5000) + 0.5, channel: 'app', screen: 'home', position: seq % 12 },
    context: { app: { version: '4.0.3', build: '4031' }, os: { name: 'Android', version: '13' }, device: { model: 'HUAWEI Mate 60' }, locale: 'zh-CN' },
  }
}

export function batchBody(start: number, size: number): string {
  const now = Date.now()
  return JSON.stringify({ batch: Array.from({ length: size }, (_, i) => makeEvent(start + i, now)), sentAt: new Date(now).toISOString() })
}

let built = false

/**
 * The server a bench measures is the one `npm start` runs (`node --enable-source-maps dist/…`),
 * compiled by tsc, built here once per bench process from the current sources. Through tsx the
 * same code ran slower (a helper that names every closure made, per call, among others): a
 * layout's CPU was about 1.4x the compiled one's.
 */
export function benchServerProcess(env: Record<string, string>, timeoutMs = 60_000, nodeArgs: string[] = []): Promise<ServerProcess> {
  if (!built) {
    const root = fileURLToPath(new URL('..', import.meta.url))
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
    built = true
  }
  return startServerProcess(env, timeoutMs, ['--enable-source-maps', ...nodeArgs], { compiled: true })
}

export interface BenchServer {
  server: ServerProcess
  key: string
  close(): Promise<void>
}

export async function startBenchServer(env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<BenchServer> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-bench-srv-'))
  const operator = crypto.randomBytes(24).toString('hex')
  // The load is one tenant's, beyond a tenant's default rate (20,000 events/s, a per-bank policy,
  // not the edge's capacity): the limits are lifted so the edge itself is what is measured.
  const unlimited = { INGEST_RATE_EVENTS_PER_S: '0', INGEST_RATE_REQUESTS_PER_S: '0' }
  const server = await benchServerProcess({ QIANMIAN_DATA_DIR: dataDir, QIANMIAN_OPERATOR_TOKEN: operator, LOG_LEVEL: 'error', ...unlimited, ...env }, 60_000, nodeArgs)
  const key = await tenantWriteKey(server.url, operator, 'bench')
  return {
    server,
    key,
    async close() {
      await server.kill('SIGTERM')
      fs.rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

export interface LoadResult {
  eventsPerS: number
  requestsPerS: number
  latencyP50Ms: number
  latencyP99Ms: number
  non2xx: number
  errors: number
  stored: number
  /** The writer's flushes during the run (each: dedup, identities, one insert), and their mean time. */
  flushes: number
  flushMeanMs: number
  /** The flushes' mean time per phase (dedup, identity, insert), from the server's counter. */
  flushPhaseMs: Record<string, number>
  /** From the server's histogram: receipt at the edge to row written, p50 and p99 (bucket upper bounds). */
  visibleP50S: number
  visibleP99S: number
}

let seq = 0

export async function runLoad(s: BenchServer, opts: { seconds: number; connections: number; size: number; settleMs?: number }): Promise<LoadResult> {
  const m0 = await serverMetrics(s.server.url)
  const result = await autocannon({
    url: s.server.url,
    connections: opts.connections,
    duration: opts.seconds,
    requests: [
      {
        method: 'POST',
        path: '/v1/batch',
        headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
        setupRequest: (req) => {
          const body = batchBody(seq, opts.size)
          seq += opts.size
          return { ...req, body }
        },
      },
    ],
  })
  // Queued (Kafka) events keep arriving after the load stops; give the worker time to finish.
  if (opts.settleMs) await new Promise((r) => setTimeout(r, opts.settleMs))
  const m1 = await serverMetrics(s.server.url)
  const stored = m1.stored - m0.stored
  return {
    eventsPerS: stored / opts.seconds,
    requestsPerS: result.requests.average,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    stored,
    flushes: m1.flushes - m0.flushes,
    flushMeanMs: ((m1.flushSeconds - m0.flushSeconds) / Math.max(1, m1.flushes - m0.flushes)) * 1000,
    flushPhaseMs: Object.fromEntries([...m1.phases].map(([k, v]) => [k, ((v - (m0.phases.get(k) ?? 0)) / Math.max(1, m1.flushes - m0.flushes)) * 1000])),
    visibleP50S: quantile(m0.visible, m1.visible, 0.5),
    visibleP99S: quantile(m0.visible, m1.visible, 0.99),
  }
}

interface Metrics {
  stored: number
  /** The writer's inserts (flushes) so far, and the seconds they took. */
  flushes: number
  flushSeconds: number
  phases: Map<string, number>
  visible: Map<number, number>
}

async function serverMetrics(url: string): Promise<Metrics> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const stored = Number(/qianmian_ingest_events_total\{outcome="stored"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0)
  const flushes = Number(/^qianmian_ingest_flush_seconds_count(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0)
  const flushSeconds = Number(/^qianmian_ingest_flush_seconds_sum(?:\{[^}]*\})? (\S+)/m.exec(text)?.[1] ?? 0)
  const visible = new Map<number, number>()
  for (const m of text.matchAll(/qianmian_ingest_visible_seconds_bucket\{le="([^"]+)"[^}]*\} (\d+)/g)) {
    visible.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]))
  }
  const phases = new Map<string, number>()
  for (const m of text.matchAll(/^qianmian_ingest_flush_phase_seconds_total\{phase="([^"]+)"[^}]*\} (\S+)$/gm)) phases.set(m[1]!, Number(m[2]))
  return { stored, flushes, flushSeconds, phases, visible }
}

/** A quantile of the observations between two snapshots of a cumulative histogram. */
function quantile(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b)
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0)
  if (total <= 0) return NaN
  for (const b of bounds) if ((after.get(b) ?? 0) - (before.get(b) ?? 0) >= q * total) return b
  return Infinity
}
