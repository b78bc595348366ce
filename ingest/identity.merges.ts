import crypto from 'node:crypto'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import { followsMessage, followsOf, recordChanges, standingMerges, type ChangeRow } from './identity.changes.js'

/**
 * Customer merges and where readers send each merged key (`customer_merges`).
 *
 * Readers resolve a merge in one step (core/identity.sql.ts, tags/customers.lookup.ts), so a
 * merged key must point at the end of its chain: the customer reached by following the standing
 * merges from the one its administrator named. What an administrator asked is kept as asked (the
 * merge row's `into_key`); the routes are derived from those merges. Each merge and each undo
 * derives the tenant's routes again and writes only what differs, so
 * - a merge of X into Y sends every merge into X on to Y's end;
 * - an undo sends the merges that went through it back to the customer their administrator named
 *   (or on to where that customer's own chain now ends);
 * - a merge routed beyond the customer asked for is recorded as a row following the change that
 *   sent it there (identity.changes.ts), undone when the route changes again.
 * Deriving from what stands (rather than replaying steps) makes an interrupted merge or undo
 * repaired by the next one in the tenant, and a retried undo complete what the first began.
 */

export interface MergeRoutes {
  /** Merges `from` into `into` as asked; the change row, or undefined when they are one customer. */
  merge(tenantId: number, from: Customer, into: Customer, actor: { id: string; reason: string }): Promise<ChangeRow | undefined>
  /** Undoes a standing merge change; `undone` is its row marked undone, recorded last. */
  undo(tenantId: number, change: ChangeRow, undone: ChangeRow): Promise<void>
}

interface Customer {
  no: string
  key: number
}

interface Routes {
  /** Merges that stand as their administrators asked them, by the key merged away. */
  asked: Map<number, ChangeRow>
  /** Where readers send each merged key now, and the merge change the route belongs to. */
  routed: Map<number, { into: number; changeId: string }>
  /** Standing rows that record a merge sent beyond the customer asked for, by key. */
  onward: Map<number, ChangeRow[]>
}

interface Cause {
  changeId: string
  actor: string
  reason: string
}

const routedRow = z.object({ from_key: z.coerce.number(), into_key: z.coerce.number(), change_id: z.string() })

export function createMergeRoutes(deps: { db: Db; now: () => Date }): MergeRoutes {
  const { db, now } = deps

  async function load(tenantId: number): Promise<Routes> {
    const [merges, routed] = await Promise.all([
      standingMerges(db, tenantId),
      db.forTenant(tenantId).query(
        `SELECT from_key, argMax(into_key, updated_at) AS into_key, toString(argMax(change_id, updated_at)) AS change_id FROM customer_merges
         WHERE tenant_id = {tenant:UInt16} GROUP BY from_key HAVING argMax(active, updated_at) = 1`,
        {},
        routedRow,
      ),
    ])
    const r: Routes = { asked: new Map(), routed: new Map(routed.map((x) => [x.from_key, { into: x.into_key, changeId: x.change_id }])), onward: new Map() }
    // Oldest first: where two merges of one key stand (never made here), the newer one counts.
    for (const m of merges.sort((a, b) => a.created_at.localeCompare(b.created_at))) {
      if (followsOf(m)) r.onward.set(m.from_key, [...(r.onward.get(m.from_key) ?? []), m])
      else r.asked.set(m.from_key, m)
    }
    return r
  }

  /** The end of a key's chain of merges as asked. A circle (never made here) ends where it closes. */
  function end(asked: Routes['asked'], key: number): number {
    const seen = new Set<number>()
    let k = key
    for (let m = asked.get(k); m && !seen.has(k); m = asked.get(k)) {
      seen.add(k)
      k = m.into_key
    }
    return k === key ? (asked.get(key)?.into_key ?? key) : k
  }

  /** Writes the routes `r.asked` implies where they differ from what stands, then the change rows (`extra` last). */
  async function reconcile(tenantId: number, r: Routes, cause: Cause, extra: ChangeRow[]): Promise<void> {
    const at = now()
    const stamp = chDateTime(at)
    const routes: Record<string, unknown>[] = []
    for (const [from, m] of r.asked) {
      const into = end(r.asked, from)
      const cur = r.routed.get(from)
      if (!cur || cur.into !== into || cur.changeId !== m.change_id) routes.push({ from_key: from, into_key: into, change_id: m.change_id, active: 1, updated_at: stamp })
    }
    for (const [from, cur] of r.routed) if (!r.asked.has(from)) routes.push({ from_key: from, into_key: cur.into, change_id: cur.changeId, active: 0, updated_at: stamp })
    const changes: ChangeRow[] = []
    for (const from of new Set([...r.asked.keys(), ...r.onward.keys()])) {
      const m = r.asked.get(from)
      const into = m ? end(r.asked, from) : 0
      const want = m && into !== m.into_key ? into : 0
      let kept = false
      for (const row of r.onward.get(from) ?? []) {
        if (want && !kept && row.into_key === want) kept = true
        else changes.push({ ...row, undone_at: stamp, undone_by: cause.actor })
      }
      if (m && want && !kept) {
        changes.push({
          change_id: crypto.randomUUID(),
          action: 'merge',
          id_kind: 'customer_no',
          id_value: m.id_value,
          from_key: from,
          into_key: want,
          actor: cause.actor,
          reason: cause.reason,
          message_id: followsMessage(cause.changeId),
          created_at: stamp,
          undone_at: null,
          undone_by: '',
        })
      }
    }
    // Routes first, the record after: a change recorded is one whose routes were written.
    if (routes.length) await db.forTenant(tenantId).insert('customer_merges', routes)
    await recordChanges(db, tenantId, [...changes, ...extra], now())
  }

  return {
    async merge(tenantId, from, into, actor) {
      if (from.key === into.key) return undefined
      const r = await load(tenantId)
      if (r.asked.has(from.key) || r.routed.has(from.key)) throw new AppError('CONFLICT', `Customer ${from.no} is already merged; undo that merge first.`)
      if (end(r.asked, into.key) === from.key || r.routed.get(into.key)?.into === from.key) {
        throw new AppError('CONFLICT', `Customer ${into.no} is merged into ${from.no}; undo that merge first.`)
      }
      const change: ChangeRow = {
        change_id: crypto.randomUUID(),
        action: 'merge',
        id_kind: 'customer_no',
        id_value: from.no,
        from_key: from.key,
        into_key: into.key,
        actor: actor.id,
        reason: actor.reason,
        message_id: '',
        created_at: chDateTime(now()),
        undone_at: null,
        undone_by: '',
      }
      r.asked.set(from.key, change)
      await reconcile(tenantId, r, { changeId: change.change_id, actor: actor.id, reason: `sent on with the merge of ${from.no} into ${into.no}` }, [change])
      return change
    },
    async undo(tenantId, change, undone) {
      const cause = followsOf(change)
      if (cause) {
        throw new AppError('CONFLICT', `Change ${change.change_id} only sends a merge along its chain, following change ${cause}: undo the customer's own merge, or one along the chain.`)
      }
      const r = await load(tenantId)
      if (r.asked.get(change.from_key)?.change_id === change.change_id) r.asked.delete(change.from_key)
      await reconcile(tenantId, r, { changeId: change.change_id, actor: undone.undone_by, reason: `sent back with the undo of the merge of ${change.id_value}` }, [undone])
    },
  }
}
