import fs from 'node:fs'
import path from 'node:path'
import { DataType, RecordBatchReader } from 'apache-arrow'
import { AppError } from '../../core/errors.js'
import { IMPORT_FORMATS, type ImportFormat } from './import.schemas.js'

/**
 * File formats: how one is recognised (explicit choice, media type, extension, magic bytes), which
 * ClickHouse input format reads it, and which columns it declares. ClickHouse parses every format;
 * the application only peeks at headers (the first CSV line, the Arrow schema) to name missing
 * and unknown columns before anything is loaded.
 */

/** The ClickHouse input format that reads a file. NDJSON is read line by line and parsed in JS. */
export type EngineFormat = 'CSVWithNames' | 'LineAsString' | 'Parquet' | 'Arrow' | 'ArrowStream'

const MEDIA_TYPES: Record<string, ImportFormat> = {
  'text/csv': 'csv',
  'application/csv': 'csv',
  'application/x-ndjson': 'ndjson',
  'application/ndjson': 'ndjson',
  'application/jsonl': 'ndjson',
  'application/x-jsonlines': 'ndjson',
  'application/vnd.apache.parquet': 'parquet',
  'application/x-parquet': 'parquet',
  'application/vnd.apache.arrow.file': 'arrow',
  'application/vnd.apache.arrow.stream': 'arrow',
}

const EXTENSIONS: Record<string, ImportFormat> = {
  '.csv': 'csv',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.parquet': 'parquet',
  '.arrow': 'arrow',
  '.arrows': 'arrow',
  '.feather': 'arrow',
  '.ipc': 'arrow',
}

export const isFormat = (v: string): v is ImportFormat => (IMPORT_FORMATS as readonly string[]).includes(v)

/** The format a media type names; 'sniff' for application/octet-stream; undefined if unsupported. */
export function formatFromMediaType(contentType: string | undefined): ImportFormat | 'sniff' | undefined {
  const mt = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  if (mt === 'application/octet-stream' || mt === '') return 'sniff'
  return MEDIA_TYPES[mt]
}

export const formatFromPath = (file: string): ImportFormat | undefined => EXTENSIONS[path.extname(file).toLowerCase()]

async function head(file: string, bytes: number): Promise<Buffer> {
  const fh = await fs.promises.open(file, 'r')
  try {
    const buf = Buffer.alloc(bytes)
    const { bytesRead } = await fh.read(buf, 0, bytes, 0)
    return buf.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

/** Parquet starts with PAR1; an Arrow IPC file with ARROW1; an Arrow IPC stream with 0xFFFFFFFF. */
async function magic(file: string): Promise<{ format: ImportFormat; arrowFile?: boolean } | undefined> {
  const b = await head(file, 8)
  if (b.subarray(0, 4).toString('latin1') === 'PAR1') return { format: 'parquet' }
  if (b.subarray(0, 6).toString('latin1') === 'ARROW1') return { format: 'arrow', arrowFile: true }
  if (b.length >= 4 && b.readUInt32LE(0) === 0xffffffff) return { format: 'arrow', arrowFile: false }
  return undefined
}

/**
 * The file's format: the caller's choice, else what the name says, else the magic bytes. Text
 * formats have no magic: a CSV or NDJSON file needs its extension or an explicit format.
 */
export async function resolveFormat(file: string, hint: ImportFormat | undefined): Promise<{ format: ImportFormat; engine: EngineFormat }> {
  const m = await magic(file)
  const format = hint ?? formatFromPath(file) ?? m?.format
  if (!format) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Cannot tell the format of the file: name it --format (or ?format=) ${IMPORT_FORMATS.join('|')}.`)
  }
  if ((format === 'parquet' || format === 'arrow') && m?.format !== format) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `The file is not ${format === 'parquet' ? 'Parquet' : 'Arrow IPC'} (its first bytes say otherwise).`)
  }
  const engine: EngineFormat =
    format === 'csv' ? 'CSVWithNames' : format === 'ndjson' ? 'LineAsString' : format === 'parquet' ? 'Parquet' : m?.arrowFile ? 'Arrow' : 'ArrowStream'
  return { format, engine }
}

/** Splits one CSV record (RFC 4180 quoting). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = []
  let cur = ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"'
        i++
      } else if (c === '"') quoted = false
      else cur += c
    } else if (c === '"') quoted = true
    else if (c === ',') {
      out.push(cur)
      cur = ''
    } else cur += c
  }
  out.push(cur)
  return out.map((s) => s.trim())
}

/** A column a file declares; `map` when a Parquet/Arrow column is a map (key-value attributes). */
export interface DeclaredColumn {
  name: string
  map: boolean
}

/**
 * The columns a file declares, when they can be read without loading it: the CSV header, the
 * Arrow schema (apache-arrow reads the first message only), or the Parquet schema through
 * `describe` (the engine reads the footer; only possible when it can see the file). NDJSON rows
 * name their own columns. Undefined when unknown.
 */
export async function declaredColumns(
  file: string,
  engine: EngineFormat,
  describe: ((file: string, engine: EngineFormat) => Promise<DeclaredColumn[] | undefined>) | undefined,
): Promise<DeclaredColumn[] | undefined> {
  if (engine === 'CSVWithNames') {
    const text = (await head(file, 64 * 1024)).toString('utf8').replace(/^\uFEFF/, '')
    const end = text.search(/\r?\n/)
    if (end === -1 && text.length === 64 * 1024) throw new AppError('VALIDATION_FAILED', 'The CSV header line is longer than 64 KB.')
    const line = end === -1 ? text : text.slice(0, end)
    return line.trim() ? splitCsvLine(line).map((name) => ({ name, map: false })) : []
  }
  if (engine === 'Arrow' || engine === 'ArrowStream') {
    const reader = await RecordBatchReader.from(fs.createReadStream(file))
    try {
      await reader.open()
      return reader.schema.fields.map((f) => ({ name: f.name, map: DataType.isMap(f.type) }))
    } finally {
      await reader.cancel()
    }
  }
  if (engine === 'Parquet' && describe) return describe(file, engine)
  return undefined
}
