/**
 * Per-tenant token buckets for the ingest edge, in memory (each process limits what it serves;
 * with N edge processes behind a balancer a tenant gets up to N times the rate). One tenant's
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
}

interface Bucket {
  tokens: number
  at: number
}

export function createTokenBuckets(opts: BucketOptions, now: () => number = () => performance.now()): TokenBuckets {
  const buckets = new Map<number, Bucket>()
  const perMs = opts.perSecond / 1000
  return {
    take(key, cost) {
      if (opts.perSecond <= 0) return 0
      const t = now()
      let b = buckets.get(key)
      if (!b) buckets.set(key, (b = { tokens: opts.burst, at: t }))
      else {
        b.tokens = Math.min(opts.burst, b.tokens + (t - b.at) * perMs)
        b.at = t
      }
      if (b.tokens < 0) return Math.ceil(-b.tokens / perMs)
      b.tokens -= cost
      return 0
    },
  }
}
