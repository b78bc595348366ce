import { z } from 'zod'
import type { Db, TenantDb } from '../../core/db.js'
import { ParamBinder } from '../../core/params.js'
import { addDays, localDate } from '../../core/time.js'
import { boundaryDays, windowRanges } from '../../tags/event-daily.js'
import { CURRENT_DAYS, dailyAggregateSql, eventMeasures, type Layout } from '../../tags/tag.measures.js'
import type { TagRunResult } from '../../tags/tag.pipeline.js'
import { profileStage, sqlStage, windowStage, type StageQuery } from '../../tags/tag.queries.js'
import { dependencyLevels } from '../../tags/tag.repository.js'
import type { StoredTag, TagDefinition } from '../../tags/tag.schema.js'
import { changedBySql } from '../../tags/tag.values.js'
import type { Tenant } from '../../tenants/tenants.service.js'

/**
 * The floor of each step of a first full run, measured after it on the same data: each step's
 * computation alone, as a SELECT over what the step reads, with every output column hashed (so
 * nothing is pruned) and nothing written; and the two writes alone, with nothing computed. Their
 * sum is what a full run that keeps the day builds the incremental runs need cannot go under.
 */
export interface StepFloors {
  /** Per-(customer, day) aggregation of the raw events (all measures, the window), no identity resolution, not written. */
  rebuild: number
  /** One read of every current value (FINAL): what each full diff reads at least once. */
  valuesRead: number
  /** The full run's values written once into tables of history's and current values' shapes, nothing computed. */
  valuesWrite: number
  /** Of valuesWrite, the table of current values' shape alone: the write of a run that writes each value once. */
  valuesWriteCurrent: number
  /** The day builds' rows written once into a table of their shape, nothing computed. */
  dayRowsWrite: number
  /** The event tags of every customer from the day builds, as staged, not written. */
  stageEvents: number
  /** The rules of every level for every customer, as staged, not written. */
  rules: number
  /** The scores, each ranking every customer, as staged, not written. */
  scores: number
  /** The SQL tags, as staged, not written. */
  sql: number
  /** Bitmaps of the current values' customers (see below), not written. */
  bitmaps: number
}

const counted = z.object({ n: z.coerce.number() })

/** Seconds `fn` takes. */
async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return (performance.now() - t0) / 1000
}

/** Runs `select` once for `count()` and a hash of every column; seconds. */
function timeSelect(db: TenantDb, select: string, params: Record<string, unknown>): Promise<number> {
  return seconds(() => db.query(`SELECT count() AS n, groupBitXor(cityHash64(*)) AS h FROM (${select})`, params, counted))
}

/** The staged rows of `q` with the parameters a run at `today` binds. */
function stageTime(db: TenantDb, q: StageQuery, today: string, tz: string): Promise<number> {
  return timeSelect(db, q.select, { ...q.params, run: '0', today, tz, asOf: '1970-01-01 00:00:00.000' })
}

const WRITE_TABLES = { bench_write_history: 'tag_history', bench_write_values: 'tag_values', bench_write_daily: 'tag_event_daily' }

/** Runs `fn` with empty tables of history's, current values' and day builds' shapes to write into. */
async function withWriteTables<T>(db: Db, fn: () => Promise<T>): Promise<T> {
  for (const [name, like] of Object.entries(WRITE_TABLES)) await db.system.command(`CREATE TABLE ${name} AS ${like}`)
  try {
    return await fn()
  } finally {
    for (const name of Object.keys(WRITE_TABLES)) await db.system.command(`DROP TABLE IF EXISTS ${name}`)
  }
}

/** The per-(customer, day) aggregation of the raw events of local days [from, to]: no identity resolution, not written. */
function dayAggregation(db: TenantDb, layout: Layout, from: string, to: string, tz: string): Promise<number> {
  const b = new ParamBinder('d')
  const source = `(SELECT customer_key, timestamp, type, event, properties, product_id, amount, toDate(timestamp, {tz:String}) AS day FROM events
    WHERE tenant_id = {tenant:UInt16} AND customer_key != 0
      AND timestamp >= toDateTime({from:Date}, {tz:String}) AND timestamp < toDateTime(addDays({to:Date}, 1), {tz:String}))`
  return timeSelect(db, dailyAggregateSql(layout, source, b), { ...b.params, tz, from, to })
}

