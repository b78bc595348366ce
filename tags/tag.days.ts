import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { addDays, chDateTime, daysBetween } from '../core/time.js'
import {
  addScopeFromDays,
  addTenureCrossings,
  boundaryDays,
  buildDays,
  builtDays,
  changedDays,
  dayPrints,
  hasMerges,
  identityChangedDays,
  newestBuild,
  reusableDays,
  carryDays,
  windowRanges,
  type DayPrint,
} from './event-daily.js'
import { addScopeFromCustomers, keepCustomers, printKept } from './tag.customers.js'
import { eventTagsStale, type EventTagState } from './tag.freshness.js'
import type { Layout } from './tag.measures.js'
import type { RunMode, RunState } from './tag.pipeline.js'
import type { StoredTag, TagDefinition } from './tag.schema.js'

/**
 * What a tag run does with the daily aggregates before it stages event tags: which mode it can
 * run in, which days it re-aggregates, and (incremental) which customers it recomputes.
 */

export const isEventTag = (d: TagDefinition) => d.rule.kind === 'window' || d.rule.kind === 'lifecycle'

const INCREMENTAL_MAX_GAP_DAYS = 7

export type Timed = <T>(step: string, fn: () => Promise<T>) => Promise<T>

/**
 * Whether an incremental run can be one, and from where: it starts where the least advanced of
 * its event tags stopped, and becomes a full run when one was never computed, was computed with
 * other measures, over a week ago, or from customers whose rows are not kept. `customersFrom`
 * lists the prints its event tags were computed from when the customers changed since.
 */
export async function incrementalStart(
  db: TenantDb,
  o: { eventTags: readonly StoredTag[]; states: ReadonlyMap<string, EventTagState & { watermark: string }>; hash: string; span: number; today: string; base: string },
): Promise<{ mode: 'incremental' | 'full'; prev?: RunState; customersFrom: string[] }> {
  if (!o.eventTags.length) return { mode: 'incremental', customersFrom: [] }
  const ss = o.eventTags.map((d) => o.states.get(d.name))
  const fresh = o.eventTags.every((d, i) => {
    const s = ss[i]
    return s && s.version === d.version && s.measures === o.hash && s.span === o.span && s.today
  })
  if (!fresh) return { mode: 'full', customersFrom: [] }
  const prev: RunState = {
    today: ss.map((s) => s!.today).sort()[0]!,
    watermark: ss.map((s) => s!.watermark).sort()[0]!,
    measures: o.hash,
    span: o.span,
  }
  const gap = daysBetween(prev.today, o.today)
  if (gap < 0 || gap > INCREMENTAL_MAX_GAP_DAYS) return { mode: 'full', prev, customersFrom: [] }
  // Customers added, re-dated or deleted since: recomputed from the rows kept of the print the
  // event tags were computed from, or everyone when those rows are not kept.
  const customersFrom = [...new Set(ss.map((s) => s!.base))].filter((b) => b !== o.base)
  for (const b of customersFrom) if (!b || !(await printKept(db, b))) return { mode: 'full', prev, customersFrom: [] }
  return { mode: 'incremental', prev, customersFrom }
}

export interface DaysRequest {
  runId: string
  mode: RunMode
  /** The run keeps what did not move (a full run short of a recompute checks its event tags). */
  derives: boolean
  layout: Layout
  hash: string
  span: number
  windowFrom: string
  today: string
  tz: string
  /** The engine clock when the run started: day builds record it as what they read up to. */
  watermark: string
  slackMs: number
  /** See TagRunRequest.eventsKeptFrom. */
  eventsKeptFrom?: string
  chunkDays: number
  prev: RunState | undefined
  /** Event tags of this run, and of the tenant (the windows whose edges move). */
  eventTags: readonly StoredTag[]
  allEventTags: readonly TagDefinition[]
  states: ReadonlyMap<string, EventTagState>
  base: string
  customersFrom: readonly string[]
}

export interface DaysResult {
  rebuilt: string[]
  reused?: number
  /** Days before the events retention's edge carried from a build of other measures (full runs, backfills). */
  carried?: string[]
  scoped?: number
  /** A full run found everything its event tags read unchanged: it keeps their values. */
  eventsHold: boolean
  /** The customers' print the run computes for (the kept rows' when it kept them). */
  base: string
}

