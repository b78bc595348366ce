import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createClickHouse } from '../core/clickhouse.js'
import { loadConfig } from '../core/config.js'
import { createDb } from '../core/db.js'
import { childProcesses, mainThreadTicks, startServerProcess, tenantWriteKey, type ServerProcess } from '../test/server-process.js'

// `QIANMIAN_API_PROCESSES=2`: two API processes on one port, reaching the engine process's data
// through its endpoint. Requests spread over both; one killed is replaced while the other
// answers; a SIGTERM to the primary stops all of them with every acknowledged event stored.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-cluster-'))
const OPERATOR = crypto.randomBytes(24).toString('hex')
const env = { QIANMIAN_DATA_DIR: dataDir, QIANMIAN_OPERATOR_TOKEN: OPERATOR, QIANMIAN_API_PROCESSES: '2', INGEST_FLUSH_MS: '10' }
let server: ServerProcess | undefined
afterAll(async () => {
  if (server && server.child.exitCode === null) await server.kill('SIGKILL')
  fs.rmSync(dataDir, { recursive: true, force: true })
})

async function send(url: string, key: string, b: number): Promise<number> {
  const batch = Array.from({ length: 20 }, (_, i) => ({ type: 'track', messageId: `cl-${b}-${i}`, userId: `C${(b * 20 + i) % 300}`, event: 'transfer_completed', properties: { amount: i } }))
  try {
    // A connection handed to a process as it was killed is never answered: clients time out and retry.
    const res = await fetch(`${url}/v1/batch`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ batch }), signal: AbortSignal.timeout(10_000) })
    await res.text()
    return res.status
  } catch {
    return 0
  }
}

/** `/metrics` on a new connection each time (the primary hands each to the next process). */
function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/metrics`, { agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body}`))))
      })
      .on('error', reject)
  })
}
const sample = (text: string, name: string, label: string) =>
  Number(new RegExp(`^${name}\\{[^}]*${label}[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)

describe('the API on two processes', () => {
  it('serves from both, replaces one that dies, and stops with everything acknowledged stored', { timeout: 240_000 }, async () => {
    server = await startServerProcess(env, 120_000)
    const primary = server.child.pid!
    for (let i = 0; i < 100 && childProcesses(primary).length < 2; i++) await new Promise((r) => setTimeout(r, 100))
    const first = childProcesses(primary)
    expect(first).toHaveLength(2)
    const key = await tenantWriteKey(server.url, OPERATOR, 'cluster-bank')

    // Many connections at once: the primary hands them to the two processes in turn.
    const before = first.map(mainThreadTicks)
    const acked = new Set<number>()
    let next = 0
    const client = async () => {
      while (next < 300) {
        const b = next++
        if ((await send(server!.url, key, b)) === 200) acked.add(b)
      }
    }
    await Promise.all(Array.from({ length: 8 }, client))
    expect(acked.size).toBe(300)
    first.forEach((pid, i) => expect(mainThreadTicks(pid)).toBeGreaterThan(before[i]!))

    // Whichever process takes the scrape answers for all three: the events both API processes
    // stored, summed, and the engine process's own metrics with them.
    for (let i = 0; i < 4; i++) {
      const text = await scrape(server.url)
      expect(sample(text, 'qianmian_ingest_events_total', 'outcome="stored"')).toBe(6000)
      expect(sample(text, 'qianmian_metrics_processes', 'state="answered"')).toBe(3)
      expect(sample(text, 'qianmian_metrics_processes', 'state="missing"')).toBe(0)
    }

    // One API process killed: the other answers meanwhile, and a new one takes its place.
    process.kill(first[0]!, 'SIGKILL')
    const during = await Promise.all(Array.from({ length: 20 }, (_, i) => send(server!.url, key, 300 + i)))
    during.forEach((s, i) => s === 200 && acked.add(300 + i))
    expect(during.filter((s) => s === 200).length).toBeGreaterThan(0)
    for (let i = 0; i < 200; i++) {
      const now = childProcesses(primary)
      if (now.length === 2 && !now.includes(first[0]!)) break
      await new Promise((r) => setTimeout(r, 100))
    }
    const replaced = childProcesses(primary)
    expect(replaced).toHaveLength(2)
    expect(replaced).not.toContain(first[0])
    for (let i = 0; i < 50; i++) if ((await send(server.url, key, 400 + i)) === 200) acked.add(400 + i)
    expect(acked.size).toBeGreaterThanOrEqual(350)

    // SIGTERM to the primary: the API processes write what they accepted, then the engine closes.
    expect(await server.kill('SIGTERM')).toBe(0)
    for (const pid of replaced) expect(() => process.kill(pid, 0)).toThrow()

    const handle = await createClickHouse(loadConfig({ QIANMIAN_DATA_DIR: dataDir }))
    try {
      const db = createDb(handle.client)
      const rows = await db.system.query<{ m: string }>("SELECT DISTINCT message_id AS m FROM events WHERE startsWith(message_id, 'cl-')")
      const stored = new Set(rows.map((r) => r.m))
      for (const b of acked) for (let i = 0; i < 20; i++) expect(stored.has(`cl-${b}-${i}`)).toBe(true)
      const [dups] = await db.system.query<{ n: string }>("SELECT toString(count() - uniqExact(message_id)) AS n FROM events WHERE startsWith(message_id, 'cl-')")
      expect(dups).toEqual({ n: '0' })
    } finally {
      await handle.close()
    }
  })
})