export async function measureStepFloors(db: Db, members: readonly Tenant[], defsOf: ReadonlyMap<number, StoredTag[]>, asOf: Date): Promise<StepFloors> {
  const f: StepFloors = { rebuild: 0, valuesRead: 0, valuesWrite: 0, valuesWriteCurrent: 0, dayRowsWrite: 0, stageEvents: 0, rules: 0, scores: 0, sql: 0, bitmaps: 0 }
  return withWriteTables(db, async () => {
    for (const t of members) {
      const tdb = db.forTenant(t.id)
      const defs: TagDefinition[] = defsOf.get(t.id)!
      const { layout, span } = eventMeasures(defs)
      const today = localDate(asOf, t.timeZone)
      const windowFrom = addDays(today, -(Math.max(span, 1) - 1))

      f.rebuild += await dayAggregation(tdb, layout, windowFrom, today, t.timeZone)

      f.valuesRead += await seconds(() =>
        tdb.query(
          `SELECT count() AS n, groupBitXor(cityHash64(tag, customer_key, value, num, list)) AS h FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0`,
          {},
          counted,
        ),
      )

      // Read from tag_values, sorted by tag and customer as the stage is.
      const from = `FROM tag_values WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0`
      const history = await seconds(() =>
        tdb.command(
          `INSERT INTO bench_write_history (tenant_id, tag, customer_key, valid_from, value, num, list, removed, run_id, tag_version)
           SELECT tenant_id, tag, customer_key, now64(3), value, num, list, 0, run_id, 1 ${from}`,
        ),
      )
      const current = await seconds(() =>
        tdb.command(`INSERT INTO bench_write_values (tenant_id, tag, customer_key, value, num, list, run_id, is_deleted) SELECT tenant_id, tag, customer_key, value, num, list, run_id, 0 ${from}`),
      )
      f.valuesWrite += history + current
      f.valuesWriteCurrent += current
      // The current builds' rows, read in the table's order, as the rebuild writes them.
      f.dayRowsWrite += await seconds(() =>
        tdb.command(
          `INSERT INTO bench_write_daily SELECT * FROM tag_event_daily
           WHERE tenant_id = {tenant:UInt16} AND day BETWEEN {from:Date} AND {to:Date} AND (day, build) IN ${CURRENT_DAYS}`,
          { from: windowFrom, to: today, layout: layout.hash },
        ),
      )

      // The stages as a full run makes them, level by level: event tags in one query, the rules
      // of a level in one, each score and SQL tag alone.
      const known = new Map(defs.map((d) => [d.name, d]))
      for (const level of dependencyLevels(defs)) {
        const events = level.filter((d) => d.rule.kind === 'window' || d.rule.kind === 'lifecycle')
        if (events.length) f.stageEvents += await stageTime(tdb, windowStage(events, { scoped: false, windowFrom, layout }), today, t.timeZone)
        const rules = level.filter((d) => d.rule.kind === 'rule')
        if (rules.length) f.rules += await stageTime(tdb, profileStage(rules, known, { asOf: false }), today, t.timeZone)
        for (const d of level.filter((x) => x.rule.kind === 'score')) f.scores += await stageTime(tdb, profileStage([d], known, { asOf: false }), today, t.timeZone)
        for (const d of level.filter((x) => x.rule.kind === 'sql')) f.sql += await stageTime(tdb, sqlStage(d), today, t.timeZone)
      }

      // A lower bound of the bitmaps step: a bitmap per value of the boolean and enum tags and one
      // of every customer with a value per other tag (the step also buckets numbers and dates).
      const exact = defs.filter((d) => d.type === 'boolean' || d.type === 'enum').map((d) => d.name)
      f.bitmaps += await timeSelect(
        tdb,
        `SELECT tag, v, bitmapCardinality(groupBitmapState(customer_key)) AS c FROM tag_values FINAL
         WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0 GROUP BY tag, if(has({exact:Array(String)}, toString(tag)), value, '*') AS v`,
        { exact },
      )
    }
    return f
  })
}

/**
 * The floor of each step of an incremental run, measured after it with its scope and changes:
 * each step's computation alone, as the run made it (the same customers, the same narrowing),
 * hashed and written nowhere; what each comparison reads of the current values; the bitmaps'
 * update without its write; and the changes written once. Their sum is what the run as it is
 * built cannot go under.
 */
