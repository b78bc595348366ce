import { z } from 'zod'
import type { Db } from '../core/db.js'
import { chEpoch } from '../core/time.js'

/**
 * The record of identity changes (`identity_changes`): every link and merge, who made it and
 * why, and its undo. Rows are versioned: a change marked undone is a newer version of its row.
 *
 * A merge row holds the customer its administrator asked for (`into_key`). Readers resolve a
 * merge in one step, so where a merge is sent on beyond that customer (it was merged in turn) is
 * a change of its own, a merge row that follows the change causing it: `message_id` holds
 * `follows:<change id>`. Such rows come and go with the merges they follow; incremental tag runs
 * read them to find the events that moved.
 */

const idKind = z.enum(['customer_no', 'anonymous_id', 'device_id', 'user_id'])

export const identityChange = z.object({
  changeId: z.string(),
  action: z.enum(['link', 'merge']),
  idKind,
  idValue: z.string(),
  fromKey: z.number(),
  intoKey: z.number(),
  actor: z.string(),
  reason: z.string(),
  createdAt: z.string(),
  undoneAt: z.string().nullable(),
  undoneBy: z.string(),
  follows: z
    .string()
    .nullable()
    .describe('set on a merge sent on beyond the customer asked for (that customer was merged in turn): the change that sent it, a merge or the undo of one; it is undone with the merges it follows, not by itself'),
})
export type IdentityChange = z.infer<typeof identityChange>

export const changeRow = z.object({
  change_id: z.string(),
  action: z.enum(['link', 'merge']),
  id_kind: idKind,
  id_value: z.string(),
  from_key: z.coerce.number(),
  into_key: z.coerce.number(),
  actor: z.string(),
  reason: z.string(),
  message_id: z.string(),
  created_at: z.string(),
  undone_at: z.string().nullable(),
  undone_by: z.string(),
})
export type ChangeRow = z.infer<typeof changeRow>

const FOLLOWS = 'follows:'
export const followsMessage = (changeId: string) => `${FOLLOWS}${changeId}`

/** The change a routing row follows; links carry an event's message id there, never read so. */
export const followsOf = (r: ChangeRow): string | null => (r.action === 'merge' && r.message_id.startsWith(FOLLOWS) ? r.message_id.slice(FOLLOWS.length) : null)

export const changeView = (r: ChangeRow): IdentityChange => ({
  changeId: r.change_id,
  action: r.action,
  idKind: r.id_kind,
  idValue: r.id_value,
  fromKey: r.from_key,
  intoKey: r.into_key,
  actor: r.actor,
  reason: r.reason,
  createdAt: r.created_at,
  undoneAt: r.undone_at,
  undoneBy: r.undone_by,
  follows: followsOf(r),
})

export const CHANGE_SELECT = `SELECT toString(change_id) AS change_id, action, id_kind, id_value, from_key, into_key, actor, reason, message_id,
              toString(created_at) AS created_at, if(isNull(undone_at), NULL, toString(undone_at)) AS undone_at, undone_by
       FROM identity_changes FINAL`

/** Appends versions of change rows (new changes, or ones marked undone), stamped `updatedAt`; the latest wins. */
export async function recordChanges(db: Db, tenantId: number, rows: readonly ChangeRow[], updatedAt: Date): Promise<void> {
  if (!rows.length) return
  const at = chEpoch(updatedAt.getTime())
  await db.forTenant(tenantId).insertTsv(
    'identity_changes',
    ['change_id', 'action', 'id_kind', 'id_value', 'from_key', 'into_key', 'actor', 'reason', 'message_id', 'created_at', 'undone_at', 'undone_by', 'updated_at'],
    rows.map((r) => [r.change_id, r.action, r.id_kind, r.id_value, r.from_key, r.into_key, r.actor, r.reason, r.message_id, r.created_at, r.undone_at, r.undone_by, at]),
  )
}

/**
 * The merge changes that stand (not undone), latest versions, without FINAL: the tenant's links
 * are most of the table, and only the merge rows' granules are read.
 */
export async function standingMerges(db: Db, tenantId: number): Promise<ChangeRow[]> {
  const rows = await db.forTenant(tenantId).query(
    `SELECT toString(change_id) AS change_id, 'merge' AS action, toString(any(id_kind)) AS id_kind,
            argMax(id_value, updated_at) AS id_value, argMax(from_key, updated_at) AS from_key, argMax(into_key, updated_at) AS into_key,
            argMax(actor, updated_at) AS actor, argMax(reason, updated_at) AS reason, argMax(message_id, updated_at) AS message_id,
            toString(argMax(created_at, updated_at)) AS created_at
     FROM (SELECT * FROM identity_changes WHERE tenant_id = {tenant:UInt16} AND action = 'merge')
     GROUP BY change_id HAVING argMax(isNull(undone_at), updated_at) = 1`,
    {},
    changeRow.omit({ undone_at: true, undone_by: true }),
  )
  return rows.map((r) => ({ ...r, undone_at: null, undone_by: '' }))
}
