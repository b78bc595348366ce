import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError, errText } from '../core/errors.js'
import { addDays, chDateTime, localDate } from '../core/time.js'
import { eventMeasures } from './tag.measures.js'
import { profileStage, sqlStage, windowStage, type StageQuery } from './tag.queries.js'
import { dependencyLevels } from './tag.repository.js'
import { tagDependencies, type StoredTag, type TagDefinition } from './tag.schema.js'
import { applyChanges, diffStage, tagsWithoutValues } from './tag.values.js'
import { restoreAfterBackfill } from './tag.backfill.js'
import { narrowing, stockChanges, staleBecause } from './tag.freshness.js'
import { changeCounts, clearStage, commitBuilds, stagedCounts, tagStates } from './tag.state.js'
import { maxCustomerKey, rangeParams, splitKeys, type KeyRange } from './tag.ranges.js'
import { customersPrint } from './tag.customers.js'
import { dropDaysBefore, dropSupersededDays } from './event-daily.js'
import { incrementalStart, isEventTag, prepareDays } from './tag.days.js'
import type { RunState, TagRunRequest, TagRunResult } from './tag.run.js'

/**
 * One tenant's tag run: event aggregates brought up to date, then the tags level by level in
 * dependency order, each level staged in as few queries as possible, compared with what is
 * stored, and only the differences written (history first, then current values, then bitmaps).
 *
 * Modes:
 * - full: every customer recomputed and compared; a day of the longest window is re-aggregated
 *   from raw events unless its build read the same events (count and fingerprint, checked on the
 *   events themselves) and no identity link or merge since touches them. Event tags are kept
 *   when the day builds of the window, the customers (their print) and the date are what they
 *   were when they were last computed (tag.freshness.ts `eventTagsStale`); rules over profile
 *   and stock data and SQL tags are recomputed for everyone; a rule or score computed from
 *   other tags alone follows what this run found for those (unchanged: kept; changed for some
 *   customers: recomputed for them, as an incremental run does). `recompute` recomputes every
 *   tag for everyone;
 * - incremental: only days whose events changed since the last run's watermark are rebuilt, and
 *   event tags are recomputed only for customers with activity on rebuilt days or on days that
 *   entered or left a window since then (plus tenure crossings for lifecycles); a rule whose
 *   only moved inputs are tags this run changed is recomputed for the customers those changed,
 *   other rules and scores for everyone.
 *   Falls back to full when the measures or windows changed or the last run is over a week old;
 * - backfill: the values as of the end of a past day, written to history only, with what
 *   history held after that day restored where the day's changes would hide it (tag.backfill.ts).
 *
 * A tag whose computation fails does not stop the run: a level's shared query that fails is
 * retried tag by tag to find the one at fault; that tag is recorded as failed with its error,
 * the tags that read it (directly or not) are skipped with the reason, and every other tag is
 * computed and committed. Nothing of a failed or skipped tag is written: its values, bitmaps
 * and state stay as the last good run left them. Event tags share the daily aggregates: a window
 * tag whose measure cannot be compiled is left out of them and fails alone, and when they cannot
 * be prepared every event tag fails while the rules, scores and SQL tags are computed.
 */

export type { RunMode, RunState, TagRunRequest, TagRunResult } from './tag.run.js'

/** Inserts that computed their change time just before the watermark may commit just after it. */
const WATERMARK_SLACK_MS = 60_000
/**
 * Days rebuilt per insert: bounds the memory of one aggregation. A bank of several key ranges
 * rebuilds fewer days per insert, so one insert groups about as many (day, customer) pairs as
 * eight days of one range.
 */
const REBUILD_CHUNK_DAYS = 8
/** Superseded day builds tolerated before they are dropped (one table mutation drops them all). */
const SUPERSEDED_DAYS_BEFORE_CLEANUP = 48
/**
 * Days kept before the longest window, so a backfill of the last month reads their builds; days
 * older than that are dropped once this many of them are held (one table mutation each time).
 */
