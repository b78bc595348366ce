import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { AppError, errText } from '../core/errors.js'
import { ParamBinder } from '../core/params.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import type { BitmapStore } from './bitmap.store.js'
import { compileSegment, prepare, type CompileOptions, type Plan } from './segment.compile.js'
import { evaluateInMemory, onlyTagLeaves } from './segment.memory.js'
import type { Segment } from './segment.schema.js'

/**
 * A segment's preview, computed from its bitmap in one query: how many customers, out of how
 * many, a breakdown of the members by the values of chosen tags (bitmapAndCardinality with each
 * value bitmap of the tag's current build; numbers and dates by bucket), and a sample of keys.
 *
 * Guardrails: the query carries `max_execution_time` and `max_memory_usage` in its own SETTINGS
 * clause (client-level settings would persist in the embedded engine's session). Exceeding
 * either fails the preview with AppError OVERLOADED (HTTP 503, "narrow the segment or retry
 * later"), the limit named in the message: a result is never silently truncated
 * (timeout_overflow_mode is forced to 'throw').
 *
 * With a bitmap store, a segment whose every leaf is a tag condition is answered from memory
 * (segment.memory.ts) after one small freshness query: the same semantics and the same answer,
 * without ClickHouse deserializing each bitmap again per preview. `executor` says which ran.
 */

export interface PreviewOptions extends Omit<CompileOptions, 'purpose'> {
  /** Tags to break the members down by (they must be allowed for the segment's purpose). */
  breakdown?: readonly string[]
  /** Keys returned, the smallest first (default 20, at most 1000). */
  sampleSize?: number
  /** Seconds (default 30). */
  maxExecutionTime?: number
  /** Bytes (default 4 GiB). */
  maxMemoryUsage?: number
  /** Tag bitmaps held in memory: tag-only segments are then evaluated in the process. */
  store?: BitmapStore
}

export interface Preview {
  count: number
  total: number
  share: number
  breakdown: Record<string, { value: string; customers: number }[]>
  sample: number[]
  plan: Plan
  /** memory: bitmaps held by the process; clickhouse: one query in the engine. */
  executor: 'memory' | 'clickhouse'
}

const DEFAULT_TIME_S = 30
const DEFAULT_MEMORY = 4 * 1024 ** 3

const resultRow = z.object({
  count: z.coerce.number(),
  total: z.coerce.number(),
  sample: z.array(z.coerce.number()),
  breakdown: z.array(z.tuple([z.string(), z.string(), z.coerce.number()])),
})

/** ClickHouse codes of exceeded limits: TIMEOUT_EXCEEDED, MEMORY_LIMIT_EXCEEDED, TOO_SLOW. */
const LIMIT_CODES = new Set(['159', '241', '160'])

function positiveInt(name: string, v: number, max: number): number {
  if (!Number.isFinite(v) || v <= 0 || v > max) throw new AppError('VALIDATION_FAILED', `${name} must be in (0, ${max}]`, { issues: [{ field: name, message: 'out of range' }] })
  return v
}

