import { z } from 'zod'
import type { Db } from '../core/db.js'
import { chEpoch } from '../core/time.js'

/**
 * The customers who turned personalization off (the consent purpose `personalization`), per
 * tenant, as a set of customer keys the layout path looks up per request. Loaded with a tenant's
 * first layout; switches recorded in this process arrive at once (`apply`), those of other
 * processes with the next background refresh (every `refreshMs`, started by a request and never
 * awaited by one after the first load), which bounds their delay.
 */

export interface PersonalizationSwitch {
  /** Loads the tenant on first use; later, starts a refresh in the background when one is due. */
  ready(tenantId: number): Promise<void> | undefined
  /** Whether the customer turned personalization off. */
  off(tenantId: number, customerKey: number): boolean
  apply(tenantId: number, notices: readonly { customerKey: number; purpose: string; granted: boolean }[]): void
}

const row = z.object({ customer_key: z.coerce.number(), granted: z.coerce.number() })

interface TenantSet {
  off: Set<number>
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
    if (!x) tenants.set(t, (x = { off: new Set(), loaded: undefined, done: false, since: 0, checkedAt: 0, refreshing: false, touched: undefined }))
    return x
  }

  async function read(tenantId: number, x: TenantSet): Promise<void> {
    const now = Date.now()
    const first = !x.done
    x.touched = new Set()
    try {
      // First: every customer's current switch; then only those the history received since.
      const rows = await deps.db.forTenant(tenantId).query(
        `SELECT customer_key, argMax(granted, updated_at) AS granted FROM consents FINAL
         WHERE tenant_id = {tenant:UInt16} AND purpose = 'personalization'
           ${first ? '' : `AND customer_key IN (SELECT customer_key FROM consent_history WHERE tenant_id = {tenant:UInt16} AND purpose = 'personalization' AND received_at >= {since:DateTime64(3, 'UTC')})`}
         GROUP BY customer_key`,
        first ? {} : { since: chEpoch(x.since) },
        row,
      )
      for (const r of rows) {
        if (x.touched.has(r.customer_key)) continue
        if (r.granted === 0) x.off.add(r.customer_key)
        else x.off.delete(r.customer_key)
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
        x.touched?.add(n.customerKey)
        if (n.granted) x.off.delete(n.customerKey)
        else x.off.add(n.customerKey)
      }
    },
  }
}
