import fs from 'node:fs'
import { Readable } from 'node:stream'
import zlib from 'node:zlib'
import cliProgress from 'cli-progress'
import { AppError, httpError } from '../../core/errors.js'
import { resolveFormat } from './import.formats.js'
import { importReport, type ImportFormat, type ImportKind, type ImportProgress, type ImportReport } from './import.schemas.js'
import { rejectionError } from './import.issues.js'
import type { ImportService } from './import.service.js'

/**
 * The `qianmian import <kind> <file>` command, for cli/main.ts to wire: on the data directory
 * (this process opens the engine) or, beside a running server that holds it, through the
 * server's `POST /v1/import/:kind` with an admin key of the tenant.
 */

export interface ImportCliOptions {
  tenant: string
  format?: ImportFormat
  skipInvalid?: boolean
  /** commander's --no-progress */
  progress: boolean
  server?: string
  keyFile?: string
}

export type ImportTarget = { importer: ImportService; tenantId: number } | { server: string; key: string; tenant: string }

/** A progress bar on stderr, only on a terminal. */
export function createImportProgress(enabled: boolean): { update(p: ImportProgress): void; stop(): void } {
  if (!enabled) return { update() {}, stop() {} }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'import [{bar}] {percentage}% | {value}/{total} | {duration_formatted} | {phase}', hideCursor: true },
    cliProgress.Presets.shades_classic,
  )
  let started = false
  return {
    update(p) {
      if (p.phase === 'reading') return
      if (!started) {
        bar.start(Math.max(1, p.total), 0, { phase: p.phase })
        started = true
      }
      bar.setTotal(Math.max(1, p.total))
      bar.update(p.done, { phase: p.phase })
    },
    stop() {
      if (started) bar.stop()
    },
  }
}

export function describeReport(r: ImportReport): string {
  const { read, valid, rejected, erased, inserted } = r.rows
  const rate = r.seconds > 0 && read >= 1000 ? ` (${Math.round(read / r.seconds).toLocaleString('en-US')} rows/s)` : ''
  return `${r.status === 'imported' ? 'Imported' : 'Rejected'} ${r.kind} from ${r.format.toUpperCase()} in ${r.seconds.toFixed(1)} s${rate}: read ${read}, valid ${valid}, rejected ${rejected}${erased ? `, erased customers ${erased}` : ''}, inserted ${inserted}.`
}

const MEDIA_TYPE: Record<ImportFormat, string> = {
  csv: 'text/csv',
  ndjson: 'application/x-ndjson',
  parquet: 'application/vnd.apache.parquet',
  arrow: 'application/vnd.apache.arrow.stream',
}

/** Reads the admin key from a file (not the command line, where `ps` and shell history see it). */
export function readKeyFile(file: string | undefined): string {
  if (!file) throw new AppError('AUTH_MISSING', 'With --server, pass --key-file: a file holding an admin API key of the tenant.')
  const key = fs.readFileSync(file, 'utf8').trim()
  if (!key) throw new AppError('AUTH_MISSING', `${file} is empty.`)
  return key
}

async function call(url: string, init: RequestInit & { duplex?: 'half' }): Promise<{ status: number; json: unknown }> {
  let res: Response
  try {
    res = await fetch(url, init)
  } catch (e) {
    throw new AppError('STORAGE_UNAVAILABLE', `Cannot reach the server at ${new URL(url).origin}: ${(e as Error).message}`)
  }
  const text = await res.text()
  let json: unknown
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.status, json }
}

/** Sends the file to a server (text formats gzipped on the way) and returns its report. */
export async function importViaServer(server: string, key: string, tenant: string, kind: ImportKind, file: string, opts: { format?: ImportFormat; skipInvalid?: boolean }): Promise<ImportReport> {
  const base = server.replace(/\/+$/, '')
  const auth = { authorization: `Bearer ${key}` }
  // The key decides the tenant on the server: make sure it is the one the operator named.
  const who = await call(`${base}/v1/tenant`, { headers: auth })
  if (who.status !== 200) throw httpError(who.status, who.json)
  const t = who.json as { id: number; slug: string }
  if (t.slug !== tenant && String(t.id) !== tenant) {
    throw new AppError('SCOPE_FORBIDDEN', `The key belongs to tenant ${t.slug}, not ${tenant}.`)
  }
  const { format } = await resolveFormat(file, opts.format)
  const text = format === 'csv' || format === 'ndjson'
  const source = fs.createReadStream(file)
  const body = Readable.toWeb(text ? source.pipe(zlib.createGzip()) : source) as ReadableStream<Uint8Array>
  const query = new URLSearchParams({ format, ...(opts.skipInvalid ? { skipInvalid: 'true' } : {}) })
  const res = await call(`${base}/v1/import/${kind}?${query}`, {
    method: 'POST',
    headers: { ...auth, 'content-type': MEDIA_TYPE[format], ...(text ? { 'content-encoding': 'gzip' } : {}) },
    body,
    duplex: 'half',
  })
  const report = importReport.safeParse(res.status === 200 ? res.json : (res.json as { report?: unknown } | undefined)?.report)
  if ((res.status === 200 || res.status === 400) && report.success) return report.data
  throw httpError(res.status, res.json)
}

/**
 * Runs the import, prints the summary line, and throws VALIDATION_FAILED (with the issues) for a
 * rejected file, so the CLI exits with code 2 and lists them.
 */
export async function runImport(kind: ImportKind, file: string, opts: ImportCliOptions, target: ImportTarget, out: (line: string) => void): Promise<ImportReport> {
  if (!fs.existsSync(file)) throw new AppError('NOT_FOUND', `No file ${file}.`)
  let report: ImportReport
  if ('server' in target) {
    report = await importViaServer(target.server, target.key, target.tenant, kind, file, opts)
  } else {
    const progress = createImportProgress(opts.progress && process.stderr.isTTY === true)
    try {
      report = await target.importer.importFile({ tenantId: target.tenantId, kind, file, format: opts.format, skipInvalid: opts.skipInvalid, actor: 'cli', onProgress: progress.update })
    } finally {
      progress.stop()
    }
  }
  out(describeReport(report))
  if (report.status === 'rejected') throw rejectionError(report)
  if (report.rows.rejected || report.rows.erased) {
    const skipped = [report.rows.rejected && `${report.rows.rejected} invalid rows`, report.rows.erased && `${report.rows.erased} rows of erased customers`].filter(Boolean)
    process.stderr.write(`${skipped.join(' and ')} were skipped:\n`)
    for (const i of report.issues) process.stderr.write(`  ${i.field}: ${i.message}\n`)
    if (report.issuesTotal > report.issues.length) process.stderr.write(`  … and ${report.issuesTotal - report.issues.length} more issues\n`)
  }
  return report
}
