import { AppError, errText } from '../../core/errors.js'
import type { DeclaredColumn } from './import.formats.js'
import type { KindSpec } from './import.kinds.spec.js'
import type { ImportFormat, ImportIssue, ImportReport } from './import.schemas.js'

/** What an import says about a file: its issues, the error of a rejected one, the engine's reading errors. */

/** The catalogue error for a rejected file: VALIDATION_FAILED, with the report's issues. */
export function rejectionError(r: ImportReport): AppError {
  const more = r.issuesTotal > r.issues.length ? ` (the first ${r.issues.length} of ${r.issuesTotal} issues are listed)` : ''
  const what = r.rows.read ? `${r.rows.rejected} of ${r.rows.read} rows are invalid` : 'the file cannot be imported'
  return new AppError('VALIDATION_FAILED', `The ${r.kind} file was rejected: ${what}; nothing was imported${more}.`, {
    issues: r.issues.map((i) => ({ ...i })),
  })
}

/** A file's issues: all counted, the first `max` kept for the report. */
export class Issues {
  readonly list: ImportIssue[] = []
  total = 0
  constructor(private readonly max: number) {}
  add(row: number | null, column: string | null, message: string, reason: ImportIssue['reason']) {
    this.total++
    if (this.list.length >= this.max) return
    const field = row === null ? (column ? `header: ${column}` : 'file') : `row ${row}: ${column ?? '(row)'}`
    this.list.push({ field, message, row, column, reason })
  }
}

/** A ClickHouse error while reading the file, reduced to what it says about the file. */
export function unreadable(e: unknown, format: ImportFormat): { message: string; row: number | null } | undefined {
  const code = (e as { code?: unknown })?.code
  if (!(e instanceof Error) || typeof code !== 'string' || !/^\d+$/.test(code)) return undefined
  const first = errText(e).split('\n')[0] ?? ''
  const row = /\(at row (\d+)\)/.exec(first)
  // Engine messages quote the bytes around the fault, which may be personal data; keep the reason.
  const reason = first
    .replace(/before: '(?:[^'\\]|\\.)*'/g, '')
    .replace(/\(in file\/uri [^)]*\)/g, '')
    .replace(/:?\s*While executing.*$/, '')
    .replace(/\s*\(at row \d+\)/, '')
    .replace(/[\s:]+$/, '')
    .slice(0, 300)
  return { message: `cannot be read as ${format.toUpperCase()}: ${reason}`, row: row ? Number(row[1]) : null }
}

export const reasonOf = (message: string): ImportIssue['reason'] => (message === 'required' ? 'required' : 'invalid')

/** The header's columns against the kind's: duplicates, unknown and missing ones. */
export function checkHeader(spec: KindSpec, declared: DeclaredColumn[] | undefined, issues: Issues) {
  if (!declared) return
  const columns = declared.map((d) => d.name)
  const known = new Set(Object.keys(spec.fields))
  const seen = new Set<string>()
  for (const c of columns) {
    if (seen.has(c)) issues.add(null, c, 'the column appears twice', 'invalid')
    seen.add(c)
    if (!known.has(c)) issues.add(null, c, `unknown column; ${spec.kind} files have ${[...known].join(', ')}`, 'unknown_column')
  }
  for (const [name, f] of Object.entries(spec.fields)) {
    if (f.required && !seen.has(name)) issues.add(null, name, 'required column missing', 'missing_column')
  }
}