export interface IncrementalFloors {
  /** The customers with day builds on the days that entered or left a window (the run's scope), not written. */
  scope: number
  /** The new day's per-(customer, day) aggregation, no identity resolution, not written. */
  newDay: number
  /** The event tags of the customers in the run's scope from the day builds, as staged, not written. */
  stageEvents: number
  /** The rules the run computed, each level's whole and narrowed groups as it staged them, not written. */
  rules: number
  /** The scores, each ranking every customer, as staged, not written. */
  scores: number
  /** The SQL tags the run computed, as staged, not written. */
  sql: number
  /** The current values each comparison reads (the scope's, the narrowed customers', every customer's), once. */
  diffRead: number
  /** The run's changes written once into tables of history's and current values' shapes. */
  changesWrite: number
  /** A bitmap per (tag, value) of the run's changes, and one read of the changed tags' bitmaps: the update's inputs, nothing written. */
  bitmaps: number
}

/**
 * Parts of the incremental floors above, to price the issue's directions: what each floor would
 * keep if the run worked another way. Not added to the floors' sum (each is a part of one floor,
 * or, for `edgeDays`, what would replace one).
 */
export interface IncrementalParts {
  /** Of rules: the rules computed for every customer (over dates, the profile and stock data). */
  rulesWhole: number
  /** Of rules: the rules over other tags, computed for the customers whose inputs changed. */
  rulesNarrowed: number
  /** Of scores: the quantile scores. */
  scoresQuantile: number
  /** Of scores: the weighted scores. */
  scoresWeighted: number
  /** Of diffRead: the event tags of the customers in scope. */
  diffReadEvents: number
  /** Of diffRead: every customer's rules computed for every customer. */
  diffReadWholeRules: number
  /** Of diffRead: every customer's scores and SQL tags. */
  diffReadScoresSql: number
  /** Of diffRead: the narrowed rules' customers. */
  diffReadNarrowed: number
  /** Of changesWrite: the table of current values' shape alone. */
  changesWriteCurrent: number
  /**
   * One read of the day builds' rows (every measure but the distinct keys) of the days that
   * entered or left a window and of the rebuilt days: what window measures kept by adding the
   * entering days and subtracting the leaving ones read at least, instead of the scope's windows.
   */
  edgeDays: number
}

