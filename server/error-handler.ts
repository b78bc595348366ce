import type { FastifyError, FastifyInstance } from 'fastify'
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod'
import { AppError, isAppError, type ErrorCode, type ErrorIssue } from '../core/errors.js'
import type { Metrics } from '../core/metrics.js'

/** Fastify's own error codes, mapped onto the catalogue so every answer has the same shape. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_BAD_URL: 'VALIDATION_FAILED',
  FST_ERR_VALIDATION: 'VALIDATION_FAILED',
  FST_ERR_NOT_FOUND: 'ROUTE_NOT_FOUND',
}

export function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err
  if (hasZodFastifySchemaValidationErrors(err)) {
    const part = (err as FastifyError).validationContext ?? 'body'
    const issues: ErrorIssue[] = err.validation.map((v) => {
      const p = v.instancePath.replace(/^\//, '').replaceAll('/', '.')
      return { field: p ? `${part}.${p}` : part, message: v.message ?? 'invalid', reason: v.keyword }
    })
    return new AppError('VALIDATION_FAILED', `The request ${part} is invalid.`, { issues })
  }
  if (isResponseSerializationError(err)) {
    return new AppError('INTERNAL', 'The response did not match its schema.', { cause: err })
  }
  const fe = err as Partial<FastifyError> & { type?: string }
  if (fe?.code && FASTIFY_CODES[fe.code]) {
    return new AppError(FASTIFY_CODES[fe.code]!, fe.message, { cause: err })
  }
  // Body parsing errors raised by Node's stream layer (gzip, charset) carry a status, not a code.
  if (fe?.statusCode === 400) return new AppError('VALIDATION_FAILED', fe.message ?? 'Bad request', { cause: err })
  if (fe?.statusCode === 413) return new AppError('PAYLOAD_TOO_LARGE', undefined, { cause: err })
  if (fe?.statusCode === 415) return new AppError('UNSUPPORTED_MEDIA_TYPE', fe.message, { cause: err })
  return new AppError('INTERNAL', undefined, { cause: err })
}

export function registerErrorHandling(app: FastifyInstance, metrics: Metrics): void {
  app.setErrorHandler((err, req, reply) => {
    const e = toAppError(err)
    metrics.errors.inc({ code: e.code })
    // Refusals are the client's business and can come by the thousand (a misconfigured app):
    // debug level, counted in metrics. Failures of ours are errors.
    if (e.status >= 500 && e.code !== 'OVERLOADED' && e.code !== 'NOT_READY' && e.code !== 'SHUTTING_DOWN') {
      req.log.error({ err, code: e.code }, 'request failed')
    } else {
      req.log.debug({ code: e.code, reason: e.message }, 'request refused')
    }
    if (e.headers) void reply.headers(e.headers)
    void reply.code(e.status).send(e.toJSON())
  })
  app.setNotFoundHandler((req, reply) => {
    const e = new AppError('ROUTE_NOT_FOUND', `No route ${req.method} ${req.url.split('?')[0]}.`)
    metrics.errors.inc({ code: e.code })
    void reply.code(e.status).send(e.toJSON())
  })
}
