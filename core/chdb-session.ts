import { formatQueryParams } from '@clickhouse/client-common'

/**
 * An embedded connection made to behave like one session of a server: one statement at a time,
 * waiting in JavaScript, with its query parameters carried by the session. Two defects of
 * chdb-node's own paths, both measured here, made the engine's lanes (core/lanes.ts) wait for
 * each other:
 *
 * 1. chdb-node runs every parameterized statement of the whole process one after another on one
 *    process-wide chain, because libchdb's binder keeps its parameter state outside the
 *    connection. An ingest insert or a segment preview, each bound, waited for a pipeline's bound
 *    10-second tag query: a bound `SELECT {x:UInt8}` on a second connection took 7.3 s beside a
 *    bound 7 s query on the first, 5 ms beside an unbound one. Here the parameters are assigned on
 *    the connection's own session (`SET param_name = '…'`, documented ClickHouse syntax) in front
 *    of the statement, in the same call, the way the connection already sends settings, so nothing
 *    else on the session runs between them. The values are formatted by the client library's own
 *    formatter, byte for byte what it sends a server as `param_name`, then quoted as a string
 *    literal: the statement text is unchanged and values never become SQL.
 * 2. A statement sent to a busy session waits for it inside the native call, holding one of the
 *    libuv pool's threads (4 by default) while it waits. Six statements queued on the pipeline
 *    lane held the whole pool: a 100-byte `readFile` waited 11 s, and so did every file write,
 *    gzip inflate and statement of the other lanes. Here a connection hands the engine one
 *    statement at a time and the rest wait as promises, so the lanes hold at most one pool thread
 *    each. A session runs one statement at a time anyway, so nothing is lost.
 *
 * The assignment is a statement of its own, so it is held to the session's `max_query_size` (256 KiB
 * unless raised), which a bound value never was: a flush's 40,000 message ids are 1 MB. When the
 * assignment would not fit, the same call raises the session's limit first.
 *
 * A session keeps its parameters after the statement. A later statement that names a placeholder
 * it does not bind would silently read the earlier value where a server answers "substitution not
 * set"; such a statement is refused here instead.
 */

/** The calls of the client's Connection contract that run a statement on the session. */
const SQL_CALLS = new Set(['query', 'command', 'exec', 'insert'])
const SESSION_CALLS = new Set([...SQL_CALLS, 'ping'])
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const PLACEHOLDER = /\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:/g
/** ClickHouse's default `max_query_size`, the most one statement's text may hold. */
const DEFAULT_MAX_QUERY_SIZE = 262_144

interface SqlParams {
  query: string
  query_params?: Record<string, unknown>
}

export class UnboundParameterError extends Error {
  readonly code = 456
  constructor(readonly parameter: string) {
    super(`Substitution \`${parameter}\` is not set: the statement names {${parameter}:…} but does not bind it`)
  }
}

/**
 * A parameter value already in the form the client sends a server as `param_name` (the engine
 * endpoint, core/engine-http.ts, receives them so): bound as it is, not formatted again.
 */
export class EngineParam {
  constructor(readonly text: string) {}
}

/** `SET param_a = '…', param_b = '…'` for the given values. */
export function sessionParamsStatement(values: Record<string, unknown>): string {
  const parts: string[] = []
  for (const [name, value] of Object.entries(values)) {
    if (!PARAM_NAME.test(name)) throw new Error(`Invalid query parameter name: ${JSON.stringify(name)}`)
    parts.push(`param_${name} = ${quoteLiteral(value instanceof EngineParam ? value.text : formatQueryParams({ value }))}`)
  }
  return `SET ${parts.join(', ')}`
}

/** A ClickHouse string literal: only the backslash and the quote can end or bend one. */
function quoteLiteral(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
}

/**
 * Wraps a chdb connection: its statements run one at a time and bind through the session. Every
 * other member (close, the chdb escape hatch) is the connection's own, bound to it.
 */
export function asEngineSession<C extends object>(connection: C): C {
  const assigned = new Set<string>()
  let maxQuerySize = DEFAULT_MAX_QUERY_SIZE
  let tail: Promise<unknown> = Promise.resolve()
  /** Starts `run` once every statement handed over before it has settled. */
  const inTurn = <T>(run: () => Promise<T>): Promise<T> => {
    const turn = tail.then(run)
    tail = turn.then(
      () => undefined,
      () => undefined,
    )
    return turn
  }
  return new Proxy(connection, {
    get(target, prop) {
      const member = Reflect.get(target, prop, target) as unknown
      if (typeof member !== 'function') return member
      const call = (...args: unknown[]) => (member as (...a: unknown[]) => Promise<unknown>).apply(target, args)
      if (typeof prop !== 'string' || !SESSION_CALLS.has(prop)) return call
      if (!SQL_CALLS.has(prop)) return (...args: unknown[]) => inTurn(() => call(...args))
      return (params: SqlParams, ...rest: unknown[]) => {
        const values = params.query_params ?? {}
        const names = Object.keys(values)
        for (const m of params.query.matchAll(PLACEHOLDER)) {
          const name = m[1]!
          if (assigned.has(name) && !(name in values)) return Promise.reject(new UnboundParameterError(name))
        }
        if (names.length === 0) return inTurn(() => call(params, ...rest))
        let query: string
        try {
          const assign = sessionParamsStatement(values)
          let raise = ''
          if (Buffer.byteLength(assign) + 1024 > maxQuerySize) {
            maxQuerySize = 2 * (Buffer.byteLength(assign) + 1024)
            raise = `SET max_query_size = ${maxQuerySize}; `
          }
          query = `${raise}${assign}; ${params.query}`
        } catch (e) {
          return Promise.reject(e)
        }
        for (const n of names) assigned.add(n)
        return inTurn(() => call({ ...params, query, query_params: undefined }, ...rest))
      }
    },
  })
}
