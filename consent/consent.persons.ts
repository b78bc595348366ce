import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { STANDING_MERGES_SQL } from '../core/identity.sql.js'

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
