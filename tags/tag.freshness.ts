import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { FEATURES, SOURCES, type FeatureDef } from './tag.features.js'
import { featureDependencies, tagDependencies, type StoredTag } from './tag.schema.js'

/**
 * Whether a run must recompute a rule or score tag: only when something it reads moved since it
 * was last computed. A rule over profile and stock data reads tables (their change feed says when
 * they last received rows), the date (for ages and countdowns), and other tags (their last
 * change). Anything unknown means recompute. Every rule and score is computed for every
 * customer of the profile, so it is also stale when the customers' print (`base`, tag.customers.ts
 * `customersPrint`: keys, opening dates, deletions) differs from the one it was computed with: a
 * customer imported gets their values, whatever else the tag reads. A full run does not take the
 * stock tables' change feed's word (`stockUnread`): it recomputes every rule over them.
 */

export interface TagStateView {
  version: number
  today: string
  watermark: string
  changedAt: string
  /** The customers' print the tag was last computed for everyone with ('' when unknown). */
  base: string
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
  /** The customers' print as this run read it before staging. */
  base: string
  /**
   * Prints whose customers changed since are in this run's scope (an incremental run's
   * tag_scope holds the customers added, re-dated or deleted since, tag.customers.ts): a rule
   * computed from one of them is recomputed for those customers instead of everyone.
   */
  scopedFrom?: ReadonlySet<string>
}

/**
 * Whether a run must recompute a tag, and how much of it: `stale` is the first
 * reason to recompute (undefined when the stored values still hold). `changedInputs` is set for
 * a rule whose only moved inputs are tags this run changed (same definition, no date-dependent
 * feature on a new day, no stock table changed, every other tag it reads unchanged since): such
 * a rule changes only for the customers whose values of those tags changed in this run (their
 * rows in tag_changes), so it is recomputed for them alone; with `customers`, also for the
 * customers whose row changed since it was computed (in the run's scope as such).
 */
export function freshness(d: StoredTag, ctx: FreshnessContext): { stale: string | undefined; changedInputs?: string[]; customers?: boolean } {
  if (d.rule.kind === 'sql') return { stale: 'SQL tags read anything' }
  const s = ctx.states.get(d.name)
  if (!s) return { stale: 'never computed' }
  if (s.version !== d.version) return { stale: `definition changed (v${s.version} -> v${d.version})` }
  const features = featureDependencies(d)
  if (ctx.stockUnread && features.length) return { stale: 'a full run reads profile and stock data afresh' }
  // Customers changed since the tag was computed: a rule is recomputed for them when the run's
  // scope holds them (with the customers whose inputs changed); anything else, for everyone.
  const customers = s.base !== ctx.base && s.base !== '' && d.rule.kind === 'rule' && ctx.scopedFrom?.has(s.base) === true
  if (!s.base || (s.base !== ctx.base && !customers)) return { stale: 'the customers changed' }
  if (s.today !== ctx.today && features.some((f) => (FEATURES[f] as FeatureDef).daily === true)) return { stale: 'a new day for a date-dependent feature' }
  const tables = new Set(features.map((f) => SOURCES[FEATURES[f].source].table))
  for (const t of tables) {
    const at = ctx.stock.get(t)
    if (at && at >= s.watermark) return { stale: `${t} changed` }
  }
  let stale: string | undefined = customers ? 'the customers changed' : undefined
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
  if (d.rule.kind !== 'rule' || since || !(now.length || customers)) return { stale }
  return { stale, changedInputs: now, ...(customers ? { customers } : {}) }
}

/** The reason to recompute, or undefined when the stored values still hold. */
export function staleBecause(d: StoredTag, ctx: FreshnessContext): string | undefined {
  return freshness(d, ctx).stale
}

/**
 * Whom a rule is recomputed for (see `freshness`): the customers whose values of `inputs` this
 * run changed, and with `customers` those whose row changed since; undefined: every customer, or none.
 */
export function narrowing(d: StoredTag, ctx: FreshnessContext): { inputs: string[]; customers: boolean } | undefined {
  const f = freshness(d, ctx)
  return f.changedInputs ? { inputs: f.changedInputs, customers: f.customers === true } : undefined
}

/** What a state says an event tag was last computed from (tag_state). */
export interface EventTagState {
  version: number
  measures: string
  span: number
  today: string
  base: string
  run_id: string
}

/**
 * Why a full run must recompute its event tags, or undefined when it may keep their values: each
 * was last computed with its definition, the tenant's measures and longest window, on this local
 * date (the window's edges), from the same customers (`base`, recorded by the run that last
 * computed it: a full run for everyone, an incremental run for the customers whose activity or
 * customer row changed, tag.customers.ts) and from day builds no newer than that computation (a
 * day rebuilt since, by this run or one that did not compute the tag, is newer). The day builds
 * themselves were checked against the events by this run.
 */
export function eventTagsStale(
  tags: readonly StoredTag[],
  o: { states: ReadonlyMap<string, EventTagState>; measures: string; span: number; today: string; base: string; newestBuild: string },
): string | undefined {
  for (const d of tags) {
    const s = o.states.get(d.name)
    if (!s) return `${d.name}: never computed`
    if (s.version !== d.version) return `${d.name}: definition changed`
    if (s.measures !== o.measures || s.span !== o.span) return `${d.name}: the measures or windows changed`
    if (s.today !== o.today) return `${d.name}: a new day`
    if (!s.base || s.base !== o.base) return `${d.name}: the customers changed`
    if (BigInt(o.newestBuild) > BigInt(s.run_id)) return `${d.name}: a day was rebuilt since`
  }
  return undefined
}
