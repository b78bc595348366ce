import { z } from 'zod'
import type { Db } from '../core/db.js'
import { personKeysSql, survivorRowsSql } from '../core/identity.sql.js'
import { chEpoch } from '../core/time.js'
import { NO_MERGES, readMergeGroups, type MergeGroups } from '../consent/consent.persons.js'

/**
 * Which customers have withdrawn consent for a (purpose, channel) lately, in memory, so a pull
 * can drop a target made before the withdrawal with a map lookup instead of a query.
 *
 * Filled on a tenant's first use with the current state of every pair decided (by the
 * customer's clock) or received in the last `windowMs` (older decisions were known to the
 * targeting that made any target still deliverable), then kept current two ways: changes
 * recorded in this process are applied at once (`apply`), and `refresh` re-reads the current
 * state of the pairs the history received since the last read, which brings in what other
 * processes recorded; its interval bounds their delay.
 *
 * A customer merged into another is one person: the decision for a pair is the latest under any
 * of the survivor's keys, and it is held for each of those keys (targets made before the merge
 * may name either). A merge or its undo changes whose decisions count together, though no
 * consent changed: the refresh also reads the merges written since, and reads the whole current
 * state of the customers they concern again.
 */

export interface ConsentNoticeLike {
  customerKey: number
  purpose: string
  channel: string
  granted: boolean
}

export interface WithdrawalIndex {
  /** Whether the customer's current decision for the pair is a withdrawal (known to the index). */
  withdrawn(tenantId: number, customerKey: number, purpose: string, channel: string): boolean
  /** Entries held for a tenant (0 when none: the pull skips the lookups). */
  size(tenantId: number): number
  /** Decisions recorded in this process. */
  apply(tenantId: number, notices: readonly ConsentNoticeLike[]): void
  /** Loads the tenant on first use, then re-reads changes at most every `refreshMs`. */
  refresh(tenantId: number, now?: number): Promise<void>
  /**
   * For the pull path: the first load to wait for, or undefined once loaded, when a due refresh
   * runs in the background (a pull never waits for one; its interval still bounds the delay).
   */
  ready(tenantId: number): Promise<void> | undefined
}

// The personalization switch is held too (purpose personalization, channel all): a pull closes
// marketing chosen by the customer's characteristics for one who turned it off after targeting.
const PURPOSE: Record<string, number> = { security: 1, service: 2, marketing: 3, personalization: 4 }
const CHANNEL: Record<string, number> = { push: 1, sms: 2, in_app: 3, all: 4 }
/** One number per (customer, purpose, channel): keys are UInt32, so this stays below 2^38. */
const pack = (key: number, p: number, c: number) => key * 64 + p * 8 + c

const row = z.object({ customer_key: z.coerce.number(), purpose: z.string(), channel: z.string(), granted: z.coerce.number() })

// The keys whose pairs are read again: those with a consent change received since {since}, and
// those of a merge (or undo) written since, each with every key of its survivor now.
const CHANGED = `(SELECT customer_key AS k FROM consent_history WHERE tenant_id = {tenant:UInt16} AND received_at >= {since:DateTime64(3, 'UTC')}
    UNION ALL SELECT arrayJoin([from_key, into_key]) AS k FROM customer_merges WHERE tenant_id = {tenant:UInt16} AND updated_at >= {since:DateTime64(3, 'UTC')})`
const GROUP_KEYS = personKeysSql(CHANGED)

interface TenantIndex {
  keys: Set<number>
  /** Standing merges as of the last read. */
  groups: MergeGroups
  loaded: boolean
  /** Received time (ms) from which the next refresh reads the history. */
  since: number
  checkedAt: number
  inflight: Promise<void> | undefined
  /** Pairs applied while a read was running: newer than what that read may bring back. */
  touched: Set<number> | undefined
}

