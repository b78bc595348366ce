import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createClickHouse } from '../core/clickhouse.js'
import { loadConfig } from '../core/config.js'
import { createDb } from '../core/db.js'
import { startServerProcess, tenantWriteKey, type ServerProcess } from '../test/server-process.js'

// Kill -9 the server while clients are sending, restart it, let the clients retry everything:
// every event acknowledged before the kill is stored, and nothing is stored twice.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-kill-'))
const OPERATOR = crypto.randomBytes(24).toString('hex')
const env = { QIANMIAN_DATA_DIR: dataDir, QIANMIAN_OPERATOR_TOKEN: OPERATOR, INGEST_FLUSH_MS: '10' }
let server: ServerProcess | undefined
afterAll(async () => {
  if (server && server.child.exitCode === null) await server.kill('SIGKILL')
  fs.rmSync(dataDir, { recursive: true, force: true })
})

function makeBatches(n: number, size: number) {
  return Array.from({ length: n }, (_, b) => ({
    batch: Array.from({ length: size }, (_, i) => ({
      type: 'track',
      messageId: `kill-${b}-${i}`,
      userId: `K${(b * size + i) % 500}`,
      event: 'transfer_completed',
      properties: { amount: i, product_id: `p${i % 7}` },
    })),
  }))
}

async function send(url: string, key: string, body: unknown): Promise<number> {
  try {
    const res = await fetch(`${url}/v1/batch`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    await res.text()
    return res.status
  } catch {
    return 0 // connection reset by the kill
  }
}

describe('a SIGKILL during ingest', () => {
  it('loses no acknowledged event and stores none twice', { timeout: 180_000 }, async () => {
    server = await startServerProcess(env)
    const key = await tenantWriteKey(server.url, OPERATOR, 'kill-bank')

    const batches = makeBatches(400, 50)
    const acked = new Set<number>()
    let next = 0
    let killed = false
    const worker = async () => {
      while (next < batches.length && !killed) {
        const i = next++
        if ((await send(server!.url, key, batches[i])) === 200) acked.add(i)
      }
    }
    const workers = Array.from({ length: 6 }, worker)
    // Kill once a fair share is acknowledged, with requests in flight.
    while (acked.size < 40) await new Promise((r) => setTimeout(r, 5))
    killed = true
    await server.kill('SIGKILL')
    await Promise.all(workers)
    const ackedBeforeKill = acked.size
    expect(ackedBeforeKill).toBeGreaterThanOrEqual(40)

    // Restart on the same data; clients retry every batch (acknowledged or not), as SDKs do
    // when they are unsure.
    server = await startServerProcess(env)
    for (let i = 0; i < batches.length; i++) {
      const status = await send(server.url, key, batches[i])
      expect(status).toBe(200)
    }
    expect(await server.kill('SIGTERM')).toBe(0)

    const handle = await createClickHouse(loadConfig({ QIANMIAN_DATA_DIR: dataDir }))
    try {
      const db = createDb(handle.client)
      const [r] = await db.system.query<{ n: string; d: string }>("SELECT count() AS n, uniqExact(message_id) AS d FROM events WHERE startsWith(message_id, 'kill-')")
      const total = batches.length * 50
      expect(Number(r!.d)).toBe(total) // nothing lost, acknowledged or retried
      expect(Number(r!.n)).toBe(total) // nothing twice
      const ids = [...acked].flatMap((b) => batches[b]!.batch.map((e) => e.messageId))
      const [a] = await db.system.query<{ n: string }>('SELECT uniqExact(message_id) AS n FROM events WHERE message_id IN (SELECT arrayJoin({ids:Array(String)}))', { ids })
      expect(Number(a!.n)).toBe(ids.length)
    } finally {
      await handle.close()
    }
  })
})
