import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PerformanceObserver, performance } from 'node:perf_hooks'
import type { ClickHouseClient } from '@clickhouse/client'
import type { ChdbExtension } from 'chdb/connection'
import { z } from 'zod'
import { textStream } from '../../core/db.js'
import type { BenchContext, BenchResult, BenchScenario } from '../harness.js'
import {
  BANKS,
  CATEGORIES,
  CONTEXTS,
  EVENT_COLUMNS,
  LOGIN_METHODS,
  PRODUCTS,
  SCREENS,
  SEARCHES,
  SHAPE,
  csvText,
  generateBatches,
  ndjsonText,
  parseBatch,
  prefixFingerprint,
  textBuffer,
  textPieces,
  toTuple,
  tsvText,
  type EventRow,
  type EventTuple,
  type Fingerprint,
} from './insert.rows.js'

/**
 * The raw insert ceiling of the `events` table: the same N rows inserted once per format, each
 * on an empty table, against the engine generating comparable rows itself (`INSERT … SELECT`).
 * Later ingest benchmarks are read as fractions of these figures.
 *
 * Options (`--set key=value`): rows (1000000), batch (100000 rows per insert statement),
 * piece (1000 rows per streamed text piece), warmup (20000 rows per variant, 0 = none),
 * repeats (1; the best of k is reported, a ceiling), seed (42).
 *
 * Why batches at all: the embedded connection (chdb/connection) materializes every insert body
 * into ONE JS string (`INSERT … FORMAT X\n<body>`) before handing it to the engine, so a 1M-row
 * body would be ~500 MB of string, at V8's string-length limit; batches keep each statement to
 * a few tens of MB. Against a server the same calls stream.
 */

const TABLE = 'events'
/** Staging table of the engine_copy variant, in the bench's throw-away database. */
const STAGE = 'insert_bench_stage'

interface Options {
  rows: number
  batch: number
  piece: number
  warmup: number
  repeats: number
  seed: number
}

function intArg(args: Record<string, string>, name: keyof Options, def: number, min: number): number {
  const raw = args[name]
  if (raw === undefined) return def
  const v = Number(raw.replaceAll('_', ''))
  if (!Number.isSafeInteger(v) || v < min) throw new Error(`insert bench: --set ${name}= expects an integer >= ${min}, got ${raw}`)
  return v
}

function options(args: Record<string, string>): Options {
  return {
    rows: intArg(args, 'rows', 1_000_000, 1),
    batch: intArg(args, 'batch', 100_000, 1),
    piece: intArg(args, 'piece', 1_000, 1),
    warmup: intArg(args, 'warmup', 20_000, 0),
    repeats: intArg(args, 'repeats', 1, 1),
    seed: intArg(args, 'seed', 42, 0),
  }
}

// ---------------------------------------------------------------------------------------------
// Engine-side generator. Every value comes in as a bound parameter (the vocabularies are the very
// arrays the JS generator draws from), so the two row sets have the same shape and sizes; the
// `engine_tsv_bytes` figure checks that. Hash-derived draws keep it deterministic per seed.

