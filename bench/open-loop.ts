import http from 'node:http'

/**
 * A fixed-rate, open-loop HTTP load: each stream's requests go out on their schedule whether or
 * not earlier ones were answered, and each latency is counted from the scheduled time.
 *
 * Why not autocannon (a dev dependency, used by the throughput scenarios): it is closed-loop. A
 * connection sends its next request only once the last is answered, so when the server stalls
 * the load stops arriving and the stall shows as a few slow requests instead of many (coordinated
 * omission); its fixed-rate mode sends each second's requests in one burst and measures its own
 * queue. A contention measurement needs the offered load to stay what it is while a pipeline runs.
 *
 * The generator may share its event loop with the server (an in-process server): a request whose
 * send was late because the loop was busy still counts from its scheduled time, so that delay is
 * part of its latency, as it would be for a client elsewhere.
 */

export interface RequestSpec {
  method: 'GET' | 'POST' | 'PUT'
  path: string
  headers?: Record<string, string>
  body?: string
}

export interface Stream {
  kind: string
  ratePerS: number
  /** The i-th request of the stream (0, 1, ...), built when it is due. */
  make(i: number): RequestSpec
}

export interface Shot {
  kind: string
  /** performance.now() milliseconds. */
  scheduledMs: number
  sentMs: number
  /** When the answer ended (or the request failed); NaN while in flight. */
  endMs: number
  /** HTTP status, 0 for a network error or a timeout. */
  status: number
  error?: string
}

export interface OpenLoop {
  readonly shots: readonly Shot[]
  /** Stops sending; resolves when every request in flight ended (or after `drainMs`, the rest marked as timed out). */
  stop(drainMs?: number): Promise<void>
}

/** Sends every stream at its rate until stopped; `timeoutMs` bounds one request. */
export function startOpenLoop(baseUrl: string, streams: readonly Stream[], opts: { timeoutMs: number; tickMs?: number }): OpenLoop {
  const url = new URL(baseUrl)
  // No socket limit: an open loop opens a new connection rather than queue behind a slow answer.
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
  const shots: Shot[] = []
  const inFlight = new Set<Promise<void>>()
  const start = performance.now()
  const next = streams.map(() => 0)
  let stopped = false

  const fire = (kind: string, scheduledMs: number, spec: RequestSpec) => {
    const shot: Shot = { kind, scheduledMs, sentMs: performance.now(), endMs: NaN, status: 0 }
    shots.push(shot)
    const done = new Promise<void>((resolve) => {
      const finish = (status: number, error?: string) => {
        if (!Number.isNaN(shot.endMs)) return
        shot.endMs = performance.now()
        shot.status = status
        if (error) shot.error = error
        resolve()
      }
      const body = spec.body === undefined ? undefined : Buffer.from(spec.body)
      const req = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method: spec.method,
          path: spec.path,
          headers: { ...spec.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        },
        (res) => {
          res.resume()
          res.once('end', () => finish(res.statusCode ?? 0))
          res.once('error', (e) => finish(0, e.message))
        },
      )
      req.setTimeout(opts.timeoutMs, () => {
        finish(0, 'timeout')
        req.destroy()
      })
      req.once('error', (e) => finish(0, e.message))
      req.end(body)
    })
    inFlight.add(done)
    void done.then(() => inFlight.delete(done))
  }

  const tick = () => {
    if (stopped) return
    const now = performance.now()
    streams.forEach((s, k) => {
      const interval = 1000 / s.ratePerS
      // Catch up on every request that fell due, each with its own scheduled time.
      for (let at = start + next[k]! * interval; at <= now; at = start + next[k]! * interval) {
        const i = next[k]!++
        fire(s.kind, at, s.make(i))
      }
    })
  }
  const timer = setInterval(tick, opts.tickMs ?? 2)

  return {
    shots,
    async stop(drainMs = opts.timeoutMs) {
      stopped = true
      clearInterval(timer)
      const deadline = new Promise<void>((r) => setTimeout(r, drainMs).unref())
      await Promise.race([Promise.all([...inFlight]), deadline])
      for (const s of shots) if (Number.isNaN(s.endMs)) Object.assign(s, { endMs: performance.now(), status: 0, error: 'timeout' })
      agent.destroy()
    },
  }
}

export interface KindFigures {
  offered: number
  offeredPerS: number
  /** Answered 2xx (at any time before the end of the run). */
  completed: number
  non2xx: number
  errors: number
  p50Ms: number
  p95Ms: number
  p99Ms: number
  maxMs: number
  /** 2xx answers that arrived inside the phase, per second of the phase. */
  achievedPerS: number
  /** How late sends went out after their schedule (a busy event loop): p99. */
  sendLagP99Ms: number
  /** Non-2xx statuses and failures by what they were ("503", "timeout", "ECONNRESET" ...): count. */
  failures: Record<string, number>
}

/** Nearest-rank quantile of sorted values. */
export function quantile(sorted: readonly number[], q: number): number {
  if (!sorted.length) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

/**
 * Figures of one kind of request over a phase [fromMs, toMs): the requests scheduled in it, with
 * the latency of every answered one (from its schedule) whatever its status; the achieved rate
 * counts the 2xx answers that arrived inside the phase, whichever phase scheduled them.
 */
export function phaseFigures(shots: readonly Shot[], kind: string, fromMs: number, toMs: number): KindFigures {
  const mine = shots.filter((s) => s.kind === kind && s.scheduledMs >= fromMs && s.scheduledMs < toMs)
  const answered = mine.filter((s) => s.status > 0)
  const lat = answered.map((s) => s.endMs - s.scheduledMs).sort((a, b) => a - b)
  const lag = mine.map((s) => s.sentMs - s.scheduledMs).sort((a, b) => a - b)
  const ok = (s: Shot) => s.status >= 200 && s.status < 300
  const seconds = (toMs - fromMs) / 1000
  const arrived = shots.filter((s) => s.kind === kind && ok(s) && s.endMs >= fromMs && s.endMs < toMs).length
  return {
    offered: mine.length,
    offeredPerS: mine.length / seconds,
    completed: mine.filter(ok).length,
    non2xx: answered.filter((s) => !ok(s)).length,
    errors: mine.length - answered.length,
    p50Ms: quantile(lat, 0.5),
    p95Ms: quantile(lat, 0.95),
    p99Ms: quantile(lat, 0.99),
    maxMs: lat.length ? lat[lat.length - 1]! : NaN,
    achievedPerS: arrived / seconds,
    sendLagP99Ms: quantile(lag, 0.99),
    failures: mine.filter((s) => !ok(s)).reduce<Record<string, number>>((acc, s) => {
      const what = s.status > 0 ? String(s.status) : (s.error ?? 'error')
      acc[what] = (acc[what] ?? 0) + 1
      return acc
    }, {}),
  }
}
