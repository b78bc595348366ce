import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { z } from 'zod'
import type { SystemDb } from '../../core/db.js'
import { AppError } from '../../core/errors.js'
import type { DeclaredColumn, EngineFormat } from './import.formats.js'
import type { KindSpec } from './import.kinds.spec.js'

/**
 * The per-import staging tables and the statements that move data through them:
 *
 *   file ──(ClickHouse parses)──▶ import_raw_<id>   every column as text, numbered in file order
 *        ──(JS validates, hashes personal fields)──▶ import_stage_<id>   typed like the target
 *        ──(customer numbers → dense keys)──▶ import_keys_<id>
 *        ──(one INSERT … SELECT, one block)──▶ target
 *
 * Staging tables use the Memory engine: clear-text personal fields of the raw table never reach
 * a disk, and a crash leaves only empty shells, which `dropStale` removes later. Their names
 * come from a random id, never from input.
 */

export type Landing = 'file' | 'stream'

export interface StagingNames {
  raw: string
  land: string
  stage: string
  keys: string
}

const STAGING_NAME = /^import_(raw|land|stage|keys)_[0-9a-f]{32}$/

export function stagingNames(id: string = crypto.randomUUID().replaceAll('-', '')): StagingNames {
  const names = { raw: `import_raw_${id}`, land: `import_land_${id}`, stage: `import_stage_${id}`, keys: `import_keys_${id}` }
  for (const n of Object.values(names)) if (!STAGING_NAME.test(n)) throw new AppError('INTERNAL', 'Bad staging table name.')
  return names
}

/**
 * Settings that make an `INSERT … SELECT` write ONE block, hence one part: either every row of
 * the file is in the target or none is. Squashing keeps the rows until the end of the SELECT
 * (min_insert_block_size_rows is never reached, the bytes threshold is off) and one thread keeps
 * one squashing stream. The target tables are not partitioned, so a block is one part.
 */
export const ONE_BLOCK = 'max_threads = 1, max_insert_threads = 1, min_insert_block_size_rows = 1000000000000, min_insert_block_size_bytes = 0'

// session_timezone: a Parquet/Arrow timestamp without a zone is rendered as UTC text whatever
// the zone of the process or server (the service then reads it as UTC). Empty lines at the end of
// a CSV (spreadsheets and editors leave them) are no rows; the engine refuses them otherwise.
const LAND_SETTINGS = [
  "session_timezone = 'UTC'",
  'input_format_with_names_use_header = 1',
  'input_format_skip_unknown_fields = 1',
  'input_format_csv_empty_as_default = 1',
  'input_format_csv_skip_trailing_empty_lines = 1',
  'input_format_parquet_allow_missing_columns = 1',
  'input_format_arrow_allow_missing_columns = 1',
].join(', ')

export interface LandColumn {
  name: string
  /** How the input format is read: text, or a Parquet/Arrow Map. */
  input: 'Nullable(String)' | 'String' | 'Map(String, String)'
  /** The raw table's text value. */
  expr: string
}

/**
 * How the engine reads each column of a kind: as text, except key-value attributes held in a
 * Parquet/Arrow Map (as the file declares, or assumed when the file could not be inspected),
 * which become JSON text.
 */
export function landColumns(spec: KindSpec, engine: EngineFormat, declared?: readonly DeclaredColumn[]): LandColumn[] {
  if (engine === 'LineAsString') return [{ name: 'line', input: 'String', expr: 'line' }]
  const binary = engine !== 'CSVWithNames'
  const isMap = (name: string) => !declared || declared.some((d) => d.name === name && d.map)
  return Object.entries(spec.fields).map(([name, f]) =>
    binary && f.landing === 'map' && isMap(name)
      ? { name, input: 'Map(String, String)' as const, expr: `toJSONString(${name})` }
      : { name, input: 'Nullable(String)' as const, expr: name },
  )
}

const structure = (cols: readonly LandColumn[]) => cols.map((c) => `${c.name} ${c.input}`).join(', ')

