import { Readable } from 'node:stream'
import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { COMPLETE_BUILDS } from './segment.materialize.js'

/**
 * Reading materialized segments: the current build of a segment is its newest complete one (it
 * has a segment_runs row; a build that failed half-way is never served). Members are paged by key
 * with bitmap functions server-side (bitmapSubsetLimit), so a page never loads the whole bitmap
 * into JS; which segments hold a customer is bitmapContains over each segment's current build; an
 * export is produced by the engine in CSV, Parquet or Arrow (customer_key and customer_no only).
 */

export const MAX_PAGE = 10_000
const MAX_KEY = 0xffffffff

export interface MembersPage {
  /** Ascending. */
  keys: number[]
  /** The last key of this page when more follow, else null. */
  nextCursor: number | null
  build: string
  size: number
}

const pageRow = z.object({ build: z.coerce.string(), size: z.coerce.number(), keys: z.array(z.coerce.number()) })

const invalid = (field: string, message: string) => new AppError('VALIDATION_FAILED', `${field}: ${message}`, { issues: [{ field, message }] })
const notMaterialized = (segmentId: string) => new AppError('NOT_FOUND', `Segment ${segmentId} has not been materialized.`)

/** The current build's bitmap row of a segment (newest complete build). */
const CURRENT = `SELECT build, size, keys FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String}
  AND build IN ${COMPLETE_BUILDS} ORDER BY build DESC LIMIT 1`

/** One page of the current members, keys greater than `cursor` (the previous page's last key). */
export async function members(db: TenantDb, segmentId: string, o: { cursor?: number; limit: number }): Promise<MembersPage> {
  const limit = o.limit
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw invalid('limit', `an integer in 1..${MAX_PAGE}`)
  const cursor = o.cursor
  if (cursor !== undefined && (!Number.isInteger(cursor) || cursor < 0 || cursor >= MAX_KEY)) throw invalid('cursor', 'a customer key')
  // One more than asked tells whether another page follows. bitmapSubsetLimit takes the
  // smallest keys >= start; bitmapToArray of a small set may be unsorted, hence arraySort.
  const [row] = await db.query(
    `SELECT toString(build) AS build, size, arraySort(bitmapToArray(bitmapSubsetLimit(keys, {start:UInt32}, {n:UInt32}))) AS keys FROM (${CURRENT})`,
    { sid: segmentId, start: cursor === undefined ? 0 : cursor + 1, n: limit + 1 },
    pageRow,
  )
  if (!row) throw notMaterialized(segmentId)
  const more = row.keys.length > limit
  const keys = more ? row.keys.slice(0, limit) : row.keys
  return { keys, nextCursor: more ? keys[keys.length - 1]! : null, build: row.build, size: row.size }
}

/** Size per materialization of a segment, newest first. */
export async function segmentRuns(db: TenantDb, segmentId: string, limit: number) {
  return db.query(
    `SELECT toString(build) AS build, version, size, entered, exited, toString(finished_at) AS finishedAt, trigger FROM segment_runs
     WHERE tenant_id = {tenant:UInt16} AND segment_id = {id:String} ORDER BY segment_runs.build DESC LIMIT {limit:UInt32}`,
    { id: segmentId, limit },
    z.object({ build: z.string(), version: z.coerce.number(), size: z.coerce.number(), entered: z.coerce.number(), exited: z.coerce.number(), finishedAt: z.string(), trigger: z.string() }),
  )
}

/** The ids of the (not retired) segments whose current build holds the customer, sorted. */
export async function customerSegments(db: TenantDb, customerKey: number): Promise<string[]> {
  if (!Number.isInteger(customerKey) || customerKey < 0 || customerKey > MAX_KEY) throw invalid('customerKey', 'a customer key')
  const rows = await db.query(
    `SELECT segment_id FROM (
       SELECT segment_id, keys FROM segment_members WHERE tenant_id = {tenant:UInt16}
         AND (segment_id, build) IN (SELECT segment_id, build FROM segment_runs WHERE tenant_id = {tenant:UInt16})
       ORDER BY segment_id, build DESC LIMIT 1 BY segment_id)
     WHERE bitmapContains(keys, {k:UInt32})
       AND segment_id NOT IN (SELECT segment_id FROM segment_definitions FINAL WHERE tenant_id = {tenant:UInt16}
                              GROUP BY segment_id HAVING argMax(retired, version) = 1)
     ORDER BY segment_id`,
    { k: customerKey },
    z.object({ segment_id: z.string() }),
  )
  return rows.map((r) => r.segment_id)
}

export type ExportFormat = 'csv' | 'parquet' | 'arrow'

/** Customer keys per page (a key range) of a CSV or Arrow export. */
export const EXPORT_PAGE_KEYS = 500_000

const EXPORT_SETTINGS = `SETTINGS output_format_arrow_string_as_string = 1, output_format_arrow_compression_method = 'none',
  output_format_arrow_low_cardinality_as_dictionary = 0, output_format_parquet_string_as_string = 1`
