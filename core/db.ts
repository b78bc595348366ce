import { Readable } from 'node:stream'
import type { ClickHouseClient } from '@clickhouse/client'
import type { ZodType } from 'zod'
import { AppError, errText, issuesFromZod } from './errors.js'
import { isMemoryLimitError, type Lane } from './lanes.js'
import { tsvRows } from './tsv.js'
import { createTenantScopeChecker, type TenantScopeChecker } from './tenant-scope.js'

/**
 * The query layer. Values always travel as bound `{name:Type}` parameters; identifiers come only
 * from code. Tenant isolation lives here because the embedded engine has no row policies:
 * a `TenantDb` runs a SQL text only once the engine's parse of it proves every read of a tenant
 * table filtered by `tenant_id = {tenant:UInt16}` (the rule: core/tenant-scope.ts), binds the
 * tenant itself, and stamps `tenant_id` on inserted rows. The unscoped `SystemDb` is handed only
 * to the modules listed in core/system-handle.test.ts.
 */

export type Params = Record<string, unknown>

/** Tables whose rows belong to one tenant. Every one has a `tenant_id UInt16` column. */
export const TENANT_TABLES = [
  'api_keys',
  'customers',
  'consents',
  'accounts',
  'loans',
  'loan_schedules',
  'bills',
  'products',
  'identities',
  'events',
  'ingest_dedup',
  'ingest_dedup_digests',
  'key_blocks',
  'identity_changes',
  'customer_merges',
  'tracking_plans',
  'customer_traits',
  'event_changes',
  'stock_changes',
  'tag_definitions',
  'tag_event_daily',
  'tag_event_days',
  'tag_values',
  'tag_history',
  'tag_changes',
  'tag_stage',
  'tag_scope',
  'tag_customer_prints',
  'tag_bitmaps',
  'tag_state',
  'pipeline_runs',
  'pipeline_locks',
  'segment_definitions',
  'segment_members',
  'segment_events',
  'segment_runs',
  'tag_numeric',
  'layout_catalogs',
  'rec_models',
  'rec_items',
  'rec_customers',
  'layout_exposures',
  'layout_exposure_lists',
  'push_campaigns',
  'push_policies',
  'push_targets',
  'push_leases',
  'push_outcomes',
  'push_campaign_approvals',
  'push_test_lists',
  'push_test_sends',
  'audit_log',
  'consent_history',
  'consent_categories',
  'erasure_jobs',
  'erasure_tombstones',
] as const
export type TenantTable = (typeof TENANT_TABLES)[number]

/** The caller may not bind the tenant: the scope does. */
export function assertTenantParamFree(params: Params): void {
  if ('tenant' in params) {
    throw new AppError('TENANT_SCOPE_VIOLATION', 'The tenant parameter is bound by the scope, not by the caller.')
  }
}

export interface QueryOptions {
  /** Per-query settings, sent in the SQL's SETTINGS clause position by the caller's choice. */
  abortSignal?: AbortSignal
  queryId?: string
}

class Querier {
  constructor(
    protected readonly client: ClickHouseClient,
    /** The lane this querier's client belongs to (core/lanes.ts), named in limit errors. */
    readonly lane: Lane = 'request',
  ) {}

  /** A query over its lane's memory limit becomes a coded error; the engine and the process stay up. */
  protected async guard<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (e) {
      if (isMemoryLimitError(e)) {
        throw new AppError('QUERY_MEMORY_LIMIT', `A query on the ${this.lane} lane needed more memory than the lane allows (LANE_${this.lane.toUpperCase()}_MAX_MEMORY_MB): ${errText(e).slice(0, 300)}`, { cause: e })
      }
      throw e
    }
  }

  protected async rows<T>(sql: string, params: Params, schema?: ZodType<T>, opts: QueryOptions = {}): Promise<T[]> {
    const data = await this.guard(async () => {
      const rs = await this.client.query({
        query: sql,
        query_params: params,
        format: 'JSONEachRow',
        ...(opts.abortSignal ? { abort_signal: opts.abortSignal } : {}),
        ...(opts.queryId ? { query_id: opts.queryId } : {}),
      })
      return (await rs.json()) as unknown[]
    })
    if (!schema) return data as T[]
    return data.map((row, i) => {
      const r = schema.safeParse(row)
      if (!r.success) {
        throw new AppError('INTERNAL', `Row ${i} of a query result has an unexpected shape.`, {
          issues: issuesFromZod(r.error.issues),
        })
      }
      return r.data
    })
  }

  protected async exec(sql: string, params: Params): Promise<void> {
    await this.guard(() => this.client.command({ query: sql, query_params: params }))
  }

  protected async insertRows(table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    if (rows.length === 0) return
    await this.client.insert({ table, values: rows as Record<string, unknown>[], format: 'JSONEachRow' })
  }
}

