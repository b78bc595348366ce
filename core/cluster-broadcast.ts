import type { ProcessChannel } from './cluster-locks.js'

/**
 * A change one API process made, applied by every other before the change is answered
 * (server/cluster.ts). Each process holds some state in memory for its requests (the keys and
 * tenants' status for authentication, the customers' personalization switch for layouts) and
 * used to see another process's change only at its next refresh: a key revoked through one API
 * process kept working on the other for up to 30 s, and a customer who turned personalization
 * off could be served a personalized layout by the other process for 2 s.
 *
 * So the process that made a change tells the engine process, which applies it itself, has every
 * other API process apply it, waits for each to say it has (or for its deadline), and answers;
 * the change's request is answered after that. A topic names what changed; its payload is plain
 * data. Changes made outside the API processes of this host (the CLI, another host) are still
 * seen at the next refresh.
 */

const CHANGED = 'qianmian:broadcast:changed'
const DONE = 'qianmian:broadcast:done'
const APPLY = 'qianmian:broadcast:apply'
const APPLIED = 'qianmian:broadcast:applied'

interface Message {
  type?: unknown
  id?: unknown
  topic?: unknown
  payload?: unknown
}

/** What a process does with a change of a topic made elsewhere. */
export type Appliers = Readonly<Record<string, (payload: unknown) => Promise<void> | void>>

/**
 * In an API process: `announce` a change (resolves once every other process applied it, or after
 * `timeoutMs`); changes announced by the others are applied with `appliers`.
 */
export function createBroadcast(channel: ProcessChannel, appliers: Appliers, opts: { timeoutMs?: number; onError?: (topic: string, err: unknown) => void } = {}) {
  const timeoutMs = opts.timeoutMs ?? 3000
  let seq = 0
  const waiting = new Map<number, () => void>()
  const send = (m: object) => {
    try {
      channel.send(m)
      return true
    } catch {
      // The engine process is gone: this process is stopping, and the refreshes cover the rest.
      return false
    }
  }
  const stop = channel.onMessage((raw) => {
    const m = raw as Message | undefined
    if (typeof m?.id !== 'number') return
    if (m.type === DONE) {
      waiting.get(m.id)?.()
      waiting.delete(m.id)
    } else if (m.type === APPLY && typeof m.topic === 'string') {
      const { id, topic } = m
      Promise.resolve()
        .then(() => appliers[topic]?.(m.payload))
        .then(
          () => send({ type: APPLIED, id }),
          (err: unknown) => {
            // Not applied: said all the same, so the change is not held up; the refresh follows.
            opts.onError?.(topic, err)
            send({ type: APPLIED, id })
          },
        )
    }
  })
  return {
    announce(topic: string, payload?: unknown): Promise<void> {
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
        if (!send({ type: CHANGED, id, topic, payload })) {
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
 * In the engine process: applies an API process's change with its own `appliers`, relays it to
 * every other API process and answers once they applied it. `handle` returns false for a message
 * that is not a broadcast.
 */
export function serveBroadcast(o: {
  appliers: Appliers
  /** The API processes connected now, by id, each with its send. */
  workers(): { id: number; send(m: object): void }[]
  timeoutMs?: number
  onError?: (topic: string, err: unknown) => void
}) {
  const timeoutMs = o.timeoutMs ?? 2000
  let seq = 0
  const relays = new Map<number, { pending: Set<number>; done(): void }>()
  return {
    handle(worker: number, raw: unknown, send: (m: object) => void): boolean {
      const m = raw as Message | undefined
      if (m?.type === APPLIED && typeof m.id === 'number') {
        const r = relays.get(m.id)
        if (r?.pending.delete(worker) && !r.pending.size) r.done()
        return true
      }
      if (m?.type !== CHANGED || typeof m.id !== 'number' || typeof m.topic !== 'string') return false
      const { id, topic, payload } = m
      void (async () => {
        try {
          await o.appliers[topic]?.(payload)
        } catch (err) {
          o.onError?.(topic, err)
        }
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
              w.send({ type: APPLY, id: rid, topic, payload })
              pending.add(w.id)
            } catch {
              /* gone: nothing to apply */
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

/**
 * Relayed messages: sent by one API process without waiting, passed by the engine process to
 * every other as they are. For what may lag by a moment (the rate each process granted).
 */
const RELAY = 'qianmian:relay'

export const relayMessage = (topic: string, payload: unknown): object => ({ type: RELAY, topic, payload })

/** The payload of a relayed message of `topic`, or undefined for any other message. */
export function relayedPayload(m: unknown, topic: string): unknown {
  const r = m as { type?: unknown; topic?: unknown; payload?: unknown } | undefined
  return r?.type === RELAY && r.topic === topic ? r.payload : undefined
}

/** In the engine process: whether a message is to be relayed to every other API process. */
export const isRelayed = (m: unknown): boolean => (m as { type?: unknown } | undefined)?.type === RELAY

/**
 * Every `intervalMs`, sends what `take` gives (nothing when it gives undefined) as a relayed
 * message of `topic`, and applies what the other processes relayed of it. Returns a stop.
 */
export function relayEvery(channel: ProcessChannel, topic: string, intervalMs: number, take: () => unknown, apply: (payload: unknown) => void): () => void {
  const timer = setInterval(() => {
    const payload = take()
    if (payload === undefined) return
    try {
      channel.send(relayMessage(topic, payload))
    } catch {
      /* the engine process is gone: this process is stopping */
    }
  }, intervalMs)
  timer.unref()
  const stop = channel.onMessage((m) => {
    const payload = relayedPayload(m, topic)
    if (payload !== undefined) apply(payload)
  })
  return () => {
    clearInterval(timer)
    stop()
  }
}