export async function prepareDays(db: TenantDb, r: DaysRequest, timed: Timed): Promise<DaysResult> {
  const out: DaysResult = { rebuilt: [], eventsHold: false, base: r.base }
  // Event tags computed for everyone (or for the customers that changed) record the print of
  // customers whose rows are kept: the next incremental run compares them row by row.
  if (r.mode === 'full' || r.customersFrom.length) out.base = await timed('customers_kept', () => keepCustomers(db, r.base))
  // Rebuilt days get a new build (this run's id) that readers switch to once it is complete.
  const merges = await hasMerges(db)
  const rebuild = async (unsorted: string[], prints?: ReadonlyMap<string, DayPrint>) => {
    const days = [...new Set(unsorted)].sort()
    if (!days.length) return
    await buildDays(db, r.layout, r.runId, days, r.tz, { merges, chunkDays: r.chunkDays, readFrom: r.watermark, ...(prints ? { prints } : {}) })
    out.rebuilt.push(...days)
  }
  const window = Array.from({ length: r.span }, (_, i) => addDays(r.windowFrom, i))
  if (r.mode === 'full') {
    // Every customer is recomputed, but a day is re-aggregated only when its events or the
    // identities they resolve to changed since its build (checked here, not taken from the
    // change feed, so events the feed missed are seen too).
    const { prints, keep, carry } = await timed('check_days', async () => {
      const prints = await dayPrints(db, r.windowFrom, r.today, r.tz)
      const frozen = r.eventsKeptFrom ? { frozenBefore: r.eventsKeptFrom } : {}
      return { prints, ...(await reusableDays(db, { layout: r.hash, tz: r.tz, prints, from: r.windowFrom, to: r.today, slackMs: r.slackMs, ...frozen })) }
    })
    out.reused = keep.size
    // Days retention emptied, built under other measures: carried into these, not aggregated again.
    if (carry.length) await timed('carry_days', () => carryDays(db, r.layout, r.runId, carry))
    out.carried = carry.map((c) => c.day).sort()
    const carried = new Set(out.carried)
    await timed('rebuild_days', () => rebuild(window.filter((d) => !keep.has(d) && !carried.has(d)), prints))
    if (r.derives) await timed('check_event_tags', async () => {
      const newest = await newestBuild(db, r.hash, r.windowFrom, r.today)
      out.eventsHold = eventTagsStale(r.eventTags, { states: r.states, measures: r.hash, span: r.span, today: r.today, base: out.base, newestBuild: newest }) === undefined
    })
    return out
  }
  if (r.mode === 'backfill') {
    // Past days are rebuilt only where never built; the live runs keep the rest current. Days
    // before the events retention's edge built under other measures are carried, as in full runs.
    const built = await builtDays(db, r.hash, r.windowFrom, r.today)
    const unbuilt = window.filter((d) => !built.has(d))
    const edge = r.eventsKeptFrom
    if (edge !== undefined && unbuilt.some((d) => d < edge)) {
      const { carry } = await reusableDays(db, { layout: r.hash, tz: r.tz, prints: new Map(), from: r.windowFrom, to: r.today, slackMs: r.slackMs, frozenBefore: edge })
      const todo = carry.filter((c) => !built.has(c.day))
      if (todo.length) await timed('carry_days', () => carryDays(db, r.layout, r.runId, todo))
      out.carried = todo.map((c) => c.day).sort()
    }
    const carried = new Set(out.carried)
    await timed('rebuild_days', () => rebuild(unbuilt.filter((d) => !carried.has(d))))
    return out
  }
  const prev = r.prev!
  const since = chDateTime(Date.parse(`${prev.watermark.replace(' ', 'T')}Z`) - r.slackMs)
  const dirty = await timed('changed_days', async () => {
    // Days of the window never built (a day that entered it without events yet) are built
    // too, empty or not: a full run then finds every day it reads built by a run that
    // computed the tags, and keeps them (tag.freshness.ts eventTagsStale).
    const built = await builtDays(db, r.hash, r.windowFrom, r.today)
    const unbuilt = window.filter((d) => !built.has(d))
    return [...new Set([...(await changedDays(db, since, r.tz, r.windowFrom, r.today)), ...(await identityChangedDays(db, since, r.tz, r.windowFrom, r.today)), ...unbuilt])]
  })
  // Days that entered or left a window since the last run: after g days without a run, the
  // longest window's left days reach g days before its start (only the last one did before).
  const gap = daysBetween(prev.today, r.today)
  const edges = boundaryDays(windowRanges(r.allEventTags), prev.today, r.today).filter((d) => d >= addDays(r.windowFrom, -gap) && d <= r.today)
  await timed('scope', async () => {
    await addScopeFromDays(db, r.runId, r.hash, [...new Set([...dirty, ...edges])])
    await rebuild(dirty)
    await addScopeFromDays(db, r.runId, r.hash, dirty)
    await addTenureCrossings(db, r.runId, r.allEventTags, prev.today, r.today, r.tz)
    for (const b of r.customersFrom) await addScopeFromCustomers(db, r.runId, b, out.base)
  })
  const [n] = await db.query(
    `SELECT uniqExact(customer_key) AS n FROM tag_scope WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64}`,
    { run: r.runId },
    z.object({ n: z.coerce.number() }),
  )
  out.scoped = n?.n ?? 0
  return out
}
