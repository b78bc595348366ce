import { describe, expect, it } from 'vitest'
import { createBroadcast, serveBroadcast, type Appliers } from './cluster-broadcast.js'
import type { ProcessChannel } from './cluster-locks.js'

/** An engine process and three API processes over in-memory channels that deliver on later turns. */
function cluster(o: { slowWorker?: number; timeoutMs?: number } = {}) {
  const log: string[] = []
  const appliers = (who: string): Appliers => ({
    keys: async () => {
      if (who === `api ${o.slowWorker}`) await new Promise((r) => setTimeout(r, 200))
      log.push(`${who} reloaded`)
    },
    consent: (payload) => void log.push(`${who} applied ${JSON.stringify(payload)}`),
    broken: () => {
      throw new Error('no')
    },
  })
  const toWorker = new Map<number, (m: unknown) => void>()
  const errors: string[] = []
  const engine = serveBroadcast({
    appliers: appliers('engine'),
    workers: () => [...toWorker.keys()].map((id) => ({ id, send: (m: object) => setImmediate(() => toWorker.get(id)?.(JSON.parse(JSON.stringify(m)))) })),
    onError: (topic) => errors.push(`engine ${topic}`),
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
    return createBroadcast(channel, appliers(`api ${id}`), { timeoutMs: 1000, onError: (topic) => errors.push(`api ${id} ${topic}`) })
  })
  return { log, api, toWorker, errors }
}

describe('a change announced by one API process', () => {
  it('is applied by the engine process and by every other API process before the announcement resolves', async () => {
    const { log, api } = cluster()
    await api[0]!.announce('keys')
    expect(log[0]).toBe('engine reloaded')
    expect([...log].sort()).toEqual(['api 2 reloaded', 'api 3 reloaded', 'engine reloaded'])
  })

  it('carries its payload to each of them', async () => {
    const { log, api } = cluster()
    await api[1]!.announce('consent', { tenant: 3, notices: [{ customerKey: 7, granted: false }] })
    const applied = `applied ${JSON.stringify({ tenant: 3, notices: [{ customerKey: 7, granted: false }] })}`
    expect([...log].sort()).toEqual([`api 1 ${applied}`, `api 3 ${applied}`, `engine ${applied}`])
  })

  it('waits for a slow process', async () => {
    const { log, api } = cluster({ slowWorker: 3 })
    await api[0]!.announce('keys')
    expect(log).toContain('api 3 reloaded')
  })

  it('resolves at the engine process’s deadline when a process never says it applied it', async () => {
    const { log, api, toWorker } = cluster({ timeoutMs: 50 })
    toWorker.set(3, () => undefined)
    const t0 = Date.now()
    await api[0]!.announce('keys')
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45)
    expect(log).toContain('api 2 reloaded')
    expect(log).not.toContain('api 3 reloaded')
  })

  it('resolves when an applier fails, and says where', async () => {
    const { api, errors } = cluster()
    await api[0]!.announce('broken')
    expect(errors.sort()).toEqual(['api 2 broken', 'api 3 broken', 'engine broken'])
  })

  it('resolves at once when the engine process is gone', async () => {
    const b = createBroadcast({ send: () => { throw new Error('closed') }, onMessage: () => () => undefined }, {})
    await expect(b.announce('keys')).resolves.toBeUndefined()
  })

  it('leaves messages that are not broadcasts', () => {
    const engine = serveBroadcast({ appliers: {}, workers: () => [] })
    for (const m of [undefined, 'qianmian:stop', { type: 'qianmian:lock:acquire', id: 1 }, { type: 'qianmian:broadcast:changed', id: 1 }]) expect(engine.handle(1, m, () => undefined)).toBe(false)
  })
})
