import type { FastifyInstance, FastifySchemaCompiler } from 'fastify'
import type { FastifyRouteSchemaDef } from 'fastify/types/schema.js'
import { validatorCompiler } from 'fastify-type-provider-zod'
import type { z } from 'zod'
import { parseJsonBody } from './json-body.js'

/**
 * Event bodies as bytes, for the ingest worker threads (ingest.pool.ts): the HTTP thread neither
 * parses nor validates them. Only for a request whose key came in a header (known before the body
 * is read); a beacon's `writeKey` is inside the body, so that body is parsed here as before.
 */

const RAW = Symbol('raw event body')
export interface RawBody {
  readonly [RAW]: true
  readonly bytes: Buffer
}
export const isRawBody = (b: unknown): b is RawBody => typeof b === 'object' && b !== null && RAW in b

/** The media types the Segment routes read as JSON (server/app.ts: beacons send text/plain, RudderStack's Node SDK form-urlencoded). */
const JSON_TYPES = ['application/json', 'text/plain', 'application/x-www-form-urlencoded']

/** In an encapsulated scope holding only the Segment routes. */
export function keepRawBodies(scope: FastifyInstance): void {
  scope.removeContentTypeParser(JSON_TYPES)
  scope.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer' }, (req, body, done) => {
    if (req.principal) return done(null, { [RAW]: true, bytes: body as Buffer } satisfies RawBody)
    try {
      done(null, parseJsonBody(body as Buffer))
    } catch (e) {
      done(e as Error, undefined)
    }
  })
}

/** The routes' zod validation, passing bytes through (the worker validates them). */
export function rawAwareValidator<S>(route: FastifyRouteSchemaDef<S>): ReturnType<FastifySchemaCompiler<S>> {
  const inner = validatorCompiler(route as unknown as Parameters<typeof validatorCompiler>[0])
  return (data: unknown) => (isRawBody(data) ? { value: data } : inner(data))
}

/**
 * The body validated by the route's schema in this thread, failing with the error fastify's
 * validation raises (server/error-handler.ts turns it into the same 400): for a body the worker
 * found not to be of the route's shape, answered as if the route had validated it.
 */
export function validateAsRoute<T extends z.ZodType>(schema: T, data: unknown, url: string): z.output<T> {
  const r = validatorCompiler({ schema, method: 'POST', url, httpPart: 'body' })(data) as { value?: unknown; error?: { message: string }[] }
  if (r.error) throw Object.assign(new Error(`body ${r.error[0]?.message ?? 'invalid'}`), { validation: r.error, validationContext: 'body', statusCode: 400, code: 'FST_ERR_VALIDATION' })
  return r.value as z.output<T>
}
