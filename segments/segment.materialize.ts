import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { AppError, errText, isAppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import { compileSegment } from './segment.compile.js'
import { limitError } from './segment.preview.js'
import { createSegmentRepository, type SavedSegment } from './segment.repository.js'
import { parseSegment } from './segment.schema.js'

/**
 * Materialization: a saved segment's members as of an instant, stored as one bitmap per build
 * (segment_members), with every entry and exit since the previous build (segment_events) and a
 * size row (segment_runs).
 *
 * The bitmap never goes through JS: the compiled segment query feeds `INSERT INTO
 * segment_members ... SELECT`; entries and exits are `bitmapAndnot` of the new and the previous
 * build (the newest build below this one), unrolled server-side with arrayJoin(bitmapToArray).
 *
 * Idempotent per (segment, build): the segment_runs row is written last and marks a build as
 * complete. Materializing a complete build again writes nothing and returns the stored run;
 * a build left incomplete by a failure (members or events without a run row) is deleted and
 * redone, so events are never written twice. Two concurrent materializations of the same build
 * are not guarded against (the scheduler runs one per segment at a time).
 */

export interface MaterializeOptions {
  tenantId: number
  timeZone: string
  segment: SavedSegment
  /** The tenant's active definitions by name (TagRepository.list). */
  defs: ReadonlyMap<string, TagDefinition>
  /** The instant the segment is evaluated at; the time of its enter/exit events. */
  asOf: Date
  /** A run id (UInt64 as a decimal string), increasing over time. */
  build: string
  /** What started it: 'schedule', 'tag_run', 'manual' ... */
  trigger: string
  /** Seconds (default 600). */
  maxExecutionTime?: number
  /** Bytes (default 4 GiB). */
  maxMemoryUsage?: number
}

export interface MaterializeResult {
  size: number
  entered: number
  exited: number
  build: string
  version: number
  /** True when this build was already complete and nothing was written. */
  skipped: boolean
}

const DEFAULT_TIME_S = 600
const DEFAULT_MEMORY = 4 * 1024 ** 3
const UINT64 = /^\d{1,20}$/

const runRow = z.object({ size: z.coerce.number(), entered: z.coerce.number(), exited: z.coerce.number(), version: z.coerce.number() })
const countsRow = z.object({ members: z.coerce.number(), events: z.coerce.number() })
const diffRow = z.object({ size: z.coerce.number(), entered: z.coerce.number(), exited: z.coerce.number() })

function checkBuild(build: string): string {
  if (!UINT64.test(build) || BigInt(build) > 0xffffffffffffffffn || BigInt(build) === 0n) {
    throw new AppError('VALIDATION_FAILED', 'A build is a positive UInt64 as a decimal string.', { issues: [{ field: 'build', message: 'invalid' }] })
  }
  return build
}

function limit(name: string, v: number, max: number): number {
  if (!Number.isFinite(v) || v <= 0 || v > max) throw new AppError('VALIDATION_FAILED', `${name} must be in (0, ${max}]`, { issues: [{ field: name, message: 'out of range' }] })
  return Math.trunc(v)
}

/** The bitmap of one build of a segment, as a scalar subquery (one {tenant} binding). */
const buildBitmap = (build: string) =>
  `(SELECT groupBitmapMergeState(keys) FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = ${build})`
/** The newest build of the segment below {bld} (0 when none). */
const PREVIOUS_BUILD = `(SELECT max(build) FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build < {bld:UInt64})`

export async function materializeSegment(deps: { db: Db }, o: MaterializeOptions): Promise<MaterializeResult> {
  const db = deps.db.forTenant(o.tenantId)
  const build = checkBuild(o.build)
  const seconds = limit('maxExecutionTime', o.maxExecutionTime ?? DEFAULT_TIME_S, 86_400)
  const memory = limit('maxMemoryUsage', o.maxMemoryUsage ?? DEFAULT_MEMORY, 2 ** 48)
  const s = o.segment
  if (s.retired) throw new AppError('VALIDATION_FAILED', `Segment ${s.id} is retired.`, { issues: [{ field: 'segment', message: 'retired' }] })
  const key = { sid: s.id, bld: build }

  const [done] = await db.query(
    `SELECT size, entered, exited, version FROM segment_runs WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {bld:UInt64} LIMIT 1`,
    key,
    runRow,
  )
  if (done) return { ...done, build, skipped: true }
  // Expand `{segment: id}` references (their current versions), validate and compile before
  // writing anything: a segment that no longer compiles leaves no trace.
  const rule = await createSegmentRepository(deps).expanded(o.tenantId, s.rule, { id: s.id, rule: s.rule })
  const compiled = compileSegment(parseSegment({ purpose: s.purpose, rule }), { defs: o.defs, asOf: o.asOf, timeZone: o.timeZone })
  const startedAt = chDateTime(new Date())

  const [partial] = await db.query(
    `SELECT (SELECT count() FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {bld:UInt64}) AS members,
            (SELECT count() FROM segment_events WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {bld:UInt64}) AS events`,
    key,
    countsRow,
  )
  if (partial && partial.members > 0) {
    await db.command(`DELETE FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {bld:UInt64}`, key)
  }
  if (partial && partial.events > 0) {
    await db.command(`DELETE FROM segment_events WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = {bld:UInt64}`, key)
  }

  // Numbers are inlined only after the checks above; SETTINGS takes literals.
  const settings = `SETTINGS max_execution_time = ${seconds}, max_memory_usage = ${memory}, timeout_overflow_mode = 'throw'`
  try {
    await db.command(
      `INSERT INTO segment_members (tenant_id, segment_id, build, version, size, keys, built_at)
       SELECT {tenant:UInt16}, {sid:String}, {bld:UInt64}, {ver:UInt32}, bitmapCardinality(seg), seg, {builtAt:DateTime64(3, 'UTC')}
       FROM (${compiled.sql})
       ${settings}`,
      { ...compiled.params, ...key, ver: s.version, builtAt: chDateTime(new Date()) },
    )
  } catch (e) {
    throw limitError(e, seconds, memory) ?? e
  }

  const cur = buildBitmap('{bld:UInt64}')
  const prev = buildBitmap(PREVIOUS_BUILD)
  const [diff] = await db.query(
    `WITH ${cur} AS n, ${prev} AS o
     SELECT bitmapCardinality(n) AS size, bitmapAndnotCardinality(n, o) AS entered, bitmapAndnotCardinality(o, n) AS exited`,
    key,
    diffRow,
  )
  if (!diff) throw new AppError('INTERNAL', 'The segment diff returned no row.')
  if (diff.entered + diff.exited > 0) {
    await db.command(
      `INSERT INTO segment_events (tenant_id, segment_id, customer_key, at, kind, version, build)
       WITH ${cur} AS n, ${prev} AS o
       SELECT {tenant:UInt16}, {sid:String}, k.1, {at:DateTime64(3, 'UTC')}, k.2, {ver:UInt32}, {bld:UInt64}
       FROM (SELECT arrayJoin(arrayConcat(
                arrayMap(x -> (x, 'enter'), bitmapToArray(bitmapAndnot(n, o))),
                arrayMap(x -> (x, 'exit'), bitmapToArray(bitmapAndnot(o, n))))) AS k)
       ${settings}`,
      { ...key, at: chDateTime(o.asOf), ver: s.version },
    )
  }
  await db.insert('segment_runs', [
    {
      segment_id: s.id,
      build,
      version: s.version,
      size: diff.size,
      entered: diff.entered,
      exited: diff.exited,
      started_at: startedAt,
      finished_at: chDateTime(new Date()),
      trigger: o.trigger,
    },
  ])
  return { ...diff, build, version: s.version, skipped: false }
}

export interface MaterializeAllOptions extends Omit<MaterializeOptions, 'segment' | 'build'> {
  segments: readonly SavedSegment[]
  /** A fresh build id per segment (e.g. pipelines/pipeline.runs newRunId). */
  newBuildId: () => string
}

export interface MaterializeAllResult {
  results: (MaterializeResult & { segmentId: string })[]
  errors: { segmentId: string; code: string; message: string }[]
}

/** Materializes each segment in turn; one failing segment is reported and does not stop the others. */
export async function materializeAll(deps: { db: Db }, o: MaterializeAllOptions): Promise<MaterializeAllResult> {
  const out: MaterializeAllResult = { results: [], errors: [] }
  const { segments, newBuildId, ...rest } = o
  for (const segment of segments) {
    if (segment.retired || segment.archived) continue
    try {
      const r = await materializeSegment(deps, { ...rest, segment, build: newBuildId() })
      out.results.push({ segmentId: segment.id, ...r })
    } catch (e) {
      out.errors.push({ segmentId: segment.id, code: isAppError(e) ? e.code : 'INTERNAL', message: errText(e) })
    }
  }
  return out
}

export interface SegmentEvent {
  at: string
  kind: 'enter' | 'exit'
  version: number
  build: string
}

const eventRow = z.object({ at: z.string(), kind: z.enum(['enter', 'exit']), version: z.coerce.number(), build: z.coerce.string() })

function checkKey(customerKey: number): number {
  if (!Number.isInteger(customerKey) || customerKey < 0 || customerKey > 0xffffffff) {
    throw new AppError('VALIDATION_FAILED', 'A customer key is a UInt32.', { issues: [{ field: 'customerKey', message: 'invalid' }] })
  }
  return customerKey
}

/** Every entry into and exit from the segment of one customer, oldest first. */
export async function segmentHistory(db: TenantDb, segmentId: string, customerKey: number): Promise<SegmentEvent[]> {
  return db.query(
    `SELECT toString(e.at) AS at, toString(e.kind) AS kind, e.version AS version, toString(e.build) AS build FROM segment_events AS e
     WHERE e.tenant_id = {tenant:UInt16} AND e.segment_id = {sid:String} AND e.customer_key = {k:UInt32}
     ORDER BY e.at, e.build`,
    { sid: segmentId, k: checkKey(customerKey) },
    eventRow,
  )
}

/**
 * Was the customer in the segment at `at`? The last enter/exit event at or before it decides:
 * a member `since` its entry, by the segment `version` that admitted it. For a non-member who
 * once left, `since` and `version` tell when and by which version; never a member: neither.
 */
export async function membershipAt(db: TenantDb, segmentId: string, customerKey: number, at: Date): Promise<{ member: boolean; since?: string; version?: number }> {
  const [last] = await db.query(
    `SELECT toString(e.at) AS at, toString(e.kind) AS kind, e.version AS version, toString(e.build) AS build FROM segment_events AS e
     WHERE e.tenant_id = {tenant:UInt16} AND e.segment_id = {sid:String} AND e.customer_key = {k:UInt32} AND e.at <= {at:DateTime64(3, 'UTC')}
     ORDER BY e.at DESC, e.build DESC LIMIT 1`,
    { sid: segmentId, k: checkKey(customerKey), at: chDateTime(at) },
    eventRow,
  )
  if (!last) return { member: false }
  return { member: last.kind === 'enter', since: last.at, version: last.version }
}
