import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import autocannon from 'autocannon'
import { createPii } from '../../core/pii.js'
import { EVENT_COLUMNS, toRow } from '../../ingest/event-writer.js'
import { normalizeMessage } from '../../ingest/normalize.js'
import { startServerProcess } from '../../test/server-process.js'
import type { BenchScenario } from '../harness.js'

/**
 * Sustained HTTP ingest: a `qianmian start` child process receives realistic Segment batches
 * (100 events of ~300 B) from autocannon in this process; beside it, the same kind of rows go
 * through the raw client insert into this process's own engine, the ceiling ingest is held to.
 */

const EVENTS = ['product_viewed', 'screen_viewed', 'transfer_completed', 'bill_paid', 'loan_repaid', 'push_opened', 'voice_assistant_used']

function makeEvent(seq: number, now: number) {
  const kind = EVENTS[seq % EVENTS.length]!
  return {
    type: 'track',
    messageId: `b-${seq.toString(36)}-${crypto.randomBytes(6).toString('hex')}`,
    userId: `C${(seq * 7919) % 200_000}`,
    anonymousId: `dev-${(seq * 104_729) % 300_000}`,
    event: kind,
    timestamp: new Date(now - (seq % 600) * 1000).toISOString(),
    properties: { product_id: `wm-${seq % 40}`, amount: (seq % 5000) + 0.5, channel: 'app', screen: 'home', position: seq % 12 },
    context: { app: { version: '4.0.3', build: '4031' }, os: { name: 'Android', version: '13' }, device: { model: 'HUAWEI Mate 60' }, locale: 'zh-CN' },
  }
}

function batchBody(start: number, size: number): string {
  const now = Date.now()
  const batch = Array.from({ length: size }, (_, i) => makeEvent(start + i, now))
  return JSON.stringify({ batch, sentAt: new Date(now).toISOString() })
}

export const scenario: BenchScenario = {
  name: 'ingest',
  description:
    'Sustained HTTP ingest of Segment batches (100 events, ~300 B each) from autocannon into a `qianmian start` process, against the raw client insert of the same rows in the same run.',
  async run(ctx) {
    const duration = Number(ctx.args.duration ?? 20)
    const connections = Number(ctx.args.connections ?? 16)
    const size = Number(ctx.args.batch ?? 100)
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-bench-ingest-'))
    const operator = crypto.randomBytes(24).toString('hex')
    const server = await startServerProcess({ QIANMIAN_DATA_DIR: dataDir, QIANMIAN_OPERATOR_TOKEN: operator, LOG_LEVEL: 'error' })
    try {
      const op = { authorization: `Bearer ${operator}`, 'content-type': 'application/json' }
      await fetch(`${server.url}/v1/operator/tenants`, { method: 'POST', headers: op, body: JSON.stringify({ slug: 'bench', name: 'Bench' }) })
      const issued = (await (await fetch(`${server.url}/v1/operator/tenants/bench/keys`, { method: 'POST', headers: op, body: JSON.stringify({ scope: 'write' }) })).json()) as { key: string }
      const sample = batchBody(0, size)
      let seq = 1_000_000
      const run = (seconds: number) =>
        autocannon({
          url: server.url,
          connections,
          duration: seconds,
          requests: [
            {
              method: 'POST',
              path: '/v1/batch',
              headers: { authorization: `Bearer ${issued.key}`, 'content-type': 'application/json' },
              setupRequest: (req) => {
                const body = batchBody(seq, size)
                seq += size
                return { ...req, body }
              },
            },
          ],
        })
      await run(3) // warm-up: JIT, first parts, key cache
      const stored0 = await storedEvents(server.url)
      const result = await run(duration)
      const stored = (await storedEvents(server.url)) - stored0
      const non2xx = result.non2xx
      const eventsPerS = stored / duration

      // The ceiling: the same rows, built as the writer builds them, through the raw client.
      const rows = makeRows(Math.max(100_000, Math.min(400_000, Math.round(eventsPerS * 2))), size)
      await ctx.db.system.command('TRUNCATE TABLE events')
      const t0 = performance.now()
      for (let i = 0; i < rows.length; i += 20_000) {
        await ctx.db.system.raw.insert({ table: 'events', columns: EVENT_COLUMNS as unknown as [string, ...string[]], values: rows.slice(i, i + 20_000), format: 'JSONCompactEachRow' })
      }
      const rawPerS = rows.length / ((performance.now() - t0) / 1000)
      return {
        params: { duration_s: duration, connections, events_per_batch: size, batch_bytes: Buffer.byteLength(sample), raw_rows: rows.length },
        figures: {
          http_events_per_s: eventsPerS,
          http_requests_per_s: result.requests.average,
          http_latency_p50_ms: result.latency.p50,
          http_latency_p99_ms: result.latency.p99,
          http_non_2xx: non2xx,
          http_errors: result.errors,
          events_stored: stored,
          raw_client_rows_per_s: rawPerS,
        },
        ratios: { http_vs_raw_client_insert: eventsPerS / rawPerS },
        notes: [
          'The server and the load generator share the machine (2 cores): autocannon and its JSON building take CPU the server would otherwise have.',
          'events_stored is read from the server metric qianmian_ingest_events_total{outcome="stored"}, so only acknowledged and written events count.',
          'raw_client_rows_per_s: the same event rows as JSONCompactEachRow through @clickhouse/client in 20k-row inserts, in this process, right after the HTTP run.',
        ],
      }
    } finally {
      await server.kill('SIGTERM')
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  },
}

async function storedEvents(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = /qianmian_ingest_events_total\{outcome="stored"[^}]*\} (\d+)/.exec(text)
  return m ? Number(m[1]) : 0
}

function makeRows(n: number, size: number): unknown[][] {
  const pii = createPii('bench-secret-bench-secret-bench-secret')
  const opts = { receivedAt: Date.now(), backdateMs: 30 * 86_400_000, maxFutureMs: 86_400_000, sensitiveTraits: new Set<string>(), pii }
  const out: unknown[][] = []
  for (let i = 0; i < n; i += size) {
    const body = JSON.parse(batchBody(i, Math.min(size, n - i))) as { batch: unknown[]; sentAt: string }
    for (const raw of body.batch) {
      const r = normalizeMessage(raw, 1, { sentAt: body.sentAt }, opts)
      if (!r.ok) continue
      out.push(toRow(1, 1 + (i % 200_000), r.event))
    }
  }
  return out
}
