import fs from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { createClient, type ClickHouseClient } from '@clickhouse/client'
import { AppError, errText } from './errors.js'
import type { Config } from './config.js'
import { LANE_HEADER, LANES, laneSettings, type Lane, type LaneLimits } from './lanes.js'
import { asEngineSession } from './chdb-session.js'
import { engineConfigArgs } from './engine-config.js'

/**
 * The process's ClickHouse, embedded (chDB, in-process) or remote (HTTP), as one client per
 * lane (core/lanes.ts). libchdb binds one data directory per process, so this is created once by
 * the composition root and shared; nothing opens a client at import time.
 */
export interface LaneClient {
  readonly client: ClickHouseClient
  /** See ClickHouseHandle.insertText; runs on this lane. */
  insertText(table: string, columns: readonly string[], format: 'TabSeparated' | 'JSONEachRow' | 'CSV', body: Buffer): Promise<void>
}

export interface ClickHouseHandle {
  /** The request lane's client. */
  readonly client: ClickHouseClient
  /** A lane's client and insert path. */
  lane(lane: Lane): LaneClient
  readonly mode: 'embedded' | 'remote'
  readonly database: string
  /** Where the embedded engine keeps its files; undefined for a remote server. */
  readonly dataDir: string | undefined
  /**
   * Inserts a text body as one insert. Embedded, the buffer goes to the engine zero-copy (the
   * client's path would first copy the body into one JS string); remote, it is the client's
   * streaming insert.
   */
  insertText(table: string, columns: readonly string[], format: 'TabSeparated' | 'JSONEachRow' | 'CSV', body: Buffer): Promise<void>
  close(): Promise<void>
}

export type ClickHouseOptions = Pick<Config, 'dataDir'> & { clickhouse: Config['clickhouse']; lanes?: Config['lanes'] }

// A tag run's statements last minutes: progress headers keep the connection busy, so no load
// balancer or proxy between here and the server closes it as idle.
const PROGRESS_HEADERS = { send_progress_in_http_headers: 1, http_headers_progress_interval_ms: '110000' } as const

const NO_LIMITS: LaneLimits = { maxThreads: 0, maxMemoryBytes: 0, priority: 0, nice: 0 }

