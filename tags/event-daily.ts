import { z } from 'zod'
import { addDays, chDateTime, daysBetween } from '../core/time.js'
import type { TenantDb } from '../core/db.js'
import { resolvedEventsSql } from '../core/identity.sql.js'
import { CURRENT_DAYS, dailyAggregateSql, type Layout, type MeasureRole } from './tag.measures.js'
import { ParamBinder } from '../core/params.js'
import type { LifecycleRule, TagDefinition } from './tag.schema.js'
import { lifecycleRanges } from './tag.compile.js'

/**
 * Per-customer, per-local-day partial aggregates of every event measure a tenant's tags use
 * (tag_event_daily). All measures of a day come from one scan of that day's events; window tags
 * then merge days instead of rescanning events, and a run rebuilds only the days that changed.
 */

/** Sorted days grouped into contiguous runs, so each rebuild reads one range of partitions. */
export function contiguousRuns(days: readonly string[]): [string, string][] {
  const sorted = [...new Set(days)].sort()
  const runs: [string, string][] = []
  for (const d of sorted) {
    const last = runs[runs.length - 1]
    if (last && addDays(last[1], 1) === d) last[1] = d
    else runs.push([d, d])
  }
  return runs
}

const EVENT_COLUMNS = ['customer_key', 'timestamp', 'type', 'event', 'properties', 'product_id', 'amount']

/** What a day build read: the local day's events, counted and fingerprinted. */
export interface DayPrint {
  events: number
  /** Sum (mod 2^64) of cityHash64(message_id, customer_key) over the day's events, as a decimal string. */
  fingerprint: string
}

/**
 * Aggregates days [from, to] (tenant local dates) as build `build` of the layout and makes it
 * current, for days with and without events alike. A rerun after a failure builds them again.
 * Each day's build records its events' print (`prints`, or read here) and `readFrom`, the engine
 * clock before anything was read, which a later full run checks before reusing the build.
 */
export async function buildDays(
  db: TenantDb,
  layout: Layout,
  build: string,
  days: readonly string[],
  tz: string,
  o: { merges: boolean; chunkDays: number; readFrom: string; prints?: ReadonlyMap<string, DayPrint> },
): Promise<void> {
  if (!days.length) return
  // Days without events have no rows to insert: they are only marked built below. (Few days
  // per insert, as a large bank has, would otherwise cost a query per empty day of the window.)
  const sorted = [...days].sort()
  const prints = o.prints ?? (await dayPrints(db, sorted[0]!, sorted[sorted.length - 1]!, tz))
  for (const [from, to] of contiguousRuns(days.filter((d) => (prints.get(d)?.events ?? 0) > 0))) {
    for (let d = from; d <= to; d = addDays(d, o.chunkDays)) {
      const end = addDays(d, o.chunkDays - 1) < to ? addDays(d, o.chunkDays - 1) : to
      await insertDays(db, layout, build, d, end, tz, o)
    }
  }
  // The days become current only once their rows are all in.
  await db.command(
    `INSERT INTO tag_event_days (tenant_id, day, build, layout, built_at, events, fingerprint, time_zone, read_from, measures)
     SELECT {tenant:UInt16}, d.1, {build:UInt64}, {layout:String}, now64(3), d.2, d.3, {tz:String}, {readFrom:DateTime64(3, 'UTC')}, {measures:Array(String)}
     FROM (SELECT arrayJoin(arrayZip({days:Array(Date)}, {events:Array(UInt64)}, {prints:Array(UInt64)})) AS d)`,
    {
      days: sorted,
      events: sorted.map((d) => prints.get(d)?.events ?? 0),
      prints: sorted.map((d) => BigInt(prints.get(d)?.fingerprint ?? '0')),
      build,
      layout: layout.hash,
      measures: measureList(layout),
      tz,
      readFrom: o.readFrom,
    },
  )
}

/**
 * Days of [from, to] a full run may take as they are: the day's current build is of this layout
 * and time zone, it read the events the day holds now (same count and fingerprint: nothing
 * inserted, deleted or rekeyed since, whether the change feed saw it or not), and
 * no identity link or merge since it read them touches the day's events. Anything else is
 * rebuilt.
 */
