import crypto from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import zlib from 'node:zlib'
import { EngineParam } from './chdb-session.js'
import type { ClickHouseHandle } from './clickhouse.js'
import { LANE_HEADER, LANES, type Lane } from './lanes.js'
import type { Logger } from './log.js'

/**
 * The embedded engine offered to this machine's other Qianmian processes over ClickHouse's own
 * HTTP interface, so that they run as they would against a ClickHouse server (`CLICKHOUSE_URL`),
 * unchanged. libchdb lets one process hold a data directory; the API processes that serve
 * requests on the other cores (server/cluster.ts) reach the data through this.
 *
 * What is served is the part of the interface `@clickhouse/client` speaks: `GET /ping`; a
 * statement in the body (or in `query` for a GET); an insert's statement in `query` with its data
 * in the body; `param_*` values bound as the server binds them (already formatted by the client,
 * so they are bound as they came: `EngineParam`); any other URL parameter as a setting; gzip
 * request bodies and, when asked with `enable_http_compression=1`, gzip answers; errors as
 * `Code: N. DB::Exception: … (TYPE)` with a non-200 status, which the client parses back into the
 * same code and type. It is written here because no package serves that protocol over chDB.
 *
 * It listens on the loopback only and admits one user, whose password is a random token the
 * parent hands its children; anything else is refused before a statement is read.
 */

export interface EngineHttp {
  url: string
  close(): Promise<void>
}

export const ENGINE_USER = 'qianmian'
/** Settings the lanes' clients send on every statement; the engine's lanes already apply them. */
const LANE_SETTINGS = new Set(['date_time_input_format', 'max_threads', 'max_memory_usage', 'priority', 'os_threads_nice_value_query', 'send_progress_in_http_headers', 'http_headers_progress_interval_ms', 'default_format'])
/** URL parameters of the protocol that are not settings. */
const PROTOCOL_PARAMS = new Set(['query', 'query_id', 'database', 'session_id', 'role', 'user', 'password'])
/** What `@clickhouse/client` sends for `insert()`: the table, its columns, the format. */
const INSERT_STATEMENT = /^INSERT INTO ([A-Za-z_][A-Za-z0-9_.]*) \(([A-Za-z0-9_, ]+)\) FORMAT (TabSeparated|JSONEachRow|CSV)$/
const UNKNOWN_EXCEPTION = { code: 1002, type: 'UNKNOWN_EXCEPTION' }

