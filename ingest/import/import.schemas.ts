import { z } from 'zod'

/**
 * The public shapes of a bulk import: kinds, formats, limits and the report. Shared by the
 * service, the HTTP route (response schemas, OpenAPI) and the CLI.
 */

export const IMPORT_KINDS = ['customers', 'accounts', 'loans', 'loan_schedules', 'bills', 'products', 'consents'] as const
export type ImportKind = (typeof IMPORT_KINDS)[number]

export const IMPORT_FORMATS = ['csv', 'ndjson', 'parquet', 'arrow'] as const
export type ImportFormat = (typeof IMPORT_FORMATS)[number]

/**
 * Largest body `POST /v1/import/:kind` accepts (after gzip decoding): 256 MiB, about 1.5M customer
 * rows in CSV. The body is spooled to a temporary file, never held in memory, but the validated
 * rows of one import are written in a single insert block, so memory grows with the file; split
 * bigger files, or run `qianmian import` (no HTTP limit) on the host.
 */
export const IMPORT_MAX_BYTES = 256 * 1024 * 1024

/** Issues listed in a report; beyond this only `issuesTotal` keeps counting. */
export const MAX_REPORTED_ISSUES = 1000

export const importIssue = z.object({
  field: z.string().describe('"row 12: birth_date", or "file" / "header: <column>" for the whole file'),
  message: z.string(),
  row: z.number().int().nullable().describe('1-based data row (CSV: the header is not counted; NDJSON: the line); null for the whole file'),
  column: z.string().nullable(),
  reason: z.enum(['required', 'invalid', 'duplicate', 'unknown_column', 'missing_column', 'unknown_reference', 'unreadable', 'customer_erased']),
})
export type ImportIssue = z.infer<typeof importIssue>

export const importReport = z.object({
  importId: z.string(),
  kind: z.enum(IMPORT_KINDS),
  format: z.enum(IMPORT_FORMATS),
  status: z.enum(['imported', 'rejected']).describe('rejected: nothing was written'),
  skipInvalid: z.boolean(),
  rows: z.object({
    read: z.number().int().describe('data rows in the file'),
    valid: z.number().int(),
    rejected: z.number().int().describe('rows with at least one issue'),
    erased: z.number().int().describe('valid rows of erased customers (tombstoned numbers), skipped and listed as issues with reason customer_erased; they never reject the file'),
    inserted: z.number().int().describe('rows written (upserted by natural key): valid minus erased'),
  }),
  issues: z.array(importIssue).describe(`the first ${MAX_REPORTED_ISSUES} issues, in row order`),
  issuesTotal: z.number().int(),
  startedAt: z.string(),
  seconds: z.number(),
})
export type ImportReport = z.infer<typeof importReport>

export const importColumnDoc = z.object({ name: z.string(), required: z.boolean(), type: z.string() })
export const importKindDoc = z.object({
  kind: z.enum(IMPORT_KINDS),
  description: z.string(),
  naturalKey: z.array(z.string()),
  columns: z.array(importColumnDoc),
})
export type ImportKindDoc = z.infer<typeof importKindDoc>

export interface ImportProgress {
  phase: 'reading' | 'validating' | 'mapping' | 'writing' | 'done'
  done: number
  total: number
}