export async function reusableDays(
  db: TenantDb,
  o: { layout: string; tz: string; prints: ReadonlyMap<string, DayPrint>; from: string; to: string; slackMs: number; frozenBefore?: string },
): Promise<{ keep: Set<string>; carry: CarryDay[] }> {
  const { layout, tz, prints, from, to } = o
  const builds = await db.query(
    `SELECT toString(day) AS d, toString(max(build)) AS current, argMax(layout, build) AS layout, argMax(time_zone, build) AS tz, argMax(measures, build) AS measures,
            argMax(events, build) AS events, toString(argMax(fingerprint, build)) AS fingerprint, toString(argMax(read_from, build)) AS read_from
     FROM tag_event_days WHERE tenant_id = {tenant:UInt16} AND day BETWEEN {from:Date} AND {to:Date}
     GROUP BY day`,
    { from, to },
    z.object({ d: z.string(), current: z.string(), layout: z.string(), tz: z.string(), measures: z.array(z.string()), events: z.coerce.number(), fingerprint: z.string(), read_from: z.string() }),
  )
  // A day the bank's retention has begun deleting events of keeps its build: what the events said
  // when they were there (see TagRunRequest.eventsKeptFrom). Of another layout, it is carried into
  // this one when its measures are recorded (carryDays); otherwise aggregated again.
  const retained = (b: { d: string; tz: string }) => o.frozenBefore !== undefined && b.d < o.frozenBefore && b.tz === tz
  const frozen = (b: { d: string; layout: string; tz: string }) => retained(b) && b.layout === layout
  const carry = builds.filter((b) => retained(b) && b.layout !== layout && b.measures.length > 0).map((b) => ({ day: b.d, build: b.current, measures: b.measures }))
  const same = builds.filter((b) => {
    const now = prints.get(b.d) ?? { events: 0, fingerprint: '0' }
    return frozen(b) || (b.layout === layout && b.tz === tz && b.events === now.events && b.fingerprint === now.fingerprint)
  })
  if (!same.length) return { keep: new Set(), carry }
  // One look for links and merges since the oldest of those builds read its events (less the
  // slack the incremental runs allow: a change stamped by another clock may lag the engine's).
  const oldest = same.map((b) => b.read_from).sort()[0]!
  const since = chDateTime(Date.parse(`${oldest.replace(' ', 'T')}Z`) - o.slackMs)
  const touched = new Set(await identityChangedDays(db, since, tz, from, to))
  return { keep: new Set(same.filter((b) => frozen(b) || !touched.has(b.d)).map((b) => b.d)), carry }
}

/** A day whose build is of another layout and cannot be aggregated again (its events are gone). */
export interface CarryDay {
  day: string
  build: string
  /** The old build's measures, `role:id` in its arrays' order. */
  measures: string[]
}

/** A layout's measures as tag_event_days records them: `role:id`, in the arrays' order. */
export function measureList(layout: Layout): string[] {
  return layout.measures.map((m) => `${m.role}:${m.id}`)
}

/**
 * Carries days' builds of other layouts into `layout` as build `build`: each measure both
 * layouts have keeps its values, a measure the old build lacks starts at nothing (no events, no
 * sum, no time, no keys), a measure `layout` dropped goes. The days keep what their builds read.
 */
