import crypto from 'node:crypto'
import os from 'node:os'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { chEpoch } from '../core/time.js'
import type { WithdrawalIndex } from './consent.index.js'
import { createKeyedLock } from '../core/keyed-lock.js'
import { readDueTargets, type QueueRow } from './lease.queue.js'
import { inQuiet, localMinute } from './policy.js'


const NONE: ReadonlySet<string> = new Set()
/**
 * Leases of due targets to the notification service.
 *
 * ClickHouse has no row locks and no read-your-write transactions, so "select due targets, mark
 * them leased" cannot be made atomic in the engine. This process is the only one that leases a
 * tenant's targets (see below), and it makes the pair atomic itself:
 *
 * - pulls of a tenant run one at a time (a keyed lock);
 * - a refill reads the next due targets into memory: queued, due, not expired, of an active
 *   campaign, without a final outcome, not under a lease that is still running and not leased
 *   `maxAttempts` times already, and inside the tenant's quiet hours security messages only
 *   (a promotion due at 20:55 and pulled at 21:05 waits for the morning); security messages
 *   first, then the highest priority class, then oldest due. Test sends (status 'test') go out whatever their campaign's status
 *   and the hour: someone is waiting for them on their phone;
 * - a pull takes targets from that queue and writes their lease rows (push_leases) before it
 *   answers; if the write fails they go back to the queue and the pull fails. A taken target
 *   has left the queue, so no other pull in this process can get it, and any later refill skips
 *   it while its lease runs, because the lease row was written before the pull answered;
 * - a lease that runs out unacknowledged is skipped no more by the next refill: the target
 *   comes back (a refill happens as soon as the earliest lease handed out has run out, after
 *   targets were written, after a retry, or every `refreshMs`);
 * - a target whose customer withdrew consent for its purpose and channel after it was made is
 *   not handed out: the pull closes it (outcome `withdrawn`, reason `consent_withdrawn`) on its
 *   way through the queue. The check is a lookup in an in-memory index (consent.index.ts) that
 *   this process's consent changes reach at once and others' within its refresh interval.
 *
 * With several API processes on one host (server/cluster.ts) the engine process's lease manager is
 * the only one: the API processes forward their pulls and acknowledgements (lease.remote.ts).
 *
 * A second process leasing the same tenant would hold its own queue and could hand out a target
 * this one holds in memory: the lease table alone does not exclude that, because two readers
 * can both read "not leased" before either writes. Running more than one puller per tenant
 * needs a partition of the work (each process owns a hash range of customer keys, or the
 * targets go out through Kafka partitions, see kafka.publisher.ts), or an ownership claim per
 * tenant with a single winner (like the pipeline leases) before a process starts pulling.
 */

export interface PulledTarget {
  targetId: string
  /** Stable per (tenant, campaign, customer, local date): the same across reruns and re-leases. */
  idempotencyKey: string
  leaseId: string
  leaseUntil: string
  campaignId: string
  campaignVersion: number
  customerNo: string
  channel: string
  purpose: string
  priority: string
  language: string
  /** standard or elder text. */
  variant: string
  /** The campaign's message variant (A/B) the customer was assigned; empty without variants. */
  messageVariant: string
  title: string
  body: string
  dueAt: string
  expiresAt: string
  /** A test send (test-send.ts): not a real send, counted nowhere; the app may show it as a test. */
  test: boolean
}

export interface AckItem {
  targetId: string
  status: 'delivered' | 'failed'
  reason?: string | undefined
  /** A failed delivery worth another attempt: the target returns to the queue now (after its last allowed lease, the failure is final). */
  retry?: boolean | undefined
}

export interface AckResult {
  accepted: number
  rejected: { index: number; targetId: string; reason: 'not_leased' }[]
}