export async function measureIncrementalFloors(
  db: Db,
  members: readonly Tenant[],
  defsOf: ReadonlyMap<number, StoredTag[]>,
  run: { asOf: Date; newDay: Date; runIds: ReadonlyMap<number, string>; results: ReadonlyMap<number, TagRunResult> },
): Promise<{ floors: IncrementalFloors; parts: IncrementalParts }> {
  const f: IncrementalFloors = { scope: 0, newDay: 0, stageEvents: 0, rules: 0, scores: 0, sql: 0, diffRead: 0, changesWrite: 0, bitmaps: 0 }
  const p: IncrementalParts = {
    rulesWhole: 0,
    rulesNarrowed: 0,
    scoresQuantile: 0,
    scoresWeighted: 0,
    diffReadEvents: 0,
    diffReadWholeRules: 0,
    diffReadScoresSql: 0,
    diffReadNarrowed: 0,
    changesWriteCurrent: 0,
    edgeDays: 0,
  }
  return withWriteTables(db, async () => {
    for (const t of members) {
      const tdb = db.forTenant(t.id)
      const defs: TagDefinition[] = defsOf.get(t.id)!
      const runId = run.runIds.get(t.id)!
      const result = run.results.get(t.id)!
      const { layout, span } = eventMeasures(defs)
      const today = localDate(run.asOf, t.timeZone)
      const prevToday = localDate(run.newDay, t.timeZone)
      const windowFrom = addDays(today, -(Math.max(span, 1) - 1))
      const bound = { run: runId, today, tz: t.timeZone, asOf: '1970-01-01 00:00:00.000' }
      const computed = (d: TagDefinition) => !result.tags[d.name]?.skipped && !result.tags[d.name]?.failed

      const edges = boundaryDays(windowRanges(defs), prevToday, today)
      f.scope += await timeSelect(
        tdb,
        `SELECT DISTINCT customer_key FROM tag_event_daily
         WHERE tenant_id = {tenant:UInt16} AND day IN {days:Array(Date)} AND (day, build) IN ${CURRENT_DAYS}`,
        { days: edges, layout: layout.hash },
      )
      p.edgeDays += await timeSelect(
        tdb,
        `SELECT customer_key, day, cnt, total, first_at, last_at FROM tag_event_daily
         WHERE tenant_id = {tenant:UInt16} AND day IN {days:Array(Date)} AND (day, build) IN ${CURRENT_DAYS}`,
        { days: [...new Set([...edges, ...result.rebuiltDays])].sort(), layout: layout.hash },
      )
      f.newDay += await dayAggregation(tdb, layout, prevToday, today, t.timeZone)

      const events = defs.filter((d) => d.rule.kind === 'window' || d.rule.kind === 'lifecycle')
      const q = windowStage(events, { scoped: true, windowFrom, layout })
      f.stageEvents += await timeSelect(tdb, q.select, { ...q.params, ...bound })

      // The rules, scores and SQL tags as the run staged them, level by level.
      const known = new Map(defs.map((d) => [d.name, d]))
      const wholeRuleTags: string[] = []
      const scoresSql: string[] = []
      const narrowed: { tags: string[]; inputs: string[]; customers: boolean }[] = []
      for (const level of dependencyLevels(defs)) {
        const rules = level.filter((d) => d.rule.kind === 'rule' && computed(d))
        const wholeRules = rules.filter((d) => !result.tags[d.name]?.changedInputs)
        const narrowRules = rules.filter((d) => result.tags[d.name]?.changedInputs)
        if (wholeRules.length) {
          const wq = profileStage(wholeRules, known, { asOf: false })
          const s = await timeSelect(tdb, wq.select, { ...wq.params, ...bound })
          f.rules += s
          p.rulesWhole += s
          wholeRuleTags.push(...wholeRules.map((d) => d.name))
        }
        if (narrowRules.length) {
          const inputs = [...new Set(narrowRules.flatMap((d) => result.tags[d.name]!.changedInputs!))].sort()
          const customers = narrowRules.some((d) => result.tags[d.name]!.changedCustomers)
          const nq = profileStage(narrowRules, known, { asOf: false, changed: inputs, changedCustomers: customers })
          const s = await timeSelect(tdb, nq.select, { ...nq.params, ...bound })
          f.rules += s
          p.rulesNarrowed += s
          narrowed.push({ tags: narrowRules.map((d) => d.name), inputs, customers })
        }
        for (const d of level.filter((x) => x.rule.kind === 'score' && computed(x))) {
          const sq = profileStage([d], known, { asOf: false })
          const s = await timeSelect(tdb, sq.select, { ...sq.params, ...bound })
          f.scores += s
          if (d.rule.kind === 'score' && d.rule.method === 'quantile') p.scoresQuantile += s
          else p.scoresWeighted += s
        }
        for (const d of level.filter((x) => x.rule.kind === 'sql' && computed(x))) f.sql += await stageTime(tdb, sqlStage(d), today, t.timeZone)
        scoresSql.push(...level.filter((d) => (d.rule.kind === 'score' || d.rule.kind === 'sql') && computed(d)).map((d) => d.name))
      }

      // What the comparisons read of the current values: the scope's event tags, every customer's
      // whole tags, the narrowed rules' customers.
      const current = (extra: string) =>
        `SELECT tag, customer_key, value, num, list FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND is_deleted = 0 ${extra}`
      p.diffReadEvents += await timeSelect(
        tdb,
        current(`AND customer_key IN (SELECT customer_key FROM tag_scope WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64})`),
        { tags: events.map((d) => d.name), run: runId },
      )
      if (wholeRuleTags.length) p.diffReadWholeRules += await timeSelect(tdb, current(''), { tags: wholeRuleTags })
      if (scoresSql.length) p.diffReadScoresSql += await timeSelect(tdb, current(''), { tags: scoresSql })
      for (const n of narrowed) {
        p.diffReadNarrowed += await timeSelect(tdb, current(`AND ${changedBySql('{inputs:Array(String)}', n.customers).replaceAll('{key}', 'customer_key')}`), {
          tags: n.tags,
          inputs: n.inputs,
          run: runId,
        })
      }

      const from = `FROM tag_changes WHERE tenant_id = {tenant:UInt16} AND run_id = {run:UInt64}`
      const history = await seconds(() =>
        tdb.command(
          `INSERT INTO bench_write_history (tenant_id, tag, customer_key, valid_from, value, num, list, removed, run_id, tag_version)
           SELECT tenant_id, tag, customer_key, now64(3), value, num, list, removed, run_id, 1 ${from}`,
          { run: runId },
        ),
      )
      const currentWrite = await seconds(() =>
        tdb.command(
          `INSERT INTO bench_write_values (tenant_id, tag, customer_key, value, num, list, run_id, is_deleted) SELECT tenant_id, tag, customer_key, value, num, list, run_id, removed ${from}`,
          { run: runId },
        ),
      )
      f.changesWrite += history + currentWrite
      p.changesWriteCurrent += currentWrite

      // The bitmaps' update reads, at least, the changes by (tag, value) and the changed tags'
      // bitmaps once (the build the run wrote is the size of the one it replaced).
      f.bitmaps += await seconds(async () => {
        await tdb.query(
          `SELECT count() AS n, sum(c) AS h FROM (SELECT tag, value, bitmapCardinality(groupBitmapState(customer_key)) AS c ${from} GROUP BY tag, value)`,
          { run: runId },
          counted,
        )
        await tdb.query(
          `SELECT count() AS n, sum(bitmapCardinality(keys)) AS h FROM tag_bitmaps
           WHERE tenant_id = {tenant:UInt16} AND tag IN (SELECT DISTINCT tag ${from})
             AND (toString(tag), build) IN (SELECT tag, build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16})`,
          { run: runId },
          counted,
        )
      })
    }
    f.diffRead = p.diffReadEvents + p.diffReadWholeRules + p.diffReadScoresSql + p.diffReadNarrowed
    return { floors: f, parts: p }
  })
}