async function drain(stream: Readable) {
  stream.resume()
  await new Promise<void>((resolve, reject) => {
    stream.once('end', resolve)
    stream.once('close', resolve)
    stream.once('error', reject)
  })
}

export interface Staging {
  /** Loads the file into the raw table; returns the number of records (lines for NDJSON). */
  land(names: StagingNames, file: string, engine: EngineFormat, cols: readonly LandColumn[]): Promise<number>
  /** Raw records [row_no, ...text values] with lo <= row_no < hi, in file order. */
  page(names: StagingNames, cols: readonly LandColumn[], lo: number, hi: number): Promise<unknown[][]>
  /** Columns of a Parquet file, read by the engine (file landing only). */
  describe(file: string, engine: EngineFormat): Promise<DeclaredColumn[] | undefined>
  createStage(names: StagingNames, spec: KindSpec): Promise<string[]>
  insert(table: string, columns: readonly string[], tuples: unknown[][]): Promise<void>
  createKeys(names: StagingNames): Promise<void>
  distinct(table: string, columns: readonly string[]): Promise<string[]>
  count(table: string): Promise<number>
  drop(names: StagingNames): Promise<void>
  /** Drops staging tables a crashed import left behind (older than `hours`). */
  dropStale(hours: number): Promise<string[]>
  landing(): Promise<Landing>
}