export interface LeaseManager {
  pull(tenantId: number, o: { limit: number; leaseSeconds: number }): Promise<PulledTarget[]>
  ack(tenantId: number, items: readonly AckItem[]): Promise<AckResult>
  /** New targets or a changed campaign: the next pull reads the queue again. */
  invalidate(tenantId: number): void
  /**
   * Erased customers: their queued and leased targets leave memory at once (an ack of a lease
   * handed out before would otherwise write an outcome naming them again).
   */
  forgetCustomers(tenantId: number, keys: ReadonlySet<number>): void
  close(): Promise<void>
}

export interface LeaseOptions {
  /**
   * Most targets read into memory per refill (default 50,000). A refill reads five pulls' worth
   * (at least 2,000): a service pulling 10,000 at a time gets big reads that amortise the query,
   * one pulling 100 keeps a small queue in memory.
   */
  chunk?: number
  /** Longest time between refills (default 5 s). */
  refreshMs?: number
  /** Shortest time between refills while nothing is due (default 250 ms). */
  idleRefreshMs?: number
}

interface TenantState {
  queue: QueueRow[]
  head: number
  loadedAt: number
  dirty: boolean
  /** Bumped by every invalidation: a refill that began before one does not clear `dirty`. */
  gen: number
  /** Whether the queue was read inside the tenant's quiet hours (security messages only). */
  quiet: boolean
  /** Earliest lease_until handed out since the last refill. */
  nextExpiry: number
  /** Campaigns (as stored) the personalization switch turns off, read with the queue. */
  personalized: ReadonlySet<string>
  /** Targets leased by this process and not acknowledged: for acks without a query. */
  leased: Map<string, { leaseId: string; until: number; campaignId: string; customerKey: number }>
  /** Targets given a final outcome here, with when: skipped until a refill begun later excludes them. */
  finished: Map<string, number>
}

/** push_leases and push_outcomes columns as the lease manager writes them (the push benchmark's floor writes the same). */
export const LEASE_COLUMNS = ['target_id', 'kind', 'lease_id', 'campaign_id', 'customer_key', 'owner', 'leased_at', 'lease_until'] as const
export const OUTCOME_COLUMNS = ['target_id', 'campaign_id', 'customer_key', 'status', 'final', 'reason', 'lease_id', 'at'] as const

