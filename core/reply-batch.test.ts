import Fastify, { type FastifyReply } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { createReplyBatch } from './reply-batch.js'

function fakeReply(log: string[], name: string, fail = false): FastifyReply {
  const reply = {
    type: () => reply,
    send: (body: Buffer) => {
      if (fail) throw new Error(`${name} failed`)
      log.push(`${name}:${body.toString()}`)
      return reply
    },
  }
  return reply as unknown as FastifyReply
}

describe('reply batch', () => {
  it('sends the replies of one turn after it, together and in order; a later turn gets its own batch', async () => {
    const log: string[] = []
    const batch = createReplyBatch((err) => log.push(`error:${String(err)}`))
    batch.send(fakeReply(log, 'a'), Buffer.from('1'))
    batch.send(fakeReply(log, 'b'), Buffer.from('2'))
    await Promise.resolve()
    expect(log).toEqual([])
    await new Promise((res) => setImmediate(res))
    expect(log).toEqual(['a:1', 'b:2'])
    batch.send(fakeReply(log, 'c'), Buffer.from('3'))
    await new Promise((res) => setImmediate(res))
    expect(log).toEqual(['a:1', 'b:2', 'c:3'])
  })

  it('a reply that throws is reported and the rest of its turn is still sent', async () => {
    const log: string[] = []
    const batch = createReplyBatch((err) => log.push(`error:${(err as Error).message}`))
    batch.send(fakeReply(log, 'a'), Buffer.from('1'))
    batch.send(fakeReply(log, 'b', true), Buffer.from('2'))
    batch.send(fakeReply(log, 'c'), Buffer.from('3'))
    await new Promise((res) => setImmediate(res))
    expect(log).toEqual(['a:1', 'error:b failed', 'c:3'])
  })

  describe('behind a fastify route', () => {
    const app = Fastify({ logger: false })
    afterEach(async () => app.close())

    it('answers concurrent requests over the network, each with its own body and its hooks run', async () => {
      const batch = createReplyBatch((err) => {
        throw err
      })
      const finished: string[] = []
      app.addHook('onResponse', (req, reply, done) => {
        finished.push(`${reply.statusCode} ${req.url}`)
        done()
      })
      app.get<{ Params: { n: string } }>('/n/:n', (req, reply) => {
        batch.send(reply, Buffer.from(JSON.stringify({ n: Number(req.params.n) })))
        return undefined
      })
      const url = await app.listen({ host: '127.0.0.1', port: 0 })
      const answers = await Promise.all(
        Array.from({ length: 40 }, async (_, n) => {
          const r = await fetch(`${url}/n/${n}`)
          return { status: r.status, type: r.headers.get('content-type'), body: (await r.json()) as unknown }
        }),
      )
      answers.forEach((a, n) => expect(a).toEqual({ status: 200, type: 'application/json; charset=utf-8', body: { n } }))
      expect(finished.sort()).toEqual(Array.from({ length: 40 }, (_, n) => `200 /n/${n}`).sort())
    })
  })
})
