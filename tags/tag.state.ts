import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import type { StoredTag } from './tag.schema.js'
import type { RunState } from './tag.pipeline.js'

/** What a tag run reads and leaves per tag: its stage, its changes, its state (build, watermark). */

/** Removes what a failed stage query may have staged for these tags. */
export async function clearStage(db: TenantDb, runId: string, tags: readonly string[]): Promise<void> {
  await db.command(`DELETE FROM tag_stage WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND tag IN {tags:Array(String)}`, { run: runId, tags })
}

/** Values each of `tags` changed in the run, from tag_changes (a tag without changes is absent). */
export async function changeCounts(db: TenantDb, runId: string, tags: readonly string[]): Promise<Map<string, number>> {
  if (!tags.length) return new Map()
  const rows = await db.query(
    `SELECT toString(tag) AS tag, count() AS n FROM tag_changes WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND tag IN {tags:Array(String)} GROUP BY tag`,
    { run: runId, tags },
    z.object({ tag: z.string(), n: z.coerce.number() }),
  )
  return new Map(rows.map((r) => [r.tag, r.n]))
}

/** Values each of `tags` staged in the run: the changes of tags written as staged (see `tagsWithoutValues`). */
export async function stagedCounts(db: TenantDb, runId: string, tags: readonly string[]): Promise<Map<string, number>> {
  if (!tags.length) return new Map()
  const rows = await db.query(
    `SELECT toString(tag) AS tag, count() AS n FROM tag_stage WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64} AND tag IN {tags:Array(String)} GROUP BY tag`,
    { run: runId, tags },
    z.object({ tag: z.string(), n: z.coerce.number() }),
  )
  return new Map([...tags.map((t) => [t, 0] as const), ...rows.map((r) => [r.tag, r.n] as const)])
}

const stateSchema = z.object({
  tag: z.string(),
  build: z.string(),
  version: z.coerce.number(),
  covered: z.coerce.number(),
  today: z.string(),
  watermark: z.string(),
  measures: z.string(),
  span: z.coerce.number(),
  computed_at: z.string(),
  changed_at: z.string(),
  run_id: z.string(),
  base: z.string(),
})

export async function tagStates(db: TenantDb): Promise<Map<string, z.infer<typeof stateSchema>>> {
  const rows = await db.query(
    `SELECT tag, toString(build) AS build, version, covered, toString(today) AS today, toString(watermark) AS watermark, measures, span,
            toString(computed_at) AS computed_at, toString(changed_at) AS changed_at, toString(run_id) AS run_id, base
     FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16}`,
    {},
    stateSchema,
  )
  return new Map(rows.map((r) => [r.tag, r]))
}

/** `base`: an event tag's customers print (see `customersPrint`), '' for other tags. */
export function stateRow(t: StoredTag, build: string, covered: number, changed: number, runId: string, asOf: string, s: RunState, changedAt: string, base = '') {
  return {
    tag: t.name,
    version: t.version ?? 0,
    build,
    covered,
    changed,
    run_id: runId,
    computed_at: chDateTime(new Date()),
    as_of: asOf,
    today: s.today,
    watermark: s.watermark,
    measures: s.measures,
    span: s.span,
    changed_at: changedAt,
    base,
  }
}
