import { z } from 'zod'
import type { Db, TenantDb } from '../../core/db.js'
import { AppError, errText } from '../../core/errors.js'
import type { Logger } from '../../core/log.js'
import type { Metrics } from '../../core/metrics.js'
import type { Pii } from '../../core/pii.js'
import { chDateTime, chEpoch } from '../../core/time.js'
import type { IdentityService } from '../identity.service.js'
import { rowSchema, type FieldEnv } from './import.fields.js'
import { declaredColumns, resolveFormat, type DeclaredColumn, type EngineFormat } from './import.formats.js'
import { KINDS, kindDoc } from './import.kinds.js'
import { ownerStatements, type ErasedKind, type KindSpec } from './import.kinds.spec.js'
import {
  MAX_REPORTED_ISSUES,
  type ImportFormat,
  type ImportKind,
  type ImportKindDoc,
  type ImportProgress,
  type ImportReport,
} from './import.schemas.js'
import { checkHeader, Issues, reasonOf, unreadable } from './import.issues.js'
import { createStaging, landColumns, ONE_BLOCK, stagingNames, type Landing, type LandColumn, type StagingNames } from './import.staging.js'

/**
 * Bulk import of a bank's stock data. A file is accepted whole or not at all (unless the caller
 * asks to skip invalid rows): it is loaded and validated in staging tables, and only a file
 * without issues reaches its target, in one insert. See import.staging.ts for the data path.
 */

export interface ImportRequest {
  tenantId: number
  kind: ImportKind
  /** A file this process can read (the CLI's argument, or the HTTP body spooled to disk). */
  file: string
  /** Explicit format; otherwise from the file name, else its magic bytes. */
  format?: ImportFormat | undefined
  /** Import the valid rows and report the others, instead of rejecting the file. */
  skipInvalid?: boolean | undefined
  /** Who asked (API key id, cli:<user>), for the log. */
  actor: string
  /** Who asked, by name (the key's holder): consent decisions loaded from a file are recorded as theirs. */
  holder?: string | undefined
  onProgress?: ((p: ImportProgress) => void) | undefined
}

/**
 * Which of a file's identifiers belong to erased customers: customer numbers, and loan numbers
 * of loans the erasure deleted. Injected by the composition root (the privacy capability owns
 * the tombstones; ingest does not import it); called once per file and kind with the distinct
 * values. An object rather than a function, so that a wiring that ignores the kind does not
 * type-check.
 */
export interface ErasedCheck {
  among(tenantId: number, kind: ErasedKind, values: readonly string[]): Promise<ReadonlySet<string>>
}

export interface ImportService {
  importFile(req: ImportRequest): Promise<ImportReport>
  kinds(): ImportKindDoc[]
}

export interface ImportOptions {
  /** Records validated per round trip (default 10,000: small pages keep the engine busy while JS validates). */
  pageRows?: number
  /** Customer numbers per key-allocation batch (default 50,000). */
  keyBatch?: number
  maxIssues?: number
  /** 'file': the engine reads the file itself (embedded); 'stream': the file is sent in the insert body. Probed when unset. */
  landing?: Landing
  tmpDir?: string
  /** Staging tables older than this are dropped at the start of an import (default 24 h). */
  staleHours?: number
}

