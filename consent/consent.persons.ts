import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { STANDING_MERGES_SQL } from '../core/identity.sql.js'
import { chEpoch } from '../core/time.js'

/**
 * Customers merged into others, as consent sees them: one person, whose decision for a purpose
 * and channel is the latest under any of its keys (the survivor's and those merged into it), as
 * push targeting reads it. Each decision stays under the key of the customer number it came
 * through, so undoing a merge gives every customer back its own.
 */

export interface Persons {
  /** The survivor of a key (the key itself when it is not merged away). */
  survivor(key: number): number
  /** Every key of the person a key belongs to, the survivor first. */
  keysOf(key: number): number[]
}

const mergeRow = z.object({ from_key: z.coerce.number(), into_key: z.coerce.number() })

/** The persons of `keys`: one small read of the standing merges that concern them. */
export async function personsOf(db: TenantDb, keys: readonly number[]): Promise<Persons> {
  const rows = keys.length
    ? await db.query(
        `SELECT m.from_key AS from_key, m.into_key AS into_key FROM ${STANDING_MERGES_SQL} AS m
         WHERE m.from_key IN {keys:Array(UInt32)} OR m.into_key IN {keys:Array(UInt32)}
            OR m.into_key IN (SELECT n.into_key FROM ${STANDING_MERGES_SQL} AS n WHERE n.from_key IN {keys:Array(UInt32)})`,
        { keys },
        mergeRow,
      )
    : []
  const into = new Map(rows.map((r) => [r.from_key, r.into_key]))
  const members = new Map<number, number[]>()
  for (const r of rows) members.set(r.into_key, [...(members.get(r.into_key) ?? []), r.from_key])
  const survivor = (key: number) => into.get(key) ?? key
  return {
    survivor,
    keysOf(key) {
      const s = survivor(key)
      return [s, ...(members.get(s) ?? []).sort((a, b) => a - b)]
    },
  }
}

/**
 * A tenant's standing merges held in memory, for readers that keep decisions per person (the
 * withdrawal index at pull time, the personalization switch on layouts): a decision read for a
 * survivor is held for every key of its person, since what asks may name any of them.
 */
export interface MergeGroups {
  /** Every key of the person `key` belongs to: its survivor first, then the keys merged into it. */
  groupOf(key: number): number[]
}

export const NO_MERGES: MergeGroups = Object.freeze({ groupOf: (key: number) => [key] })

const groupRow = z.object({ from_key: z.coerce.number(), survivor: z.coerce.number(), standing: z.coerce.number(), changed: z.array(z.coerce.number()) })

/**
 * The tenant's merges now, and the keys whose person changed since `since` (ms): both keys of
 * every merge or undo written since, with every key of their persons before and after. What is
 * held for those is read again whole.
 */
export async function readMergeGroups(db: TenantDb, since: number, before: MergeGroups): Promise<{ groups: MergeGroups; regrouped: Set<number> }> {
  const rows = await db.query(
    `SELECT from_key, argMax(into_key, updated_at) AS survivor, argMax(active, updated_at) AS standing,
            groupArrayIf(into_key, updated_at >= {since:DateTime64(3, 'UTC')}) AS changed
     FROM customer_merges WHERE tenant_id = {tenant:UInt16} GROUP BY from_key`,
    { since: chEpoch(since) },
    groupRow,
  )
  const into = new Map(rows.filter((m) => m.standing === 1).map((m) => [m.from_key, m.survivor]))
  const members = new Map<number, number[]>()
  for (const [from, to] of into) members.set(to, [...(members.get(to) ?? []), from])
  const groups: MergeGroups = {
    groupOf(key) {
      const s = into.get(key) ?? key
      return [s, ...(members.get(s) ?? [])]
    },
  }
  const regrouped = new Set<number>()
  for (const m of rows.filter((r) => r.changed.length)) {
    for (const k of [m.from_key, ...m.changed]) for (const key of [...before.groupOf(k), ...groups.groupOf(k)]) regrouped.add(key)
  }
  return { groups, regrouped }
}
