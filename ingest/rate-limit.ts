import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config } from '../core/config.js'
import { AppError } from '../core/errors.js'
import type { Metrics } from '../core/metrics.js'

type IngestRates = Config['ingest']['rate']

/**
 * Per-tenant token buckets for the ingest edge, in memory. The API processes of one host share
 * what each took (rate-limit.share.ts), so a tenant's rate holds across them; with N edge
 * processes on N hosts behind a balancer a tenant gets up to N times the rate. One tenant's
 * flood is answered 429 with Retry-After before it costs validation or a place in the shared
 * writer queue, so the other tenants keep their latency.
 */

export interface BucketOptions {
  /** Tokens added per second; 0 turns the limit off. */
  perSecond: number
  /** The most tokens a bucket holds (the burst a quiet tenant may send at once). */
  burst: number
}

export interface TokenBuckets {
  /**
   * Takes `cost` tokens from `key`'s bucket. A bucket that is not in debt grants any cost (a batch
   * larger than the burst still goes through once, then waits); the answer is 0 when granted,
   * otherwise the milliseconds until the bucket is out of debt.
   */
  take(key: number, cost: number): number
  /** The milliseconds until `key`'s bucket is out of debt (0: not in debt), taking nothing. */
  debt(key: number): number
  /** Takes `cost` tokens whatever the bucket holds: what another process granted the key. */
  debit(key: number, cost: number): void
  /** What `take` granted per key since the last call. */
  drain(): [number, number][]
}

interface Bucket {
  tokens: number
  at: number
}

export function createTokenBuckets(opts: BucketOptions, now: () => number = () => performance.now()): TokenBuckets {
  const buckets = new Map<number, Bucket>()
  const granted = new Map<number, number>()
  const perMs = opts.perSecond / 1000
  /** The key's bucket, refilled up to now. */
  const current = (key: number): Bucket => {
    const t = now()
    let b = buckets.get(key)
    if (!b) buckets.set(key, (b = { tokens: opts.burst, at: t }))
    else {
      b.tokens = Math.min(opts.burst, b.tokens + (t - b.at) * perMs)
      b.at = t
    }
    return b
  }
  return {
    take(key, cost) {
      if (opts.perSecond <= 0) return 0
      const b = current(key)
      if (b.tokens < 0) return Math.ceil(-b.tokens / perMs)
      b.tokens -= cost
      granted.set(key, (granted.get(key) ?? 0) + cost)
      return 0
    },
    debit(key, cost) {
      if (opts.perSecond <= 0) return
      current(key).tokens -= cost
    },
    drain() {
      const out = [...granted]
      granted.clear()
      return out
    },
    debt(key) {
      if (opts.perSecond <= 0) return 0
      const b = current(key)
      return b.tokens < 0 ? Math.ceil(-b.tokens / perMs) : 0
    },
  }
}

/** The per-tenant ingest limits, shared by the HTTP hooks (requests) and the service (events). */
export interface IngestLimits {
  /** Counts one request of the tenant; throws 429 RATE_LIMITED past its rate. */
  request(tenantId: number): void
  /** Counts `n` events of the tenant; throws 429 RATE_LIMITED past its rate. */
  events(tenantId: number, n: number): void
  /**
   * Throws 429 RATE_LIMITED while the tenant's events are in debt, counting nothing: checked
   * before a body is read, so a tenant past its event rate costs no parse of the next one (in
   * the worker threads every tenant shares, the parse came before the count).
   */
  eventsDue(tenantId: number): void
  /** What this process granted per tenant since the last call (for the other API processes). */
  drain(): RateReport
  /** What another process granted: taken from this process's buckets too. */
  apply(report: RateReport): void
}

/** Requests and events granted, per tenant: [tenant, count] pairs. */
export interface RateReport {
  requests: [number, number][]
  events: [number, number][]
}

export function createIngestLimits(rate: IngestRates, metrics: Metrics): IngestLimits {
  const requests = createTokenBuckets({ perSecond: rate.requestsPerS, burst: rate.requestsBurst })
  const events = createTokenBuckets({ perSecond: rate.eventsPerS, burst: rate.eventsBurst })
  const limited = metrics.counter('qianmian_ingest_rate_limited_total', 'Requests answered 429 by the per-tenant limits, by tenant and limit', ['tenant', 'limit'])
  const admitted = metrics.counter('qianmian_ingest_tenant_events_total', 'Events admitted past the per-tenant limits (before validation), by tenant', ['tenant'])
  const refuse = (tenantId: number, which: 'requests' | 'events', waitMs: number, perS: number) => {
    limited.inc({ tenant: String(tenantId), limit: which })
    return new AppError('RATE_LIMITED', `This tenant sends more than ${perS} ${which} per second; retry after the delay given.`, {
      headers: { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))) },
    })
  }
  return {
    request(tenantId) {
      const wait = requests.take(tenantId, 1)
      if (wait) throw refuse(tenantId, 'requests', wait, rate.requestsPerS)
    },
    events(tenantId, n) {
      const wait = events.take(tenantId, n)
      if (wait) throw refuse(tenantId, 'events', wait, rate.eventsPerS)
      admitted.inc({ tenant: String(tenantId) }, n)
    },
    eventsDue(tenantId) {
      const wait = events.debt(tenantId)
      if (wait) throw refuse(tenantId, 'events', wait, rate.eventsPerS)
    },
    drain: () => ({ requests: requests.drain(), events: events.drain() }),
    apply(report) {
      for (const [t, n] of report.requests) requests.debit(t, n)
      for (const [t, n] of report.events) events.debit(t, n)
    },
  }
}

const counted = Symbol('ingest request counted')

/**
 * How long a refused request is held before its 429 is sent. A client that ignores Retry-After and sends again at once would
 * otherwise turn each connection into hundreds of cheap-but-not-free 429s a second, taking the
 * CPU the other tenants need (measured: bench flood); held, each connection costs one a second.
 */
export const REFUSAL_HOLD_MS = 1000

/**
 * Counts each ingest request against its tenant's request rate, and refuses it while the
 * tenant's events are in debt, as early as the tenant is known: before the body is read when the
 * key came in a header (a flood's 429 then costs no parsing), else (a beacon's `writeKey` in the
 * body) once the body key is checked.
 */
export function registerIngestLimitHooks(app: FastifyInstance, limits: IngestLimits, paths: ReadonlySet<string>) {
  const take = async (req: FastifyRequest) => {
    const r = req as FastifyRequest & { [counted]?: true }
    if (r[counted] || !req.principal || !paths.has(req.routeOptions.url ?? '')) return
    r[counted] = true
    try {
      limits.request(req.principal.tenantId)
      limits.eventsDue(req.principal.tenantId)
    } catch (e) {
      // Retry-After is at least a second, so the hold never outlasts it.
      await new Promise((resolve) => setTimeout(resolve, REFUSAL_HOLD_MS))
      throw e
    }
  }
  // Callback hooks: every other route passes without a promise and a microtask per hook.
  app.addHook('preParsing', (req, _reply, payload, done) => {
    if (!paths.has(req.routeOptions.url ?? '')) return done(null, payload)
    take(req).then(() => done(null, payload), done)
  })
  app.addHook('preHandler', (req, _reply, done) => {
    if (!paths.has(req.routeOptions.url ?? '')) return done()
    take(req).then(() => done(), done)
  })
}