/**
 * The floors of the issue's directions, from the floors above: what a run built another way
 * would still do, each part at its own floor. Lower bounds, not estimates: a part a direction
 * would remove counts as nothing, a part it would replace counts as what replaces it.
 */
export function directionFigures(step: StepFloors, incr: IncrementalFloors, p: IncrementalParts, floor: number, full: number): Record<string, number> {
  // A full run keeping the day builds, each value written once (current values; history derived from the change feed).
  const writtenOnce = step.rebuild + step.dayRowsWrite + step.valuesWriteCurrent + step.stageEvents + step.rules + step.scores + step.sql + step.bitmaps
  // A full run keeping no day builds: the event tags as the bare scan computes them, each value written once.
  const noDayBuilds = floor + step.valuesWriteCurrent + step.rules + step.scores + step.sql + step.bitmaps
  // An incremental run with window measures added and subtracted (the edge days' rows and the scope's
  // current values replace the windows' staging), date and stock rules at no cost, history from the
  // change feed; scores, SQL tags, narrowed rules, the other comparisons and the bitmaps as built.
  const directions =
    incr.scope + incr.newDay + p.edgeDays + p.diffReadEvents + p.rulesNarrowed + incr.scores + incr.sql + p.diffReadScoresSql + p.diffReadNarrowed + p.changesWriteCurrent + incr.bitmaps
  return {
    floor_values_write_current_s: step.valuesWriteCurrent,
    floor_day_rows_write_s: step.dayRowsWrite,
    floor_full_written_once_s: writtenOnce,
    floor_full_written_once_over_floor: writtenOnce / floor,
    floor_full_no_day_builds_s: noDayBuilds,
    floor_full_no_day_builds_over_floor: noDayBuilds / floor,
    ...Object.fromEntries(Object.entries(p).map(([k, v]) => [`floor_incremental_part_${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_s`, v])),
    floor_incremental_directions_s: directions,
    floor_incremental_directions_over_full: directions / full,
    floor_incremental_directions_over_full_written_once: directions / (full - (step.valuesWrite - step.valuesWriteCurrent)),
  }
}

/** What the figures of directionFigures are, for the results' notes. */
export const DIRECTION_NOTES =
  'The floors of the issue\'s directions (lower bounds built from the floors above; not runs of such a design): ' +
  'floor_values_write_current_s is the current values\' table of floor_values_write_s alone, and floor_day_rows_write_s the day builds\' rows written once into a table ' +
  'of their shape. floor_full_written_once_s: a full run keeping the day builds and writing each value once (the day aggregation, its rows written, the current values ' +
  'written, every staging and the bitmaps at their floors). floor_full_no_day_builds_s: a full run keeping no day builds, its event tags as the bare scan computes them, ' +
  'each value written once, the rules, scores, SQL tags and bitmaps at their floors. floor_incremental_part_*_s split the incremental floors: rules computed for every ' +
  'customer (over dates, the profile and stock data) and rules over tags narrowed to the customers whose inputs changed; quantile and weighted scores; the comparisons\' ' +
  'reads of the scope\'s event tags, of every customer\'s whole rules, of the scores and SQL tags, and of the narrowed rules\' customers; the changes\' write into the current ' +
  'values\' shape alone; and edge_days, one read of the day rows (every measure but the distinct keys) of the days that entered or left a window and of the rebuilt days. ' +
  'floor_incremental_directions_s: an incremental run with window measures added and subtracted (edge_days and the scope\'s current values in place of the windows\' staging), ' +
  'date and stock rules and their comparison at no cost, history derived from the change feed (the changes written once), and the scores, SQL tags, narrowed rules, their ' +
  'comparisons and the bitmaps as built at their floors; _over_full divides it by the full run as measured, _over_full_written_once by the full run less the history write it ' +
  'would no longer make.'