export async function createClickHouse(opts: ClickHouseOptions): Promise<ClickHouseHandle> {
  const ch = opts.clickhouse
  if (ch.mode === 'remote') {
    const bootstrap = createClient({
      url: ch.url,
      username: ch.user,
      password: ch.password,
      request_timeout: ch.requestTimeoutMs,
      clickhouse_settings: PROGRESS_HEADERS,
    })
    try {
      await bootstrap.command({ query: `CREATE DATABASE IF NOT EXISTS ${ch.database}` })
    } catch (cause) {
      throw new AppError('STORAGE_UNAVAILABLE', `Cannot reach ClickHouse at ${redactUrl(ch.url)}: ${errText(cause)}`, {
        cause,
      })
    } finally {
      await bootstrap.close()
    }
    const lanes = new Map<Lane, LaneClient>()
    for (const lane of LANES) {
      const client = createClient({
        url: ch.url,
        username: ch.user,
        password: ch.password,
        database: ch.database,
        request_timeout: ch.requestTimeoutMs,
        clickhouse_settings: {
          date_time_input_format: 'best_effort',
          ...PROGRESS_HEADERS,
          ...laneSettings(opts.lanes?.[lane] ?? NO_LIMITS),
        },
        // A ClickHouse server ignores it; an engine process's endpoint (core/engine-http.ts) runs
        // the statement on its own lane of that name.
        http_headers: { [LANE_HEADER]: lane },
      })
      lanes.set(lane, {
        client,
        async insertText(table, columns, format, body) {
          await client.insert({ table, columns: columns as [string, ...string[]], format, values: Readable.from([body], { objectMode: false }) })
        },
      })
    }
    const request = lanes.get('request')!
    return {
      client: request.client,
      lane: (l) => lanes.get(l)!,
      mode: 'remote',
      database: ch.database,
      dataDir: undefined,
      insertText: request.insertText,
      close: async () => {
        for (const l of lanes.values()) await l.client.close()
      },
    }
  }

  const dataDir = opts.dataDir
  const engineDir = `${dataDir}/clickhouse`
  const spoolDir = path.join(dataDir, 'spool')
  let spoolSeq = 0
  fs.mkdirSync(engineDir, { recursive: true })
  fs.rmSync(spoolDir, { recursive: true, force: true })
  fs.mkdirSync(spoolDir, { recursive: true, mode: 0o700 })
  // The engine refuses a directory another process holds, but says why only on stderr; a pid
  // file lets the refusal name the holder.
  const pidFile = path.join(dataDir, 'qianmian.pid')
  const holder = livePid(pidFile)
  if (holder !== undefined && holder !== process.pid) throw lockedError(dataDir, holder)
  // chdb is loaded lazily: a remote deployment never maps the 540 MB engine into memory.
  const { createChdbConnection } = await import('chdb/connection')
  const { Session } = await import('chdb')
  const clients = new Map<Lane, ClickHouseClient>()
  // Binds the data directory with the engine's configuration (core/engine-config.ts); held open
  // while the lanes' connections use the engine it started.
  let configured: { close(): void } | undefined
  try {
    configured = new Session(engineDir, { connectionArgs: engineConfigArgs(dataDir) })
    for (const lane of LANES) {
      // The chDB connection implements the client's Connection contract; the option is not in
      // the client's public config type yet, hence the cast. Settings given to the client ride
      // on every query of the connection (checked in the lanes tests). Each lane hands the engine
      // one statement at a time and binds parameters on its own session (core/chdb-session.ts):
      // chdb-node's own paths made the lanes wait for each other.
      const connection = asEngineSession(createChdbConnection({ path: engineDir }))
      const client = createClient({ connection, clickhouse_settings: laneSettings(opts.lanes?.[lane] ?? NO_LIMITS) } as Parameters<typeof createClient>[0])
      clients.set(lane, client)
      // Each connection is its own session: USE sticks for every later query of this lane only.
      await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${ch.database}` })
      await client.command({ query: `USE ${ch.database}` })
    }
  } catch (cause) {
    for (const c of clients.values()) await c.close().catch(() => undefined)
    configured?.close()
    const text = errText(cause)
    if (/Cannot lock file|Another server instance|only one active data directory/i.test(text)) throw lockedError(dataDir, undefined, cause)
    throw new AppError('STORAGE_UNAVAILABLE', `Cannot open the embedded ClickHouse in ${dataDir}: ${text}`, { cause })
  }
  fs.writeFileSync(pidFile, `${process.pid}\n`)
  const laneClient = (client: ClickHouseClient): LaneClient => ({
    client,
    async insertText(table, columns, format, body) {
      // Through a file the engine parses the body with all its threads; handed over inline, the
      // same TabSeparated body parsed 1.8x slower (bench/results/insert.md, file_tsv). The file
      // is only transport: the insert is as durable as any other, and it is removed after.
      const file = path.join(spoolDir, `${process.pid}-${++spoolSeq}.${format === 'TabSeparated' ? 'tsv' : 'txt'}`)
      await fs.promises.writeFile(file, body, { mode: 0o600 })
      try {
        await client.command({
          query: `INSERT INTO ${table} (${columns.join(', ')}) SELECT * FROM file({path:String}, {format:String})`,
          query_params: { path: file, format },
        })
      } finally {
        await fs.promises.rm(file, { force: true })
      }
    },
  })
  const lanes = new Map([...clients].map(([l, c]) => [l, laneClient(c)] as const))
  const request = lanes.get('request')!
  return {
    client: request.client,
    lane: (l) => lanes.get(l)!,
    mode: 'embedded',
    database: ch.database,
    dataDir,
    insertText: request.insertText,
    async close() {
      for (const c of clients.values()) await c.close()
      configured?.close()
      if (livePid(pidFile) === process.pid) fs.rmSync(pidFile, { force: true })
    },
  }
}

/** The pid in the file if that process is alive (a crash leaves a stale file behind). */
function livePid(file: string): number | undefined {
  let pid: number
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim())
  } catch {
    return undefined
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  try {
    process.kill(pid, 0)
    return pid
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined
  }
}

function lockedError(dataDir: string, pid: number | undefined, cause?: unknown): AppError {
  return new AppError(
    'DATA_DIR_LOCKED',
    `The data directory ${dataDir} is held by another running Qianmian process${pid ? ` (pid ${pid})` : ''}. ` +
      'Stop it, or send the command to its HTTP API (--server http://HOST:PORT).',
    { cause },
  )
}

function redactUrl(url: string | undefined): string {
  if (!url) return '(none)'
  try {
    const u = new URL(url)
    u.password = ''
    u.username = ''
    return u.toString()
  } catch {
    return '(invalid url)'
  }
}