/** The generator as an INSERT into `target` (events, or the staging table of engine_copy). */
const engineInsertSql = (target: string) => `
INSERT INTO ${target} (${EVENT_COLUMNS.join(', ')})
SELECT
    toUInt16(1 + identity_key % {tenants:UInt16}),
    toUInt32(if(anonymous, 0, identity_key)),
    fromUnixTimestamp64Milli(ts_ms, 'UTC'),
    ev_type,
    ev_name,
    toString(generateUUIDv4(number)),
    anon_id,
    if(anonymous, '', concat('C', leftPad(toString((identity_key * 7919) % 10000000000), 10, '0'))),
    concat(substring(anon_id, 1, 8), '-', lower(hex(intDiv(ts_ms, {session_ms:UInt32})))),
    multiIf(
        ev_name IN ('Product Viewed', 'Product Clicked'),
        concat('{"product_id":"', pid, '","product_name":"', pname, '","category":"', pcat,
               '","price":', toString(pprice), ',"currency":"CNY","position":', toString(h4 % 20),
               ',"list_id":"home_recommend","source":"', ['recommend', 'search', 'banner'][1 + bitShiftRight(h4, 8) % 3],
               '","experiment":"rec_v2"}'),
        ev_name = 'Order Completed',
        concat('{"order_id":"O', toString(h4 % 1000000000000), '","product_id":"', pid, '","product_name":"', pname,
               '","category":"', pcat, '","amount":', toString(bitShiftRight(h4, 8) % 20000000 / 100),
               ',"currency":"CNY","payment_method":"', ['balance', 'card', 'transfer'][1 + bitShiftRight(h4, 40) % 3],
               '","term_days":', toString([30, 90, 180, 365][1 + bitShiftRight(h4, 50) % 4]), '}'),
        ev_name = 'Loan Calculator Used',
        concat('{"product_id":"', pid, '","amount":', toString(h4 % 50000000 / 100),
               ',"term_months":', toString([12, 24, 36, 60][1 + bitShiftRight(h4, 40) % 4]),
               ',"rate":0.0345,"monthly_payment":', toString(bitShiftRight(h4, 8) % 2000000 / 100), ',"source":"loan_page"}'),
        ev_name = 'Search',
        concat('{"query":', {searches_json:Array(String)}[1 + h4 % length({searches_json:Array(String)})],
               ',"results":', toString(bitShiftRight(h4, 8) % 40), ',"category":"', {categories:Array(String)}[1 + bitShiftRight(h4, 16) % length({categories:Array(String)})],
               '","source":"search_bar","latency_ms":', toString(bitShiftRight(h4, 24) % 400), '}'),
        ev_name = 'Transfer Submitted',
        concat('{"amount":', toString(h4 % 5000000 / 100), ',"currency":"CNY","channel":"mobile","payee_bank":"',
               {banks:Array(String)}[1 + bitShiftRight(h4, 24) % length({banks:Array(String)})],
               '","is_new_payee":', if(bitShiftRight(h4, 32) % 10 = 0, 'true', 'false'), ',"transfer_type":"instant","fee":0}'),
        ev_name = 'Login',
        concat('{"method":"', {login_methods:Array(String)}[1 + h4 % length({login_methods:Array(String)})],
               '","success":', if(bitShiftRight(h4, 8) % 100 < 97, 'true', 'false'), ',"duration_ms":', toString(bitShiftRight(h4, 16) % 3000),
               ',"remember_device":true}'),
        ev_name = 'Push Opened',
        concat('{"campaign_id":"cmp_', toString(h4 % 300), '","push_id":"push-', lower(hex(toUInt32(bitShiftRight(h4, 16) % 4294967296))),
               '","title":"您的专属理财推荐已更新","deeplink":"app://wealth/detail?id=', pid, '"}'),
        ev_type = 'screen',
        concat('{"name":"', ev_name, '","path":"/', lower(ev_name), '","referrer":"/home","title":"', ev_name,
               '","tab_index":', toString(indexOf({screens:Array(String)}, ev_name) - 1), ',"load_ms":', toString(h4 % 900), '}'),
        ev_type = 'page',
        concat('{"path":"/h5/', lower(ev_name), '","referrer":"app://home","title":"', ev_name,
               ' | 千面银行","url":"https://m.example-bank.cn/h5/', lower(ev_name), '"}'),
        concat('{"traits_version":3,"segment":"', ['mass', 'mass_affluent', 'private'][1 + h4 % 3],
               '","kyc_level":2,"preferred_language":"zh-CN"}')),
    {contexts:Array(String)}[1 + identity_key % length({contexts:Array(String)})],
    fromUnixTimestamp64Milli(ts_ms + sent_delay, 'UTC'),
    fromUnixTimestamp64Milli(ts_ms + sent_delay + recv_delay, 'UTC')
FROM
(
    SELECT
        number,
        cityHash64(number, {seed:UInt32}, 1) AS h1,
        cityHash64(number, {seed:UInt32}, 2) AS h2,
        cityHash64(number, {seed:UInt32}, 3) AS h3,
        cityHash64(number, {seed:UInt32}, 4) AS h4,
        h1 % 1000 < {anon_permille:UInt16} AS anonymous,
        if(anonymous, {customers:UInt32} + 1 + bitShiftRight(h1, 16) % {visitors:UInt32}, 1 + bitShiftRight(h1, 16) % {customers:UInt32}) AS identity_key,
        toInt64({start_ms:Int64} + intDiv(number * {span_ms:UInt64}, {n:UInt64}) + h2 % 60000) AS ts_ms,
        toInt64(bitShiftRight(h2, 20) % 2000) AS sent_delay,
        toInt64(50 + bitShiftRight(h2, 40) % 450) AS recv_delay,
        h3 % 100 AS t,
        bitShiftRight(h3, 8) % 100 AS r,
        1 + bitShiftRight(h3, 16) % length({product_ids:Array(String)}) AS p,
        {product_ids:Array(String)}[p] AS pid,
        {product_names:Array(String)}[p] AS pname,
        {product_categories:Array(String)}[p] AS pcat,
        {product_prices:Array(UInt32)}[p] AS pprice,
        multiIf(t < 80, 'track', t < 90, 'screen', t < 96, 'page', 'identify') AS ev_type,
        multiIf(t >= 96, '',
                t >= 80, {screens:Array(String)}[1 + bitShiftRight(h3, 32) % length({screens:Array(String)})],
                r < 25, 'Product Viewed', r < 35, 'Product Clicked', r < 42, 'Order Completed',
                r < 50, 'Loan Calculator Used', r < 62, 'Search', r < 74, 'Transfer Submitted',
                r < 90, 'Login', 'Push Opened') AS ev_name,
        UUIDNumToString(MD5(concat(toString({seed:UInt32}), ':', toString(identity_key)))) AS anon_id
    FROM numbers({n:UInt64})
)`

