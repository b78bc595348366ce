import { describe, expect, it } from 'vitest'
import type { ProcessChannel } from '../core/cluster-locks.js'
import { createRegistrySync, serveRegistrySync } from './registry.sync.js'

/** An engine process and three API processes over in-memory channels that deliver on later turns. */
function cluster(o: { slowWorker?: number; timeoutMs?: number } = {}) {
  const log: string[] = []
  const refreshed = (who: string) => ({
    refresh: async () => {
      if (who === `api ${o.slowWorker}`) await new Promise((r) => setTimeout(r, 200))
      log.push(`${who} reloaded`)
    },
  })
  const toWorker = new Map<number, (m: unknown) => void>()
  const engine = serveRegistrySync({
    cache: refreshed('engine'),
    workers: () => [...toWorker.keys()].map((id) => ({ id, send: (m: object) => setImmediate(() => toWorker.get(id)?.(JSON.parse(JSON.stringify(m)))) })),
    ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
  })
  const api = [1, 2, 3].map((id) => {
    const listeners = new Set<(m: unknown) => void>()
    toWorker.set(id, (m) => listeners.forEach((l) => l(m)))
    const channel: ProcessChannel = {
      send: (m) => void setImmediate(() => engine.handle(id, JSON.parse(JSON.stringify(m)), (r) => setImmediate(() => listeners.forEach((l) => l(JSON.parse(JSON.stringify(r))))))),
      onMessage(l) {
        listeners.add(l)
        return () => listeners.delete(l)
      },
    }
    return createRegistrySync(channel, refreshed(`api ${id}`), { timeoutMs: 1000 })
  })
  return { log, api, toWorker }
}

describe('keys and tenants changed on one API process', () => {
  it('are reloaded by the engine process and every other API process before the change is answered', async () => {
    const { log, api } = cluster()
    await api[0]!.announce()
    expect(log[0]).toBe('engine reloaded')
    expect([...log].sort()).toEqual(['api 2 reloaded', 'api 3 reloaded', 'engine reloaded'])
  })

  it('waits for a slow process’s reload', async () => {
    const { log, api } = cluster({ slowWorker: 3 })
    await api[0]!.announce()
    expect(log).toContain('api 3 reloaded')
  })

  it('is answered after the engine process’s deadline when a process never says it reloaded', async () => {
    const { log, api, toWorker } = cluster({ timeoutMs: 50 })
    toWorker.set(3, () => undefined)
    const t0 = Date.now()
    await api[0]!.announce()
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45)
    expect(log).toContain('api 2 reloaded')
    expect(log).not.toContain('api 3 reloaded')
  })

  it('is answered without waiting when the engine process is gone', async () => {
    const sync = createRegistrySync({ send: () => { throw new Error('closed') }, onMessage: () => () => undefined }, { refresh: async () => undefined })
    await expect(sync.announce()).resolves.toBeUndefined()
  })

  it('leaves messages that are not about the registry', () => {
    const engine = serveRegistrySync({ cache: { refresh: async () => undefined }, workers: () => [] })
    for (const m of [undefined, 'qianmian:stop', { type: 'qianmian:lock:acquire', id: 1 }]) expect(engine.handle(1, m, () => undefined)).toBe(false)
  })
})