export async function carryDays(db: TenantDb, layout: Layout, build: string, days: readonly CarryDay[]): Promise<void> {
  const groups = new Map<string, CarryDay[]>()
  for (const d of days) {
    const k = `${d.build}|${d.measures.join(',')}`
    ;(groups.get(k) ?? groups.set(k, []).get(k)!).push(d)
  }
  for (const group of groups.values()) {
    const old = group[0]!
    // Per position of `layout`'s array of a role, the old array's position of the same measure (1-based; 0: none).
    const positions = (role?: MeasureRole) => {
      const was = old.measures.filter((x) => !role || x.startsWith(`${role}:`)).map((x) => x.slice(x.indexOf(':') + 1))
      return layout.measures.filter((m) => !role || m.role === role).map((m) => was.indexOf(m.id) + 1)
    }
    const params = { old: old.build, build, days: group.map((d) => d.day), cm: positions(), sm: positions('sum'), tm: positions('time'), km: positions('distinct') }
    await db.command(
      `INSERT INTO tag_event_daily (tenant_id, day, customer_key, build, cnt, total, first_at, last_at, keys)
       SELECT {tenant:UInt16}, day, customer_key, {build:UInt64}, c, t, f, l, k FROM (
         SELECT day, customer_key,
                arrayMap(p -> if(p = 0, toUInt32(0), cnt[p]), {cm:Array(UInt32)}) AS c,
                arrayMap(p -> if(p = 0, toFloat64(0), total[p]), {sm:Array(UInt32)}) AS t,
                arrayMap(p -> if(p = 0, toDateTime64(0, 3, 'UTC'), first_at[p]), {tm:Array(UInt32)}) AS f,
                arrayMap(p -> if(p = 0, toDateTime64(0, 3, 'UTC'), last_at[p]), {tm:Array(UInt32)}) AS l,
                arrayMap(p -> if(p = 0, CAST([], 'Array(String)'), keys[p]), {km:Array(UInt32)}) AS k
         FROM tag_event_daily WHERE tenant_id = {tenant:UInt16} AND build = {old:UInt64} AND day IN {days:Array(Date)})
       WHERE arraySum(c) > 0`,
      params,
    )
    await db.command(
      `INSERT INTO tag_event_days (tenant_id, day, build, layout, built_at, events, fingerprint, time_zone, read_from, measures)
       SELECT {tenant:UInt16}, day, {build:UInt64}, {layout:String}, now64(3), events, fingerprint, time_zone, read_from, {measures:Array(String)}
       FROM tag_event_days WHERE tenant_id = {tenant:UInt16} AND build = {old:UInt64} AND day IN {days:Array(Date)}`,
      { old: old.build, build, days: params.days, layout: layout.hash, measures: measureList(layout) },
    )
  }
}

/**
 * Drops superseded builds once enough accumulated (each costs a mutation of the table, so they
 * are dropped in batches rather than on every rebuild). Returns how many day builds were dropped.
 */
export async function dropSupersededDays(db: TenantDb, atLeast: number): Promise<number> {
  const [r] = await db.query(
    `SELECT uniqExact(day, build) - uniqExact(day) AS n FROM tag_event_daily WHERE tenant_id = {tenant:UInt16}`,
    {},
    z.object({ n: z.coerce.number() }),
  )
  const n = r?.n ?? 0
  if (n < atLeast) return 0
  await db.command(
    `ALTER TABLE tag_event_daily DELETE WHERE tenant_id = {tenant:UInt16}
       AND (day, build) NOT IN (SELECT day, max(build) FROM tag_event_days WHERE tenant_id = {tenant:UInt16} GROUP BY day)`,
  )
  await db.command(
    `DELETE FROM tag_event_days WHERE tenant_id = {tenant:UInt16}
       AND (day, build) NOT IN (SELECT day, max(build) FROM tag_event_days WHERE tenant_id = {tenant:UInt16} GROUP BY day)`,
  )
  return n
}

/**
 * Drops the day builds of days before `before` once at least `atLeast` such days are held: no
 * run reads a day older than the tenant's longest window, so their per-customer counts are kept
 * for nothing (minimum necessary; the table's engine TTL of 401 days is only a ceiling). In
 * batches, as superseded builds are: each drop is a mutation of the table. Returns the days dropped.
 */
export async function dropDaysBefore(db: TenantDb, before: string, atLeast: number): Promise<number> {
  const [r] = await db.query(
    `SELECT uniqExact(day) AS n FROM tag_event_days WHERE tenant_id = {tenant:UInt16} AND day < {before:Date}`,
    { before },
    z.object({ n: z.coerce.number() }),
  )
  const n = r?.n ?? 0
  if (n < atLeast) return 0
  // The rows first: a drop cut short leaves days marked built below every window, never read.
  await db.command(`ALTER TABLE tag_event_daily DELETE WHERE tenant_id = {tenant:UInt16} AND day < {before:Date}`, { before })
  await db.command(`DELETE FROM tag_event_days WHERE tenant_id = {tenant:UInt16} AND day < {before:Date}`, { before })
  return n
}

