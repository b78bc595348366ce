import type { Kafka } from 'kafkajs'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../core/log.js'
import { createMetrics } from '../core/metrics.js'
import { createKafkaSink, type KafkaConfig } from './kafka.ingest.js'
import { createSerialSender, SendTimeoutError } from './serial-send.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A send that takes `ms[i]` for its i-th call (or fails when the entry is an Error) and records overlap. */
function fakeSend(plan: (number | Error)[]) {
  const calls: string[][] = []
  let inFlight = 0
  let maxInFlight = 0
  let settled = 0
  const send = async (messages: string[]) => {
    const step = plan[calls.length] ?? 0
    calls.push(messages)
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    try {
      if (step instanceof Error) {
        await sleep(5)
        throw step
      }
      await sleep(step)
    } finally {
      inFlight--
      settled++
    }
  }
  return { send, calls, get maxInFlight() { return maxInFlight }, get settled() { return settled } }
}

describe('serial sender', () => {
  it('never starts a send while one is in flight, even one whose caller timed out', async () => {
    const f = fakeSend([300, 20, 20])
    const s = createSerialSender(f.send, 100)
    const a = s.submit(['a']).then(() => 'ok', (e: unknown) => e)
    await sleep(150)
    const b = s.submit(['b']).then(() => 'ok', (e: unknown) => e)
    expect(await a).toBeInstanceOf(SendTimeoutError)
    // b's deadline (100 ms) passes while a's send is still in flight: b is rejected and never sent.
    expect(await b).toBeInstanceOf(SendTimeoutError)
    await s.idle()
    expect(f.maxInFlight).toBe(1)
    expect(f.calls).toEqual([['a']])
    // Once a's send settled, new requests go out again.
    await expect(s.submit(['c'])).resolves.toBeUndefined()
    expect(f.calls).toEqual([['a'], ['c']])
  })

  it('sends what arrived during a send together in the next one, and answers each request', async () => {
    const f = fakeSend([50, 10])
    const s = createSerialSender(f.send, 1000)
    const first = s.submit(['1'])
    await sleep(10)
    const rest = [s.submit(['2', '3']), s.submit(['4'])]
    await Promise.all([first, ...rest])
    expect(f.calls).toEqual([['1'], ['2', '3', '4']])
    expect(f.maxInFlight).toBe(1)
  })

  it('a failed send rejects every request it carried and the next send still goes out', async () => {
    const boom = new Error('broker gone')
    const f = fakeSend([boom, 5])
    const s = createSerialSender(f.send, 1000)
    await expect(s.submit(['x'])).rejects.toBe(boom)
    await expect(s.submit(['y'])).resolves.toBeUndefined()
    expect(f.calls).toEqual([['x'], ['y']])
  })
})

describe('serial sender size cap', () => {
  /** Messages are strings: their size is their length, their partition their first character. */
  const limits = (maxBytes: number, tooLarge?: (e: unknown) => boolean) => ({ maxBytes, sizeOf: (m: string) => m.length, partitionOf: (m: string) => m.charCodeAt(0), ...(tooLarge ? { tooLarge } : {}) })

  it('groups what waits into sends under the cap for each partition; a request over the cap goes out in parts', async () => {
    const f = fakeSend([50])
    const s = createSerialSender(f.send, 1000, limits(10))
    const first = s.submit(['x'])
    await sleep(10)
    const rest = [
      s.submit(['a1234', 'a5678']), // partition a: 10
      s.submit(['b123456789']), // partition b: 10, fits beside a
      s.submit(['a9']), // a would hold 12: the next send
      s.submit(['a12345678', 'a12345678', 'a1234567890123']), // 18 + 14 for a: one part per send, the last alone over the cap
      s.submit(['c1']),
    ]
    await Promise.all([first, ...rest])
    // Another partition's message may share a send with a message over the cap: the cap is per partition.
    expect(f.calls).toEqual([['x'], ['a1234', 'a5678', 'b123456789'], ['a9'], ['a12345678'], ['a12345678'], ['a1234567890123', 'c1']])
    expect(f.maxInFlight).toBe(1)
  })

  it('when the broker refuses a shared send as too large, sends each request again on its own: only the one at fault fails', async () => {
    const tooBig = Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE' })
    const calls: string[][] = []
    const send = async (messages: string[]) => {
      calls.push(messages)
      await sleep(messages.includes('x') ? 30 : 1)
      if (messages.join('').length > 20) throw tooBig
    }
    const s = createSerialSender(send, 1000, limits(100, (e) => (e as { type?: string }).type === 'MESSAGE_TOO_LARGE'))
    const first = s.submit(['x'])
    await sleep(5)
    const status = (p: Promise<void>) => p.then(() => 'ok', (e: unknown) => e)
    const [a, b, c] = await Promise.all([status(s.submit(['a1234'])), status(s.submit(['b'.repeat(25)])), status(s.submit(['c1234']))])
    await first
    expect([a, b, c]).toEqual(['ok', tooBig, 'ok'])
    expect(calls).toEqual([['x'], ['a1234', 'b'.repeat(25), 'c1234'], ['a1234'], ['b'.repeat(25)], ['c1234']])
  })
})

