import { afterAll, describe, expect, it } from 'vitest'
import { clusterEnv, onNewConnection, removeCluster, startClusterProcess } from '../test/cluster.js'
import { tenantWriteKey, type ServerProcess } from '../test/server-process.js'

// A bank's ingest rate is the bank's on the whole host when the API runs on several processes
// (`QIANMIAN_API_PROCESSES=2`): each process takes what the other granted from its own buckets.
// A burst of 20 requests, refilled at 1 a second: nothing refills noticeably during the test.
const { dataDir, operator: OPERATOR, env } = clusterEnv('cluster-rates', { INGEST_RATE_REQUESTS_PER_S: '1', INGEST_RATE_REQUESTS_BURST: '20' })
let server: ServerProcess | undefined
afterAll(() => removeCluster(server, dataDir))

/** One event on a new connection: the primary hands each connection to the next API process. */
const track = async (url: string, key: string, i: number) => (await onNewConnection(url, 'POST', '/v1/track', key, { type: 'track', messageId: `rate-${i}`, userId: `C${i}`, event: 'app_opened' })).status

describe('a bank’s ingest rate on two API processes', () => {
  it('holds for the host: a burst of 20 is about 20 requests, whichever process takes each', { timeout: 120_000 }, async () => {
    const started = await startClusterProcess(env)
    server = started.server
    expect(started.api).toHaveLength(2)
    const key = await tenantWriteKey(server.url, OPERATOR, 'rate-bank')

    // 18 requests one after another (9 on each process), a pause for the processes to tell each
    // other, then 10 more, one every 150 ms: the host has about 4 of its burst left (2, and what
    // refills at 1 a second), each process 11 of its own were they not shared.
    const first: number[] = []
    for (let i = 0; i < 18; i++) first.push(await track(server.url, key, i))
    expect(first).toEqual(Array(18).fill(200))
    await new Promise((r) => setTimeout(r, 500))
    const second: Promise<number>[] = []
    for (let i = 0; i < 10; i++) {
      second.push(track(server.url, key, 100 + i))
      await new Promise((r) => setTimeout(r, 150))
    }
    const statuses = await Promise.all(second)
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
    const ok = statuses.filter((s) => s === 200).length
    // Each process may grant the request that takes its bucket into debt: one over at most.
    expect(ok).toBeGreaterThanOrEqual(2)
    expect(ok).toBeLessThanOrEqual(7)
  })
})