export function createLeaseManager(deps: {
  db: Db
  log: Logger
  metrics: Metrics
  /** Ids of the tenant's active campaigns (a paused campaign's targets are not handed out). */
  activeCampaigns(tenantId: number): Promise<string[]>
  /** The active campaigns the personalization switch turns off (targeting.sql.ts, isPersonalized). */
  personalizedCampaigns?(tenantId: number): Promise<ReadonlySet<string>>
  /** The tenant's attempts limit and quiet hours (push policy) and time zone. */
  policy(tenantId: number): Promise<{
    maxAttempts: number
    quietHours: { start: string; end: string } | null
    timeZone: string
    /** What service and security messages need by way of consent (marketing always needs a grant). */
    consent?: { service: string; security: string }
  }>
  /** Recent withdrawals; without one, pulls do not check consent again after targeting. */
  withdrawals?: WithdrawalIndex | undefined
  options?: LeaseOptions
}): LeaseManager {
  const maxChunk = deps.options?.chunk ?? 50_000
  const refreshMs = deps.options?.refreshMs ?? 5_000
  const idleRefreshMs = deps.options?.idleRefreshMs ?? 250
  const owner = `${os.hostname()}:${process.pid}:${crypto.randomBytes(4).toString('hex')}`
  const lock = createKeyedLock()
  // A target's lease, release and outcome rows are read newest first by their time (argMax by
  // leased_at, by at). Two in one millisecond (a retry acknowledged in the millisecond of its
  // lease, a lease in the millisecond of the release before it) would tie, and either could
  // win: a released target held until its lease ran out, or a leased one handed out again by a
  // process that reads the table. So this process stamps its rows from a clock that never gives
  // the same millisecond twice, and reads "now" from it too: no release is in a refill's future.
  let lastStamp = 0
  const stamp = () => (lastStamp = Math.max(Date.now(), lastStamp + 1))
  const current = () => Math.max(Date.now(), lastStamp)
  const states = new Map<number, TenantState>()
  const pulled = deps.metrics.counter('qianmian_push_leased_total', 'Targets leased to pullers')
  const acks = deps.metrics.counter('qianmian_push_acks_total', 'Acknowledged targets by status', ['status'])
  const withdrawnTotal = deps.metrics.counter('qianmian_push_withdrawn_total', 'Queued targets closed at pull because consent was withdrawn after targeting')
  const refills = deps.metrics.histogram('qianmian_push_refill_seconds', 'Reading due targets into the lease queue', [], [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])

  const state = (t: number): TenantState => {
    let s = states.get(t)
    if (!s) states.set(t, (s = { queue: [], head: 0, loadedAt: 0, dirty: true, gen: 0, quiet: false, nextExpiry: Infinity, personalized: NONE, leased: new Map(), finished: new Map() }))
    return s
  }

  async function quietNow(tenantId: number, now: number): Promise<boolean> {
    const p = await deps.policy(tenantId)
    return inQuiet(localMinute(new Date(now), p.timeZone), p.quietHours)
  }

  async function refill(tenantId: number, s: TenantState, now: number, chunk: number, quiet: boolean) {
    const stop = refills.startTimer()
    const gen = s.gen
    const [campaigns, policy, personalized] = await Promise.all([deps.activeCampaigns(tenantId), deps.policy(tenantId), deps.personalizedCampaigns?.(tenantId) ?? NONE])
    s.personalized = personalized
    // Inside quiet hours only security messages go out, whenever the others fell due.
    s.quiet = quiet
    const rows = await readDueTargets(deps.db.forTenant(tenantId), { campaigns, now, chunk, quiet, maxAttempts: policy.maxAttempts })
    s.queue = rows
    s.head = 0
    s.loadedAt = now
    s.dirty = s.gen !== gen
    s.nextExpiry = Infinity
    for (const [id, l] of s.leased) if (l.until <= now) s.leased.delete(id)
    // The query began at `now`: outcomes written before it are excluded by the engine.
    for (const [id, at] of s.finished) if (at < now) s.finished.delete(id)
    stop()
  }

  /**
   * Closes targets whose consent was withdrawn (`consent_withdrawn`), or marketing chosen by the
   * customer's characteristics once they turned personalization off (`personalization_off`).
   * They are skipped in this process from now on whatever happens; a failed write only means
   * another pull (or process) closes them later.
   */
  async function closeWithdrawn(tenantId: number, s: TenantState, rows: { r: QueueRow; reason: string }[], now: number): Promise<void> {
    for (const { r } of rows) s.finished.set(r.target.targetId, now)
    withdrawnTotal.inc(rows.length)
    try {
      await deps.db
        .forTenant(tenantId)
        .insertTsv('push_outcomes', OUTCOME_COLUMNS, rows.map(({ r, reason }) => [r.target.targetId, r.storedCid, r.customerKey, 'withdrawn', 1, reason, '', chEpoch(now)]))
    } catch (e) {
      deps.log.warn({ tenant: tenantId, targets: rows.length, err: e instanceof Error ? e.message : String(e) }, 'withdrawn targets not closed in storage; skipped in this process')
    }
  }

  function needsRefill(s: TenantState, now: number, quiet: boolean): boolean {
    // A queue read on the other side of the start or end of quiet hours holds the wrong messages.
    if (s.dirty || quiet !== s.quiet || now >= s.nextExpiry || now - s.loadedAt >= refreshMs) return true
    return s.head >= s.queue.length && now - s.loadedAt >= idleRefreshMs
  }

  return {
    pull(tenantId, o) {
      if (!Number.isInteger(o.limit) || o.limit < 1) throw new AppError('VALIDATION_FAILED', 'limit is a positive integer', { issues: [{ field: 'limit', message: 'invalid' }] })
      if (!Number.isFinite(o.leaseSeconds) || o.leaseSeconds <= 0) throw new AppError('VALIDATION_FAILED', 'leaseSeconds is positive', { issues: [{ field: 'leaseSeconds', message: 'invalid' }] })
      return lock.run(tenantId, async () => {
        const s = state(tenantId)
        let now = current()
        const quiet = await quietNow(tenantId, now)
        if (needsRefill(s, now, quiet)) await refill(tenantId, s, now, Math.min(maxChunk, Math.max(2000, o.limit * 5)), quiet)
        const ix = deps.withdrawals
        // A purpose whose policy sends without consent ('always') is not held by a withdrawal.
        let check: ((r: QueueRow) => string | undefined) | undefined
        if (ix) {
          const loading = ix.ready(tenantId)
          if (loading) await loading
          if (ix.size(tenantId) > 0) {
            const modes = (await deps.policy(tenantId)).consent
            check = (r) => {
              const held = r.target.purpose === 'marketing' || (modes?.[r.target.purpose as 'service' | 'security'] ?? 'explicit') !== 'always'
              if (held && ix.withdrawn(tenantId, r.customerKey, r.target.purpose, r.target.channel)) return 'consent_withdrawn'
              if (s.personalized.has(r.storedCid) && ix.withdrawn(tenantId, r.customerKey, 'personalization', 'all')) return 'personalization_off'
              return undefined
            }
          }
        }
        now = stamp()
        const take: QueueRow[] = []
        const withdrawn: { r: QueueRow; reason: string }[] = []
        while (take.length < o.limit && s.head < s.queue.length) {
          const r = s.queue[s.head++]!
          if (r.expMs > now && !s.leased.has(r.target.targetId) && !s.finished.has(r.target.targetId)) {
            const reason = check?.(r)
            if (reason) withdrawn.push({ r, reason })
            else take.push(r)
          }
        }
        if (withdrawn.length) await closeWithdrawn(tenantId, s, withdrawn, now)
        if (!take.length) return []
        const leaseId = crypto.randomBytes(8).toString('hex')
        const until = now + o.leaseSeconds * 1000
        try {
          await deps.db
            .forTenant(tenantId)
            .insertTsv('push_leases', LEASE_COLUMNS, take.map((r) => [r.target.targetId, 'lease', leaseId, r.storedCid, r.customerKey, owner, chEpoch(now), chEpoch(until)]))
        } catch (e) {
          // Not leased: back to the front of the queue, in order.
          deps.log.warn({ tenant: tenantId, targets: take.length, err: e instanceof Error ? e.message : String(e) }, 'push leases not written; the pull fails')
          s.queue.splice(s.head, 0, ...take)
          throw new AppError('STORAGE_UNAVAILABLE', 'The leases could not be written; retry.', { cause: e, headers: { 'retry-after': '1' } })
        }
        for (const r of take) s.leased.set(r.target.targetId, { leaseId, until, campaignId: r.storedCid, customerKey: r.customerKey })
        s.nextExpiry = Math.min(s.nextExpiry, until)
        pulled.inc(take.length)
        const leaseUntil = new Date(until).toISOString()
        return take.map((r) => ({ ...r.target, leaseId, leaseUntil }))
      })
    },

    async ack(tenantId, items) {
      const s = state(tenantId)
      const db = deps.db.forTenant(tenantId)
      const unknown = [...new Set(items.filter((i) => !s.leased.has(i.targetId)).map((i) => i.targetId))]
      // Leases handed out before a restart, or by another process, are found in the table.
      const stored = new Map<string, { leaseId: string; campaignId: string; customerKey: number }>()
      if (unknown.length) {
        const rows = await db.query(
          `SELECT target_id, argMax(lease_id, leased_at) AS lease_id, any(campaign_id) AS campaign_id, any(customer_key) AS customer_key
           FROM push_leases WHERE tenant_id = {tenant:UInt16} AND kind = 'lease' AND target_id IN (SELECT arrayJoin({ids:Array(String)}))
           GROUP BY target_id`,
          { ids: unknown },
          z.object({ target_id: z.string(), lease_id: z.string(), campaign_id: z.string(), customer_key: z.coerce.number() }),
        )
        for (const r of rows) stored.set(r.target_id, { leaseId: r.lease_id, campaignId: r.campaign_id, customerKey: r.customer_key })
      }
      // A retry asked after the last lease `maxAttempts` allows gets none: its failure is final, and counted.
      const retried = [...new Set(items.filter((i) => i.status === 'failed' && i.retry === true).map((i) => i.targetId))]
      const spent = new Set<string>()
      if (retried.length) {
        const { maxAttempts } = await deps.policy(tenantId)
        const rows = await db.query(
          `SELECT target_id FROM push_leases WHERE tenant_id = {tenant:UInt16} AND kind = 'lease' AND target_id IN (SELECT arrayJoin({ids:Array(String)}))
           GROUP BY target_id HAVING count() >= {attempts:UInt16}`,
          { ids: retried, attempts: maxAttempts },
          z.object({ target_id: z.string() }),
        )
        for (const r of rows) spent.add(r.target_id)
      }
      const now = stamp()
      const outcomes: unknown[][] = []
      const releases: unknown[][] = []
      const rejected: AckResult['rejected'] = []
      const finals: string[] = []
      const counts = { delivered: 0, failed: 0 }
      items.forEach((i, index) => {
        const l = s.leased.get(i.targetId) ?? stored.get(i.targetId)
        if (!l) return void rejected.push({ index, targetId: i.targetId, reason: 'not_leased' })
        const retry = i.status === 'failed' && i.retry === true && !spent.has(i.targetId)
        outcomes.push([i.targetId, l.campaignId, l.customerKey, i.status, retry ? 0 : 1, i.reason ?? '', l.leaseId, chEpoch(now)])
        if (retry) releases.push([i.targetId, 'release', l.leaseId, l.campaignId, l.customerKey, owner, chEpoch(now), chEpoch(now)])
        else finals.push(i.targetId)
        counts[i.status]++
      })
      if (outcomes.length) await db.insertTsv('push_outcomes', OUTCOME_COLUMNS, outcomes)
      if (releases.length) await db.insertTsv('push_leases', LEASE_COLUMNS, releases)
      // A final outcome also keeps the target from a queue read before the outcome was written
      // (its lease ran out, a refill queued it again, and then the late ack came).
      const at = Date.now()
      for (const id of finals) s.finished.set(id, at)
      for (const o of outcomes) s.leased.delete(o[0] as string)
      // Released targets come back at the next pull, even when a refill begun before the release
      // was written ends after it (a bumped generation keeps that refill from clearing `dirty`).
      if (releases.length) {
        s.gen++
        s.dirty = true
      }
      if (counts.delivered) acks.inc({ status: 'delivered' }, counts.delivered)
      if (counts.failed) acks.inc({ status: 'failed' }, counts.failed)
      return { accepted: outcomes.length, rejected }
    },

    invalidate(tenantId) {
      const s = state(tenantId)
      s.gen++
      s.dirty = true
      // The next pull reads the queue again: its memory can go now.
      s.queue = []
      s.head = 0
    },

    forgetCustomers(tenantId, keys) {
      const s = state(tenantId)
      s.gen++
      s.dirty = true
      s.queue = s.queue.filter((r, i) => i >= s.head && !keys.has(r.customerKey))
      s.head = 0
      for (const [id, l] of s.leased) if (keys.has(l.customerKey)) s.leased.delete(id)
    },

    async close() {
      await lock.idle()
      states.clear()
    },
  }
}
