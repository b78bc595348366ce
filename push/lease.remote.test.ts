import { describe, expect, it, vi } from 'vitest'
import { AppError } from '../core/errors.js'
import { createLogger } from '../core/log.js'
import type { ConsentNoticeLike } from './consent.index.js'
import type { AckItem, LeaseManager, PulledTarget } from './lease.manager.js'
import type { ProcessChannel } from '../core/cluster-locks.js'
import { answerLeaseMessage, createRemoteLeases, type LeaseMessage } from './lease.remote.js'

const log = createLogger({ level: 'silent' })

/**
 * An API process's channel and the engine process's side of it, delivering in order on later
 * turns (as the cluster's channel does). `open` false: the channel is gone.
 */
function link(engine: { leases: LeaseManager; consentChanged(t: number, n: readonly ConsentNoticeLike[]): void }) {
  const listeners = new Set<(m: unknown) => void>()
  const state = { open: true, answer: true }
  const channel: ProcessChannel = {
    send(m) {
      if (!state.open) throw new Error('closed')
      // Through JSON, as the channel serializes.
      const wire = JSON.parse(JSON.stringify(m)) as unknown
      setImmediate(() => {
        if (!state.answer) return
        const handled = answerLeaseMessage(engine, wire, (r: LeaseMessage) => setImmediate(() => listeners.forEach((l) => l(JSON.parse(JSON.stringify(r))))), log)
        expect(handled).toBe(true)
      })
    },
    onMessage(l) {
      listeners.add(l)
      return () => listeners.delete(l)
    },
  }
  return { channel, state, listeners }
}

const target = (id: string): PulledTarget => ({
  targetId: id, idempotencyKey: `k-${id}`, leaseId: 'L', leaseUntil: '2026-12-06T00:00:00.000Z', campaignId: 'c', campaignVersion: 1, customerNo: 'C1',
  channel: 'push', purpose: 'security', priority: 'high', language: 'zh', variant: 'standard', messageVariant: '', title: 't', body: 'b',
  dueAt: '2026-12-05T00:00:00.000Z', expiresAt: '2026-12-07T00:00:00.000Z', test: false,
})

function engineSide() {
  const calls: string[] = []
  const leases: LeaseManager = {
    pull: vi.fn(async (t: number, o: { limit: number; leaseSeconds: number }) => {
      calls.push(`pull ${t} ${o.limit} ${o.leaseSeconds}`)
      if (o.limit > 100) throw new AppError('VALIDATION_FAILED', 'limit too large', { issues: [{ field: 'limit', message: 'too large' }] })
      if (o.limit === 99) throw new AppError('STORAGE_UNAVAILABLE', 'The leases could not be written; retry.', { headers: { 'retry-after': '1' } })
      if (o.limit === 98) throw new Error('a bug with a customer number C1 in it')
      return [target('a'), target('b')].slice(0, o.limit)
    }),
    ack: vi.fn(async (t: number, items: readonly AckItem[]) => {
      calls.push(`ack ${t} ${JSON.stringify(items)}`)
      return { accepted: items.length, rejected: [] }
    }),
    invalidate: (t) => void calls.push(`invalidate ${t}`),
    forgetCustomers: (t, keys) => void calls.push(`forget ${t} ${[...keys].join(',')}`),
    close: async () => undefined,
  }
  return { calls, engine: { leases, consentChanged: (t: number, n: readonly ConsentNoticeLike[]) => void calls.push(`consent ${t} ${JSON.stringify(n)}`) } }
}