export type InsertText = (table: string, columns: readonly string[], format: 'TabSeparated' | 'JSONEachRow' | 'CSV', body: Buffer) => Promise<void>

/** Unscoped access, for the migration runner, the tenant registry and cross-tenant jobs only. */
export class SystemDb extends Querier {
  constructor(
    client: ClickHouseClient,
    private readonly insertText?: InsertText,
    lane?: Lane,
  ) {
    super(client, lane)
  }
  /** Inserts positional rows as one TabSeparated insert (the fastest path measured). */
  async insertTsv(table: string, columns: readonly string[], rows: readonly (readonly unknown[])[]) {
    if (!rows.length) return
    await this.insertTsvBody(table, columns, tsvRows(rows))
  }
  /** A TabSeparated body already encoded (rows ending in a newline). */
  async insertTsvBody(table: string, columns: readonly string[], body: Buffer) {
    const insertText = this.insertText
    if (insertText) return this.guard(() => insertText(table, columns, 'TabSeparated', body))
    await this.guard(() => this.client.insert({ table, columns: columns as [string, ...string[]], format: 'TabSeparated', values: Readable.from([body], { objectMode: false }) }))
  }
  query<T = Record<string, unknown>>(sql: string, params: Params = {}, schema?: ZodType<T>, opts?: QueryOptions) {
    return this.rows(sql, params, schema, opts)
  }
  command(sql: string, params: Params = {}) {
    return this.exec(sql, params)
  }
  insert(table: string, rows: readonly Record<string, unknown>[]) {
    return this.insertRows(table, rows)
  }
  /** Streams text in a ClickHouse input format (CSV, TSV, JSONEachRow...) into a table. */
  async insertStream(table: string, format: 'CSV' | 'TabSeparated' | 'JSONEachRow' | 'JSONCompactEachRow', body: Readable) {
    await this.client.insert({ table, values: body, format })
  }
  get raw(): ClickHouseClient {
    return this.client
  }
}

/** Access for one tenant: tenant tables must be filtered by the bound `{tenant:UInt16}`. */
export class TenantDb extends Querier {
  constructor(
    client: ClickHouseClient,
    readonly tenantId: number,
    private readonly system: SystemDb,
    private readonly scope: TenantScopeChecker,
  ) {
    super(client, system.lane)
    if (!Number.isInteger(tenantId) || tenantId <= 0 || tenantId > 65535) {
      throw new AppError('TENANT_SCOPE_VIOLATION', `Invalid tenant id ${tenantId}.`)
    }
  }

  /** Refuses a caller-bound tenant, then waits for the text's verdict (cached after its first run). */
  private async scoped(sql: string, params: Params): Promise<Params> {
    assertTenantParamFree(params)
    const bound = { ...params, tenant: this.tenantId }
    await this.scope.check(sql, bound)
    return bound
  }

  async query<T = Record<string, unknown>>(sql: string, params: Params = {}, schema?: ZodType<T>, opts?: QueryOptions) {
    const bound = await this.scoped(sql, params)
    return this.rows(sql, bound, schema, opts)
  }

  async command(sql: string, params: Params = {}) {
    return this.exec(sql, await this.scoped(sql, params))
  }

  /**
   * The raw response body of a query that names its own FORMAT (CSV, Parquet, Arrow ...), for
   * exports: scoped like every other query. (The embedded engine hands the whole result over as
   * one chunk; a server streams it.)
   */
  async stream(sql: string, params: Params = {}): Promise<Readable> {
    const rs = await this.client.exec({ query: sql, query_params: await this.scoped(sql, params) })
    return rs.stream
  }

  /**
   * Inserts positional rows (columns in `columns` order, without tenant_id) as TabSeparated,
   * the fast path for large inserts; `tenant_id` comes from the scope.
   */
  async insertTsv(table: TenantTable, columns: readonly string[], rows: readonly (readonly unknown[])[]) {
    if (!(TENANT_TABLES as readonly string[]).includes(table) || columns.includes('tenant_id')) {
      throw new AppError('TENANT_SCOPE_VIOLATION', `${table}: tenant rows take their tenant from the scope.`)
    }
    await this.system.insertTsv(table, ['tenant_id', ...columns], rows.map((r) => [this.tenantId, ...r]))
  }

  /**
   * Inserts rows the caller already encoded as TabSeparated bytes, for callers that append one
   * row per request to a buffer (layout exposures): `tenant_id` first, then `columns`, each row
   * ending in a newline. Every row is checked to start with this scope's tenant, so a caller's
   * encoding slip cannot write into another tenant.
   */
  async insertTsvEncoded(table: TenantTable, columns: readonly string[], body: Buffer) {
    checkEncodedRows(this.tenantId, table, columns, body)
    if (!body.length) return
    await this.system.insertTsvBody(table, ['tenant_id', ...columns], body)
  }