function engineParams(n: number, seed: number): Record<string, unknown> {
  return {
    n,
    seed,
    tenants: SHAPE.tenants,
    customers: SHAPE.customers,
    visitors: SHAPE.anonymousVisitors,
    anon_permille: Math.round(SHAPE.anonymousShare * 1000),
    start_ms: SHAPE.startMs,
    span_ms: SHAPE.spanMs,
    session_ms: SHAPE.sessionMs,
    product_ids: PRODUCTS.map((p) => p.id),
    product_names: PRODUCTS.map((p) => p.name),
    product_categories: PRODUCTS.map((p) => p.category),
    product_prices: PRODUCTS.map((p) => p.price),
    screens: [...SCREENS],
    // Spliced into JSON as a whole value, so bound already JSON-encoded (quotes escaped).
    searches_json: SEARCHES.map((s) => JSON.stringify(s)),
    categories: [...CATEGORIES],
    banks: [...BANKS],
    login_methods: [...LOGIN_METHODS],
    contexts: [...CONTEXTS],
  }
}

// ---------------------------------------------------------------------------------------------
// Verification: the table must hold exactly the rows a variant inserted, parsed to the same values.

const fingerprintRow = z.object({
  rows: z.coerce.number(),
  customer_key_sum: z.coerce.number(),
  properties_bytes: z.coerce.number(),
  ts_ms_sum: z.string(),
  with_product: z.coerce.number(),
  tsv_bytes: z.coerce.number(),
})
type TableFingerprint = z.infer<typeof fingerprintRow>