const DAYS_KEPT_BEFORE_WINDOW = 31
const OLD_DAYS_BEFORE_CLEANUP = 31

export async function runTags(deps: { db: Db }, req: TagRunRequest): Promise<TagRunResult> {
  req.signal?.throwIfAborted()
  const db = deps.db.forTenant(req.tenantId)
  const steps: { step: string; ms: number }[] = []
  const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now()
    try {
      return await fn()
    } finally {
      steps.push({ step, ms: Math.round(performance.now() - t0) })
    }
  }
  const tz = req.timeZone
  const today = localDate(req.asOf, tz)
  const asOf = chDateTime(req.asOf)
  const [clock] = await db.query(`SELECT toString(now64(3)) AS t`, {}, z.object({ t: z.string() }))
  const watermark = clock!.t
  const all = req.defs
  const known = new Map<string, TagDefinition>(all.map((d) => [d.name, d]))
  const selected = req.only ? all.filter((d) => req.only!.includes(d.name)) : [...all]
  if (req.only) {
    const missing = req.only.filter((n) => !known.has(n))
    if (missing.length) throw new AppError('NOT_FOUND', `No tag named ${missing.join(', ')}.`)
  }
  const levels = dependencyLevels(selected, new Set(all.map((d) => d.name)))
  const failed = new Map<string, string>()
  // A window tag whose measure cannot be compiled is left out of the daily aggregate all event
  // tags share, and fails alone.
  const { layout, span, hash, uncompiled } = eventMeasures(all)
  for (const d of selected) if (uncompiled.has(d.name)) failed.set(d.name, uncompiled.get(d.name)!)
  const usable = all.filter((d) => !uncompiled.has(d.name))
  const eventTags = selected.filter((d) => isEventTag(d) && !uncompiled.has(d.name)) as StoredTag[]
  // Daily aggregates are the input of event tags only: a run of rules alone needs none.
  const hasEventTags = span > 0 && eventTags.length > 0
  const windowFrom = addDays(today, -(Math.max(span, 1) - 1))

  const states = await tagStates(db)
  let mode = req.mode
  // The customers every tag is computed for, read before anything is staged and recorded with
  // the tags computed for all of them: a tag is kept only while it is what it was then.
  let base = mode === 'backfill' ? '' : await timed('customers_print', () => customersPrint(db))
  const start = mode === 'incremental' ? await incrementalStart(db, { eventTags, states, hash, span, today, base }) : undefined
  if (start) mode = start.mode
  // Incremental runs, and full runs short of a recompute, leave a tag alone when what it reads
  // did not move (and narrow a rule to the customers it moved for).
  const derives = mode === 'incremental' || (mode === 'full' && req.recompute !== true)
  const ranges: KeyRange[] = splitKeys(await maxCustomerKey(db), req.keyRange ?? 0)
  let rebuilt: string[] = []
  let scoped: number | undefined
  let reused: number | undefined
  let carried: string[] | undefined
  // Whether a full run keeps its event tags as they are.
  let eventsHold = false
  // Why the daily aggregates could not be prepared: the event tags fail, the other tags are computed.
  let daysFailed: string | undefined
  if (hasEventTags) {
    const days = await prepareDays(
      db,
      {
        runId: req.runId,
        mode,
        derives,
        layout,
        hash,
        span,
        windowFrom,
        today,
        tz,
        watermark,
        slackMs: req.watermarkSlackMs ?? WATERMARK_SLACK_MS,
        ...(req.eventsKeptFrom ? { eventsKeptFrom: req.eventsKeptFrom } : {}),
        chunkDays: Math.max(1, Math.floor(REBUILD_CHUNK_DAYS / ranges.length)),
        prev: start?.prev,
        eventTags,
        allEventTags: usable.filter(isEventTag),
        states,
        base,
        customersFrom: start?.customersFrom ?? [],
      },
      timed,
    ).catch((err: unknown) => {
      daysFailed = `Preparing the daily event aggregates failed: ${errText(err)}`
      for (const d of eventTags) failed.set(d.name, daysFailed)
      return undefined
    })
    if (days) ({ rebuilt, scoped, reused, carried, eventsHold, base } = days)
  }

  const params = { run: req.runId, today, tz, asOf }
  const stage = async (q: StageQuery, what: string) => {
    try {
      for (const r of q.ranged ? ranges : [undefined]) await db.command(q.sql, { ...q.params, ...params, ...(r ? rangeParams(r) : {}) })
    } catch (err) {
      if (err instanceof AppError) throw err
      throw new AppError('INTERNAL', `Computing ${what} failed: ${errText(err)}`, { cause: err })
    }
  }
  const blocked = new Map<string, string>()
  /**
   * Stages a group of tags with one query; when it fails, each tag alone, so the one at fault
   * is found and the others are still computed. A failed query may have staged some blocks:
   * they are removed before the retry.
   */
  const attempt = async (group: readonly TagDefinition[], what: string, build: (ds: readonly TagDefinition[]) => StageQuery): Promise<void> => {
    if (!group.length) return
    try {
      await stage(build(group), what)
    } catch (err) {
      await clearStage(db, req.runId, group.map((d) => d.name))
      if (group.length === 1) {
        failed.set(group[0]!.name, errText(err))
        return
      }
      for (const d of group) await attempt([d], `${what.split(' ')[0]} ${d.name}`, build)
    }
  }
  const perTag: TagRunResult['tags'] = {}
  // Rules recomputed for the customers whose values of these tags changed (not for everyone).
  const narrowed = new Map<string, { changed: string[]; changedCustomers: boolean }>()
  // When each stock table last received rows: an incremental run leaves a rule over them alone
  // when nothing it reads moved since it was computed (a full run reads them afresh).
  const stock = mode === 'incremental' ? await stockChanges(db) : new Map<string, string>()
  const changedNow = new Set<string>()
  // Changes per tag so far in this run (after the last level: the run's).
  let counts = new Map<string, number>()
  // Tags whose changes are their staged rows (no value stored before this run; see
  // tagsWithoutValues), with their counts once their level is written.
  const staged = new Set<string>()
  const stagedN = new Map<string, number>()
  const skipped = new Set<string>()
  const views = new Map([...states].map(([k, v]) => [k, { version: v.version, today: v.today, watermark: v.watermark, changedAt: v.changed_at, base: v.base }]))
  const stockUnread = mode === 'full'
  // The prints whose changed customers this incremental run holds in its scope (tag.days.ts).
  const scopedFrom = new Set(mode === 'incremental' && !daysFailed ? (start?.customersFrom ?? []) : [])
  const freshCtx = () => ({ today, states: views, stock, changedNow, stockUnread, base, scopedFrom })
  const fresh = (d: TagDefinition): boolean => {
    if (!derives) return true
    const why = staleBecause(d as StoredTag, freshCtx())
    if (!why) skipped.add(d.name)
    return why !== undefined
  }
  for (const [li, levelDefs] of levels.entries()) {
    req.signal?.throwIfAborted()
    // Tags reading a tag that failed (or was skipped for that) are skipped in turn.
    for (const d of levelDefs) {
      const dep = tagDependencies(d).find((n) => failed.has(n) || blocked.has(n))
      if (dep) blocked.set(d.name, failed.has(dep) ? `reads tag ${dep}, which failed` : `reads tag ${dep}, which was skipped (${blocked.get(dep)})`)
    }
    const level = levelDefs.filter((d) => !blocked.has(d.name) && !failed.has(d.name))
    // A full run that found everything its event tags read unchanged keeps their values.
    const events = eventsHold ? [] : level.filter(isEventTag)
    if (eventsHold) for (const d of level.filter(isEventTag)) skipped.add(d.name)
    const profile = level.filter((d) => (d.rule.kind === 'rule' || d.rule.kind === 'score') && fresh(d))
    const sqls = level.filter((d) => d.rule.kind === 'sql')
    const isScoped = mode === 'incremental'
    if (events.length) {
      await timed(`level${li}_events`, () => attempt(events, `event tags ${events.map((d) => d.name).join(', ')}`, (ds) => windowStage(ds, { scoped: isScoped, windowFrom, layout })))
    }
    // Rules share one pass over the profile; each score ranks every customer with window
    // functions, which are cheaper one by one than sorted together in one wide query.
    const rules = profile.filter((d) => d.rule.kind === 'rule')
    const scores = profile.filter((d) => d.rule.kind === 'score')
    const asOfValues = { asOf: mode === 'backfill' }
    // A rule whose only moved inputs are tags this run changed is recomputed (and compared) for
    // the customers whose values of those tags changed (and, when the customers changed since,
    // for the customers whose row changed); the others keep what they had.
    const narrowBy = new Map<string, string[]>()
    let narrowCustomers = false
    if (derives) {
      for (const d of rules) {
        const n = narrowing(d as StoredTag, freshCtx())
        // Narrowing reads the inputs' rows in tag_changes, which a staged input has none of.
        if (!n || n.inputs.some((t) => staged.has(t))) continue
        narrowBy.set(d.name, n.inputs)
        narrowCustomers ||= n.customers
      }
    }
    const narrow = rules.filter((d) => narrowBy.has(d.name))
    const whole = rules.filter((d) => !narrowBy.has(d.name))
    const narrowInputs = [...new Set(narrow.flatMap((d) => narrowBy.get(d.name)!))].sort()
    const narrowTo = { changed: narrowInputs, changedCustomers: narrowCustomers }
    if (rules.length) await timed(`level${li}_rules`, async () => {
      await attempt(whole, `tags ${whole.map((d) => d.name).join(', ')}`, (ds) => profileStage(ds, known, asOfValues))
      await attempt(narrow, `tags ${narrow.map((d) => d.name).join(', ')}`, (ds) => profileStage(ds, known, { ...asOfValues, ...narrowTo }))
    })
    for (const d of narrow) narrowed.set(d.name, narrowTo)
    if (scores.length) await timed(`level${li}_scores`, async () => {
      for (const d of scores) await attempt([d], `score ${d.name}`, (ds) => profileStage(ds, known, asOfValues))
    })
    if (sqls.length) await timed(`level${li}_sql`, async () => {
      for (const d of sqls) await attempt([d], `SQL tag ${d.name}`, ([x]) => sqlStage(x!))
    })
    // A failed tag is compared with nothing: a diff of it would read as every value removed.
    const ok = (d: TagDefinition) => !failed.has(d.name)
    await timed(`level${li}_diff`, async () => {
      const backfillAsOf = mode === 'backfill' ? { asOf } : mode === 'full' ? { wholeTagCheck: true } : {}
      const eventTags = events.filter(ok).map((d) => d.name)
      const wholeTags = [...profile, ...sqls].filter((d) => ok(d) && !narrowBy.has(d.name)).map((d) => d.name)
      // A tag staged for every customer with no value stored yet (its first run): every staged
      // value is an addition, written as it is staged, without a diff against nothing.
      if (mode !== 'backfill') for (const t of await tagsWithoutValues(db, [...(isScoped ? [] : eventTags), ...wholeTags])) staged.add(t)
      await diffStage(db, { runId: req.runId, tags: eventTags.filter((t) => !staged.has(t)), scoped: isScoped, ranges, ...backfillAsOf })
      await diffStage(db, { runId: req.runId, tags: wholeTags.filter((t) => !staged.has(t)), scoped: false, ranges, ...backfillAsOf })
      await diffStage(db, { runId: req.runId, tags: narrow.filter(ok).map((d) => d.name), scoped: false, ...narrowTo, ranges, ...backfillAsOf })
    })
    const computed = level.filter((d) => !skipped.has(d.name) && ok(d))
    const tags = computed.map((d) => d.name)
    const versions = computed.map((d) => (d as StoredTag).version ?? 0)
    await timed(`level${li}_apply`, async () => {
      // What history held after a backfilled day comes back after it (tag.backfill.ts).
      if (mode === 'backfill') await restoreAfterBackfill(db, { runId: req.runId, tags, versions, asOf, startedAt: watermark, ranges })
      await applyChanges(db, { runId: req.runId, tags, versions, asOf, history: true, current: mode !== 'backfill', staged: [...staged] })
    })
    for (const [tag, n] of await stagedCounts(db, req.runId, [...staged].filter((t) => !stagedN.has(t)))) stagedN.set(tag, n)
    // Only this level's tags: the levels before keep the counts they had.
    counts = new Map([...counts, ...(await changeCounts(db, req.runId, level.map((d) => d.name))), ...stagedN])
    for (const [tag, n] of counts) if (n > 0) changedNow.add(tag)
  }
  // Every level's changes are in tag_changes under this run: the last count is the run's.
  const changed = [...counts.values()].reduce((a, n) => a + n, 0)
  for (const d of selected) {
    const by = narrowed.get(d.name)
    perTag[d.name] = {
      changed: counts.get(d.name) ?? 0,
      ...(skipped.has(d.name) ? { skipped: true } : {}),
      ...(by ? { changedInputs: by.changed, ...(by.changedCustomers ? { changedCustomers: true } : {}) } : {}),
    }
  }
  for (const [tag, error] of failed) perTag[tag] = { changed: 0, failed: true, error }
  for (const [tag, reason] of blocked) perTag[tag] = { changed: 0, skipped: true, reason }
  const failures = [...failed].map(([tag, error]) => ({ tag, error }))
  // Nothing computed at all is a failed run (retried), not a partial one.
  if (failures.length && failed.size + blocked.size === selected.length) {
    throw new AppError('INTERNAL', `Every tag failed: ${failures.map((f) => `${f.tag}: ${f.error}`).join('; ').slice(0, 2000)}`)
  }

  const state: RunState = { today, watermark, measures: hash, span }
  if (mode !== 'backfill') {
    const customers = await timed('bitmaps', () =>
      commitBuilds(db, {
        runId: req.runId,
        asOf,
        state,
        base,
        computed: selected.filter((d) => !skipped.has(d.name) && !failed.has(d.name) && !blocked.has(d.name)) as StoredTag[],
        skipped,
        states,
        counts,
        staged,
        ...(hasEventTags ? { eventTags: new Set(all.filter(isEventTag).map((d) => d.name)) } : {}),
      }),
    )
    for (const [tag, n] of customers) perTag[tag]!.customers = n
  }
  // Superseded day builds, days no window reaches any longer and bitmap builds are dropped in
  // batches, not on every run. A backfill's window is in the past: it drops nothing.
  let dropped = 0
  if (hasEventTags && !daysFailed) {
    await timed('cleanup', async () => {
      await dropSupersededDays(db, SUPERSEDED_DAYS_BEFORE_CLEANUP)
      if (mode !== 'backfill') dropped = await dropDaysBefore(db, addDays(windowFrom, -DAYS_KEPT_BEFORE_WINDOW), OLD_DAYS_BEFORE_CLEANUP)
    })
  }
  return {
    mode,
    state,
    changed,
    tags: perTag,
    failures,
    blocked: [...blocked].map(([tag, reason]) => ({ tag, reason })),
    rebuiltDays: [...new Set(rebuilt)].sort(),
    ...(scoped !== undefined ? { scoped } : {}),
    ...(reused !== undefined ? { reusedDays: reused } : {}),
    ...(carried?.length ? { carriedDays: carried } : {}),
    ...(dropped ? { droppedDays: dropped } : {}),
    keyRanges: ranges.length,
    steps,
  }
}
