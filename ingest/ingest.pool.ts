import type { Worker } from 'node:worker_threads'
import { Piscina } from 'piscina'
import type { Config } from '../core/config.js'
import { AppError, type ErrorCode } from '../core/errors.js'
import type { ValuePolicy } from '../core/pii.scan.js'
import type { Prepared } from './ingest.prepare.js'
import type { EventType } from './segment.schema.js'

/**
 * The ingest edge's worker threads. With the embedded engine one process holds the data
 * directory, so the split is by thread: the main thread keeps the HTTP server, keys, rate limits,
 * the merge check, deduplication and the insert; the workers take what costs CPU per event and
 * needs nothing but the request (JSON parsing, the schema, normalization, the value scan, the
 * tracking plan, consent objects). A body goes over as its bytes, transferred rather than copied;
 * the events come back ready for the writer.
 *
 * piscina rather than a pool of our own: it queues tasks, replaces a worker that died, and
 * rejects the tasks of a dead worker, which is what the edge needs to answer 503 and store none.
 */

/** What each worker is started with: the digest keys' seed and the normalization settings. */
export interface PoolWorkerData {
  secret: string
  cacheEntries: number
  sensitiveTraits: string[]
  backdateMs: number
  maxFutureMs: number
}

export interface PoolTask {
  /** The body bytes (decoded from gzip if it was); the buffer is transferred to the worker. */
  body: ArrayBuffer
  /** The message type of a single-message endpoint (`/v1/track` ...); unset for a batch. */
  single: EventType | undefined
  tenantId: number
  receivedAt: number
  /** The tenant's policy for identifiers found in values, as read for this request. */
  policy: ValuePolicy
  /** The tenant's tracking plan as JSON text: each request carries the plan current for it. */
  planText: string | undefined
  consent: boolean
}

export type PoolResult =
  | { kind: 'prepared'; prepared: Prepared }
  /** The body is not JSON (or not UTF-8): refused with this code and message. */
  | { kind: 'refused'; code: ErrorCode; message: string }
  /** The body is JSON but not a batch (or message): the caller validates it again to answer as the route's schema does. */
  | { kind: 'invalid' }

export interface IngestPool {
  readonly size: number
  /** Rejects with INGEST_WORKER_FAILED (503) when the worker died with the task. */
  run(task: Omit<PoolTask, 'body'>, body: Uint8Array): Promise<PoolResult>
  /** The live worker threads, the tasks run so far and those under way (for tests and health checks). */
  readonly threads: readonly Worker[]
  readonly completed: number
  readonly pending: number
  close(): Promise<void>
}

/**
 * The worker's module: its compiled file, or the source through tsx when the server runs from
 * sources. The workers take the process's node options (a profiler's, say) and, when the process
 * loads tsx by them, tsx with them; else (a test runner's own loader) tsx is added.
 */
function workerFile(): { filename: string; execArgv?: string[] } {
  const fromSources = import.meta.url.endsWith('.ts')
  const filename = new URL(fromSources ? './ingest.worker.ts' : './ingest.worker.js', import.meta.url).href
  if (!fromSources || process.execArgv.includes('tsx')) return { filename }
  return { filename, execArgv: ['--import', 'tsx'] }
}

/** The body's own memory to transfer: a slice of a shared allocation is copied first, or the transfer would take the rest along. */
function ownBuffer(body: Uint8Array): ArrayBuffer {
  const b = body.buffer
  if (b instanceof ArrayBuffer && body.byteOffset === 0 && body.byteLength === b.byteLength) return b
  const copy = new Uint8Array(body.byteLength)
  copy.set(body)
  return copy.buffer
}

/** `seed`: the digest keys' seed (core/pii.ts `threadSeed`), so the workers digest as this thread does. */
export function createIngestPool(deps: { size: number; seed: { secret: string; cacheEntries: number }; config: Config['ingest'] }): IngestPool {
  const { seed } = deps
  const data: PoolWorkerData = {
    secret: seed.secret,
    cacheEntries: seed.cacheEntries,
    sensitiveTraits: [...deps.config.sensitiveTraits],
    backdateMs: deps.config.backdateDays * 86_400_000,
    maxFutureMs: deps.config.maxFutureMinutes * 60_000,
  }
  const pool = new Piscina<PoolTask, PoolResult>({
    ...workerFile(),
    workerData: data,
    minThreads: deps.size,
    maxThreads: deps.size,
    // The workers stay: starting one (and its module graph) costs more than a request.
    idleTimeout: Number.MAX_SAFE_INTEGER,
  })
  let pending = 0
  return {
    size: deps.size,
    async run(task, bodyBytes) {
      const body = ownBuffer(bodyBytes)
      pending++
      try {
        return await pool.run({ ...task, body }, { transferList: [body] })
      } catch (cause) {
        throw new AppError('INGEST_WORKER_FAILED', undefined, { cause, headers: { 'retry-after': '1' } })
      } finally {
        pending--
      }
    },
    get threads() {
      return pool.threads
    },
    get completed() {
      return pool.completed
    },
    get pending() {
      return pending
    },
    close: () => pool.destroy(),
  }
}
