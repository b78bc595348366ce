import { PassThrough } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import zlib from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { AppError } from '../core/errors.js'
import { decodeBody } from './body-encoding.js'

const sink = () => new PassThrough().resume()
const settle = () => new Promise((r) => setTimeout(r, 30))

describe('decodeBody', () => {
  it('passes identity bodies through untouched', () => {
    const body = new PassThrough()
    expect(decodeBody(body, undefined)).toBe(body)
    expect(decodeBody(body, 'identity')).toBe(body)
  })

  it('refuses encodings other than gzip and deflate with 415', () => {
    expect(() => decodeBody(new PassThrough(), 'br')).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_MEDIA_TYPE' }))
  })

  it('inflates gzip and deflate', async () => {
    for (const [enc, bytes] of [['gzip', zlib.gzipSync('hello')], ['deflate', zlib.deflateSync('hello')], ['GZIP', zlib.gzipSync('hello')]] as const) {
      const body = new PassThrough()
      const out = decodeBody(body, enc)
      body.end(bytes)
      const chunks: Buffer[] = []
      for await (const c of out) chunks.push(c as Buffer)
      expect(Buffer.concat(chunks).toString()).toBe('hello')
    }
  })

  // An import route awaits a temporary directory before it reads the body: a body that fails to
  // inflate in that gap used to emit 'error' with no listener, an uncaught exception that stops
  // the process. The error must wait on the stream for whoever reads it.
  it('keeps an inflate error for a reader that comes later, without an uncaught error', async () => {
    for (const [enc, bytes] of [
      ['gzip', Buffer.from('plain text, not gzip')],
      ['gzip', Buffer.concat([zlib.gzipSync('x'.repeat(1000)).subarray(0, 20), Buffer.from('junk')])],
      ['deflate', Buffer.from('plain text')],
    ] as const) {
      const body = new PassThrough()
      const out = decodeBody(body, enc)
      body.end(bytes)
      await settle() // nobody reads yet: the inflate fails meanwhile
      const err = await pipeline(out, sink()).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(AppError)
      expect(err).toMatchObject({ code: 'INVALID_ENCODING' })
      expect((err as Error).message).toContain(`Content-Encoding: ${enc}`)
    }
  })

  it('hands a failure of the request stream itself to the reader', async () => {
    const body = new PassThrough()
    const out = decodeBody(body, 'gzip')
    body.destroy(new Error('aborted'))
    await settle()
    await expect(pipeline(out, sink())).rejects.toThrow('aborted')
  })
})
