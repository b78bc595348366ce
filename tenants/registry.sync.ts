import type { ProcessChannel } from '../core/cluster-locks.js'

/**
 * Keys and tenants changed in one API process, seen by the others before the change is answered
 * (server/cluster.ts). Each process caches the keys and the tenants' status for authentication
 * and reloads them on a TTL (`QIANMIAN_KEY_CACHE_TTL_MS`, 30 s by default): a key revoked
 * through one API process kept working on another for up to that long, and so did a suspended
 * bank's keys.
 *
 * So after a change is stored, the process that made it tells the engine process, which reloads
 * its own cache, tells every other API process to reload, waits for each to say it has (or for
 * `timeoutMs`), and then answers; the change's request is answered after that. Another process's
 * caches still follow the TTL for changes made outside the API (the CLI on another host).
 */

const CHANGED = 'qianmian:registry:changed'
const DONE = 'qianmian:registry:done'
const RELOAD = 'qianmian:registry:reload'
const RELOADED = 'qianmian:registry:reloaded'

interface Message {
  type?: unknown
  id?: unknown
}

/** What reloads a process's keys and tenants, starting after every change stored so far. */
export interface RegistryCache {
  refresh(): Promise<void>
}

/**
 * In an API process: `announce` after a change (resolves once the others reloaded, or after
 * `timeoutMs`); the engine process's requests to reload are answered from `cache`.
 */
export function createRegistrySync(channel: ProcessChannel, cache: RegistryCache, opts: { timeoutMs?: number; onError?: (err: unknown) => void } = {}) {
  const timeoutMs = opts.timeoutMs ?? 3000
  let seq = 0
  const waiting = new Map<number, () => void>()
  const send = (m: object) => {
    try {
      channel.send(m)
      return true
    } catch {
      // The engine process is gone: this process is stopping, and the TTL covers the rest.
      return false
    }
  }
  const stop = channel.onMessage((raw) => {
    const m = raw as Message | undefined
    if (typeof m?.id !== 'number') return
    if (m.type === DONE) {
      waiting.get(m.id)?.()
      waiting.delete(m.id)
    } else if (m.type === RELOAD) {
      const id = m.id
      cache.refresh().then(
        () => send({ type: RELOADED, id }),
        (err: unknown) => {
          // Not reloaded: said all the same, so the change is not held up; the TTL reloads later.
          opts.onError?.(err)
          send({ type: RELOADED, id })
        },
      )
    }
  })
  return {
    announce(): Promise<void> {
      const id = ++seq
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(id)
          resolve()
        }, timeoutMs)
        waiting.set(id, () => {
          clearTimeout(timer)
          resolve()
        })
        if (!send({ type: CHANGED, id })) {
          waiting.delete(id)
          clearTimeout(timer)
          resolve()
        }
      })
    },
    stop,
  }
}

/**
 * In the engine process: relays an API process's change to every other one and answers it once
 * they reloaded. `handle` returns false for a message that is not about the registry.
 */
export function serveRegistrySync(o: {
  cache: RegistryCache
  /** The API processes connected now, by id, each with its send. */
  workers(): { id: number; send(m: object): void }[]
  timeoutMs?: number
  onError?: (err: unknown) => void
}) {
  const timeoutMs = o.timeoutMs ?? 2000
  let seq = 0
  const relays = new Map<number, { pending: Set<number>; done(): void }>()
  return {
    handle(worker: number, raw: unknown, send: (m: object) => void): boolean {
      const m = raw as Message | undefined
      if (m?.type === RELOADED && typeof m.id === 'number') {
        const r = relays.get(m.id)
        if (r?.pending.delete(worker) && !r.pending.size) r.done()
        return true
      }
      if (m?.type !== CHANGED || typeof m.id !== 'number') return false
      const id = m.id
      void (async () => {
        await o.cache.refresh().catch((err: unknown) => o.onError?.(err))
        const rid = ++seq
        const others = o.workers().filter((w) => w.id !== worker)
        await new Promise<void>((resolve) => {
          const pending = new Set<number>()
          const done = () => {
            clearTimeout(timer)
            relays.delete(rid)
            resolve()
          }
          const timer = setTimeout(done, timeoutMs)
          relays.set(rid, { pending, done })
          for (const w of others) {
            try {
              w.send({ type: RELOAD, id: rid })
              pending.add(w.id)
            } catch {
              /* gone: nothing to reload */
            }
          }
          if (!pending.size) done()
        })
        try {
          send({ type: DONE, id })
        } catch {
          /* the process that asked is gone */
        }
      })()
      return true
    },
  }
}
