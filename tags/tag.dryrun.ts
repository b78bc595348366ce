import type { TenantDb } from '../core/db.js'
import { AppError, errText, isAppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import { lifecycleRanges } from './tag.compile.js'
import { ParamBinder } from '../core/params.js'
import { ACTIVITY_MEASURE, dailyAggregateSql, layoutOf, measureOf } from './tag.measures.js'
import { profileStage, sqlStage, windowStage } from './tag.queries.js'
import type { TagDefinition } from './tag.schema.js'

/**
 * A definition is computed once before it is saved, the way a run computes it, so what would
 * fail every run is refused at save with the field at fault: an engine error (a cast that
 * cannot hold, a type the tag cannot take, an expression the engine refuses) becomes a 400.
 *
 * The run is a read: the stage query's SELECT (and for an event tag first the daily aggregate
 * of its events, which a run builds before any event tag is staged), every column forced (a
 * hash of the whole row, so no column is pruned unevaluated), nothing inserted. It reads a
 * sample: at most DRY_RUN_MAX_ROWS rows and DRY_RUN_SECONDS, after which the engine stops
 * reading and answers with what it has, and at most DRY_RUN_MEMORY bytes, so a save never
 * weighs like a run.
 */

export const DRY_RUN_MAX_ROWS = 1_000_000
export const DRY_RUN_SECONDS = 10
export const DRY_RUN_MEMORY = 1_000_000_000
const LIMITS =
  `SETTINGS max_rows_to_read = ${DRY_RUN_MAX_ROWS}, read_overflow_mode = 'break', ` +
  `max_execution_time = ${DRY_RUN_SECONDS}, timeout_overflow_mode = 'break', max_memory_usage = ${DRY_RUN_MEMORY}`

/** A read a run makes for this one definition: its SELECT and parameters. */
interface Probe {
  select: string
  params: Record<string, unknown>
}

/**
 * The queries a run would use for this one definition: its stage query and, for window and
 * lifecycle tags, the daily aggregate of its measure (a run builds it for every event tag at
 * once, before any is staged), over the bank's events.
 */
function probesOf(def: TagDefinition, known: ReadonlyMap<string, TagDefinition>, today: string): Probe[] {
  switch (def.rule.kind) {
    case 'sql':
      return [sqlStage(def)]
    case 'rule':
    case 'score':
      return [profileStage([def], known, { asOf: false })]
    case 'window':
    case 'lifecycle': {
      const r = def.rule
      const layout = layoutOf([r.kind === 'window' ? measureOf(r) : ACTIVITY_MEASURE])
      const span = r.kind === 'window' ? r.days + r.offsetDays : Math.max(...lifecycleRanges(r).map((x) => x.days + x.offset))
      const from = new Date(`${today}T00:00:00Z`)
      from.setUTCDate(from.getUTCDate() - span + 1)
      const b = new ParamBinder('m')
      const events = `(SELECT customer_key, timestamp, type, event, properties, product_id, amount, toDate(timestamp, {tz:String}) AS day
        FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key != 0)`
      const daily = { select: dailyAggregateSql(layout, events, b), params: b.params }
      return [daily, windowStage([def], { scoped: false, windowFrom: from.toISOString().slice(0, 10), layout })]
    }
  }
}

/** Computes `def` on a sample; throws DRY_RUN_FAILED naming the field when the engine refuses it. */
export async function dryRunTag(db: TenantDb, def: TagDefinition, others: readonly TagDefinition[], fieldPrefix = ''): Promise<void> {
  const now = new Date()
  const today = now.toISOString().slice(0, 10)
  const field = `${fieldPrefix}${def.rule.kind === 'sql' ? 'rule.sql' : 'rule'}`
  const fail = (err: unknown) =>
    new AppError('DRY_RUN_FAILED', `Tag ${def.name} fails when computed: ${errText(err).slice(0, 500)}`, {
      issues: [{ field, code: 'dry_run_failed', message: errText(err).slice(0, 2000) }],
      cause: err,
    })
  let probes: Probe[]
  try {
    probes = probesOf(def, new Map([...others, def].map((d) => [d.name, d])), today)
  } catch (err) {
    // A definition the run cannot compile: its own error names the field.
    if (!isAppError(err)) throw fail(err)
    if (!fieldPrefix) throw err
    const issues = (err.issues ?? []).map((i) => ({ ...i, field: `${fieldPrefix}${i.field ?? ''}` }))
    throw new AppError(err.code, err.message, { issues, cause: err })
  }
  for (const q of probes) {
    try {
      await db.query(`SELECT count() AS n, max(cityHash64(*)) AS h FROM (${q.select}) ${LIMITS}`, {
        ...q.params,
        run: '0',
        today,
        tz: 'UTC',
        asOf: chDateTime(now),
      })
    } catch (err) {
      throw fail(err)
    }
  }
}
