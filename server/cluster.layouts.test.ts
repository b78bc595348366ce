import http from 'node:http'
import { afterAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createClickHouse } from '../core/clickhouse.js'
import { loadConfig } from '../core/config.js'
import { createDb } from '../core/db.js'
import { DEMO_BANKS } from '../demo/demo.banks.js'
import { clusterEnv, demoCredentials, removeCluster, startClusterProcess } from '../test/cluster.js'
import { mainThreadTicks, type ServerProcess } from '../test/server-process.js'

// Layouts served by API processes (`QIANMIAN_API_PROCESSES=2`) are exposures like any other:
// each process logs what it served and writes it through the engine process's endpoint, every
// bank's rows in one insert. What a process served before a SIGTERM to the primary is written
// before the engine closes. Each layout served to a known customer is one row, none twice.
const { dataDir, env } = clusterEnv('cluster-layouts', { QIANMIAN_DEMO: 'true', QIANMIAN_DEMO_CUSTOMERS: '400', QIANMIAN_DEMO_DAYS: '3' })
let server: ServerProcess | undefined
afterAll(() => removeCluster(server, dataDir))
const layoutBody = z.object({ tenant: z.number(), customerId: z.string().nullable(), known: z.boolean() })

/** One layout on a new connection (the primary hands each connection to the next process). */
function layout(url: string, key: string, customerId: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/v1/layout?customerId=${customerId}`, { agent: false, headers: { authorization: `Bearer ${key}` } }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      .on('error', reject)
  })
}

describe('layouts served by several API processes', () => {
  it('writes one exposure per layout served to a known customer, from both processes, and all of them before a SIGTERM ends the engine', { timeout: 300_000 }, async () => {
    // The engine process seeds the demo (tags and layout models included) before it is ready.
    const started = await startClusterProcess(env)
    server = started.server
    const api = started.api
    expect(api).toHaveLength(2)
    const creds = demoCredentials(dataDir)
    const banks = DEMO_BANKS.flatMap((b) => {
      const key = creds.find((c) => c.slug === b.slug)?.keys.find((k) => k.role === 'layout')?.key
      return key ? [{ slug: b.slug, prefix: b.customerPrefix, key }] : []
    })
    expect(banks.length).toBeGreaterThanOrEqual(2)

    // Every bank's first 60 customer numbers, each asked once, eight connections at a time.
    const before = api.map(mainThreadTicks)
    const requests = banks.flatMap((b) => Array.from({ length: 60 }, (_, i) => ({ bank: b, customerId: `${b.prefix}${String(i + 1).padStart(10, '0')}` })))
    const known = new Map<number, Set<string>>()
    let next = 0
    const client = async () => {
      while (next < requests.length) {
        const r = requests[next++]!
        const res = await layout(server!.url, r.bank.key, r.customerId)
        expect(res.status, res.body).toBe(200)
        const body = layoutBody.parse(JSON.parse(res.body))
        expect(body.customerId).toBe(r.customerId)
        if (body.known) (known.get(body.tenant) ?? known.set(body.tenant, new Set()).get(body.tenant)!).add(r.customerId)
      }
    }
    await Promise.all(Array.from({ length: 8 }, client))
    // Both processes served (each took connections and spent CPU on them).
    api.forEach((pid, i) => expect(mainThreadTicks(pid)).toBeGreaterThan(before[i]!))
    expect(known.size).toBe(banks.length)
    for (const customers of known.values()) expect(customers.size).toBeGreaterThan(30)

    // No wait for the flush interval: the SIGTERM makes each API process write what it holds.
    expect(await server.kill('SIGTERM')).toBe(0)
    const handle = await createClickHouse(loadConfig({ QIANMIAN_DATA_DIR: dataDir }))
    try {
      const db = createDb(handle.client)
      const rows = await db.system.query(
        `SELECT tenant_id AS tenant, count() AS n, uniqExact(customer_key) AS customers FROM layout_exposures GROUP BY tenant_id ORDER BY tenant_id`,
        {},
        z.object({ tenant: z.coerce.number(), n: z.coerce.number(), customers: z.coerce.number() }),
      )
      const expected = [...known].map(([tenant, c]) => ({ tenant, n: c.size, customers: c.size })).sort((a, b) => a.tenant - b.tenant)
      expect(rows).toEqual(expected)
      // Each row names what it showed through a list written before it (sql/028), from either
      // process: none without its list, and every list's items are the ids a layout can show.
      const [orphans] = await db.system.query(
        `SELECT countIf(l.list = 0) AS orphans, countIf(length(e.slots) = 0) AS empty, min(length(l.items)) AS items FROM layout_exposures AS e
         LEFT JOIN (SELECT DISTINCT tenant_id, list, items FROM layout_exposure_lists) AS l ON l.tenant_id = e.tenant_id AND l.list = e.list`,
        {},
        z.object({ orphans: z.coerce.number(), empty: z.coerce.number(), items: z.coerce.number() }),
      )
      expect(orphans).toMatchObject({ orphans: 0, empty: 0 })
      expect(orphans!.items).toBeGreaterThan(0)
    } finally {
      await handle.close()
    }
  })
})