/** Per local day of [from, to] holding any event (resolved or not): its events' count and fingerprint. */
export async function dayPrints(db: TenantDb, from: string, to: string, tz: string): Promise<Map<string, DayPrint>> {
  const rows = await db.query(
    `SELECT toString(toDate(timestamp, {tz:String})) AS d, count() AS n, toString(sum(cityHash64(message_id, customer_key))) AS f FROM events
     WHERE tenant_id = {tenant:UInt16}
       AND timestamp >= toDateTime({from:Date}, {tz:String}) AND timestamp < toDateTime(addDays({to:Date}, 1), {tz:String})
     GROUP BY d`,
    { from, to, tz },
    z.object({ d: z.string(), n: z.coerce.number(), f: z.string() }),
  )
  return new Map(rows.map((r) => [r.d, { events: r.n, fingerprint: r.f }]))
}

/** Inserts the aggregates of days [from, to] as rows of build `build`. */
async function insertDays(db: TenantDb, layout: Layout, build: string, from: string, to: string, tz: string, o: { merges: boolean }): Promise<void> {
  if (!layout.measures.length) return
  const b = new ParamBinder('m')
  // The UTC instants of the local days' edges bound the partitions read (one per UTC day).
  const where = `timestamp >= toDateTime({from:Date}, {tz:String}) AND timestamp < toDateTime(addDays({to:Date}, 1), {tz:String})`
  const source = `(SELECT *, toDate(timestamp, {tz:String}) AS day FROM ${resolvedEventsSql(EVENT_COLUMNS, where, { merges: o.merges })}
    WHERE customer_key != 0)`
  await db.command(
    `INSERT INTO tag_event_daily (tenant_id, day, customer_key, build, cnt, total, first_at, last_at, keys)
     SELECT {tenant:UInt16}, day, customer_key, {build:UInt64}, cnt, total, first_at, last_at, keys
     FROM (${dailyAggregateSql(layout, source, b)})`,
    { ...b.params, from, to, tz, build },
  )
}

/**
 * Local days whose events changed since `since` (engine clock): any quarter hour of event time
 * that received rows, mapped to the tenant's local date.
 */
export async function changedDays(db: TenantDb, since: string, tz: string, from: string, to: string): Promise<string[]> {
  const rows = await db.query(
    `SELECT DISTINCT toString(toDate(bucket, {tz:String})) AS day FROM event_changes
     WHERE tenant_id = {tenant:UInt16}
     GROUP BY tenant_id, bucket HAVING max(changed_at) > {since:DateTime64(3, 'UTC')}
       AND toDate(bucket, {tz:String}) BETWEEN {from:Date} AND {to:Date}`,
    { since, tz, from, to },
    z.object({ day: z.string() }),
  )
  return rows.map((r) => r.day).sort()
}

/**
 * Local days holding events of identities linked or merged since `since`: their resolved owner
 * changed, so those days' aggregates are stale. A merge (or its undo) moves every event the
 * merged customer owns: those stored with its key, and the anonymous ones of devices linked to
 * it (stored with key 0, resolved through the link, which did not change).
 */
export async function identityChangedDays(db: TenantDb, since: string, tz: string, from: string, to: string): Promise<string[]> {
  const rows = await db.query(
    `WITH changed AS (
       SELECT action, id_kind, id_value, from_key, into_key FROM identity_changes FINAL
       WHERE tenant_id = {tenant:UInt16} AND (created_at > {since:DateTime64(3, 'UTC')} OR undone_at > {since:DateTime64(3, 'UTC')})
     )
     SELECT DISTINCT toString(toDate(timestamp, {tz:String})) AS day FROM events
     WHERE tenant_id = {tenant:UInt16}
       AND timestamp >= toDateTime({from:Date}, {tz:String}) AND timestamp < toDateTime(addDays({to:Date}, 1), {tz:String})
       AND ((customer_key = 0 AND anonymous_id IN (SELECT id_value FROM changed WHERE id_kind = 'anonymous_id'))
         OR customer_key IN (SELECT arrayJoin([from_key, into_key]) FROM changed WHERE from_key != 0 OR into_key != 0)
         OR (customer_key = 0 AND anonymous_id IN (
               SELECT id_value FROM identities FINAL
               WHERE tenant_id = {tenant:UInt16} AND id_kind = 'anonymous_id'
                 AND customer_key IN (SELECT arrayJoin([from_key, into_key]) FROM changed WHERE action = 'merge'))))`,
    { since, tz, from, to },
    z.object({ day: z.string() }),
  )
  return rows.map((r) => r.day).sort()
}