/** The end-of-stream marker of an Arrow IPC stream: a continuation marker and a zero length. */
const ARROW_EOS = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])

/**
 * The current members of a segment as a byte stream produced by the engine: `customer_key,
 * customer_no` (nothing else personal), ordered by key. CSV has a header row; Arrow is the IPC
 * stream format, uncompressed (the apache-arrow JS reader has no LZ4 codec), strings as Utf8;
 * Parquet is one file. Members deleted as customers since the build are left out.
 *
 * It runs through the client's `exec` (the raw response body): `query()`'s `stream()` splits
 * its output into rows at newlines, and does not accept Arrow. The embedded engine hands a
 * query's whole result over at once, so CSV and Arrow are read in pages of `pageKeys` customer
 * keys: one query each, on the same build. What is held at once stays about one page, whatever
 * the segment's size. Keys are dense from 1, so the last, 2^32 - 1, is never a customer's.
 * - CSV pages are rows; the header comes with the first.
 * - An Arrow stream is a schema message, record batch messages, and an end marker. Every page
 *   of the same query has the same schema, so the first page's schema and every page's record
 *   batches make one stream (no dictionaries: none is asked for).
 * - Parquet is a file with a footer, which cannot be cut into pages. It comes from one query: a
 *   ClickHouse server streams it, the embedded engine produces it whole.
 */
export async function exportSegment(tdb: TenantDb, segmentId: string, format: ExportFormat, opts: { pageKeys?: number } = {}): Promise<Readable> {
  if (format !== 'csv' && format !== 'arrow' && format !== 'parquet') throw invalid('format', 'one of csv, parquet, arrow')
  const pageKeys = opts.pageKeys ?? EXPORT_PAGE_KEYS
  if (!Number.isInteger(pageKeys) || pageKeys < 1) throw invalid('pageKeys', 'a positive integer')
  const [cur] = await tdb.query(
    `SELECT toString(build) AS build, bitmapMin(keys) AS lo, bitmapMax(keys) AS hi, size FROM (${CURRENT})`,
    { sid: segmentId },
    z.object({ build: z.string(), lo: z.coerce.number(), hi: z.coerce.number(), size: z.coerce.number() }),
  )
  if (!cur) throw notMaterialized(segmentId)
  const membersIn = (range: string) => `SELECT customer_key, customer_no FROM customers FINAL
    WHERE tenant_id = {tenant:UInt16} AND deleted = 0${range}
      AND customer_key IN (SELECT arrayJoin(bitmapToArray(${range ? 'bitmapSubsetInRange(keys, {from:UInt32}, {to:UInt32})' : 'keys'})) FROM segment_members
                           WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {bld:UInt64})
    ORDER BY customer_key`
  if (format === 'parquet') return tdb.stream(`${membersIn('')} ${EXPORT_SETTINGS} FORMAT Parquet`, { sid: segmentId, bld: cur.build })

  const page = membersIn(' AND customer_key >= {from:UInt32} AND customer_key < {to:UInt32}')
  // An empty segment still gets its header (CSV) or schema (Arrow): one page over no keys.
  const first = cur.size > 0 ? cur.lo : 0
  const last = cur.size > 0 ? cur.hi : 0
  const read = (from: number, fmt: string) =>
    tdb.stream(`${page} ${format === 'arrow' ? EXPORT_SETTINGS : ''} FORMAT ${fmt}`, { sid: segmentId, bld: cur.build, from, to: Math.min(from + pageKeys, MAX_KEY) })
  async function* pages(): AsyncGenerator<Buffer> {
    for (let from = first; from <= last; from += pageKeys) {
      if (format === 'csv') {
        for await (const chunk of await read(from, from === first ? 'CSVWithNames' : 'CSV')) yield chunk as Buffer
        continue
      }
      const chunks: Buffer[] = []
      for await (const chunk of await read(from, 'ArrowStream')) chunks.push(chunk as Buffer)
      yield arrowPage(Buffer.concat(chunks), from === first)
    }
    if (format === 'arrow') yield ARROW_EOS
  }
  return Readable.from(pages(), { objectMode: false })
}

/** One page's Arrow stream without its end marker, and without its schema unless it is the first. */
function arrowPage(bytes: Buffer, first: boolean): Buffer {
  const bad = (why: string) => new AppError('INTERNAL', `An Arrow page from the engine is not a stream this export can join: ${why}.`)
  if (bytes.length < 16 || bytes.readUInt32LE(0) !== 0xffffffff) throw bad('no continuation marker at the start')
  if (!bytes.subarray(bytes.length - 8).equals(ARROW_EOS)) throw bad('no end-of-stream marker')
  // The schema message: marker, metadata length, metadata (padded to 8); a schema has no body.
  const schemaEnd = 8 + bytes.readInt32LE(4)
  if (schemaEnd > bytes.length - 8) throw bad('a schema longer than the page')
  return bytes.subarray(first ? 0 : schemaEnd, bytes.length - 8)
}
