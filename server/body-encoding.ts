import { PassThrough, type Readable } from 'node:stream'
import zlib from 'node:zlib'
import { AppError } from '../core/errors.js'

/**
 * The request body as its reader sees it: decoded when it is labelled gzip or deflate (SDKs
 * compress their batches), untouched otherwise; other encodings are refused (415).
 *
 * A body labelled gzip that is not gzip is the client's error (400), not ours: the zlib error is
 * replaced by a coded one on the stream every reader consumes (the JSON parser, an import
 * spooling the body to a file). The reader may attach late (an import first creates its
 * temporary directory), so the error must wait on the stream: with no 'error' listener at the
 * moment it is destroyed, Node throws it as an uncaught exception and the process stops. The
 * listener below only keeps it there; `pipeline` and async iteration still see the stream
 * errored and reject with it.
 */
export function decodeBody(payload: Readable, contentEncoding: string | string[] | undefined): Readable {
  const enc = String(contentEncoding ?? 'identity').toLowerCase()
  if (enc === 'identity') return payload
  if (enc !== 'gzip' && enc !== 'deflate') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding ${enc} is not supported (use gzip).`)
  }
  const inflate = enc === 'gzip' ? zlib.createGunzip() : zlib.createInflate()
  const out = new PassThrough()
  out.on('error', () => {})
  inflate.on('error', (e) => out.destroy(new AppError('INVALID_ENCODING', `The body is labelled Content-Encoding: ${enc} but is not ${enc} data (${e.message}).`)))
  payload.on('error', (e) => out.destroy(e))
  return payload.pipe(inflate).pipe(out)
}