  /** Inserts rows into a tenant table; `tenant_id` is set from the scope whatever the row says. */
  async insert(table: TenantTable, rows: readonly Record<string, unknown>[]) {
    if (!(TENANT_TABLES as readonly string[]).includes(table)) {
      throw new AppError('TENANT_SCOPE_VIOLATION', `${table} is not a tenant table.`)
    }
    return this.insertRows(
      table,
      rows.map((r) => ({ ...r, tenant_id: this.tenantId })),
    )
  }
}

/**
 * Refuses an encoded body (TabSeparated rows, `tenant_id` first) unless every row starts with
 * `tenantId` and ends in a newline, and the columns leave `tenant_id` to the scope.
 */
function checkEncodedRows(tenantId: number, table: TenantTable, columns: readonly string[], body: Buffer): void {
  if (!(TENANT_TABLES as readonly string[]).includes(table) || columns.includes('tenant_id')) {
    throw new AppError('TENANT_SCOPE_VIOLATION', `${table}: tenant rows take their tenant from the scope.`)
  }
  if (!body.length) return
  const prefix = Buffer.from(`${tenantId}\t`)
  const refuse = () => new AppError('TENANT_SCOPE_VIOLATION', `${table}: an encoded row does not start with tenant ${tenantId}.`)
  if (body[body.length - 1] !== 0x0a || body.includes(0x0d)) throw refuse()
  for (let at = 0; at < body.length; at = body.indexOf(0x0a, at) + 1) {
    if (body.compare(prefix, 0, prefix.length, at, Math.min(body.length, at + prefix.length)) !== 0) throw refuse()
  }
}

/**
 * Encoded rows of several tenants (each body checked against its own tenant, as
 * `TenantDb.insertTsvEncoded` checks one) in one insert: one part for all of them. For writers
 * that buffer rows per tenant and flush them together (layout exposures): an insert per tenant
 * per flush made a part each, so parts and merges grew with the number of banks.
 */
export async function insertTenantsTsvEncoded(db: Db, table: TenantTable, columns: readonly string[], bodies: readonly { tenantId: number; body: Buffer }[]): Promise<void> {
  for (const b of bodies) checkEncodedRows(b.tenantId, table, columns, b.body)
  const filled = bodies.filter((b) => b.body.length > 0)
  if (!filled.length) return
  await db.system.insertTsvBody(table, ['tenant_id', ...columns], filled.length === 1 ? filled[0]!.body : Buffer.concat(filled.map((b) => b.body)))
}

export interface Db {
  readonly system: SystemDb
  forTenant(tenantId: number): TenantDb
  /** The lane this Db's queries run on. */
  readonly laneName: Lane
  /**
   * The same access on another lane (core/lanes.ts). Modules take the request lane's Db and
   * move the work that is not a caller's (runs, builds, bulk loads, jobs) to its lane here.
   */
  lane(lane: Lane): Db
}

/** A lane's client and insert path (the handle's `lane()`); without it, every lane is the one client. */
export type LaneSource = (lane: Lane) => { client: ClickHouseClient; insertText?: InsertText }

export function createDb(client: ClickHouseClient, insertText?: InsertText, lanes?: LaneSource): Db {
  // One checker per process: verdicts are per SQL text, whichever tenant and lane run it. Its
  // EXPLAINs are light and go on the request lane.
  const scope = createTenantScopeChecker({ tenantTables: TENANT_TABLES, explain: (text, params) => explainAst(client, text, params) })
  const made = new Map<Lane, Db>()
  const make = (lane: Lane): Db => {
    let db = made.get(lane)
    if (db) return db
    const src = lane === 'request' || !lanes ? { client, insertText } : lanes(lane)
    const system = new SystemDb(src.client, src.insertText, lane)
    db = { system, laneName: lane, forTenant: (tenantId) => new TenantDb(src.client, tenantId, system, scope), lane: make }
    made.set(lane, db)
    return db
  }
  return make('request')
}

/** The process's Db over an engine handle's lanes. */
export function createLaneDb(handle: { client: ClickHouseClient; insertText: InsertText; lane: LaneSource }): Db {
  return createDb(handle.client, handle.insertText, handle.lane)
}

/** The engine's parse tree of a text, one node a line (raw: names are not escaped). */
async function explainAst(client: ClickHouseClient, text: string, params: Params): Promise<string[]> {
  const rs = await client.exec({ query: `EXPLAIN AST ${text}`, query_params: params, clickhouse_settings: { default_format: 'TabSeparatedRaw' } })
  let out = ''
  for await (const chunk of rs.stream) out += String(chunk)
  return out.split('\n')
}

/** `Readable.from` over strings, for streaming generated text into `insertStream`. */
export function textStream(chunks: Iterable<string> | AsyncIterable<string>): Readable {
  return Readable.from(chunks, { objectMode: false })
}