export async function startEngineHttp(deps: { handle: ClickHouseHandle; token: string; log: Logger; maxBodyBytes?: number }): Promise<EngineHttp> {
  const maxBody = deps.maxBodyBytes ?? 1024 ** 3
  const expected = crypto.createHash('sha256').update(`${ENGINE_USER}:${deps.token}`).digest()
  const admitted = (req: http.IncomingMessage): boolean => {
    let pair: string | undefined
    const auth = req.headers.authorization
    if (auth?.startsWith('Basic ')) pair = Buffer.from(auth.slice(6), 'base64').toString('utf8')
    else if (typeof req.headers['x-clickhouse-user'] === 'string') pair = `${req.headers['x-clickhouse-user']}:${String(req.headers['x-clickhouse-key'] ?? '')}`
    if (pair === undefined) return false
    return crypto.timingSafeEqual(crypto.createHash('sha256').update(pair).digest(), expected)
  }

  const server = http.createServer(
    // A bound array of 40,000 ids travels in the URL (the client's default), far over Node's 16 KiB.
    { maxHeaderSize: 64 * 1024 ** 2, requestTimeout: 0 },
    (req, res) => {
      void serve(req, res).catch((err: unknown) => {
        deps.log.error({ err }, 'engine endpoint: answer failed')
        if (!res.headersSent) fail(res, 500, err)
        else res.destroy()
      })
    },
  )

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://engine')
    if (!admitted(req)) {
      req.resume()
      return fail(res, 401, { code: 516, type: 'AUTHENTICATION_FAILED', message: `${ENGINE_USER}: Authentication failed: password is incorrect, or there is no user with such name.` })
    }
    if (url.pathname === '/ping') {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain; charset=UTF-8' }).end('Ok.\n')
      return
    }
    if (url.pathname !== '/') {
      req.resume()
      return fail(res, 404, { code: 1002, type: 'UNKNOWN_EXCEPTION', message: `There is no handle ${url.pathname}` })
    }
    const laneName = String(req.headers[LANE_HEADER] ?? 'request')
    if (!(LANES as readonly string[]).includes(laneName)) {
      req.resume()
      return fail(res, 400, { code: 115, type: 'UNKNOWN_SETTING', message: `Unknown lane ${laneName}` })
    }
    const lane = deps.handle.lane(laneName as Lane)
    const database = url.searchParams.get('database')
    if (database !== null && database !== deps.handle.database) {
      req.resume()
      return fail(res, 404, { code: 81, type: 'UNKNOWN_DATABASE', message: `Database ${database} does not exist here (this engine serves ${deps.handle.database})` })
    }
    let body = await readBody(req, maxBody)
    if (body === undefined) return fail(res, 413, { code: 1002, type: 'UNKNOWN_EXCEPTION', message: `The request body is over ${maxBody} bytes` })
    const encoding = req.headers['content-encoding']
    if (encoding === 'gzip') body = zlib.gunzipSync(body)
    else if (encoding !== undefined && encoding !== 'identity') return fail(res, 415, { code: 1002, type: 'UNKNOWN_EXCEPTION', message: `Unsupported Content-Encoding ${encoding}` })

    const params: Record<string, EngineParam> = {}
    const settings: Record<string, string> = {}
    for (const [k, v] of url.searchParams) {
      if (k.startsWith('param_')) params[k.slice(6)] = new EngineParam(v)
      else if (!PROTOCOL_PARAMS.has(k)) settings[k] = v
    }
    // A statement without FORMAT answers in the server's default, TabSeparated (the engine's is CSV).
    settings.default_format ??= 'TabSeparated'
    const queryId = url.searchParams.get('query_id') ?? crypto.randomUUID()
    const inUrl = url.searchParams.get('query')
    const compress = settings.enable_http_compression === '1' && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))
    let out: Buffer
    try {
      out = await run(lane, inUrl, body, params, settings, queryId)
    } catch (err) {
      return fail(res, 500, err)
    }
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=UTF-8', 'x-clickhouse-query-id': queryId }
    if (compress) {
      out = zlib.gzipSync(out)
      headers['content-encoding'] = 'gzip'
    }
    res.writeHead(200, headers).end(out)
  }

  async function run(lane: ReturnType<ClickHouseHandle['lane']>, inUrl: string | null, body: Buffer, params: Record<string, EngineParam>, settings: Record<string, string>, queryId: string): Promise<Buffer> {
    if (inUrl !== null && body.length > 0) {
      // An insert: the statement in the URL, its rows in the body.
      const m = INSERT_STATEMENT.exec(inUrl.trim())
      const plain = Object.keys(settings).every((k) => LANE_SETTINGS.has(k)) && Object.keys(params).length === 0
      if (m && plain) {
        // The engine process's own insert path (through a file, parsed with all the engine's threads).
        await lane.insertText(m[1]!, m[2]!.split(',').map((c) => c.trim()), m[3] as 'TabSeparated' | 'JSONEachRow' | 'CSV', body)
        return Buffer.alloc(0)
      }
      const r = await lane.client.exec({ query: inUrl, values: Readable.from([body], { objectMode: false }), query_params: params, clickhouse_settings: engineSettings(settings), query_id: queryId })
      return collect(r.stream)
    }
    const query = inUrl === null ? body.toString('utf8') : body.length ? `${inUrl}\n${body.toString('utf8')}` : inUrl
    const r = await lane.client.exec({ query, query_params: params, clickhouse_settings: engineSettings(settings), query_id: queryId })
    return collect(r.stream)
  }

  const address = await new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server.address() as AddressInfo))
  })
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
      }),
  }
}

/** URL settings arrive as text; numbers go to the engine as numbers, the rest as strings. */
function engineSettings(settings: Record<string, string>): Record<string, string | number> {
  const out: Record<string, string | number> = {}
  for (const [k, v] of Object.entries(settings)) out[k] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v
  return out
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      req.destroy()
      return undefined
    }
    chunks.push(chunk)
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
}

async function collect(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c)
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
}

/** An error in the server's words: the client reads code, type and message back from them. */
function fail(res: http.ServerResponse, status: number, err: unknown): void {
  const e = err as { code?: unknown; type?: unknown; message?: unknown }
  const code = typeof e?.code === 'number' || (typeof e?.code === 'string' && /^\d+$/.test(e.code)) ? Number(e.code) : UNKNOWN_EXCEPTION.code
  const type = typeof e?.type === 'string' && /^[A-Z0-9_]+$/.test(e.type) ? e.type : UNKNOWN_EXCEPTION.type
  const message = typeof e?.message === 'string' ? e.message : String(err)
  res
    .writeHead(status, { 'content-type': 'text/plain; charset=UTF-8', 'x-clickhouse-exception-code': String(code) })
    .end(`Code: ${code}. DB::Exception: ${message} (${type}) (version embedded)\n`)
}