export function createStaging(deps: { system: SystemDb; landing?: Landing; tmpDir?: string }): Staging {
  const { system } = deps
  const client = system.raw
  let landing: Promise<Landing> | undefined = deps.landing ? Promise.resolve(deps.landing) : undefined

  /**
   * Can the engine read the files this process writes? True for the embedded engine (same
   * process) and a server on this host with a permissive user_files_path; then the engine reads
   * the file itself. Otherwise the file is streamed to the server in the insert body.
   */
  async function probe(): Promise<Landing> {
    const dir = fs.mkdtempSync(path.join(deps.tmpDir ?? os.tmpdir(), 'qianmian-probe-'))
    const file = path.join(dir, 'probe.txt')
    const token = crypto.randomUUID()
    try {
      fs.writeFileSync(file, token + '\n', { mode: 0o600 })
      const rows = await system.query(`SELECT line FROM file({file:String}, 'LineAsString', 'line String')`, { file }, z.object({ line: z.string() }))
      return rows[0]?.line === token ? 'file' : 'stream'
    } catch {
      return 'stream'
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }

  async function count(table: string) {
    const rows = await system.query(`SELECT count() AS n FROM ${table}`, {}, z.object({ n: z.coerce.number() }))
    return rows[0]?.n ?? 0
  }

  const getLanding = () => (landing ??= probe())

  return {
    landing: getLanding,

    async land(names, file, engine, cols) {
      const rawCols = cols.map((c) => `${c.name} ${c.input === 'String' ? 'String' : 'Nullable(String)'}`).join(', ')
      await system.command(`CREATE TABLE ${names.raw} (row_no UInt64, ${rawCols}) ENGINE = Memory`)
      const names_ = cols.map((c) => c.name).join(', ')
      const exprs = cols.map((c) => c.expr).join(', ')
      // rowNumberInAllBlocks() on one thread numbers records in file order (the _row_number
      // virtual column is not exact for CSV read in parallel).
      if ((await getLanding()) === 'file') {
        await system.command(
          `INSERT INTO ${names.raw} (row_no, ${names_})
           SELECT rowNumberInAllBlocks(), ${exprs} FROM file({file:String}, {format:String}, {structure:String})
           SETTINGS max_threads = 1, ${LAND_SETTINGS}`,
          { file, format: engine, structure: structure(cols) },
        )
      } else {
        // The server cannot see this file: stream it as the body of an INSERT into a landing
        // table, then number the rows in insertion order.
        await system.command(`CREATE TABLE ${names.land} (${structure(cols)}) ENGINE = Memory`)
        const res = await client.exec({
          query: `INSERT INTO ${names.land} (${names_}) SETTINGS ${LAND_SETTINGS} FORMAT ${engine}`,
          values: fs.createReadStream(file),
        })
        await drain(res.stream)
        await system.command(`INSERT INTO ${names.raw} (row_no, ${names_}) SELECT rowNumberInAllBlocks(), ${exprs} FROM ${names.land} SETTINGS max_threads = 1`)
        await system.command(`DROP TABLE IF EXISTS ${names.land}`)
      }
      return count(names.raw)
    },

    async page(names, cols, lo, hi) {
      const rs = await client.query({
        query: `SELECT row_no, ${cols.map((c) => c.name).join(', ')} FROM ${names.raw}
                WHERE row_no >= {lo:UInt64} AND row_no < {hi:UInt64} ORDER BY row_no
                SETTINGS output_format_json_validate_utf8 = 1, output_format_json_quote_64bit_integers = 0`,
        query_params: { lo, hi },
        format: 'JSONCompact',
      })
      return ((await rs.json()) as { data: unknown[][] }).data
    },

    async describe(file, engine) {
      if ((await getLanding()) !== 'file') return undefined
      const rows = await system.query(`DESCRIBE file({file:String}, {format:String})`, { file, format: engine }, z.object({ name: z.string(), type: z.string() }).loose())
      return rows.map((r) => ({ name: r.name, map: /^(Nullable\()?Map\(/.test(r.type) }))
    },

    async createStage(names, spec) {
      const types = new Map(
        (
          await system.query(
            `SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {table:String}`,
            { table: spec.target },
            z.object({ name: z.string(), type: z.string() }),
          )
        ).map((r) => [r.name, r.type]),
      )
      const cols: [string, string][] = [['row_no', 'UInt64']]
      for (const c of spec.stageFromTarget) {
        const t = types.get(c)
        if (!t) throw new AppError('INTERNAL', `Table ${spec.target} has no column ${c}; is the schema migrated?`)
        cols.push([c, t])
      }
      cols.push(...spec.stageExtra.map(([n, t]) => [n, t] as [string, string]))
      await system.command(`CREATE TABLE ${names.stage} (${cols.map(([n, t]) => `${n} ${t}`).join(', ')}) ENGINE = Memory`)
      return cols.map(([n]) => n)
    },

    async insert(table, columns, tuples) {
      if (!tuples.length) return
      await client.insert({ table, values: tuples, format: 'JSONCompactEachRow', columns: columns as [string, ...string[]] })
    },

    async createKeys(names) {
      await system.command(`CREATE TABLE ${names.keys} (customer_no String, customer_key UInt32) ENGINE = Memory`)
    },

    async distinct(table, columns) {
      // In order of first appearance, so new customers get their keys in file order and a
      // re-run of the same file allocates the same way (DISTINCT alone has no order).
      const union = columns.map((c) => `SELECT ${c} AS v, row_no FROM ${table} WHERE ${c} != ''`).join(' UNION ALL ')
      const rs = await client.query({ query: `SELECT v FROM (${union}) GROUP BY v ORDER BY min(row_no), v`, format: 'JSONCompact' })
      return ((await rs.json()) as { data: [string][] }).data.map((r) => r[0])
    },

    count,

    async drop(names) {
      for (const t of Object.values(names)) await system.command(`DROP TABLE IF EXISTS ${t} SYNC`)
    },

    async dropStale(hours) {
      const rows = await system.query(
        `SELECT name FROM system.tables
         WHERE database = currentDatabase() AND match(name, {pattern:String})
           AND metadata_modification_time < now() - toIntervalHour({hours:UInt32})`,
        { pattern: STAGING_NAME.source, hours },
        z.object({ name: z.string() }),
      )
      for (const r of rows) if (STAGING_NAME.test(r.name)) await system.command(`DROP TABLE IF EXISTS ${r.name} SYNC`)
      return rows.map((r) => r.name)
    },
  }
}
