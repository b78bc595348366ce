import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import { ALL_KEYS, keyInRange, rangeParams, type KeyRange } from './tag.ranges.js'

/**
 * What a backfill writes after the day it computes. A backfill writes its changes to history at
 * the end of a past day; the values history held after that day were left to answer from the
 * next row of each customer on. Live runs write only what changes against the current values,
 * so where no later row exists (the live run found the value it already held, or none, and
 * wrote nothing) the backfilled value would be answered forever. So for each value a backfill
 * changes, history returns to what it held after that day, at the tag's first live computation
 * after it: the live run that computed what the current values were compared with then.
 */

/**
 * When each of `tags` was first computed by a live run after `asOf`: from the tags pipeline's
 * run records (each run's time and, in its details, the tags it computed, kept ones included:
 * a kept tag's values were found to hold), and tag_state (the tag's last computation, for runs
 * made without a record). A tag not computed live since is absent.
 */
async function firstLiveAfter(db: TenantDb, tags: readonly string[], asOf: string): Promise<Map<string, string>> {
  const rows = await db.query(
    `SELECT tag, toString(min(at)) AS at FROM (
       SELECT tag, as_of AS at FROM tag_state FINAL
       WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND as_of > {asOf:DateTime64(3, 'UTC')}
       UNION ALL
       SELECT t AS tag, as_of AS at FROM pipeline_runs FINAL ARRAY JOIN {tags:Array(String)} AS t
       WHERE tenant_id = {tenant:UInt16} AND pipeline = 'tags' AND mode IN ('full', 'incremental') AND status IN ('succeeded', 'partial')
         AND as_of > {asOf:DateTime64(3, 'UTC')} AND JSONHas(details, 'tags', t)
         AND NOT JSONExtractBool(details, 'tags', t, 'failed') AND JSONExtractString(details, 'tags', t, 'reason') = ''
     ) GROUP BY tag`,
    { tags, asOf },
    z.object({ tag: z.string(), at: z.string() }),
  )
  return new Map(rows.map((r) => [r.tag, r.at]))
}

export interface RestoreOptions {
  runId: string
  /** The tags whose changes (tag_changes of the run) are about to be written at `asOf`. */
  tags: readonly string[]
  versions: readonly number[]
  asOf: string
  /** The backfill's start (engine clock): where history returns for a tag not computed live since. */
  startedAt: string
  ranges?: readonly KeyRange[]
}

/**
 * Writes, for each (tag, customer) the backfill changes at `asOf`, the row that restores what
 * history held just after `asOf` (its value, or removed when it held none) at the tag's first
 * live computation after it. Nothing is written where the customer has a later row at or
 * before that time: that row already says what held from then on (a row written at its very
 * time would replace it, the newer run winning). A tag not computed live since returns at the
 * backfill's own start: from then on history answers what the current values answer, and the
 * next live run compares with those. Written before the changes themselves, so a backfill that
 * stops in between and is run again finds the same changes and these rows already there.
 */
export async function restoreAfterBackfill(db: TenantDb, o: RestoreOptions): Promise<void> {
  if (!o.tags.length) return
  const live = await firstLiveAfter(db, o.tags, o.asOf)
  // Never at or before the day itself, whatever the clocks say.
  const earliest = chDateTime(Date.parse(`${o.asOf.replace(' ', 'T')}Z`) + 1)
  const fallback = o.startedAt > earliest ? o.startedAt : earliest
  const byTime = new Map<string, string[]>()
  for (const t of o.tags) {
    const at = live.get(t) ?? fallback
    byTime.set(at, [...(byTime.get(at) ?? []), t])
  }
  const versions = { all: o.tags, versions: o.versions }
  for (const [at, tags] of byTime) {
    for (const range of o.ranges ?? [ALL_KEYS]) {
      const keys = `tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND ${keyInRange('customer_key')}`
      const changed = `SELECT tag, customer_key FROM tag_changes WHERE ${keys} AND run_id = {run:UInt64}`
      await db.command(
        `INSERT INTO tag_history (tenant_id, tag, customer_key, valid_from, value, num, list, removed, run_id, tag_version)
         SELECT {tenant:UInt16}, ch.tag, ch.customer_key, {at:DateTime64(3, 'UTC')}, h.value, h.num, h.list, h.held = 0, {run:UInt64},
                if(h.held = 1, h.version, transform(toString(ch.tag), {all:Array(String)}, {versions:Array(UInt32)}, toUInt32(0)))
         FROM (${changed}) AS ch
         LEFT JOIN (
           SELECT tag, customer_key, argMax(value, (valid_from, run_id)) AS value, argMax(num, (valid_from, run_id)) AS num,
                  argMax(list, (valid_from, run_id)) AS list, argMax(tag_version, (valid_from, run_id)) AS version,
                  1 - argMax(removed, (valid_from, run_id)) AS held
           FROM tag_history
           WHERE ${keys} AND run_id != {run:UInt64} AND valid_from <= {asOf:DateTime64(3, 'UTC')} AND (tag, customer_key) IN (${changed})
           GROUP BY tag, customer_key
         ) AS h ON h.tag = ch.tag AND h.customer_key = ch.customer_key
         WHERE (ch.tag, ch.customer_key) NOT IN (
           SELECT tag, customer_key FROM tag_history
           WHERE ${keys} AND valid_from > {asOf:DateTime64(3, 'UTC')} AND valid_from <= {at:DateTime64(3, 'UTC')}
             AND (tag, customer_key) IN (${changed}))
         SETTINGS join_use_nulls = 0`,
        { run: o.runId, tags, asOf: o.asOf, at, ...versions, ...rangeParams(range) },
      )
    }
  }
}
