import sjson from 'secure-json-parse'
import { AppError } from '../core/errors.js'

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * An event body's JSON, with the answers the server's own JSON parser gives (server/app.ts):
 * valid UTF-8 only (bad bytes would otherwise be stored as U+FFFD), not empty, no `__proto__` or
 * `constructor.prototype` keys. The ingest worker threads parse bodies here, off the HTTP thread,
 * and a refusal must read the same whichever thread parsed the body. A `\ud83d` escape without its
 * pair is valid JSON in valid UTF-8 and parses to half a character: normalize.ts repairs it in
 * text and refuses it in an id, event by event, so one such event does not refuse the batch.
 */
export function parseJsonBody(body: Uint8Array): unknown {
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    throw new AppError('INVALID_ENCODING', 'The body is not valid UTF-8.')
  }
  if (!text.trim()) throw new AppError('INVALID_JSON', 'The body is empty.')
  try {
    return sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
  } catch (e) {
    throw new AppError('INVALID_JSON', `The body is not valid JSON: ${(e as Error).message}`)
  }
}