describe('Kafka edge sink', () => {
  it('after a send outlasted its deadline (answered 503), the next request waits for it to settle instead of sending alongside it', async () => {
    // An idempotent kafkajs producer with two sends in flight can have the broker drop the second
    // and acknowledge it anyway: the edge would answer 200 for events that are not in the log.
    const f = fakeSend([400, 10, 10])
    const producer = { connect: async () => undefined, disconnect: async () => undefined, send: async (r: { messages: { key: string }[] }) => f.send(r.messages.map((m) => m.key)) }
    const kafka = { producer: () => producer } as unknown as Kafka
    const cfg = { topic: 't', sendTimeoutMs: 150 } as KafkaConfig
    const sink = await createKafkaSink({ kafka, cfg, log: createLogger({ level: 'silent' }), metrics: createMetrics({ collectDefault: false }) })
    const event = (id: string) => ({ messageId: id, userId: id, type: 'track', event: 'e', timestamp: 0, receivedAt: 0, properties: {}, context: {} }) as never
    const first = sink.submit(1, [event('a')], 'k').then(() => 200, (e: { status?: number }) => e.status)
    await sleep(200)
    expect(await first).toBe(503)
    // The first send is still in flight until 400 ms; the second request's deadline (350 ms)
    // passes while it waits, so it is answered 503 and its events are never sent.
    const second = sink.submit(1, [event('b')], 'k').then(() => 200, (e: { status?: number }) => e.status)
    expect(await second).toBe(503)
    expect(f.maxInFlight).toBe(1)
    expect(f.calls).toEqual([['1:a']])
    // Once the first send settled, requests are acknowledged again.
    expect(await sink.submit(1, [event('c')], 'k').then(() => 200, (e: { status?: number }) => e.status)).toBe(200)
    await sink.close()
    expect(f.calls).toEqual([['1:a'], ['1:c']])
  })
})

describe('Kafka edge sink after a failed send', () => {
  it('sends the next request from a new producer (a new producer id), so the broker cannot take it for a retry of the failed one', async () => {
    // kafkajs gives a failed batch's sequence numbers back; if the broker had appended that batch,
    // the next one under the same producer id and sequence is answered success and not appended.
    const made: { id: number; sent: string[][]; disconnected: boolean }[] = []
    const fail = new Error('connection closed before the broker answered')
    const kafka = {
      producer: () => {
        const p = { id: made.length, sent: [] as string[][], disconnected: false }
        made.push(p)
        return {
          connect: async () => undefined,
          disconnect: async () => {
            p.disconnected = true
          },
          send: async (r: { messages: { key: string }[] }) => {
            p.sent.push(r.messages.map((m) => m.key))
            if (p.id === 0 && p.sent.length === 2) throw fail
            return []
          },
        }
      },
    } as unknown as Kafka
    const cfg = { topic: 't', sendTimeoutMs: 1000 } as KafkaConfig
    const sink = await createKafkaSink({ kafka, cfg, log: createLogger({ level: 'silent' }), metrics: createMetrics({ collectDefault: false }) })
    const event = (id: string) => ({ messageId: id, userId: id, type: 'track', event: 'e', timestamp: 0, receivedAt: 0, properties: {}, context: {} }) as never
    const status = (id: string) => sink.submit(1, [event(id)], 'k').then(() => 200, (e: { status?: number }) => e.status)
    expect(await status('a')).toBe(200)
    expect(await status('b')).toBe(503)
    expect(await status('c')).toBe(200)
    expect(await status('d')).toBe(200)
    await sink.close()
    expect(made.map((p) => p.sent)).toEqual([[['1:a'], ['1:b']], [['1:c'], ['1:d']]])
    expect(made[0]!.disconnected).toBe(true)
    expect(made[1]!.disconnected).toBe(true)
  })
})

describe('Kafka edge sink and the broker\'s message size', () => {
  const event = (id: string, note = '') => ({ messageId: id, userId: id, type: 'track', event: 'e', timestamp: 0, receivedAt: 0, properties: JSON.stringify({ note }), context: '{}' }) as never
  const fakeKafka = (send: (keys: string[]) => Promise<void>) => {
    const producer = { connect: async () => undefined, disconnect: async () => undefined, send: async (r: { messages: { key: string }[] }) => send(r.messages.map((m) => m.key)) }
    return { producer: () => producer } as unknown as Kafka
  }

  it('answers 413 for a request holding an event larger than one message may be, without sending it; the others go', async () => {
    const sent: string[][] = []
    const cfg = { topic: 't', sendTimeoutMs: 1000, maxMessageBytes: 4096 } as KafkaConfig
    const sink = await createKafkaSink({ kafka: fakeKafka(async (k) => void sent.push(k)), cfg, log: createLogger({ level: 'silent' }), metrics: createMetrics({ collectDefault: false }) })
    const status = (p: Promise<unknown>) => p.then(() => 200, (e: { status?: number; code?: string }) => `${e.status} ${e.code}`)
    expect(await status(sink.submit(1, [event('a'), event('b', 'x'.repeat(5000))], 'k'))).toBe('413 PAYLOAD_TOO_LARGE')
    expect(await status(sink.submit(1, [event('c')], 'k'))).toBe(200)
    await sink.close()
    expect(sent).toEqual([['1:c']])
  })

  it('answers 413, not 503 (retry), when the broker refuses a request on its own as too large', async () => {
    const refusal = Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE', code: 10 })
    const cfg = { topic: 't', sendTimeoutMs: 1000 } as KafkaConfig
    const sink = await createKafkaSink({
      kafka: fakeKafka(async (k) => {
        if (k.includes('1:big')) throw refusal
      }),
      cfg,
      log: createLogger({ level: 'silent' }),
      metrics: createMetrics({ collectDefault: false }),
    })
    const status = (p: Promise<unknown>) => p.then(() => 200, (e: { status?: number; code?: string }) => `${e.status} ${e.code}`)
    expect(await status(sink.submit(1, [event('big')], 'k'))).toBe('413 PAYLOAD_TOO_LARGE')
    expect(await status(sink.submit(1, [event('small')], 'k'))).toBe(200)
    await sink.close()
  })
})