async function tableFingerprint(ctx: BenchContext): Promise<TableFingerprint> {
  const [row] = await ctx.db.system.query(
    `SELECT count() AS rows, sum(customer_key) AS customer_key_sum, sum(length(properties)) AS properties_bytes,
            toString(sum(toUnixTimestamp64Milli(timestamp))) AS ts_ms_sum, countIf(product_id != '') AS with_product,
            sum(length(formatRow('TabSeparated', ${EVENT_COLUMNS.join(', ')}))) AS tsv_bytes
     FROM ${TABLE}`,
    {},
    fingerprintRow,
  )
  if (!row) throw new Error('insert bench: the fingerprint query returned no row')
  return row
}

/** Fails loudly when the table does not hold exactly the expected rows. */
function verify(variant: string, got: TableFingerprint, want: Fingerprint | { rows: number }): void {
  const problems: string[] = []
  if (got.rows !== want.rows) problems.push(`count() = ${got.rows}, expected ${want.rows}`)
  if ('customerKeySum' in want) {
    if (got.customer_key_sum !== want.customerKeySum) problems.push(`sum(customer_key) = ${got.customer_key_sum}, expected ${want.customerKeySum}`)
    if (got.properties_bytes !== want.propertiesBytes) problems.push(`properties bytes = ${got.properties_bytes}, expected ${want.propertiesBytes}`)
    if (BigInt(got.ts_ms_sum) !== want.timestampMsSum) problems.push(`sum(timestamp ms) = ${got.ts_ms_sum}, expected ${want.timestampMsSum}`)
    if (got.with_product !== want.withProduct) problems.push(`rows with product_id = ${got.with_product}, expected ${want.withProduct}`)
  } else if (got.with_product === 0) {
    problems.push('no row has a product_id: the MATERIALIZED extraction saw no product JSON')
  }
  if (problems.length) throw new Error(`insert bench: variant ${variant} left a wrong table: ${problems.join('; ')}`)
}

// ---------------------------------------------------------------------------------------------
// The chDB escape hatch: @clickhouse/client keeps its Connection in a private `connection` field,
// and the chDB connection exposes `.chdb.rawInsert`, which hands a Buffer to the engine zero-copy
// (no JS string round trip, the engine's own parser does the work). Absent against a server.

function chdbExtension(client: ClickHouseClient): ChdbExtension | undefined {
  const conn = (client as unknown as { connection?: { chdb?: Partial<ChdbExtension> } }).connection
  return typeof conn?.chdb?.rawInsert === 'function' ? (conn.chdb as ChdbExtension) : undefined
}

// ---------------------------------------------------------------------------------------------

/** One batch as the variant consumes it; parsed from its body before the clock starts. */
interface Batch {
  index: number
  rows: EventRow[]
  /** The same rows as positional arrays; filled only for variants that take tuples. */
  tuples: EventTuple[]
}

type PayloadFormat = 'json_each_row' | 'json_compact_each_row' | 'csv' | 'tsv'

interface Variant {
  key: string
  /** What the variant does, for the notes. */
  what: string
  /** Payload whose size is the variant's byte volume (engine_tsv: its rows formatted as TSV). */
  bytesOf: PayloadFormat | 'engine_tsv'
  /** What each batch needs parsed before the clock starts; 'none' skips parsing. */
  input: 'rows' | 'tuples' | 'none'
  /** Engine side: inserts all n rows in one statement (on the clock). */
  insertAll?(n: number): Promise<void>
  /** Client side: inserts one batch (only this call is on the clock). */
  insertBatch?(batch: Batch): Promise<void>
  /** Untimed set-up before a run of n rows, and its release after. */
  prepare?(n: number): void | Promise<void>
  release?(): void | Promise<void>
}

/**
 * Main-thread GC pause time so far, from perf_hooks 'gc' entries, reported beside each JS-side
 * figure so GC cost can be told apart from serialization proper.
 */
function gcClock(): { read(): Promise<number>; stop(): void } {
  let ms = 0
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) ms += e.duration
  })
  obs.observe({ entryTypes: ['gc'] })
  return {
    // Entries arrive two event-loop turns after the GC (the native hook defers the entry, the
    // observer defers its callback): let both pass before reading.
    read: async () => {
      for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve))
      return ms
    },
    stop: () => obs.disconnect(),
  }
}

