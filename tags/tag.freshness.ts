import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { FEATURES, SOURCES, type FeatureDef } from './tag.features.js'
import { featureDependencies, tagDependencies, type StoredTag } from './tag.schema.js'

/**
 * Whether an incremental run must recompute a rule or score tag: only when something it reads
 * moved since it was last computed. A rule over profile and stock data reads tables (their change
 * feed says when they last received rows), the date (for ages and countdowns), and other tags
 * (their last change). Anything unknown means recompute.
 */

export interface TagStateView {
  version: number
  today: string
  watermark: string
  changedAt: string
}

/** Per stock table, when it last received rows (engine clock). */
export async function stockChanges(db: TenantDb): Promise<Map<string, string>> {
  const rows = await db.query(
    `SELECT source, toString(max(changed_at)) AS at FROM stock_changes WHERE tenant_id = {tenant:UInt16} GROUP BY source`,
    {},
    z.object({ source: z.string(), at: z.string() }),
  )
  return new Map(rows.map((r) => [r.source, r.at]))
}

export interface FreshnessContext {
  today: string
  states: ReadonlyMap<string, TagStateView>
  stock: ReadonlyMap<string, string>
  /** Tags this run changed so far. */
  changedNow: ReadonlySet<string>
}

/** The reason to recompute, or undefined when the stored values still hold. */
export function staleBecause(d: StoredTag, ctx: FreshnessContext): string | undefined {
  if (d.rule.kind === 'sql') return 'SQL tags read anything'
  const s = ctx.states.get(d.name)
  if (!s) return 'never computed'
  if (s.version !== d.version) return `definition changed (v${s.version} -> v${d.version})`
  const features = featureDependencies(d)
  if (s.today !== ctx.today && features.some((f) => (FEATURES[f] as FeatureDef).daily === true)) return 'a new day for a date-dependent feature'
  const tables = new Set(features.map((f) => SOURCES[FEATURES[f].source].table))
  for (const t of tables) {
    const at = ctx.stock.get(t)
    if (at && at >= s.watermark) return `${t} changed`
  }
  for (const dep of tagDependencies(d)) {
    if (ctx.changedNow.has(dep)) return `${dep} changed in this run`
    const ds = ctx.states.get(dep)
    // Runs stamp changes with their start: a dependency changed by the run that computed this
    // tag was read after the change; one changed by a later run was not.
    if (!ds || ds.changedAt > s.watermark) return `${dep} changed since`
  }
  return undefined
}

/**
 * The tags this run changed that a rule reads, when they are the only thing it reads that moved:
 * same definition, no date-dependent feature on a new day, no stock table changed, every other
 * tag it reads unchanged since. Such a rule changes only for the customers whose values of those
 * tags changed in this run (their rows in tag_changes), so it is recomputed for them alone.
 * Undefined when the rule must be recomputed for every customer (or not at all).
 */
export function changedInputsOnly(d: StoredTag, ctx: FreshnessContext): string[] | undefined {
  if (d.rule.kind !== 'rule') return undefined
  const s = ctx.states.get(d.name)
  if (!s || s.version !== d.version) return undefined
  const features = featureDependencies(d)
  if (s.today !== ctx.today && features.some((f) => (FEATURES[f] as FeatureDef).daily === true)) return undefined
  for (const f of features) {
    const at = ctx.stock.get(SOURCES[FEATURES[f].source].table)
    if (at && at >= s.watermark) return undefined
  }
  const now: string[] = []
  for (const dep of tagDependencies(d)) {
    const ds = ctx.states.get(dep)
    if (ctx.changedNow.has(dep)) now.push(dep)
    else if (!ds || ds.changedAt > s.watermark) return undefined
  }
  return now.length ? now : undefined
}