describe('leases reached over the cluster channel', () => {
  it('answers pulls and acknowledgements with the engine process’s lease manager', async () => {
    const { calls, engine } = engineSide()
    const remote = createRemoteLeases(link(engine).channel)
    expect(await remote.pull(3, { limit: 2, leaseSeconds: 60 })).toEqual([target('a'), target('b')])
    expect(await remote.ack(3, [{ targetId: 'a', status: 'failed', reason: 'unregistered', retry: true }, { targetId: 'b', status: 'delivered', reason: undefined }])).toEqual({ accepted: 2, rejected: [] })
    expect(calls).toEqual(['pull 3 2 60', `ack 3 ${JSON.stringify([{ targetId: 'a', status: 'failed', reason: 'unregistered', retry: true }, { targetId: 'b', status: 'delivered' }])}`])
  })

  it('gives back the coded error with its issues and headers, and no detail of an uncoded one', async () => {
    const { engine } = engineSide()
    const remote = createRemoteLeases(link(engine).channel)
    const bad = await remote.pull(3, { limit: 101, leaseSeconds: 60 }).catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(AppError)
    expect(bad).toMatchObject({ code: 'VALIDATION_FAILED', status: 400, message: 'limit too large', issues: [{ field: 'limit', message: 'too large' }] })
    expect(await remote.pull(3, { limit: 99, leaseSeconds: 60 }).catch((e: unknown) => e)).toMatchObject({ code: 'STORAGE_UNAVAILABLE', status: 503, headers: { 'retry-after': '1' } })
    const internal = await remote.pull(3, { limit: 98, leaseSeconds: 60 }).catch((e: unknown) => e)
    expect(internal).toMatchObject({ code: 'INTERNAL', status: 500 })
    expect((internal as Error).message).not.toContain('C1')
  })

  it('passes notices on in the order they were given, before a pull sent after them', async () => {
    const { calls, engine } = engineSide()
    const remote = createRemoteLeases(link(engine).channel)
    remote.invalidate(4)
    remote.forgetCustomers(4, new Set([7, 9]))
    remote.consentChanged(4, [{ customerKey: 7, purpose: 'marketing', channel: 'push', granted: false }])
    await remote.pull(4, { limit: 1, leaseSeconds: 30 })
    expect(calls).toEqual(['invalidate 4', 'forget 4 7,9', `consent 4 ${JSON.stringify([{ customerKey: 7, purpose: 'marketing', channel: 'push', granted: false }])}`, 'pull 4 1 30'])
  })

  it('fails a call the engine process does not answer in time with a 503 to retry, and one on a closed channel as shutting down', async () => {
    const { engine } = engineSide()
    const l = link(engine)
    const remote = createRemoteLeases(l.channel, { timeoutMs: 50 })
    l.state.answer = false
    expect(await remote.pull(1, { limit: 1, leaseSeconds: 1 }).catch((e: unknown) => e)).toMatchObject({ code: 'STORAGE_UNAVAILABLE', headers: { 'retry-after': '1' } })
    l.state.open = false
    expect(await remote.ack(1, []).catch((e: unknown) => e)).toMatchObject({ code: 'SHUTTING_DOWN' })
    // A notice on a closed channel is dropped: the engine process's own refresh covers it.
    expect(() => remote.invalidate(1)).not.toThrow()
  })

  it('closes once the calls in flight are answered, then refuses new ones and stops listening', async () => {
    const { engine } = engineSide()
    const l = link(engine)
    const remote = createRemoteLeases(l.channel)
    const inFlight = remote.pull(2, { limit: 2, leaseSeconds: 10 })
    let closed = false
    const closing = remote.close().then(() => (closed = true))
    await new Promise((r) => setImmediate(r))
    expect(closed).toBe(false)
    expect(await inFlight).toHaveLength(2)
    await closing
    expect(l.listeners.size).toBe(0)
    expect(await remote.pull(2, { limit: 1, leaseSeconds: 10 }).catch((e: unknown) => e)).toMatchObject({ code: 'SHUTTING_DOWN' })
  })

  it('leaves messages that are not about leases to their own listeners', () => {
    const { calls, engine } = engineSide()
    const reply = vi.fn()
    for (const m of [undefined, null, 'qianmian:stop', { type: 'qianmian:metrics:ask', id: 1 }]) expect(answerLeaseMessage(engine, m, reply, log)).toBe(false)
    expect(reply).not.toHaveBeenCalled()
    expect(calls).toEqual([])
  })
})
