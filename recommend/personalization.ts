import { z } from 'zod'
import type { Db } from '../core/db.js'
import { personKeysSql, survivorRowsSql } from '../core/identity.sql.js'
import { chEpoch } from '../core/time.js'
import { NO_MERGES, readMergeGroups, type MergeGroups } from '../consent/consent.persons.js'

/**
 * The customers who turned personalization off (the consent purpose `personalization`), per
 * tenant, as a set of customer keys the layout path looks up per request. Loaded with a tenant's
 * first layout; switches recorded in this process arrive at once (`apply`), those of other
 * processes with the next background refresh (every `refreshMs`, started by a request and never
 * awaited by one after the first load), which bounds their delay.
 *
 * A customer merged into another is one person: the switch is the latest decision under any of
 * the survivor's keys, held for each of them (a layout snapshot loaded before the merge still
 * serves the number merged away under its own key). A merge or its undo written since the last
 * read has the switch of every key it regroups read again.
 */

export interface PersonalizationSwitch {
  /** Loads the tenant on first use; later, starts a refresh in the background when one is due. */
  ready(tenantId: number): Promise<void> | undefined
  /** Whether the customer turned personalization off. */
  off(tenantId: number, customerKey: number): boolean
  apply(tenantId: number, notices: readonly { customerKey: number; purpose: string; granted: boolean }[]): void
}

const row = z.object({ customer_key: z.coerce.number(), granted: z.coerce.number() })

// Every key of the persons with a switch received since {since}, or of a merge written since.
const CHANGED_PERSONS = personKeysSql(`(SELECT customer_key AS k FROM consent_history
    WHERE tenant_id = {tenant:UInt16} AND purpose = 'personalization' AND received_at >= {since:DateTime64(3, 'UTC')}
    UNION ALL SELECT arrayJoin([from_key, into_key]) AS k FROM customer_merges WHERE tenant_id = {tenant:UInt16} AND updated_at >= {since:DateTime64(3, 'UTC')})`)

interface TenantSet {
  off: Set<number>
  /** Standing merges as of the last read. */
  groups: MergeGroups
  loaded: Promise<void> | undefined
  done: boolean
  since: number
  checkedAt: number
  refreshing: boolean
  /** Keys applied while a read runs: newer than what it brings back. */
  touched: Set<number> | undefined
}

export function createPersonalizationSwitch(deps: { db: Db; refreshMs?: number; onError?: (tenantId: number, err: unknown) => void }): PersonalizationSwitch {
  const refreshMs = deps.refreshMs ?? 2_000
  const overlapMs = 5_000
  const tenants = new Map<number, TenantSet>()
  const of = (t: number) => {
    let x = tenants.get(t)
    if (!x) tenants.set(t, (x = { off: new Set(), groups: NO_MERGES, loaded: undefined, done: false, since: 0, checkedAt: 0, refreshing: false, touched: undefined }))
    return x
  }

  async function read(tenantId: number, x: TenantSet): Promise<void> {
    const now = Date.now()
    const first = !x.done
    x.touched = new Set()
    try {
      // First: every person's current switch; then only those of the persons whose keys the
      // history received, or a merge regrouped, since.
      const db = deps.db.forTenant(tenantId)
      const [rows, merges] = await Promise.all([
        db.query(
          `SELECT customer_key, argMax(granted, updated_at) AS granted
           FROM ${survivorRowsSql('consents', ['granted', 'updated_at'], `x.purpose = 'personalization'${first ? '' : ` AND x.customer_key IN ${CHANGED_PERSONS}`}`, { final: true })}
           GROUP BY customer_key`,
          { since: chEpoch(x.since) },
          row,
        ),
        readMergeGroups(db, x.since, x.groups),
      ])
      x.groups = merges.groups
      if (!first) for (const key of merges.regrouped) if (!x.touched.has(key)) x.off.delete(key)
      for (const r of rows) {
        for (const key of x.groups.groupOf(r.customer_key)) {
          if (x.touched.has(key)) continue
          if (r.granted === 0) x.off.add(key)
          else x.off.delete(key)
        }
      }
      x.done = true
      x.since = now - overlapMs
      x.checkedAt = now
    } finally {
      x.touched = undefined
    }
  }

  return {
    ready(tenantId) {
      const x = of(tenantId)
      if (!x.done) return (x.loaded ??= read(tenantId, x).finally(() => (x.loaded = undefined)))
      if (!x.refreshing && Date.now() - x.checkedAt >= refreshMs) {
        x.refreshing = true
        void read(tenantId, x)
          .catch((err: unknown) => deps.onError?.(tenantId, err))
          .finally(() => (x.refreshing = false))
      }
      return undefined
    },
    off(tenantId, customerKey) {
      const x = tenants.get(tenantId)
      return x !== undefined && x.off.size > 0 && x.off.has(customerKey)
    },
    apply(tenantId, notices) {
      const x = of(tenantId)
      for (const n of notices) {
        if (n.purpose !== 'personalization') continue
        for (const key of x.groups.groupOf(n.customerKey)) {
          x.touched?.add(key)
          if (n.granted) x.off.delete(key)
          else x.off.add(key)
        }
      }
    },
  }
}
