import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, errorBody } from '../../core/errors.js'
import type { Auth } from '../../tenants/auth.js'
import { formatFromMediaType } from './import.formats.js'
import { IMPORT_FORMATS, IMPORT_KINDS, IMPORT_MAX_BYTES, importKindDoc, importReport, type ImportFormat } from './import.schemas.js'
import { rejectionError } from './import.issues.js'
import type { ImportService } from './import.service.js'

const security = [{ apiKey: [] }]
const MB = 1024 * 1024

/** Writes the body to `file`, refusing more than `max` bytes (the body limit of this route). */
export async function spool(body: Readable, file: string, max: number): Promise<number> {
  let n = 0
  const limit = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length
      if (n > max) cb(new AppError('PAYLOAD_TOO_LARGE', `An import body may be at most ${Math.round(max / MB)} MB.`))
      else cb(null, chunk)
    },
  })
  await pipeline(body, limit, fs.createWriteStream(file, { mode: 0o600, flags: 'wx' }))
  return n
}

const SPOOL_PREFIX = 'qianmian-import-'
/** A spool directory as mkdtemp names it: the prefix and six characters. */
const SPOOL_DIR = /^qianmian-import-[A-Za-z0-9]{6}$/

/**
 * Removes the spool directories older than `hours` that a process which died during an import
 * left in `dir`: the body in them is the bank's file in clear. No import runs that long.
 */
export async function dropStaleSpools(dir: string, hours = 24): Promise<void> {
  const before = Date.now() - hours * 3_600_000
  for (const name of await fs.promises.readdir(dir).catch(() => [] as string[])) {
    if (!SPOOL_DIR.test(name)) continue
    const full = path.join(dir, name)
    const st = await fs.promises.stat(full).catch(() => undefined)
    if (st?.isDirectory() && st.mtimeMs < before) await fs.promises.rm(full, { recursive: true, force: true }).catch(() => {})
  }
}

/** The format from `?format=` and the media type; the query names it for application/octet-stream. */
export function requestFormat(contentType: string | undefined, query: ImportFormat | undefined): ImportFormat | undefined {
  const fromType = formatFromMediaType(contentType)
  if (fromType === undefined) {
    throw new AppError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Content-Type ${contentType} is not an import format: use text/csv, application/x-ndjson, application/vnd.apache.parquet, application/vnd.apache.arrow.stream (or .file), or application/octet-stream with ?format=${IMPORT_FORMATS.join('|')}.`,
    )
  }
  const charset = /;\s*charset=("?)([^";]+)\1/i.exec(contentType ?? '')?.[2]?.toLowerCase()
  if (charset && charset !== 'utf-8' && charset !== 'utf8') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `The body is ${charset}: imports take UTF-8 only (convert the file first).`)
  }
  if (fromType === 'sniff') return query
  if (query && query !== fromType) {
    throw new AppError('VALIDATION_FAILED', `?format=${query} contradicts Content-Type ${contentType}.`, { issues: [{ field: 'querystring.format', message: `the body is ${fromType}` }] })
  }
  return fromType
}

/**
 * `POST /v1/import/:kind`: the file is the request body (gzip allowed), admin key, tenant from the
 * key. The body bypasses the app's JSON parsing: it is streamed to a temporary file (mode 0600,
 * removed afterwards) and refused beyond `maxBytes` (default IMPORT_MAX_BYTES, 256 MiB).
 * 200 answers the report of an imported file; 400 VALIDATION_FAILED a rejected one, with the same
 * report beside the error.
 */
export function registerImportRoutes(app: FastifyInstance, auth: Auth, deps: { importer: ImportService; maxBytes?: number; tmpDir?: string }) {
  const maxBytes = deps.maxBytes ?? IMPORT_MAX_BYTES
  const tmpDir = deps.tmpDir ?? os.tmpdir()

  // An encapsulated scope: its raw-body parser applies to these routes only.
  void app.register(async (scope) => {
    scope.removeContentTypeParser(['application/json', 'text/plain'])
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload))
    const r = scope.withTypeProvider<ZodTypeProvider>()

    r.post(
      '/v1/import/:kind',
      {
        onRequest: auth.require('tenant:admin'),
        config: { audit: { action: 'import.run', objectKind: 'import', objectParam: 'kind' } },
        schema: {
          tags: ['import'],
          summary: `Import a file of stock data (CSV, NDJSON, Parquet or Arrow; at most ${Math.round(maxBytes / MB)} MB)`,
          description:
            'The whole file is imported or none of it: any invalid row rejects the file (400, with the report) unless skipInvalid=true. ' +
            'Rows are upserted by their natural key, so a re-import replaces them. GET /v1/import/kinds lists the columns of each kind.',
          security,
          params: z.object({ kind: z.enum(IMPORT_KINDS) }),
          querystring: z.object({
            format: z.enum(IMPORT_FORMATS).optional().describe('needed with application/octet-stream for CSV/NDJSON; Parquet and Arrow are recognised by their bytes'),
            skipInvalid: z.enum(['true', 'false', '1', '0']).optional().transform((v) => v === 'true' || v === '1'),
          }),
          response: {
            200: importReport,
            400: errorBody.extend({ report: importReport.optional() }),
            401: errorBody,
            403: errorBody,
            413: errorBody,
            415: errorBody,
          },
        },
      },
      async (req, reply) => {
        const format = requestFormat(req.headers['content-type'], req.query.format)
        const declared = Number(req.headers['content-length'] ?? 0)
        if (declared > maxBytes) throw new AppError('PAYLOAD_TOO_LARGE', `An import body may be at most ${Math.round(maxBytes / MB)} MB.`)
        const body = req.body as Readable | undefined
        if (!body || typeof body.pipe !== 'function') throw new AppError('VALIDATION_FAILED', 'The request has no body: send the file.')
        await dropStaleSpools(tmpDir)
        const dir = await fs.promises.mkdtemp(path.join(tmpDir, SPOOL_PREFIX))
        try {
          const file = path.join(dir, 'upload')
          await spool(body, file, maxBytes)
          const report = await deps.importer.importFile({
            tenantId: req.principal!.tenantId,
            kind: req.params.kind,
            file,
            format,
            skipInvalid: req.query.skipInvalid,
            actor: req.principal!.keyId,
            holder: req.principal!.holder,
          })
          req.auditNote = { objectId: report.importId, customers: report.rows.inserted, detail: { kind: report.kind, format: report.format, status: report.status, rows: report.rows } }
          if (report.status === 'rejected') {
            const e = rejectionError(report)
            return reply.code(400).send({ error: { code: e.code, message: e.message, issues: [...report.issues] }, report })
          }
          return report
        } finally {
          await fs.promises.rm(dir, { recursive: true, force: true })
        }
      },
    )

    r.get(
      '/v1/import/kinds',
      {
        onRequest: auth.require('tenant:admin'),
        schema: { tags: ['import'], summary: 'The kinds of file an import takes, with their columns', security, response: { 200: z.object({ kinds: z.array(importKindDoc) }) } },
      },
      async () => ({ kinds: deps.importer.kinds() }),
    )
  })
}
