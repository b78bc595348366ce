import { createReadStream } from 'node:fs'
import { basename } from 'node:path'
import { createInterface } from 'node:readline'
import { AppError } from '../../core/errors.js'
import { createInteractionTableBuilder, type InteractionTable } from './table.js'

/**
 * Reads an interactions file in one of two shapes, chosen from its first non-empty line:
 *
 * - Tab-separated `user item [rating [timestamp]]` without a header (MovieLens `u.data`).
 *   A tab-separated file whose first line names the columns is read by name instead.
 * - Comma-separated with a header naming the columns: user/userId/user_id,
 *   item/itemId/item_id/movieId, and optionally rating and timestamp. Other columns are ignored.
 *   Header names may carry a `:type` suffix (`user_id:token`), as RecBole's atomic files do.
 *
 * A missing or empty rating counts as 1 (an implicit event) and a missing timestamp as 0.
 * Timestamps are seconds since the epoch, or ISO 8601 text, which is converted to seconds.
 * The first bad line stops the read with a VALIDATION_FAILED error naming its line and field.
 */

type Column = 'user' | 'item' | 'rating' | 'timestamp'

const COLUMN_NAMES: Readonly<Record<string, Column>> = {
  user: 'user',
  userid: 'user',
  item: 'item',
  itemid: 'item',
  movieid: 'item',
  rating: 'rating',
  timestamp: 'timestamp',
}

interface Layout {
  delimiter: '\t' | ','
  /** Field position of each column; -1 when the file lacks it. */
  pos: Record<Column, number>
  /** Fields a row must have, and may have at most: rows outside are refused, not guessed at. */
  minFields: number
  maxFields: number
  /** What each field position is called, for error messages. */
  names: readonly string[]
}

export interface ParseOptions {
  /** Name used in error messages, such as the file's base name. */
  source?: string
}

export interface LineParser {
  /** Feeds one line; `lineNo` is 1-based and is what error messages report. */
  push(line: string, lineNo: number): void
  finish(): InteractionTable
}

function fail(source: string, lineNo: number, field: string, message: string): never {
  const where = `${source} line ${lineNo}`
  throw new AppError('VALIDATION_FAILED', `${where}, field ${field}: ${message}`, {
    issues: [{ field, message, line: lineNo, source }],
  })
}

function headerName(raw: string): string {
  return unquote(raw.trim()).replace(/:[a-z_]+$/i, '').replace(/[_\s-]/g, '').toLowerCase()
}

function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s
}

/** Splits one CSV line; quoted fields may hold commas and doubled quotes, not line breaks. */
function splitCsv(line: string, source: string, lineNo: number): string[] {
  if (!line.includes('"')) return line.split(',')
  const out: string[] = []
  let i = 0
  while (i <= line.length) {
    if (line[i] === '"') {
      let v = ''
      let j = i + 1
      for (;;) {
        const q = line.indexOf('"', j)
        if (q < 0) fail(source, lineNo, `column ${out.length + 1}`, 'a quoted field is not closed on its line')
        v += line.slice(j, q)
        if (line[q + 1] === '"') {
          v += '"'
          j = q + 2
          continue
        }
        j = q + 1
        break
      }
      if (j < line.length && line[j] !== ',') fail(source, lineNo, `column ${out.length + 1}`, 'text after a closing quote')
      out.push(v)
      i = j + 1
    } else {
      const c = line.indexOf(',', i)
      const end = c < 0 ? line.length : c
      out.push(line.slice(i, end))
      i = end + 1
    }
  }
  return out
}

function layoutFromHeader(fields: string[], delimiter: Layout['delimiter']): Layout | undefined {
  const pos: Record<Column, number> = { user: -1, item: -1, rating: -1, timestamp: -1 }
  fields.forEach((f, i) => {
    const col = COLUMN_NAMES[headerName(f)]
    // The first column of a name wins; a later duplicate is ignored like any unknown column.
    if (col && pos[col] < 0) pos[col] = i
  })
  if (pos.user < 0 || pos.item < 0) return undefined
  const names = fields.map((f) => unquote(f.trim()))
  return { delimiter, pos, minFields: fields.length, maxFields: fields.length, names }
}

const POSITIONAL: Layout = {
  delimiter: '\t',
  pos: { user: 0, item: 1, rating: 2, timestamp: 3 },
  minFields: 2,
  maxFields: 4,
  names: ['user', 'item', 'rating', 'timestamp'],
}

