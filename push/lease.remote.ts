import type { ProcessChannel } from '../core/cluster-locks.js'
import { AppError, ERROR_CATALOGUE, type ErrorCode, type ErrorIssue } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { ConsentNoticeLike } from './consent.index.js'
import type { AckItem, AckResult, LeaseManager, PulledTarget } from './lease.manager.js'

/**
 * Leases when the API runs on several processes (server/cluster.ts): one lease manager, in the
 * engine process, hands out every target, and each API process forwards its pulls,
 * acknowledgements and notices to it over the cluster's channel.
 *
 * Why one: a lease manager makes "read the due targets, write their leases" atomic in its own
 * process (lease.manager.ts). Two would each hold a queue read before the other's leases were
 * written and hand out the same targets again for as long as their queues lived: 200 hand-outs
 * of 120 targets in server/cluster.pulls.test.ts, a customer reminded twice. The engine process
 * is the one process that lives as long as the API; an API process is replaced when it dies.
 *
 * A notice (new targets, an erasure, a consent decision) is sent without waiting: the engine
 * process applies it before any pull sent after it, as a channel delivers in order.
 */

const CALL = 'qianmian:leases:call'
const REPLY = 'qianmian:leases:reply'
const NOTICE = 'qianmian:leases:notice'

type Call =
  | { type: typeof CALL; id: number; op: 'pull'; tenantId: number; args: { limit: number; leaseSeconds: number } }
  | { type: typeof CALL; id: number; op: 'ack'; tenantId: number; args: readonly AckItem[] }
type Notice =
  | { type: typeof NOTICE; op: 'invalidate'; tenantId: number }
  | { type: typeof NOTICE; op: 'forget'; tenantId: number; keys: number[] }
  | { type: typeof NOTICE; op: 'consent'; tenantId: number; notices: ConsentNoticeLike[] }
interface WireError {
  code: ErrorCode
  message: string
  issues?: readonly ErrorIssue[] | undefined
  headers?: Readonly<Record<string, string>> | undefined
}
type Reply = { type: typeof REPLY; id: number; value?: unknown; error?: WireError }
export type LeaseMessage = Call | Notice | Reply

/** An API process's leases: the engine process's, reached over the channel. */
export interface RemoteLeases extends LeaseManager {
  /** Consent decisions recorded in this process, for the pulls' withdrawal check there. */
  consentChanged(tenantId: number, notices: readonly ConsentNoticeLike[]): void
}

export function createRemoteLeases(channel: ProcessChannel, opts: { timeoutMs?: number } = {}): RemoteLeases {
  // A pull may wait for a refill of a large queue; past this the caller gets a 503 to retry.
  const timeoutMs = opts.timeoutMs ?? 60_000
  let seq = 0
  let closed = false
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>()
  const stop = channel.onMessage((m) => {
    const r = m as Partial<Reply> | undefined
    if (r?.type !== REPLY || typeof r.id !== 'number') return
    const p = pending.get(r.id)
    if (!p) return
    pending.delete(r.id)
    clearTimeout(p.timer)
    if (r.error) p.reject(fromWire(r.error))
    else p.resolve(r.value)
  })

  const inflight = new Set<Promise<unknown>>()
  function call<T>(op: Call['op'], tenantId: number, args: Call['args']): Promise<T> {
    if (closed) return Promise.reject(new AppError('SHUTTING_DOWN'))
    const id = ++seq
    const p = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new AppError('STORAGE_UNAVAILABLE', 'The engine process did not answer the lease request in time; retry.', { headers: { 'retry-after': '1' } }))
      }, timeoutMs)
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      try {
        channel.send({ type: CALL, id, op, tenantId, args } as Call)
      } catch (err) {
        // The channel is gone (the engine process stopped): this process is stopping too.
        pending.delete(id)
        clearTimeout(timer)
        reject(new AppError('SHUTTING_DOWN', undefined, { cause: err }))
      }
    })
    const settled = p.then(() => undefined, () => undefined)
    inflight.add(settled)
    void settled.then(() => inflight.delete(settled))
    return p
  }

  const notify = (n: Notice) => {
    // A notice lost with the channel changes nothing the engine process's refresh does not.
    try {
      channel.send(n)
    } catch {
      /* the channel is closed: this process is stopping */
    }
  }

  return {
    pull: (tenantId, o) => call<PulledTarget[]>('pull', tenantId, { limit: o.limit, leaseSeconds: o.leaseSeconds }),
    ack: (tenantId, items) => call<AckResult>('ack', tenantId, items.map((i) => ({ targetId: i.targetId, status: i.status, ...(i.reason === undefined ? {} : { reason: i.reason }), ...(i.retry === undefined ? {} : { retry: i.retry }) }))),
    invalidate: (tenantId) => notify({ type: NOTICE, op: 'invalidate', tenantId }),
    forgetCustomers: (tenantId, keys) => notify({ type: NOTICE, op: 'forget', tenantId, keys: [...keys] }),
    consentChanged: (tenantId, notices) =>
      notify({ type: NOTICE, op: 'consent', tenantId, notices: notices.map((n) => ({ customerKey: n.customerKey, purpose: n.purpose, channel: n.channel, granted: n.granted })) }),
    async close() {
      closed = true
      // Calls in flight get their answers (the engine process stops after the API processes).
      await Promise.all(inflight)
      stop()
    },
  }
}

/**
 * In the engine process: answers an API process's lease message with the one lease manager.
 * Returns false for a message that is not one (the channel carries others, such as metrics).
 */
export function answerLeaseMessage(
  target: { leases: LeaseManager; consentChanged(tenantId: number, notices: readonly ConsentNoticeLike[]): void },
  message: unknown,
  reply: (m: LeaseMessage) => void,
  log: Logger,
): boolean {
  const m = message as Partial<Call | Notice> | undefined
  if (m?.type === NOTICE) {
    const n = m as Notice
    if (n.op === 'invalidate') target.leases.invalidate(n.tenantId)
    else if (n.op === 'forget') target.leases.forgetCustomers(n.tenantId, new Set(n.keys))
    else if (n.op === 'consent') target.consentChanged(n.tenantId, n.notices)
    return true
  }
  if (m?.type !== CALL) return false
  const c = m as Call
  const run = (): Promise<unknown> => (c.op === 'pull' ? target.leases.pull(c.tenantId, c.args) : target.leases.ack(c.tenantId, c.args))
  // pull() validates its arguments synchronously: a throw becomes a reply like a rejection.
  Promise.resolve()
    .then(run)
    .then(
      (value) => reply({ type: REPLY, id: c.id, value }),
      (err: unknown) => {
        if (!(err instanceof AppError)) log.error({ err, op: c.op, tenant: c.tenantId }, 'a lease request from an API process failed')
        reply({ type: REPLY, id: c.id, error: toWire(err) })
      },
    )
  return true
}

function toWire(err: unknown): WireError {
  if (err instanceof AppError) return { code: err.code, message: err.message, ...(err.issues ? { issues: err.issues } : {}), ...(err.headers ? { headers: err.headers } : {}) }
  return { code: 'INTERNAL', message: ERROR_CATALOGUE.INTERNAL.message }
}

function fromWire(e: WireError): AppError {
  const code = e.code in ERROR_CATALOGUE ? e.code : 'INTERNAL'
  return new AppError(code, e.message, { ...(e.issues ? { issues: [...e.issues] } : {}), ...(e.headers ? { headers: { ...e.headers } } : {}) })
}