export function createImportService(deps: {
  db: Db
  identities: Pick<IdentityService, 'keysFor'>
  pii: Pii
  log: Logger
  metrics?: Metrics
  now?: () => Date
  options?: ImportOptions
  /** Rows of erased customers are skipped and reported, not imported. */
  erased?: ErasedCheck | undefined
}): ImportService {
  const { db, pii, log } = deps
  const now = deps.now ?? (() => new Date())
  const opt = deps.options ?? {}
  const pageRows = opt.pageRows ?? 10_000
  const keyBatch = opt.keyBatch ?? 50_000
  const maxIssues = opt.maxIssues ?? MAX_REPORTED_ISSUES
  const staging = createStaging({ system: db.system, landing: opt.landing, tmpDir: opt.tmpDir })
  const rowsTotal = deps.metrics?.counter('qianmian_import_rows_total', 'Rows of imported files, by kind and fate', ['kind', 'fate'])
  const filesTotal = deps.metrics?.counter('qianmian_import_files_total', 'Imported files, by kind and status', ['kind', 'status'])
  const schemas = new Map<string, ReturnType<typeof rowSchema>>()
  const schemaFor = (spec: KindSpec, env: FieldEnv) => {
    const k = `${spec.kind}\u0000${env.zone}`
    let s = schemas.get(k)
    if (!s) schemas.set(k, (s = rowSchema(spec.fields, env)))
    return s
  }

  // The row the table keeps, as the tenant service reads it: two changes stamped with the same
  // time tie on updated_at, and the newest by time alone could be either.
  async function tenantZone(tenantId: number): Promise<string> {
    const rows = await db.system.query(
      `SELECT time_zone AS tz FROM tenants FINAL WHERE tenant_id = {id:UInt16}`,
      { id: tenantId },
      z.object({ tz: z.string() }),
    )
    if (!rows[0]) throw new AppError('NOT_FOUND', `No tenant ${tenantId}.`)
    return rows[0].tz
  }

  /** Validates every record; stages the valid ones (all of them only while they may be used). */
  async function validate(
    spec: KindSpec,
    names: StagingNames,
    cols: readonly LandColumn[],
    engine: EngineFormat,
    total: number,
    ctx: { tenantId: number; env: FieldEnv; importedAt: string; skipInvalid: boolean; issues: Issues; progress: (done: number) => void },
  ) {
    const schema = schemaFor(spec, ctx.env)
    const stageCols = await staging.createStage(names, spec)
    const seen = new Map<string, number>()
    const c = { read: 0, valid: 0, rejected: 0 }
    const ndjson = engine === 'LineAsString'
    // A pipeline: the engine reads the next page and writes the previous one while JavaScript
    // validates this one (the engine works on its own threads). A rejection is kept for the await.
    const background = <T>(p: Promise<T>) => {
      p.catch(() => {})
      return p
    }
    const fetch = (lo: number) => background(staging.page(names, cols, lo, lo + pageRows))
    let next = total > 0 ? fetch(0) : undefined
    let writing: Promise<void> = Promise.resolve()
    for (let lo = 0; lo < total; lo += pageRows) {
      const page = await next!
      next = lo + pageRows < total ? fetch(lo + pageRows) : undefined
      const tuples: unknown[][] = []
      for (const rec of page) {
        const rowNo = Number(rec[0])
        const row = rowNo + 1
        let input: Record<string, unknown>
        if (ndjson) {
          // A byte-order mark (Notepad's UTF-8) is no part of the first object.
          const line = rowNo === 0 ? (rec[1] as string).replace(/^\uFEFF/, '') : (rec[1] as string)
          if (!line.trim()) continue
          c.read++
          try {
            input = JSON.parse(line) as Record<string, unknown>
          } catch (e) {
            // The parser's message may quote the line (personal data): keep its position only.
            const at = /at position (\d+)/.exec(errText(e))?.[1]
            ctx.issues.add(row, null, `not valid JSON${at ? ` (at character ${Number(at) + 1})` : ''}`, 'invalid')
            c.rejected++
            continue
          }
          if (!input || typeof input !== 'object' || Array.isArray(input)) {
            ctx.issues.add(row, null, 'expected a JSON object', 'invalid')
            c.rejected++
            continue
          }
        } else {
          c.read++
          input = {}
          for (let i = 0; i < cols.length; i++) input[cols[i]!.name] = rec[i + 1]
        }
        const r = schema.safeParse(input)
        if (!r.success) {
          for (const i of r.error.issues) {
            if (i.code === 'unrecognized_keys') {
              for (const k of i.keys) ctx.issues.add(row, k, 'unknown column', 'unknown_column')
            } else {
              ctx.issues.add(row, String(i.path[0] ?? '(row)'), i.message, reasonOf(i.message))
            }
          }
          c.rejected++
          continue
        }
        const data = r.data as Record<string, unknown>
        const cross = spec.check?.(data)
        if (cross) {
          ctx.issues.add(row, cross.column, cross.message, 'invalid')
          c.rejected++
          continue
        }
        const key = spec.naturalKey.map((k) => String(data[k])).join('\u0000')
        const first = seen.get(key)
        if (first !== undefined) {
          ctx.issues.add(row, spec.naturalKey.join('+'), `the same ${spec.naturalKey.join(' + ')} as row ${first}`, 'duplicate')
          c.rejected++
          continue
        }
        seen.set(key, row)
        c.valid++
        // Without skip-invalid a single rejected row dooms the file: stop staging, keep validating
        // for the report.
        if (ctx.skipInvalid || c.rejected === 0) {
          const s = spec.toStage(data, { pii, tenantId: ctx.tenantId, importedAt: ctx.importedAt })
          const t = new Array<unknown>(stageCols.length)
          t[0] = rowNo
          for (let i = 1; i < stageCols.length; i++) t[i] = s[stageCols[i]!]
          tuples.push(t)
        }
      }
      await writing
      if (ctx.skipInvalid || c.rejected === 0) writing = background(staging.insert(names.stage, stageCols, tuples))
      ctx.progress(Math.min(total, lo + pageRows))
    }
    await writing
    return c
  }

  /**
   * Maps the customer numbers to dense keys (allocating new ones). A number left out has no key,
   * so the final inserts' join skips its rows (as owner) or leaves the bill's payer empty.
   */
  async function mapKeys(tenantId: number, names: StagingNames, numbers: readonly string[], progress: (p: ImportProgress) => void) {
    await staging.createKeys(names)
    for (let i = 0; i < numbers.length; i += keyBatch) {
      const batch = numbers.slice(i, i + keyBatch)
      const keys = await deps.identities.keysFor(tenantId, batch, 'import')
      await staging.insert(names.keys, ['customer_no', 'customer_key'], batch.map((n, j) => [n, keys[j]]))
      progress({ phase: 'mapping', done: Math.min(numbers.length, i + keyBatch), total: numbers.length })
    }
  }

  /**
   * Rows owned by an erased customer (the kind's first customer column) are skipped: listed by
   * row, never by number. A bill whose payer alone is erased is kept, without its payer.
   */
  async function reportErased(spec: KindSpec, names: StagingNames, erased: string[], issues: Issues, rows: { erased: number }) {
    const owner = spec.customerColumns[0]!
    const hit = await db.system.query(
      `SELECT row_no FROM ${names.stage} WHERE ${owner} IN {erased:Array(String)} ORDER BY row_no`,
      { erased },
      z.object({ row_no: z.coerce.number() }),
    )
    for (const h of hit) issues.add(h.row_no + 1, owner, 'the customer was erased; re-register the number (POST /v1/customers/{id}/reregistration) to import it again', 'customer_erased')
    rows.erased += hit.length
    issues.list.sort((a, b) => (a.row ?? 0) - (b.row ?? 0))
  }

  async function importFile(req: ImportRequest): Promise<ImportReport> {
    const spec = KINDS[req.kind]
    if (!spec) throw new AppError('VALIDATION_FAILED', `Unknown kind ${req.kind}.`, { issues: [{ field: 'kind', message: `expected one of ${Object.keys(KINDS).join(', ')}` }] })
    const started = now()
    const t0 = performance.now()
    const importedAt = chDateTime(started)
    const names = stagingNames()
    const importId = names.raw.slice('import_raw_'.length)
    const issues = new Issues(maxIssues)
    const skipInvalid = req.skipInvalid ?? false
    const progress = req.onProgress ?? (() => {})
    const rows = { read: 0, valid: 0, rejected: 0, erased: 0, inserted: 0 }
    const { format, engine } = await resolveFormat(req.file, req.format)

    const finish = (status: ImportReport['status']): ImportReport => {
      if (status === 'rejected') rows.inserted = rows.erased = 0
      const report: ImportReport = {
        importId,
        kind: req.kind,
        format,
        status,
        skipInvalid,
        rows: { ...rows },
        issues: issues.list,
        issuesTotal: issues.total,
        startedAt: started.toISOString(),
        seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
      }
      filesTotal?.inc({ kind: req.kind, status })
      for (const fate of ['read', 'valid', 'rejected', 'erased', 'inserted'] as const) rowsTotal?.inc({ kind: req.kind, fate }, rows[fate])
      log.info({ importId, tenantId: req.tenantId, actor: req.actor, kind: req.kind, format, status, rows: report.rows, issues: issues.total, seconds: report.seconds }, 'import finished')
      progress({ phase: 'done', done: rows.read, total: rows.read })
      return report
    }

    // Parquet and Arrow timestamps are instants, read by the engine as UTC text; a local time
    // written without an offset in CSV or NDJSON is the tenant's.
    const tenantTz = await tenantZone(req.tenantId)
    const zone = format === 'parquet' || format === 'arrow' ? 'UTC' : tenantTz
    await staging.dropStale(opt.staleHours ?? 24).catch((e: unknown) => log.warn({ err: errText(e) }, 'could not drop stale import tables'))

    progress({ phase: 'reading', done: 0, total: 0 })
    try {
      let declared: DeclaredColumn[] | undefined
      try {
        declared = await declaredColumns(req.file, engine, staging.describe)
      } catch (e) {
        // A broken header or schema is the file's fault (a network error reading a Parquet
        // footer from a server is not).
        const u = unreadable(e, format)
        if (!u && engine === 'Parquet') throw e
        issues.add(null, null, u?.message ?? `cannot be read as ${format.toUpperCase()}: ${errText(e).slice(0, 200)}`, 'unreadable')
        return finish('rejected')
      }
      checkHeader(spec, declared, issues)
      if (issues.total) return finish('rejected')

      const cols = landColumns(spec, engine, declared)
      let total: number
      try {
        total = await staging.land(names, req.file, engine, cols)
      } catch (e) {
        const u = unreadable(e, format)
        if (!u) throw e
        issues.add(u.row, null, u.message, 'unreadable')
        return finish('rejected')
      }

      progress({ phase: 'validating', done: 0, total })
      const counts = await validate(spec, names, cols, engine, total, {
        tenantId: req.tenantId,
        env: { zone },
        importedAt,
        skipInvalid,
        issues,
        progress: (done) => progress({ phase: 'validating', done, total }),
      })
      Object.assign(rows, counts)
      if (rows.rejected && !skipInvalid) return finish('rejected')

      if (spec.unresolved && rows.valid) {
        const u = spec.unresolved
        const missing = await db.forTenant(req.tenantId).query(
          `SELECT row_no, value FROM (${u.sql(names)}) ORDER BY row_no`,
          {},
          z.object({ row_no: z.coerce.number(), value: z.string() }),
        )
        // A reference the erasure deleted (an erased customer's loan, in the bank's next full
        // file) is the erased customer's row: counted as erased, never rejecting the file, and
        // stored nowhere (the final insert joins the reference).
        const gone = u.erased && missing.length && deps.erased ? await deps.erased.among(req.tenantId, u.erased, [...new Set(missing.map((m) => m.value))]) : undefined
        let unknown = 0
        for (const m of missing) {
          if (gone?.has(m.value)) {
            issues.add(m.row_no + 1, u.column, 'its customer was erased; re-register the number (POST /v1/customers/{id}/reregistration) and import the loan to import it again', 'customer_erased')
            rows.erased++
          } else {
            issues.add(m.row_no + 1, u.column, u.message(m.value), 'unknown_reference')
            unknown++
          }
        }
        rows.valid -= unknown
        rows.rejected += unknown
        if (unknown && !skipInvalid) return finish('rejected')
        // Issues were added out of row order; keep the report sorted.
        issues.list.sort((a, b) => (a.row ?? 0) - (b.row ?? 0))
      }

      if (rows.valid > 0) {
        let numbers = spec.customerColumns.length ? await staging.distinct(names.stage, spec.customerColumns) : []
        const erased = deps.erased && numbers.length ? await deps.erased.among(req.tenantId, 'customer_no', numbers) : undefined
        if (erased?.size) {
          numbers = numbers.filter((no) => !erased.has(no))
          await reportErased(spec, names, [...erased], issues, rows)
        }
        await mapKeys(req.tenantId, names, numbers, progress)
        progress({ phase: 'writing', done: 0, total: rows.valid - rows.erased })
        const tenantDb = db.forTenant(req.tenantId)
        if (rows.valid > rows.erased) {
          // What a statement may name of the import itself (the consents' history does).
          const about = { keyId: req.actor, holder: req.holder ?? req.actor, receivedAt: chEpoch(Date.now()) }
          for (const sql of spec.finalInserts(names)) await tenantDb.command(`${sql}\nSETTINGS ${ONE_BLOCK}`, about)
          await keepOneOwner(tenantDb, spec, names)
        }
        rows.inserted = rows.valid - rows.erased
      }
      return finish('imported')
    } finally {
      await staging.drop(names).catch((e: unknown) => log.warn({ importId, err: errText(e) }, 'could not drop import staging tables'))
    }
  }

  /**
   * Numbers of the file that another customer also holds: their rows go (and a loan's schedules
   * move first). After the inserts, so a failure between the two leaves the number under both
   * customers as before, and importing the file again finishes the move.
   */
  async function keepOneOwner(tenantDb: TenantDb, spec: KindSpec, names: StagingNames): Promise<void> {
    const o = ownerStatements(spec, names)
    if (!o) return
    const [stale] = await tenantDb.query(o.stale, {}, z.object({ n: z.coerce.number() }))
    if (!stale?.n) return
    for (const sql of o.moves) await tenantDb.command(`${sql}\nSETTINGS ${ONE_BLOCK}`)
    for (const sql of o.deletes) await tenantDb.command(sql)
    log.info({ kind: spec.kind, rows: stale.n }, 'imported numbers moved to another customer: the old rows were dropped')
  }

  return {
    importFile,
    kinds: () => Object.values(KINDS).map(kindDoc),
  }
}