function parseRating(raw: string | undefined, source: string, lineNo: number): number {
  const s = raw?.trim() ?? ''
  if (s === '') return 1
  const v = Number(s)
  if (!Number.isFinite(v)) fail(source, lineNo, 'rating', `"${s}" is not a number`)
  return v
}

function parseTimestamp(raw: string | undefined, source: string, lineNo: number): number {
  const s = raw?.trim() ?? ''
  if (s === '') return 0
  const v = Number(s)
  if (Number.isFinite(v)) return v
  // Only text that looks like a date goes to Date.parse, which accepts far more than ISO 8601.
  if (/^\d{4}-\d{2}-\d{2}/.test(s)) {
    const ms = Date.parse(s)
    if (Number.isFinite(ms)) return ms / 1000
  }
  fail(source, lineNo, 'timestamp', `"${s}" is neither seconds since the epoch nor an ISO 8601 date`)
}

/** A line-at-a-time parser, so a file of any size streams through without being held as text. */
export function createLineParser(options: ParseOptions = {}): LineParser {
  const source = options.source ?? 'input'
  const builder = createInteractionTableBuilder()
  let layout: Layout | undefined
  let first = true

  const split = (line: string, lineNo: number) =>
    layout!.delimiter === ',' ? splitCsv(line, source, lineNo) : line.split('\t')

  return {
    push(rawLine, lineNo) {
      let line = rawLine
      if (first && line.charCodeAt(0) === 0xfeff) line = line.slice(1)
      if (line.endsWith('\r')) line = line.slice(0, -1)
      if (line.trim() === '') return
      if (first) {
        first = false
        const delimiter = line.includes('\t') ? '\t' : ','
        const fields = delimiter === ',' ? splitCsv(line, source, lineNo) : line.split('\t')
        layout = layoutFromHeader(fields, delimiter)
        if (layout) return
        if (delimiter === ',' || fields.length < 2) {
          fail(source, lineNo, 'header', 'expected a tab-separated "user item rating timestamp" line or a CSV header naming the user and item columns (user/userId/user_id, item/itemId/item_id/movieId)')
        }
        layout = POSITIONAL
      }
      const f = split(line, lineNo)
      const l = layout!
      if (f.length < l.minFields) {
        const missing = l.names[f.length] ?? `column ${f.length + 1}`
        fail(source, lineNo, missing, `missing: the line has ${f.length} field(s), ${l.minFields} expected`)
      }
      if (f.length > l.maxFields) {
        fail(source, lineNo, `column ${l.maxFields + 1}`, `unexpected: the line has ${f.length} fields, at most ${l.maxFields} expected`)
      }
      const user = f[l.pos.user]!.trim()
      const item = f[l.pos.item]!.trim()
      if (user === '') fail(source, lineNo, 'user', 'empty')
      if (item === '') fail(source, lineNo, 'item', 'empty')
      const rating = l.pos.rating < 0 ? 1 : parseRating(f[l.pos.rating], source, lineNo)
      const timestamp = l.pos.timestamp < 0 ? 0 : parseTimestamp(f[l.pos.timestamp], source, lineNo)
      builder.add(user, item, rating, timestamp)
    },
    finish() {
      return builder.finish()
    },
  }
}

export async function parseInteractionLines(
  lines: AsyncIterable<string> | Iterable<string>,
  options: ParseOptions = {},
): Promise<InteractionTable> {
  const parser = createLineParser(options)
  let lineNo = 0
  for await (const line of lines) parser.push(line, ++lineNo)
  return parser.finish()
}

/** Small inputs held in memory, such as test fixtures. */
export function parseInteractionsText(text: string, options: ParseOptions = {}): InteractionTable {
  const parser = createLineParser(options)
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) parser.push(lines[i]!, i + 1)
  return parser.finish()
}

/** Streams a file line by line; error messages name the file by its base name. */
export async function readInteractionsFile(path: string, options: ParseOptions = {}): Promise<InteractionTable> {
  const stream = createReadStream(path, { encoding: 'utf8' })
  const rl = createInterface({ input: stream, crlfDelay: Infinity })
  try {
    return await parseInteractionLines(rl, { source: options.source ?? basename(path) })
  } finally {
    rl.close()
    stream.destroy()
  }
}
