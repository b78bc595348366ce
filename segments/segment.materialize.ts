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
 * build, unrolled server-side with arrayJoin(bitmapToArray). Members are people: the compiled
 * query puts each customer merged into another as its survivor (segment.compile.ts), as the
 * merges stand when the build is made, so a merge shows as the key merged away leaving (and the
 * survivor entering, if it was not a member), and its undo as the reverse, at the next build.
 *
 * The segment_runs row is written last and marks a build as complete. Only complete builds
 * count: the previous build a new one is compared with, the current build members, exports and
 * a customer's segments read, the entries and exits membership is answered from. A build that
 * fails half-way is deleted at once; should that fail too (the engine gone), the next
 * materialization of the segment deletes it before it writes (every attempt gets a new build
 * id, so nothing else would). Materializing a complete build again writes nothing and returns the
 * stored run. Two materializations of one segment at once are not guarded against: the
 * `segments` pipeline runs one at a time per tenant, under its lease.
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

/** The builds of a segment that completed (a segment_runs row), as a subquery: the only ones read. */
export const COMPLETE_BUILDS = `(SELECT build FROM segment_runs WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String})`

/** The bitmap of one build of a segment, as a scalar subquery (one {tenant} binding). */
const buildBitmap = (build: string) =>
  `(SELECT groupBitmapMergeState(keys) FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build = ${build})`
/** The newest complete build of the segment below {bld} (0 when none: an empty bitmap). */
const PREVIOUS_BUILD = `(SELECT max(build) FROM segment_runs WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND build < {bld:UInt64})`

const buildRow = z.object({ build: z.string() })

/** Builds of the segment with members or entries but no run row: left by a materialization that failed. */
async function incompleteBuilds(db: TenantDb, sid: string): Promise<string[]> {
  const rows = await db.query(
    `SELECT DISTINCT toString(build) AS build FROM (
       SELECT build FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String}
       UNION ALL
       SELECT build FROM segment_events WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String})
     WHERE build NOT IN ${COMPLETE_BUILDS}`,
    { sid },
    buildRow,
  )
  return rows.map((r) => r.build)
}

async function deleteBuilds(db: TenantDb, sid: string, builds: readonly string[]): Promise<void> {
  if (!builds.length) return
  for (const table of ['segment_members', 'segment_events'] as const) {
    await db.command(`DELETE FROM ${table} WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String} AND toString(build) IN {builds:Array(String)}`, { sid, builds })
  }
}

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

  // Whatever a failed attempt left (this build's, or an earlier one's) goes before anything is
  // written: entries are never written twice, and no half-written build is ever a baseline.
  await deleteBuilds(db, s.id, await incompleteBuilds(db, s.id))

  // Numbers are inlined only after the checks above; SETTINGS takes literals.
  const settings = `SETTINGS max_execution_time = ${seconds}, max_memory_usage = ${memory}, timeout_overflow_mode = 'throw'`
  try {
    const diff = await write(db, { ...key, ver: s.version }, compiled, settings, o.asOf)
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
  } catch (e) {
    // Readers outside this module take the newest build whatever it is: take this one away now.
    // Should the engine refuse that too, the next materialization does it.
    await deleteBuilds(db, s.id, [build]).catch(() => {})
    throw limitError(e, seconds, memory) ?? e
  }
}

/** The build's members, then its entries and exits against the previous complete build. */
async function write(
  db: TenantDb,
  key: { sid: string; bld: string; ver: number },
  compiled: { sql: string; params: Record<string, unknown> },
  settings: string,
  asOf: Date,
): Promise<z.infer<typeof diffRow>> {
  await db.command(
    `INSERT INTO segment_members (tenant_id, segment_id, build, version, size, keys, built_at)
     SELECT {tenant:UInt16}, {sid:String}, {bld:UInt64}, {ver:UInt32}, bitmapCardinality(seg), seg, {builtAt:DateTime64(3, 'UTC')}
     FROM (${compiled.sql})
     ${settings}`,
    { ...compiled.params, ...key, builtAt: chDateTime(new Date()) },
  )
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
      { ...key, at: chDateTime(asOf) },
    )
  }
  return diff
}

export interface MaterializeAllOptions extends Omit<MaterializeOptions, 'segment' | 'build'> {
  segments: readonly SavedSegment[]
  /** A fresh build id per segment (e.g. pipelines/pipeline.runs newRunId). */
  newBuildId: () => string
  /** Aborted when the run's lease was lost: no further segment is begun, and the run fails with the reason. */
  signal?: AbortSignal
}

export interface MaterializeAllResult {
  results: (MaterializeResult & { segmentId: string })[]
  errors: { segmentId: string; code: string; message: string }[]
}

/** Materializes each segment in turn; one failing segment is reported and does not stop the others. */
export async function materializeAll(deps: { db: Db }, o: MaterializeAllOptions): Promise<MaterializeAllResult> {
  const out: MaterializeAllResult = { results: [], errors: [] }
  const { segments, newBuildId, signal, ...rest } = o
  for (const segment of segments) {
    if (segment.retired || segment.archived) continue
    signal?.throwIfAborted()
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

/** Every entry into and exit from the segment of one customer, oldest first (complete builds only). */
export async function segmentHistory(db: TenantDb, segmentId: string, customerKey: number): Promise<SegmentEvent[]> {
  return db.query(
    `SELECT toString(e.at) AS at, toString(e.kind) AS kind, e.version AS version, toString(e.build) AS build FROM segment_events AS e
     WHERE e.tenant_id = {tenant:UInt16} AND e.segment_id = {sid:String} AND e.customer_key = {k:UInt32} AND e.build IN ${COMPLETE_BUILDS}
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
       AND e.build IN ${COMPLETE_BUILDS}
     ORDER BY e.at DESC, e.build DESC LIMIT 1`,
    { sid: segmentId, k: checkKey(customerKey), at: chDateTime(at) },
    eventRow,
  )
  if (!last) return { member: false }
  return { member: last.kind === 'enter', since: last.at, version: last.version }
}