export async function preview(db: TenantDb, segment: Segment, opts: PreviewOptions): Promise<Preview> {
  const compiled = compileSegment(segment, opts)
  const sampleSize = opts.sampleSize === 0 ? 0 : Math.trunc(positiveInt('sampleSize', opts.sampleSize ?? 20, 1000))
  const seconds = positiveInt('maxExecutionTime', opts.maxExecutionTime ?? DEFAULT_TIME_S, 3600)
  const memory = Math.trunc(positiveInt('maxMemoryUsage', opts.maxMemoryUsage ?? DEFAULT_MEMORY, 2 ** 48))
  const breakdownTags = [...new Set(opts.breakdown ?? [])]
  breakdownTags.forEach((t, i) => checkBreakdownTag(t, i, opts.defs, segment))
  if (opts.store && onlyTagLeaves(segment.rule)) {
    return previewInMemory(opts.store, db, segment, { ...opts, purpose: segment.purpose }, compiled.plan, breakdownTags, sampleSize)
  }
  const b = new ParamBinder('b')
  const tags = b.strs(breakdownTags)
  // Value bitmaps of each breakdown tag's current build (not '*').
  const values = `(SELECT groupArray(tuple(toString(bm.tag), bm.value, bm.keys)) FROM tag_bitmaps AS bm
      INNER JOIN (SELECT tag, argMax(build, computed_at) AS build FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16} AND tag IN ${tags} GROUP BY tag) AS st
        ON st.tag = toString(bm.tag) AND st.build = bm.build
      WHERE bm.tenant_id = {tenant:UInt16} AND bm.tag IN ${tags} AND bm.value != '*')`
  // Numbers are inlined only after the checks above; SETTINGS takes literals. The sample lists
  // only the first members of a large segment (bitmapSubsetLimit) instead of all of them; a
  // small set (at most 32 keys) is not kept in order, so it is sorted whole.
  const sql = `WITH ${values} AS bd
SELECT bitmapCardinality(seg) AS count, bitmapCardinality(universe) AS total,
       arraySlice(arraySort(bitmapToArray(if(bitmapCardinality(seg) > 32, bitmapSubsetLimit(seg, 0, ${Math.max(sampleSize, 1)}), seg))), 1, ${sampleSize}) AS sample,
       arrayFilter(x -> x.3 > 0, arrayMap(x -> (x.1, x.2, bitmapAndCardinality(x.3, seg)), bd)) AS breakdown
FROM (${compiled.sql})
SETTINGS max_execution_time = ${seconds}, max_memory_usage = ${memory}, timeout_overflow_mode = 'throw'`
  let row: z.infer<typeof resultRow> | undefined
  try {
    ;[row] = await db.query(sql, { ...compiled.params, ...b.params }, resultRow)
  } catch (e) {
    throw limitError(e, seconds, memory) ?? e
  }
  if (!row) throw new AppError('INTERNAL', 'The segment query returned no row.')
  const breakdown: Preview['breakdown'] = Object.fromEntries(breakdownTags.map((t) => [t, []]))
  for (const [tag, value, customers] of row.breakdown) breakdown[tag]?.push({ value, customers })
  for (const list of Object.values(breakdown)) list.sort((x, y) => y.customers - x.customers || x.value.localeCompare(y.value))
  return {
    count: row.count,
    total: row.total,
    share: row.total ? row.count / row.total : 0,
    breakdown,
    sample: row.sample,
    plan: compiled.plan,
    executor: 'clickhouse',
  }
}

async function previewInMemory(
  store: BitmapStore,
  db: TenantDb,
  segment: Segment,
  opts: CompileOptions,
  plan: Plan,
  breakdownTags: string[],
  sampleSize: number,
): Promise<Preview> {
  const { tags: leaves } = prepare(segment.rule, opts)
  const names = [...new Set([...leaves.values()].map((c) => c.leaf.tag)), ...breakdownTags]
  const snap = await store.snapshot(db, names)
  const seg = await evaluateInMemory(segment.rule, leaves, snap)
  const breakdown: Preview['breakdown'] = {}
  for (const tag of breakdownTags) {
    const list: { value: string; customers: number }[] = []
    for (const [value, keys] of snap.tags.get(tag)?.values ?? []) {
      const customers = keys.andCardinality(seg)
      if (customers > 0) list.push({ value, customers })
    }
    breakdown[tag] = list.sort((x, y) => y.customers - x.customers || x.value.localeCompare(y.value))
  }
  const total = snap.universe.size
  return {
    count: seg.size,
    total,
    share: total ? seg.size / total : 0,
    breakdown,
    sample: sampleSize ? [...seg.toUint32Array(sampleSize)] : [],
    plan,
    executor: 'memory',
  }
}

function checkBreakdownTag(tag: string, i: number, defs: ReadonlyMap<string, TagDefinition>, segment: Segment): void {
  const d = defs.get(tag)
  const field = `breakdown.${i}`
  if (!d) throw new AppError('VALIDATION_FAILED', `tag ${tag} is not defined`, { issues: [{ field, message: `tag ${tag} is not defined` }] })
  if (!d.purpose.includes(segment.purpose)) {
    const message = `tag ${tag} may be used for ${d.purpose.join(', ')}, not for a ${segment.purpose} segment`
    throw new AppError('VALIDATION_FAILED', message, { issues: [{ field, message }] })
  }
}

/** An exceeded limit as OVERLOADED naming the limit; undefined for any other failure. */
export function limitError(e: unknown, seconds: number, memory: number): AppError | undefined {
  const code = String((e as { code?: unknown })?.code ?? '')
  const text = errText(e)
  const byText = /TIMEOUT_EXCEEDED|Timeout exceeded|MEMORY_LIMIT_EXCEEDED|memory limit exceeded|TOO_SLOW/i.test(text)
  if (!LIMIT_CODES.has(code) && !byText) return undefined
  const memoryHit = code === '241' || /memory limit/i.test(text)
  const limit = memoryHit ? `max_memory_usage (${memory} bytes)` : `max_execution_time (${seconds} s)`
  return new AppError('OVERLOADED', `The segment query exceeded ${limit}; narrow the segment (shorter event windows, fewer event conditions) or retry later.`, {
    cause: e,
    issues: [{ field: memoryHit ? 'max_memory_usage' : 'max_execution_time', message: text.slice(0, 500) }],
  })
}