export const scenario: BenchScenario = {
  name: 'insert',
  description:
    'Raw insert ceiling of `events`: the same N Segment-like rows through the client as JSONEachRow, ' +
    'JSONCompactEachRow, CSV and TabSeparated streams, through the chDB raw Buffer insert and the engine\'s file ' +
    'reader, against rows generated engine-side by INSERT … SELECT (the baseline).',

  async run(ctx: BenchContext): Promise<BenchResult> {
    const o = options(ctx.args)
    const client = ctx.db.system.raw
    const notes: string[] = []
    const log = (line: string) => console.log(`  [insert] ${line}`)
    // The machines are shared: the load around the run says how far to trust its absolute figures.
    const loadBefore = os.loadavg()[0]!
    // The client wants a non-empty tuple type.
    const columns: [string, ...string[]] = [EVENT_COLUMNS[0]!, ...EVENT_COLUMNS.slice(1)]

    // 1. Rows, generated once and not timed, held as per-batch JSON bodies (see EventBatches).
    const t0 = performance.now()
    const data = generateBatches(o.rows, o.batch, o.seed)
    const generateS = (performance.now() - t0) / 1000
    log(`generated ${o.rows} rows in ${generateS.toFixed(1)} s (${data.bodies.length} batches)`)

    /** Parses the batches covering rows [0, n) in turn, the last one cut at n. Not timed. */
    function* batches(n: number, input: Variant['input']): Generator<Batch> {
      for (let index = 0; index * o.batch < n; index++) {
        const want = Math.min(o.batch, n - index * o.batch)
        const rows = input === 'none' ? [] : parseBatch(data.bodies[index]!).slice(0, want)
        yield { index, rows, tuples: input === 'tuples' ? rows.map(toTuple) : [] }
      }
    }

    const gc = gcClock()
    const gcShare: Record<string, number> = {}
    const figures: Record<string, number> = {}
    const bytes: Record<string, number> = {}

    // 2. Serialization alone, per format: the JS share of each client path, and the payload size.
    // JSON as the client encodes an array (one flat string per batch); text as the streamed
    // variants build it (pieces turned into Buffers, which is what the Readable does with them).
    const encoders: Record<PayloadFormat, { input: Variant['input']; encode(b: Batch): string | Buffer }> = {
      json_each_row: { input: 'rows', encode: (b) => ndjsonText(b.rows, 0, b.rows.length) },
      json_compact_each_row: { input: 'tuples', encode: (b) => ndjsonText(b.tuples, 0, b.tuples.length) },
      csv: { input: 'rows', encode: (b) => textBuffer(b.rows, 0, b.rows.length, o.piece, csvText) },
      tsv: { input: 'rows', encode: (b) => textBuffer(b.rows, 0, b.rows.length, o.piece, tsvText) },
    }
    for (const [fmt, { input, encode }] of Object.entries(encoders)) {
      let total = 0
      let spent = 0
      let gcMs = 0
      for (const b of batches(o.rows, input)) {
        const g = await gc.read()
        const t = performance.now()
        const body = encode(b)
        spent += performance.now() - t
        gcMs += (await gc.read()) - g
        total += typeof body === 'string' ? Buffer.byteLength(body) : body.length
      }
      bytes[fmt] = total
      figures[`serialize_${fmt}_rows_per_s`] = o.rows / (spent / 1000)
      gcShare[`serialize_${fmt}`] = gcMs / spent
      log(`serialize ${fmt}: ${(spent / 1000).toFixed(2)} s, ${(total / 1e6).toFixed(0)} MB`)
    }

    // 3. The variants.
    const variants: Variant[] = [
      {
        key: 'engine_select',
        what: 'INSERT INTO events SELECT … FROM numbers({n:UInt64}): rows generated inside the engine, no client data path',
        bytesOf: 'engine_tsv',
        input: 'none',
        insertAll: (n) => ctx.db.system.command(engineInsertSql(TABLE), engineParams(n, o.seed)),
      },
      {
        key: 'engine_copy',
        what:
          `INSERT INTO events SELECT … FROM ${STAGE} (a Memory table holding the engine_select rows, filled before the clock): ` +
          'the storage write alone (sort, LowCardinality, ZSTD, parts, views), no parse and no generation',
        bytesOf: 'engine_tsv',
        input: 'none',
        prepare: async (n) => {
          await ctx.db.system.command(`DROP TABLE IF EXISTS ${STAGE}`)
          await ctx.db.system.command(`CREATE TABLE ${STAGE} ENGINE = Memory AS SELECT ${EVENT_COLUMNS.join(', ')} FROM ${TABLE} LIMIT 0`)
          await ctx.db.system.command(engineInsertSql(STAGE), engineParams(n, o.seed))
        },
        release: () => ctx.db.system.command(`DROP TABLE IF EXISTS ${STAGE}`),
        insertAll: () =>
          ctx.db.system.command(`INSERT INTO ${TABLE} (${EVENT_COLUMNS.join(', ')}) SELECT ${EVENT_COLUMNS.join(', ')} FROM ${STAGE}`),
      },
      {
        key: 'client_json_each_row',
        what: 'client.insert({ values: objects, format: JSONEachRow }), one call per batch',
        bytesOf: 'json_each_row',
        input: 'rows',
        insertBatch: async (b) => {
          await client.insert({ table: TABLE, columns, values: b.rows, format: 'JSONEachRow' })
        },
      },
      {
        key: 'client_json_compact_each_row',
        what: 'client.insert({ values: arrays, format: JSONCompactEachRow }), one call per batch',
        bytesOf: 'json_compact_each_row',
        input: 'tuples',
        insertBatch: async (b) => {
          await client.insert({ table: TABLE, columns, values: b.tuples, format: 'JSONCompactEachRow' })
        },
      },
      {
        key: 'client_csv_stream',
        what: `client.insert({ values: Readable of CSV pieces of ${o.piece} rows, format: CSV }), one call per batch`,
        bytesOf: 'csv',
        input: 'rows',
        insertBatch: async (b) => {
          await client.insert({ table: TABLE, columns, values: textStream(textPieces(b.rows, 0, b.rows.length, o.piece, csvText)), format: 'CSV' })
        },
      },
      {
        key: 'client_tsv_stream',
        what: `client.insert({ values: Readable of TabSeparated pieces of ${o.piece} rows, format: TabSeparated }), one call per batch`,
        bytesOf: 'tsv',
        input: 'rows',
        insertBatch: async (b) => {
          await client.insert({
            table: TABLE,
            columns,
            values: textStream(textPieces(b.rows, 0, b.rows.length, o.piece, tsvText)),
            format: 'TabSeparated',
          })
        },
      },
    ]

    const raw = chdbExtension(client)
    if (raw) {
      const table = `${ctx.handle.database}.${TABLE}`
      const rawInsert = async (values: Buffer, format: 'TabSeparated' | 'JSONEachRow') => {
        await raw.rawInsert({ table, columns, values, format })
      }
      let prebuilt: Buffer[] = []
      variants.push(
        {
          key: 'raw_json_each_row',
          what: 'JSONEachRow text built as the client builds it, Buffer.from, chdb rawInsert (Buffer handed over zero-copy), per batch',
          bytesOf: 'json_each_row',
          input: 'rows',
          insertBatch: (b) => rawInsert(Buffer.from(ndjsonText(b.rows, 0, b.rows.length)), 'JSONEachRow'),
        },
        {
          key: 'raw_tsv',
          what: `TabSeparated built in pieces of ${o.piece} rows, each piece Buffer.from'd, concatenated, chdb rawInsert, per batch`,
          bytesOf: 'tsv',
          input: 'rows',
          insertBatch: (b) => rawInsert(textBuffer(b.rows, 0, b.rows.length, o.piece, tsvText), 'TabSeparated'),
        },
        {
          key: 'raw_tsv_prebuilt',
          what: 'TabSeparated Buffers built before the clock starts, chdb rawInsert: the engine side of the inline-data insert path alone (parse + write)',
          bytesOf: 'tsv',
          input: 'none',
          prepare: (n) => {
            prebuilt = [...batches(n, 'rows')].map((b) => textBuffer(b.rows, 0, b.rows.length, o.piece, tsvText))
          },
          release: () => {
            prebuilt = []
          },
          insertBatch: (b) => rawInsert(prebuilt[b.index]!, 'TabSeparated'),
        },
      )
    } else {
      notes.push('The raw chDB insert variants were skipped: the client is not on an embedded chDB connection.')
    }
    if (ctx.handle.mode === 'embedded') {
      // The engine's own file reader, fed through a file it can see (a server would need the file
      // on its host). Set against raw_tsv, it shows what the inline-data route itself costs.
      const file = path.join(ctx.dataDir, 'insert-bench-batch.tsv')
      variants.push({
        key: 'file_tsv',
        what:
          'TabSeparated built as in raw_tsv, written to a temp file, ' +
          "INSERT INTO events (…) SELECT * FROM file({path:String}, 'TabSeparated') (structure from the insertion table), per batch",
        bytesOf: 'tsv',
        input: 'rows',
        insertBatch: async (b) => {
          await fs.promises.writeFile(file, textBuffer(b.rows, 0, b.rows.length, o.piece, tsvText))
          await ctx.db.system.command(`INSERT INTO ${TABLE} (${columns.join(', ')}) SELECT * FROM file({path:String}, 'TabSeparated')`, { path: file })
        },
        release: () => fs.rmSync(file, { force: true }),
      })
    }

    const dependents = await ctx.db.system.query<{ deps: string[] }>(
      'SELECT dependencies_table AS deps FROM system.tables WHERE database = currentDatabase() AND name = {t:String}',
      { t: TABLE },
    )
    const mvs = dependents[0]?.deps ?? []
    notes.push(
      mvs.length
        ? `Materialized views fed by events run in every variant: ${mvs.join(', ')}. The rows are dated March 2025, ` +
            'so a view that keeps only recent events filters them all out and costs little more than its WHERE.'
        : 'No materialized view reads from events: figures are the table alone.',
    )

    /** Runs a variant over rows [0, n) on an empty table; returns the seconds on the clock and the GC within. */
    async function runVariant(v: Variant, n: number): Promise<{ s: number; gcS: number }> {
      await ctx.db.system.command(`TRUNCATE TABLE ${TABLE}`)
      await v.prepare?.(n)
      let clock = 0
      let gcMs = 0
      try {
        if (v.insertAll) {
          const g = await gc.read()
          const t = performance.now()
          await v.insertAll(n)
          clock = performance.now() - t
          gcMs = (await gc.read()) - g
        } else if (v.insertBatch) {
          for (const b of batches(n, v.input)) {
            const g = await gc.read()
            const t = performance.now()
            await v.insertBatch(b)
            clock += performance.now() - t
            gcMs += (await gc.read()) - g
          }
        }
      } finally {
        await v.release?.()
      }
      return { s: clock / 1000, gcS: gcMs / 1000 }
    }

    const best: Record<string, number> = {}
    for (const v of variants) {
      if (o.warmup > 0) {
        // Warm-up on a prefix, checked too: first-call costs (JIT, first part, parser set-up) stay out.
        const w = Math.min(o.warmup, o.batch, o.rows)
        await runVariant(v, w)
        const want = v.insertAll ? { rows: w } : prefixFingerprint(parseBatch(data.bodies[0]!), w)
        verify(`${v.key} (warm-up)`, await tableFingerprint(ctx), want)
      }
      for (let rep = 0; rep < o.repeats; rep++) {
        const { s, gcS } = await runVariant(v, o.rows)
        const got = await tableFingerprint(ctx)
        verify(v.key, got, v.insertAll ? { rows: o.rows } : data.fingerprint)
        if (v.key === 'engine_select') bytes.engine_tsv = got.tsv_bytes
        else if (v.bytesOf === 'tsv' && got.tsv_bytes !== bytes.tsv) {
          notes.push(`The engine formats the ${v.key} rows as ${got.tsv_bytes} TSV bytes, the JS TSV was ${bytes.tsv}.`)
        }
        if (s < (best[v.key] ?? Infinity)) {
          best[v.key] = s
          gcShare[v.key] = gcS / s
        }
        log(`${v.key}: ${s.toFixed(2)} s (${Math.round(o.rows / s).toLocaleString('en-US')} rows/s), GC ${gcS.toFixed(1)} s`)
      }
      notes.push(`${v.key}: ${v.what}.`)
    }
    gc.stop()
    await ctx.db.system.command(`TRUNCATE TABLE ${TABLE}`)
    const loadAfter = os.loadavg()[0]!

    // 4. Figures and ratios.
    for (const v of variants) {
      const s = best[v.key]!
      figures[`${v.key}_rows_per_s`] = o.rows / s
      figures[`${v.key}_MB_per_s`] = bytes[v.bytesOf]! / 1e6 / s
      figures[`${v.key}_s`] = s
    }
    for (const [fmt, b] of Object.entries(bytes)) figures[`payload_${fmt}_bytes_per_row`] = b / o.rows
    figures.generate_rows_s = generateS

    const ratios: Record<string, number> = {}
    const engineRate = figures.engine_select_rows_per_s!
    const jsonRate = figures.client_json_each_row_rows_per_s!
    for (const v of variants) {
      if (v.key === 'engine_select') continue
      const rate = figures[`${v.key}_rows_per_s`]!
      ratios[`${v.key}_vs_engine_select`] = rate / engineRate
      if (v.key !== 'client_json_each_row') ratios[`${v.key}_vs_client_json_each_row`] = rate / jsonRate
    }
    // Where a client path's time goes: the share spent building its text in JS.
    for (const [key, fmt] of [
      ['client_json_each_row', 'json_each_row'],
      ['client_json_compact_each_row', 'json_compact_each_row'],
      ['client_csv_stream', 'csv'],
      ['client_tsv_stream', 'tsv'],
    ] as const) {
      ratios[`${key}_serialize_share`] = o.rows / figures[`serialize_${fmt}_rows_per_s`]! / best[key]!
    }
    for (const [k, share] of Object.entries(gcShare)) ratios[`${k}_gc_share`] = share

    notes.push(
      "MB_per_s is payload bytes (1 MB = 10^6 B) in the variant's own format per second; for engine_select it is the " +
        'size of its rows as TabSeparated (formatRow), so it compares with the TSV variants.',
      "*_serialize_share: the serialize-only time of that format over the variant's insert time, i.e. the part spent " +
        'in JS building text before the connection and engine see it.',
      '*_gc_share: main-thread GC pause time over the time on the clock for that step.',
      'Only the insert calls are on the clock: each batch is parsed from its JSON body (and turned into arrays for ' +
        'JSONCompactEachRow) before its call, as an ingest endpoint would hold it.',
      `Load average (1 min) ${loadBefore.toFixed(2)} before the run, ${loadAfter.toFixed(2)} after, on ${os.cpus().length} cores.`,
      `Every figure is the best of ${o.repeats} run(s) on an empty table, after a ${o.warmup}-row warm-up; after each ` +
        'run the table was checked: count(), sum(customer_key), properties bytes, sum(timestamp), rows with product_id.',
    )

    return {
      figures,
      ratios,
      params: { rows: o.rows, batch: o.batch, piece: o.piece, warmup: o.warmup, repeats: o.repeats, seed: o.seed, mode: ctx.handle.mode },
      notes,
    }
  },
}
