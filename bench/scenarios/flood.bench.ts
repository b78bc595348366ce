import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import autocannon from 'autocannon'
import type { ServerProcess } from '../../test/server-process.js'
import type { BenchScenario } from '../harness.js'
import { batchBody, benchServerProcess } from '../load.js'

/**
 * One bank floods, another sends its usual traffic: tenant B's success rate and latency alone and
 * under tenant A's flood, in the same run, on a server with the per-tenant limits and on one
 * without them (the shared path as it was).
 */

interface Side {
  requests: number
  ok: number
  limited: number
  other: number
  p50: number
  p99: number
}

function side(r: autocannon.Result): Side {
  const codes = (r as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {}
  const limited = codes['429']?.count ?? 0
  const total = r['1xx'] + r['2xx'] + r['3xx'] + r['4xx'] + r['5xx'] + r.errors + r.timeouts
  return { requests: total, ok: r['2xx'], limited, other: total - r['2xx'] - limited, p50: r.latency.p50, p99: r.latency.p99 }
}

let seq = 0
function load(url: string, key: string, o: { seconds: number; connections: number; size: number; rate?: number }) {
  return autocannon({
    url,
    connections: o.connections,
    duration: o.seconds,
    ...(o.rate ? { overallRate: o.rate } : {}),
    requests: [
      {
        method: 'POST',
        path: '/v1/batch',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        setupRequest: (req) => {
          const body = batchBody(seq, o.size)
          seq += o.size
          return { ...req, body }
        },
      },
    ],
  })
}

/** A tenant and a write key for it, through the server's operator API. */
async function writeKey(url: string, operator: string, slug: string): Promise<string> {
  const headers = { authorization: `Bearer ${operator}`, 'content-type': 'application/json' }
  const created = await fetch(`${url}/v1/operator/tenants`, { method: 'POST', headers, body: JSON.stringify({ slug, name: slug }) })
  if (created.status !== 201) throw new Error(`creating tenant ${slug}: HTTP ${created.status} ${await created.text()}`)
  const issued = await fetch(`${url}/v1/operator/tenants/${slug}/keys`, { method: 'POST', headers, body: JSON.stringify({ scope: 'write', holder: `bench ${slug}` }) })
  if (issued.status !== 201) throw new Error(`issuing a key for ${slug}: HTTP ${issued.status} ${await issued.text()}`)
  return ((await issued.json()) as { key: string }).key
}

async function withServer<T>(env: Record<string, string>, fn: (s: ServerProcess, a: string, b: string) => Promise<T>): Promise<T> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-bench-flood-'))
  const operator = crypto.randomBytes(24).toString('hex')
  const server = await benchServerProcess({ QIANMIAN_DATA_DIR: dataDir, QIANMIAN_OPERATOR_TOKEN: operator, LOG_LEVEL: 'error', ...env })
  try {
    const a = await writeKey(server.url, operator, 'flooder')
    const b = await writeKey(server.url, operator, 'bystander')
    return await fn(server, a, b)
  } finally {
    await server.kill('SIGTERM')
    fs.rmSync(dataDir, { recursive: true, force: true })
  }
}

export const scenario: BenchScenario = {
  name: 'flood',
  description:
    "Tenant B's paced traffic (10-event batches at a fixed rate) alone and under tenant A's unthrottled flood (100-event batches from 16 connections), on a `qianmian start` process with per-tenant limits and on one without them, same run.",
  async run(ctx) {
    const seconds = Number(ctx.args.duration ?? 15)
    const bRate = Number(ctx.args.bRate ?? 5)
    const limits = {
      // Far under what the server takes on 2 cores (a new customer's first events cost identity
      // writes), so A's flood is over its limits whatever else runs on the machine.
      INGEST_RATE_REQUESTS_PER_S: ctx.args.requestsPerS ?? '10',
      INGEST_RATE_REQUESTS_BURST: '10',
      INGEST_RATE_EVENTS_PER_S: ctx.args.eventsPerS ?? '300',
      INGEST_RATE_EVENTS_BURST: '600',
    }
    const off = { INGEST_RATE_REQUESTS_PER_S: '0', INGEST_RATE_EVENTS_PER_S: '0', INGEST_TENANT_QUEUE_PERCENT: '100' }
    const b = (url: string, key: string) => load(url, key, { seconds, connections: 4, size: 10, rate: bRate })
    const flood = (url: string, key: string) => load(url, key, { seconds: seconds + 2, connections: Number(ctx.args.aConnections ?? 16), size: 100 })

    const phases = async (s: ServerProcess, keyA: string, keyB: string) => {
      await load(s.url, keyB, { seconds: 4, connections: 4, size: 10, rate: bRate }) // warm-up
      const alone = side(await b(s.url, keyB))
      const f = flood(s.url, keyA)
      await new Promise((r) => setTimeout(r, 1000)) // the flood is under way when B starts
      const under = side(await b(s.url, keyB))
      const a = side(await f)
      return { alone, under, a }
    }
    const loadBefore = os.loadavg()[0]!
    const on = await withServer(limits, phases)
    const none = await withServer(off, phases)
    const rate = (x: Side) => (x.requests ? x.ok / x.requests : NaN)
    return {
      params: { machine_load_1m_before: loadBefore.toFixed(1), machine_load_1m_after: os.loadavg()[0]!.toFixed(1), phase_s: seconds, b_requests_per_s: bRate, b_events_per_batch: 10, a_connections: Number(ctx.args.aConnections ?? 16), a_events_per_batch: 100, ...limits },
      figures: {
        limits_b_alone_success: rate(on.alone),
        limits_b_alone_p50_ms: on.alone.p50,
        limits_b_alone_p99_ms: on.alone.p99,
        limits_b_flood_success: rate(on.under),
        limits_b_flood_p50_ms: on.under.p50,
        limits_b_flood_p99_ms: on.under.p99,
        limits_b_flood_requests: on.under.requests,
        limits_a_requests: on.a.requests,
        limits_a_2xx: on.a.ok,
        limits_a_429: on.a.limited,
        limits_a_other: on.a.other,
        nolimits_b_alone_success: rate(none.alone),
        nolimits_b_alone_p99_ms: none.alone.p99,
        nolimits_b_flood_success: rate(none.under),
        nolimits_b_flood_p50_ms: none.under.p50,
        nolimits_b_flood_p99_ms: none.under.p99,
        nolimits_a_requests: none.a.requests,
        nolimits_a_2xx: none.a.ok,
        nolimits_a_other: none.a.other,
      },
      ratios: {
        limits_b_p99_flood_vs_alone: on.under.p99 / on.alone.p99,
        nolimits_b_p99_flood_vs_alone: none.under.p99 / none.alone.p99,
      },
      notes: [
        'Success is the share of B requests answered 2xx; p50/p99 are autocannon latencies of B requests (every answer, 2xx or not).',
        'Both servers and both load generators share the machine (2 cores): the flood also costs B the CPU autocannon takes.',
        'nolimits_*: the same server with INGEST_RATE_* at 0 and INGEST_TENANT_QUEUE_PERCENT at 100 (no per-tenant limit at all).',
        'A is a closed loop that ignores Retry-After: with limits, its refused requests are held a second before their 429 (ingest/rate-limit.ts), else each connection turned into hundreds of 429s a second.',
        "B's admitted events share the writer's flushes with A's admitted ones (A's new customers cost identity writes): the limits bound A's share, not the flush B waits for.",
      ],
    }
  },
}
