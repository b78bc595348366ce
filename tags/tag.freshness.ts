import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { FEATURES, SOURCES, type FeatureDef } from './tag.features.js'
import { featureDependencies, tagDependencies, type StoredTag } from './tag.schema.js'

/**
 * Whether a run must recompute a rule or score tag: only when something it reads moved since it
 * was last computed. A rule over profile and stock data reads tables (their change feed says when
 * they last received rows), the date (for ages and countdowns), and other tags (their last
 * change). Anything unknown means recompute. A full run does not take the stock tables' change
 * feed's word (`stockUnread`): it recomputes every rule over them, and leaves alone only the
 * tags computed from other tags alone whose inputs it recomputed and found unchanged.
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
  /** Stock tables are read afresh whatever their feed says (a full run): every tag over them is stale. */
  stockUnread?: boolean
}

/**
 * Whether a run must recompute a tag, and how much of it: `stale` is the first
 * reason to recompute (undefined when the stored values still hold). `changedInputs` is set for
 * a rule whose only moved inputs are tags this run changed (same definition, no date-dependent
 * feature on a new day, no stock table changed, every other tag it reads unchanged since): such
 * a rule changes only for the customers whose values of those tags changed in this run (their
 * rows in tag_changes), so it is recomputed for them alone.
 */
export function freshness(d: StoredTag, ctx: FreshnessContext): { stale: string | undefined; changedInputs?: string[] } {
  if (d.rule.kind === 'sql') return { stale: 'SQL tags read anything' }
  const s = ctx.states.get(d.name)
  if (!s) return { stale: 'never computed' }
  if (s.version !== d.version) return { stale: `definition changed (v${s.version} -> v${d.version})` }
  const features = featureDependencies(d)
  if (ctx.stockUnread && features.length) return { stale: 'a full run reads profile and stock data afresh' }
  if (s.today !== ctx.today && features.some((f) => (FEATURES[f] as FeatureDef).daily === true)) return { stale: 'a new day for a date-dependent feature' }
  const tables = new Set(features.map((f) => SOURCES[FEATURES[f].source].table))
  for (const t of tables) {
    const at = ctx.stock.get(t)
    if (at && at >= s.watermark) return { stale: `${t} changed` }
  }
  let stale: string | undefined
  let since = false
  const now: string[] = []
  for (const dep of tagDependencies(d)) {
    const ds = ctx.states.get(dep)
    if (ctx.changedNow.has(dep)) {
      now.push(dep)
      stale ??= `${dep} changed in this run`
    } else if (!ds || ds.changedAt > s.watermark) {
      // Runs stamp changes with their start: a dependency changed by the run that computed this
      // tag was read after the change; one changed by a later run was not.
      since = true
      stale ??= `${dep} changed since`
    }
  }
  return d.rule.kind === 'rule' && !since && now.length ? { stale, changedInputs: now } : { stale }
}

/** The reason to recompute, or undefined when the stored values still hold. */
export function staleBecause(d: StoredTag, ctx: FreshnessContext): string | undefined {
  return freshness(d, ctx).stale
}

/** The tags a rule is recomputed for the changes of (see `freshness`), or undefined: every customer, or none. */
export function changedInputsOnly(d: StoredTag, ctx: FreshnessContext): string[] | undefined {
  return freshness(d, ctx).changedInputs
}
