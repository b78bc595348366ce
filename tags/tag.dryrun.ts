import type { TenantDb } from '../core/db.js'
import { AppError, errText, isAppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import { lifecycleRanges } from './tag.compile.js'
import { ACTIVITY_MEASURE, layoutOf, measureOf } from './tag.measures.js'
import { profileStage, sqlStage, windowStage, type StageQuery } from './tag.queries.js'
import type { TagDefinition } from './tag.schema.js'

/**
 * A definition is computed once before it is saved, the way a run computes it, so what would
 * fail every run is refused at save with the field at fault: an engine error (a cast that
 * cannot hold, a type the tag cannot take, an expression the engine refuses) becomes a 400.
 *
 * The run is a read: the stage query's SELECT, every column forced (a hash of the whole row, so
 * no column is pruned unevaluated), nothing inserted. It reads a sample: at most
 * DRY_RUN_MAX_ROWS rows and DRY_RUN_SECONDS, after which the engine stops reading and answers
 * with what it has, and at most DRY_RUN_MEMORY bytes, so a save never weighs like a run.
 */

export const DRY_RUN_MAX_ROWS = 1_000_000
export const DRY_RUN_SECONDS = 10
export const DRY_RUN_MEMORY = 1_000_000_000
const LIMITS =
  `SETTINGS max_rows_to_read = ${DRY_RUN_MAX_ROWS}, read_overflow_mode = 'break', ` +
  `max_execution_time = ${DRY_RUN_SECONDS}, timeout_overflow_mode = 'break', max_memory_usage = ${DRY_RUN_MEMORY}`

/** The stage query a run would use for this one definition. */
function stageOf(def: TagDefinition, known: ReadonlyMap<string, TagDefinition>, today: string): StageQuery {
  switch (def.rule.kind) {
    case 'sql':
      return sqlStage(def)
    case 'rule':
    case 'score':
      return profileStage([def], known, { asOf: false })
    case 'window':
    case 'lifecycle': {
      const r = def.rule
      const layout = layoutOf([r.kind === 'window' ? measureOf(r) : ACTIVITY_MEASURE])
      const span = r.kind === 'window' ? r.days + r.offsetDays : Math.max(...lifecycleRanges(r).map((x) => x.days + x.offset))
      const from = new Date(`${today}T00:00:00Z`)
      from.setUTCDate(from.getUTCDate() - span + 1)
      const q = windowStage([def], { scoped: false, windowFrom: from.toISOString().slice(0, 10), layout })
      return q
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
  let q: StageQuery
  try {
    q = stageOf(def, new Map([...others, def].map((d) => [d.name, d])), today)
  } catch (err) {
    if (isAppError(err)) throw err
    throw fail(err)
  }
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
