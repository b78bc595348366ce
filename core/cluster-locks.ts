import { AppError } from './errors.js'
import { createKeyedLock, type KeyedLock } from './keyed-lock.js'

/**
 * Locks that hold across the processes of one API (server/cluster.ts): where a service reads and
 * then writes (a new tenant's id is the highest held plus one; a key's record is read and written
 * whole; a customer's push budget is read before targets are written), one process made the pair
 * atomic with a keyed lock. Several API processes each held their own, and two banks created at
 * once on two processes got the same id (server/cluster.locks.test.ts).
 *
 * So the engine process holds every lock, by name and key. An API process asks it for a lock,
 * runs its task once granted, and gives the lock back; the engine process's own tasks take the
 * same locks directly. A lock held by an API process that dies is given back when it exits.
 */

/** A message channel between an API process and the engine process (Node's cluster IPC). */
export interface ProcessChannel {
  send(message: unknown): void
  /** Listens to every message that arrives; returns a function that stops listening. */
  onMessage(listener: (message: unknown) => void): () => void
}

/** The locks of a process, by name: the same name gives the same lock. */
export interface Locks {
  lock(name: string): KeyedLock
}

export function createLocalLocks(): Locks {
  const byName = new Map<string, KeyedLock>()
  return {
    lock(name) {
      let l = byName.get(name)
      if (!l) byName.set(name, (l = createKeyedLock()))
      return l
    },
  }
}

const ACQUIRE = 'qianmian:lock:acquire'
const GRANTED = 'qianmian:lock:granted'
const RELEASE = 'qianmian:lock:release'

interface Acquire {
  type: typeof ACQUIRE
  id: number
  name: string
  key: string | number
}

/** In an API process: locks held by the engine process, asked for over the channel. */
export function createRemoteLocks(channel: ProcessChannel): Locks {
  let seq = 0
  const waiting = new Map<number, () => void>()
  channel.onMessage((m) => {
    const g = m as { type?: unknown; id?: unknown } | undefined
    if (g?.type !== GRANTED || typeof g.id !== 'number') return
    const w = waiting.get(g.id)
    waiting.delete(g.id)
    w?.()
  })
  const byName = new Map<string, KeyedLock>()
  const make = (name: string): KeyedLock => {
    const running = new Set<Promise<unknown>>()
    return {
      run<T>(key: string | number, task: () => Promise<T>): Promise<T> {
        const id = ++seq
        const p = (async () => {
          await new Promise<void>((granted, refused) => {
            waiting.set(id, granted)
            try {
              channel.send({ type: ACQUIRE, id, name, key } satisfies Acquire)
            } catch (err) {
              // The channel is gone: the engine process stopped, and this process is stopping.
              waiting.delete(id)
              refused(new AppError('SHUTTING_DOWN', undefined, { cause: err }))
            }
          })
          try {
            return await task()
          } finally {
            try {
              channel.send({ type: RELEASE, id })
            } catch {
              /* the engine process is gone, and its locks with it */
            }
          }
        })()
        const settled = p.then(() => undefined, () => undefined)
        running.add(settled)
        void settled.then(() => running.delete(settled))
        return p
      },
      async idle() {
        while (running.size) await Promise.all(running)
      },
    }
  }
  return {
    lock(name) {
      let l = byName.get(name)
      if (!l) byName.set(name, (l = make(name)))
      return l
    },
  }
}

/**
 * In the engine process: grants the API processes' lock requests from `locks` (the ones its own
 * services use). `handle` returns false for a message that is not about locks.
 */
export function serveLocks(locks: Locks) {
  const held = new Map<string, { worker: number; release(): void }>()
  const gone = new Set<number>()
  return {
    handle(worker: number, message: unknown, send: (m: unknown) => void): boolean {
      const m = message as { type?: unknown; id?: unknown; name?: unknown; key?: unknown } | undefined
      if (m?.type === RELEASE && typeof m.id === 'number') {
        const h = held.get(`${worker}:${m.id}`)
        held.delete(`${worker}:${m.id}`)
        h?.release()
        return true
      }
      if (m?.type !== ACQUIRE || typeof m.id !== 'number' || typeof m.name !== 'string' || (typeof m.key !== 'string' && typeof m.key !== 'number')) return false
      const id = m.id
      void locks.lock(m.name).run(m.key, () => new Promise<void>((release) => {
        // Granted after the process died: nobody will give it back.
        if (gone.has(worker)) return release()
        held.set(`${worker}:${id}`, { worker, release })
        try {
          send({ type: GRANTED, id })
        } catch {
          held.delete(`${worker}:${id}`)
          release()
        }
      }))
      return true
    },
    /** An API process exited: the locks it held are free, and what it still waits for is given back at once. */
    workerGone(worker: number): void {
      gone.add(worker)
      for (const [k, h] of held) {
        if (h.worker !== worker) continue
        held.delete(k)
        h.release()
      }
    },
  }
}
