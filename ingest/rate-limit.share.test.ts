import { afterEach, describe, expect, it } from 'vitest'
import type { ProcessChannel } from '../core/cluster-locks.js'
import { isRelayed } from '../core/cluster-broadcast.js'
import { createMetrics } from '../core/metrics.js'
import { createIngestLimits, createTokenBuckets } from './rate-limit.js'
import { shareIngestLimits } from './rate-limit.share.js'

const rate = { requestsPerS: 1, requestsBurst: 10, eventsPerS: 1, eventsBurst: 100 }

/** Two API processes' limits, linked through an engine process that relays as server/cluster.ts does. */
function twoProcesses() {
  const inbox = [new Set<(m: unknown) => void>(), new Set<(m: unknown) => void>()]
  const channel = (me: number): ProcessChannel => ({
    send(m) {
      expect(isRelayed(m)).toBe(true)
      const wire = JSON.parse(JSON.stringify(m)) as unknown
      setImmediate(() => inbox[1 - me]!.forEach((l) => l(wire)))
    },
    onMessage(l) {
      inbox[me]!.add(l)
      return () => inbox[me]!.delete(l)
    },
  })
  const limits = [0, 1].map(() => createIngestLimits(rate, createMetrics({ collectDefault: false })))
  const stops = limits.map((l, i) => shareIngestLimits(l, channel(i), 10))
  return { limits, stop: () => stops.forEach((s) => s()) }
}

const granted = (f: () => void) => {
  try {
    f()
    return true
  } catch {
    return false
  }
}
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms))

let stop: (() => void) | undefined
afterEach(() => stop?.())

describe('a tenant’s ingest rate over two API processes', () => {
  it('holds for the whole host once the processes have told each other what they granted', async () => {
    const p = twoProcesses()
    stop = p.stop
    // Six requests on each process: within each one's burst of 10, 12 together.
    for (let i = 0; i < 6; i++) for (const l of p.limits) expect(granted(() => l.request(7))).toBe(true)
    await wait(50)
    // The host granted 12 of its 10: both processes are in debt now.
    for (const l of p.limits) expect(granted(() => l.request(7))).toBe(false)
    // Another tenant's bucket is its own.
    for (const l of p.limits) expect(granted(() => l.request(8))).toBe(true)
  })

  it('counts events the same way, and what one process refused is not taken from the other', async () => {
    const p = twoProcesses()
    stop = p.stop
    expect(granted(() => p.limits[0]!.events(7, 80))).toBe(true)
    await wait(50)
    expect(granted(() => p.limits[1]!.events(7, 30))).toBe(true)
    await wait(50)
    expect(granted(() => p.limits[0]!.events(7, 1))).toBe(false)
    expect(granted(() => p.limits[1]!.eventsDue(7))).toBe(false)
  })

  it('without the sharing, each process grants the whole burst', () => {
    const limits = [0, 1].map(() => createIngestLimits(rate, createMetrics({ collectDefault: false })))
    let n = 0
    for (let i = 0; i < 10; i++) for (const l of limits) n += granted(() => l.request(7)) ? 1 : 0
    expect(n).toBe(20)
  })
})

describe('token buckets', () => {
  it('report what they granted once, and take what another process granted whatever they hold', () => {
    let t = 0
    const b = createTokenBuckets({ perSecond: 1, burst: 5 }, () => t)
    expect(b.take(1, 3)).toBe(0)
    expect(b.take(2, 1)).toBe(0)
    expect(b.drain()).toEqual([[1, 3], [2, 1]])
    expect(b.drain()).toEqual([])
    b.debit(1, 4)
    // 5 - 3 - 4 = -2 tokens: 2 s until out of debt.
    expect(b.debt(1)).toBe(2000)
    expect(b.take(1, 1)).toBe(2000)
    expect(b.drain()).toEqual([])
    t = 2000
    expect(b.take(1, 1)).toBe(0)
  })
})
