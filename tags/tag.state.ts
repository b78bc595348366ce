import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import type { StoredTag } from './tag.schema.js'
import type { RunState } from './tag.pipeline.js'
import { dropOldBitmaps, rebuildBitmaps, updateBitmaps, writeNumericSnapshots } from './tag.bitmaps.js'
import { pruneCustomerPrints } from './tag.customers.js'

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

export interface CommitInput {
  runId: string
  asOf: string
  state: RunState
  /** The customers' print the run computed for (see `customersPrint`). */
  base: string
  /** The tags this run computed (neither kept, failed nor blocked). */
  computed: readonly StoredTag[]
  /** Tags kept as they were. */
  skipped: ReadonlySet<string>
  /** The states before this run. */
  states: Awaited<ReturnType<typeof tagStates>>
  /** Values each tag changed in this run. */
  counts: ReadonlyMap<string, number>
  /** Tags whose changes are their staged rows (see `tagsWithoutValues`). */
  staged: ReadonlySet<string>
  /** The tenant's event tags, when it has any: the customers' prints they name are kept. */
  eventTags?: ReadonlySet<string>
}

/**
 * The last step of a live run: bitmaps of the tags that changed (or are new or redefined), then
 * each computed tag's state pointing at its build. Returns the customers with a value per tag
 * (computed and kept).
 */
export async function commitBuilds(db: TenantDb, o: CommitInput): Promise<Map<string, number>> {
  const { states, counts, runId } = o
  const rebuild = o.computed.filter((d) => {
    const prevBuild = states.get(d.name)
    return (counts.get(d.name) ?? 0) > 0 || !prevBuild || prevBuild.version !== d.version
  })
  // Tags with a current build of the same version are updated from the run's changes;
  // the others (new, redefined, bucketed numbers) are rebuilt from their values.
  const updatable = rebuild.filter((d) => {
    const p = states.get(d.name)
    // A staged tag's changes are not in tag_changes, which the update reads: rebuilt.
    return p && p.version === d.version && p.build !== '0' && !o.staged.has(d.name)
  })
  const updated = await updateBitmaps(db, updatable.map((d) => ({ name: d.name, type: d.type, build: states.get(d.name)!.build })), runId)
  const fromScratch = rebuild.filter((d) => !updated.covered.has(d.name))
  const covered = new Map([...updated.covered, ...(await rebuildBitmaps(db, fromScratch.map((d) => ({ name: d.name, type: d.type })), runId))])
  // Numbers and dates in buckets get their value-ordered snapshot before the state points at
  // the build (segments check range edges against it).
  await writeNumericSnapshots(db, rebuild.filter((d) => d.type === 'number' || d.type === 'date').map((d) => d.name), runId)
  const customers = new Map<string, number>()
  for (const d of o.skipped) customers.set(d, states.get(d)!.covered)
  const rows = o.computed.map((t) => {
    const prevBuild = states.get(t.name)
    const rebuilt = covered.has(t.name)
    const n = rebuilt ? covered.get(t.name)! : prevBuild!.covered
    customers.set(t.name, n)
    const changed = counts.get(t.name) ?? 0
    return stateRow(t, rebuilt ? runId : prevBuild!.build, n, changed, runId, o.asOf, o.state, changed > 0 ? o.state.watermark : (prevBuild?.changed_at ?? chDateTime(0)), o.base)
  })
  if (rows.length) await db.insert('tag_state', rows)
  // The rows of prints no event tag names any longer go.
  if (o.eventTags) {
    const names = o.eventTags
    const named = new Map([...states].filter(([name]) => names.has(name)).map(([name, s]) => [name, s.base]))
    for (const r of rows) if (names.has(r.tag)) named.set(r.tag, r.base)
    await pruneCustomerPrints(db, [...named.values()])
  }
  await dropOldBitmaps(db)
  return customers
}
