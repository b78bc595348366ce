import type { ClickHouseSettings } from '@clickhouse/client'

/**
 * Engine lanes: each kind of work gets its own connection with its own limits, so a pipeline's
 * minute-long query neither queues the request path behind it nor takes all the memory.
 *
 * - `request`: what a caller waits for (previews, lookups, consent, keys, audit, pulls, exports);
 * - `ingest`: the event writer's inserts and identity upkeep, and bulk imports;
 * - `pipeline`: tag and segment runs, layout model builds and snapshot loads, push targeting,
 *   erasure and retention jobs, demo generation.
 *
 * What the embedded engine does with several connections on one data directory (measured, see
 * the lanes tests): queries on different connections run at the same time; queries on one
 * connection run one after another. Each connection is its own session: `USE`, `SET` and
 * temporary tables do not cross lanes, so each lane selects its database when it opens, and a
 * sequence of statements that shares a temporary table must stay on one lane. Tables, parts and
 * the dedup index are shared (one server context per process), and so is the process list, which
 * is what makes `priority` work across lanes: while a query of a lower number runs, queries of
 * a higher number wait at their next block. That is why the pipeline lane has no priority by
 * default: under steady request and ingest traffic there is nearly always a lower number running,
 * and a pipeline query that took 1.8 s alone took 14.6 s beside two connections of back-to-back
 * light queries at priority 1, against 4.3 s without priorities. Against a ClickHouse server a
 * lane is a client with the same settings (a server profile per lane can replace them).
 */
export const LANES = ['request', 'ingest', 'pipeline'] as const
export type Lane = (typeof LANES)[number]

/** The header a remote lane's client sends; an engine endpoint (core/engine-http.ts) runs its statements on that lane. */
export const LANE_HEADER = 'x-qianmian-lane'

export interface LaneLimits {
  /** max_threads of a query on this lane (0: the engine's default, one per core). */
  maxThreads: number
  /** max_memory_usage of a query on this lane, bytes (0: no limit of its own). */
  maxMemoryBytes: number
  /** The engine's query priority (1 first; higher numbers wait while lower ones run; 0: none). */
  priority: number
  /**
   * Linux nice value of the engine threads while they work for a query of this lane (-20..19;
   * 0: unchanged). The engine, Node's main thread and the request lanes share the same cores:
   * a pipeline query on every core left the main thread a third of one, and every request
   * waited in its queue (measured: ingest p99 4.2x idle, layouts served from memory 53x).
   * Nice does not make anything wait: a niced thread still takes every idle cycle, it only
   * loses a contended one. The engine applies it only with CAP_SYS_NICE (see `reniceAllowed`).
   */
  nice: number
}

/** The settings every query of a lane carries. */
export function laneSettings(limits: LaneLimits): ClickHouseSettings {
  return {
    ...(limits.maxThreads > 0 ? { max_threads: limits.maxThreads } : {}),
    ...(limits.maxMemoryBytes > 0 ? { max_memory_usage: String(limits.maxMemoryBytes) } : {}),
    ...(limits.priority > 0 ? { priority: String(limits.priority) } : {}),
    ...(limits.nice !== 0 ? { os_threads_nice_value_query: String(limits.nice) } : {}),
  }
}

/** CAP_SYS_NICE, the capability number the engine checks before it renices a query's threads. */
const CAP_SYS_NICE = 23n

/**
 * Whether this process may renice its threads: the engine checks CAP_SYS_NICE and silently
 * ignores the lanes' nice values without it (root has it; a container needs `--cap-add SYS_NICE`,
 * a systemd unit `AmbientCapabilities=CAP_SYS_NICE`). `status` is /proc/self/status's text.
 */
export function reniceAllowed(status: string): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1]
  return hex !== undefined && ((BigInt(`0x${hex}`) >> CAP_SYS_NICE) & 1n) === 1n
}

/** The engine's code for a query over its memory limit (MEMORY_LIMIT_EXCEEDED). */
export const MEMORY_LIMIT_EXCEEDED = 241

/** Whether an error from the client is the engine refusing a query over its memory limit. */
export function isMemoryLimitError(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false
  const code = (e as { clickhouseCode?: unknown; code?: unknown }).clickhouseCode ?? (e as { code?: unknown }).code
  if (Number(code) === MEMORY_LIMIT_EXCEEDED) return true
  const message = (e as { message?: unknown }).message
  return typeof message === 'string' && /MEMORY_LIMIT_EXCEEDED|memory limit exceeded/i.test(message)
}