/** The newest of the current builds of days [from, to] of the layout ('0' when none is built). */
export async function newestBuild(db: TenantDb, layout: string, from: string, to: string): Promise<string> {
  const [r] = await db.query(
    `SELECT toString(max(b)) AS b FROM (
       SELECT day, max(build) AS b FROM tag_event_days
       WHERE tenant_id = {tenant:UInt16} AND layout = {layout:String} AND day BETWEEN {from:Date} AND {to:Date} GROUP BY day)`,
    { layout, from, to },
    z.object({ b: z.string() }),
  )
  return r?.b ?? '0'
}

/** Days of the window already built (any measure), to find the ones never built. */
export async function builtDays(db: TenantDb, layout: string, from: string, to: string): Promise<Set<string>> {
  const rows = await db.query(
    `SELECT DISTINCT toString(day) AS d FROM tag_event_days
     WHERE tenant_id = {tenant:UInt16} AND layout = {layout:String} AND day BETWEEN {from:Date} AND {to:Date}`,
    { layout, from, to },
    z.object({ d: z.string() }),
  )
  return new Set(rows.map((r) => r.d))
}

/**
 * Records in tag_scope the customers whose event tags may have changed: those with daily rows on
 * the given days (rebuilt days, and days that entered or left a window since the last run).
 * Called before a rebuild with the old rows and after it with the new ones.
 */
export async function addScopeFromDays(db: TenantDb, runId: string, layout: string, days: readonly string[]): Promise<void> {
  if (!days.length) return
  await db.command(
    `INSERT INTO tag_scope (tenant_id, run_id, customer_key)
     SELECT DISTINCT {tenant:UInt16}, {run:UInt64}, customer_key FROM tag_event_daily
     WHERE tenant_id = {tenant:UInt16} AND day IN {days:Array(Date)} AND (day, build) IN ${CURRENT_DAYS}`,
    { run: runId, layout, days },
  )
}

/** Whether any customer merge is in force: without one, reads skip the merge lookup per event. */
export async function hasMerges(db: TenantDb): Promise<boolean> {
  const [r] = await db.query(
    `SELECT count() AS n FROM (SELECT from_key FROM customer_merges WHERE tenant_id = {tenant:UInt16}
       GROUP BY from_key HAVING argMax(active, updated_at) = 1)`,
    {},
    z.object({ n: z.coerce.number() }),
  )
  return (r?.n ?? 0) > 0
}

/** Lifecycles change for customers whose tenure crossed `newDays` between the two run dates. */
export async function addTenureCrossings(db: TenantDb, runId: string, defs: readonly TagDefinition[], prevToday: string, today: string, tz: string) {
  const ns = [...new Set(defs.filter((d) => d.rule.kind === 'lifecycle').map((d) => (d.rule as LifecycleRule).newDays))]
  for (const n of ns) {
    if (prevToday === today) continue
    await db.command(
      `INSERT INTO tag_scope (tenant_id, run_id, customer_key)
       SELECT {tenant:UInt16}, {run:UInt64}, customer_key FROM customers FINAL
       WHERE tenant_id = {tenant:UInt16} AND toDate32(opened_at, {tz:String}) > subtractDays({prev:Date32}, {n:UInt32})
         AND toDate32(opened_at, {tz:String}) <= subtractDays({today:Date32}, {n:UInt32})`,
      { run: runId, prev: prevToday, today, n, tz },
    )
  }
}

/** Window ranges (days, offset) of event tags, whose edges move as days pass. */
export function windowRanges(defs: readonly TagDefinition[]): { days: number; offset: number }[] {
  const out: { days: number; offset: number }[] = []
  for (const d of defs) {
    if (d.rule.kind === 'window') out.push({ days: d.rule.days, offset: d.rule.offsetDays })
    else if (d.rule.kind === 'lifecycle') out.push(...lifecycleRanges(d.rule))
  }
  return out
}

/** Days that entered or left any window between two run dates. */
export function boundaryDays(ranges: readonly { days: number; offset: number }[], prevToday: string, today: string): string[] {
  const n = daysBetween(prevToday, today)
  const out = new Set<string>()
  for (const r of ranges) {
    for (let i = 0; i < n; i++) {
      out.add(addDays(prevToday, -r.offset + 1 + i)) // entered
      out.add(addDays(prevToday, -r.offset - r.days + 1 + i)) // left
    }
  }
  return [...out].sort()
}
