import { z } from 'zod'

/**
 * The one catalogue of coded errors. Every HTTP route and CLI command reports failures with a
 * code from here, so clients can act on `error.code` rather than parse messages.
 */
export const ERROR_CATALOGUE = {
  VALIDATION_FAILED: { status: 400, message: 'The request is invalid.' },
  INVALID_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  INVALID_ENCODING: { status: 400, message: 'The request body could not be decoded.' },
  AUTH_MISSING: { status: 401, message: 'An API key is required (HTTP Basic with the key as user name, or Bearer).' },
  AUTH_INVALID: { status: 401, message: 'The API key is not valid.' },
  AUTH_EXPIRED: { status: 401, message: 'The API key has expired; use its successor.' },
  SCOPE_FORBIDDEN: { status: 403, message: 'The API key does not have the permission this route needs.' },
  TENANT_DISABLED: { status: 403, message: 'The tenant is disabled.' },
  OPERATOR_ONLY: { status: 403, message: 'This route needs the operator token.' },
  ORIGIN_FORBIDDEN: { status: 403, message: "The page's origin is not among the tenant's browser origins." },
  NOT_FOUND: { status: 404, message: 'Not found.' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No such route.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed.' },
  CONFLICT: { status: 409, message: 'The resource already exists or was changed concurrently.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Unsupported content type.' },
  EVENT_TOO_LARGE: { status: 413, message: 'An event is larger than 32 KB.' },
  TIMESTAMP_OUT_OF_RANGE: { status: 400, message: 'The event time is too far in the future or the past.' },
  TRACKING_PLAN_VIOLATION: { status: 400, message: 'The event breaks the tenant tracking plan.' },
  EVENT_NOT_STORABLE: { status: 422, message: 'The storage engine refused a value of the event.' },
  NESTING_TOO_DEEP: { status: 400, message: 'The body is nested deeper than the limit.' },
  BATCH_REJECTED: { status: 400, message: 'No event in the batch was valid.' },
  ALIAS_MERGE_FORBIDDEN: { status: 403, message: 'An alias between two known customer numbers would merge them: that needs POST /v1/identities/merge, by an administrator, with a reason.' },
  CONSENT_INVALID: { status: 400, message: 'The consent is invalid (unknown purpose, channel, source or category, or a malformed category map).' },
  CONSENT_SUPERSEDED: { status: 409, message: 'A newer consent decision is stored; this one is kept in the history only.' },
  DRY_RUN_FAILED: { status: 400, message: 'The definition fails when computed against the engine.' },
  ERASURE_RUNNING: { status: 409, message: 'An erasure of this customer is already running; its job id is given.' },
  CUSTOMER_ERASED: { status: 410, message: 'This customer was erased; nothing is held about them.' },
  IN_USE: { status: 409, message: 'The change would break definitions that use this one.' },
  NOT_APPROVED: { status: 409, message: 'A marketing campaign runs only once a second holder approved its current version.' },
  SELF_APPROVAL: { status: 403, message: 'The holder who last changed a campaign cannot approve it: a second holder must.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests.' },
  INTERNAL: { status: 500, message: 'Internal error.' },
  NOT_READY: { status: 503, message: 'The service is starting and not ready yet.' },
  OVERLOADED: { status: 503, message: 'The service is overloaded; retry later.' },
  SHUTTING_DOWN: { status: 503, message: 'The service is shutting down.' },
  INGEST_WORKER_FAILED: { status: 503, message: 'An ingest worker thread failed before anything of this request was stored; send it again.' },
  STORAGE_UNAVAILABLE: { status: 503, message: 'The storage engine is unavailable.' },
  METRICS_UNAVAILABLE: { status: 503, message: 'The engine process did not answer with the metrics of every process; scrape again.' },
  QUERY_MEMORY_LIMIT: { status: 503, message: 'A query needed more memory than its engine lane allows.' },
  // Failures outside HTTP (CLI, start-up); their status is what an operator route would answer.
  CONFIG_INVALID: { status: 500, message: 'The configuration is invalid.' },
  DEPENDENCY_MISSING: { status: 500, message: 'A package the server needs is not installed.' },
  DATA_DIR_LOCKED: { status: 409, message: 'The data directory is held by another running Qianmian process.' },
  MIGRATION_CHANGED: { status: 500, message: 'An applied migration file was changed.' },
  MIGRATION_FAILED: { status: 500, message: 'A migration failed.' },
  MIGRATION_INVALID: { status: 500, message: 'A migration file name or content is invalid.' },
  TENANT_SCOPE_VIOLATION: { status: 500, message: 'A query was not scoped to its tenant.' },
} as const satisfies Record<string, { status: number; message: string }>

export type ErrorCode = keyof typeof ERROR_CATALOGUE

export interface ErrorIssue {
  /** Where the problem is: a JSON path ("batch.3.timestamp"), a column, a variable. */
  field?: string
  message: string
  [extra: string]: unknown
}

export class AppError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly issues: readonly ErrorIssue[] | undefined
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor(
    code: ErrorCode,
    message?: string,
    opts: { issues?: ErrorIssue[]; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message ?? ERROR_CATALOGUE[code].message, { cause: opts.cause })
    this.name = 'AppError'
    this.code = code
    this.status = ERROR_CATALOGUE[code].status
    this.issues = opts.issues
    this.headers = opts.headers
  }

  toJSON(): { error: { code: ErrorCode; message: string; issues?: readonly ErrorIssue[] } } {
    return {
      error: { code: this.code, message: this.message, ...(this.issues ? { issues: this.issues } : {}) },
    }
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError

/** Turns zod issues into the catalogue's issue shape: the field path joined with dots. */
export function issuesFromZod(
  issues: readonly { path: readonly PropertyKey[]; message: string; code?: string }[],
  prefix?: string,
): ErrorIssue[] {
  return issues.map((i) => {
    const p = [prefix, ...i.path.map(String)].filter((x) => x !== undefined && x !== '').join('.')
    return { field: p || '(root)', message: i.message, ...(i.code ? { reason: i.code } : {}) }
  })
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/** The body of every error answer, for route schemas and the OpenAPI document. */
export const errorBody = z.object({
  error: z.object({
    code: z.string().describe('a code from the error catalogue'),
    message: z.string(),
    issues: z.array(z.object({ field: z.string().optional(), message: z.string() }).loose()).optional(),
  }),
})

/** A response body `{error: {code, message, issues}}` from a Qianmian server, as an AppError. */
export function httpError(status: number, json: unknown): AppError {
  const err = (json as { error?: { code?: string; message?: string; issues?: ErrorIssue[] } } | undefined)?.error
  return new AppError((err?.code ?? 'INTERNAL') as ErrorCode, err?.message ?? `HTTP ${status}`, err?.issues ? { issues: [...err.issues] } : {})
}