export function createWithdrawalIndex(deps: { db: Db; windowMs: number; refreshMs?: number; onError?: (tenantId: number, err: unknown) => void }): WithdrawalIndex {
  const refreshMs = deps.refreshMs ?? 1_000
  // Writers on other machines stamp received_at with their clocks: read a little behind.
  const overlapMs = 5_000
  const tenants = new Map<number, TenantIndex>()
  const of = (t: number) => {
    let x = tenants.get(t)
    if (!x) tenants.set(t, (x = { keys: new Set(), groups: NO_MERGES, loaded: false, since: 0, checkedAt: 0, inflight: undefined, touched: undefined }))
    return x
  }

  /** A decision for the person of `n.customerKey`, held for each of its keys. */
  function set(x: TenantIndex, n: ConsentNoticeLike, fromRead = false): void {
    const p = PURPOSE[n.purpose]
    const c = CHANNEL[n.channel]
    if (!p || !c) return
    for (const key of x.groups.groupOf(n.customerKey)) {
      const k = pack(key, p, c)
      if (fromRead && x.touched?.has(k)) continue
      if (!fromRead) x.touched?.add(k)
      if (n.granted) x.keys.delete(k)
      else x.keys.add(k)
    }
  }

  /** Forgets what is held for a key (its pairs are read again), except pairs applied during the read. */
  function clear(x: TenantIndex, key: number): void {
    for (const p of Object.values(PURPOSE)) {
      for (const c of Object.values(CHANNEL)) {
        const k = pack(key, p, c)
        if (!x.touched?.has(k)) x.keys.delete(k)
      }
    }
  }

  async function read(tenantId: number, x: TenantIndex, now: number): Promise<void> {
    const first = !x.loaded
    const since = first ? now - deps.windowMs : x.since
    x.touched = new Set()
    const db = deps.db.forTenant(tenantId)
    // The current state (newest by the customer's time, over the survivor's keys) of the
    // customers that changed: one small grouped read of `consents` keyed by what the history
    // received and the merges written, and the tenant's merges (few).
    const [rows, merges] = await Promise.all([
      db.query(
        `SELECT customer_key, toString(purpose) AS purpose, toString(channel) AS channel, argMax(granted, updated_at) AS granted
         FROM ${survivorRowsSql(
           'consents',
           ['purpose', 'channel', 'granted', 'updated_at'],
           `x.purpose IN ('security', 'service', 'marketing', 'personalization')
             AND (${first ? `x.updated_at >= {since:DateTime64(3, 'UTC')} OR ` : ''}x.customer_key IN ${GROUP_KEYS})`,
           { final: true },
         )}
         GROUP BY customer_key, purpose, channel`,
        { since: chEpoch(since) },
        row,
      ),
      readMergeGroups(db, since, x.groups),
    ])
    x.groups = merges.groups
    // Whose decisions count together changed for the keys of a merge written since: what is held
    // for each of them, as one person before and after, is read again whole.
    if (!first) for (const key of merges.regrouped) clear(x, key)
    for (const r of rows) set(x, { customerKey: r.customer_key, purpose: r.purpose, channel: r.channel, granted: r.granted === 1 }, true)
    x.touched = undefined
    x.loaded = true
    x.since = now - overlapMs
    x.checkedAt = now
  }

  const index: WithdrawalIndex = {
    withdrawn(tenantId, customerKey, purpose, channel) {
      const x = tenants.get(tenantId)
      if (!x || x.keys.size === 0) return false
      const p = PURPOSE[purpose]
      const c = CHANNEL[channel]
      return p !== undefined && c !== undefined && x.keys.has(pack(customerKey, p, c))
    },
    size: (t) => tenants.get(t)?.keys.size ?? 0,
    apply(tenantId, notices) {
      const x = of(tenantId)
      for (const n of notices) set(x, n)
    },
    ready(tenantId) {
      const x = of(tenantId)
      if (!x.loaded) return index.refresh(tenantId)
      if (!x.inflight && Date.now() - x.checkedAt >= refreshMs) {
        void index.refresh(tenantId).catch((err: unknown) => {
          // Tried again after the interval; until then the index holds what it had.
          x.checkedAt = Date.now()
          deps.onError?.(tenantId, err)
        })
      }
      return undefined
    },
    async refresh(tenantId, now = Date.now()) {
      const x = of(tenantId)
      if (x.loaded && now - x.checkedAt < refreshMs) return
      // Concurrent callers share one read.
      x.inflight ??= read(tenantId, x, now).finally(() => {
        x.inflight = undefined
        x.touched = undefined
      })
      await x.inflight
    },
  }
  return index
}
