import { afterAll, describe, expect, it } from 'vitest'
import { clusterEnv, onNewConnection, removeCluster, startClusterProcess } from '../test/cluster.js'
import type { ServerProcess } from '../test/server-process.js'

// What one process did one at a time (a tenant's new id read and written, a key's record read
// and rewritten) stays one at a time when the API runs on several processes
// (`QIANMIAN_API_PROCESSES=2`): the engine process holds the locks for all of them.
const { dataDir, operator: OPERATOR, env } = clusterEnv('cluster-locks')
let server: ServerProcess | undefined
afterAll(() => removeCluster(server, dataDir))

type Answer = { status: number; json: { id?: number; slug?: string; key?: string; info?: { keyId: string }; error?: { code: string } } }
const call = (url: string, method: string, route: string, body?: unknown, key = OPERATOR) => onNewConnection(url, method, route, key, body) as Promise<Answer>

describe('changes made one at a time, on two API processes', () => {
  it('gives banks created at the same moment on either process ids of their own, and one slug one bank', { timeout: 240_000 }, async () => {
    const started = await startClusterProcess(env)
    server = started.server
    expect(started.api).toHaveLength(2)

    for (let round = 0; round < 3; round++) {
      const created = await Promise.all(Array.from({ length: 6 }, (_, i) => call(server!.url, 'POST', '/v1/operator/tenants', { slug: `lock-${round}-${i}`, name: `Bank ${round}-${i}` })))
      expect(created.map((c) => c.status)).toEqual(Array(6).fill(201))
      expect(new Set(created.map((c) => c.json.id)).size).toBe(6)
    }
    const listed = await call(server!.url, 'GET', '/v1/operator/tenants')
    const tenants = (listed.json as unknown as { tenants: { id: number; slug: string }[] }).tenants
    expect(tenants).toHaveLength(18)
    expect(new Set(tenants.map((t) => t.id)).size).toBe(18)

    // The same slug asked for at once: one bank, the others told it exists.
    const same = await Promise.all(Array.from({ length: 6 }, () => call(server!.url, 'POST', '/v1/operator/tenants', { slug: 'lock-same', name: 'Same' })))
    expect(same.map((c) => c.status).sort()).toEqual([201, 409, 409, 409, 409, 409])
  })

  it('stops a revoked key and a suspended bank’s keys on every process as soon as the change is answered', { timeout: 120_000 }, async () => {
    const issue = async (slug: string) => {
      const issued = await call(server!.url, 'POST', `/v1/operator/tenants/${slug}/keys`, { roles: ['analyst'], holder: 'the bank’s analyst' })
      expect(issued.status).toBe(201)
      return { key: issued.json.key!, keyId: issued.json.info!.keyId }
    }
    // Six requests on new connections: both processes answer, and cache the key.
    const probe = async (key: string) => (await Promise.all(Array.from({ length: 6 }, () => call(server!.url, 'GET', '/v1/tenant', undefined, key)))).map((r) => r.status)
    const a = await issue('lock-0-0')
    expect(await probe(a.key)).toEqual(Array(6).fill(200))
    expect((await call(server!.url, 'DELETE', `/v1/operator/tenants/lock-0-0/keys/${a.keyId}`)).status).toBe(200)
    expect(await probe(a.key)).toEqual(Array(6).fill(401))

    const b = await issue('lock-0-1')
    expect(await probe(b.key)).toEqual(Array(6).fill(200))
    expect((await call(server!.url, 'POST', '/v1/operator/tenants/lock-0-1/disable')).status).toBe(200)
    expect(await probe(b.key)).toEqual(Array(6).fill(403))
    expect((await call(server!.url, 'POST', '/v1/operator/tenants/lock-0-1/enable')).status).toBe(200)
    expect(await probe(b.key)).toEqual(Array(6).fill(200))
  })
})
