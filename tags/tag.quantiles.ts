import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { ParamBinder } from '../core/params.js'
import { profileStage, quantileCutsSql, zeroWhenAbsent, type Band, type Cuts, type StageQuery } from './tag.queries.js'
import type { ScoreRule, TagDefinition } from './tag.schema.js'

/**
 * Quantile scores kept up without ranking every customer again. A score is
 * 1 + the cut points its input is beyond (tag.queries.ts quantileCutsSql), so between two runs a
 * customer's score can change only when their input changed or a cut point moved across it. A
 * run computes the cut points (one sorted pass over the input), and when the score's stored
 * values are those of the cut points its state records, stages and compares only the customers
 * whose input changed in the run or lies between a cut point's old and new place.
 */

/** A quantile score's cut points over every customer, as the run sees them now. */
export async function quantileCuts(db: TenantDb, d: TagDefinition, known: ReadonlyMap<string, TagDefinition>, asOf: boolean, params: Record<string, unknown>): Promise<Cuts> {
  const b = new ParamBinder('q')
  const [row] = await db.query(`SELECT ${quantileCutsSql(d, known, asOf, b)} AS cuts`, { ...params, ...b.params }, z.object({ cuts: z.array(z.number().nullable()) }))
  return row!.cuts
}

/**
 * The inputs whose pass of some cut point differs between `was` and `now`, as intervals: for an
 * ascending score (lo, hi], for a descending one [lo, hi); a NULL end is unbounded.
 */
export function cutBands(was: Cuts, now: Cuts, descending: boolean): { lo: (number | null)[]; hi: (number | null)[] } {
  const lo: (number | null)[] = []
  const hi: (number | null)[] = []
  now.forEach((c, k) => {
    const w = was[k] ?? null
    if (w === c) return
    if (w === null || c === null) {
      const v = (w ?? c)!
      // A NULL cut is passed by every input: the band is everything the other cut is not passed by.
      lo.push(descending ? v : null)
      hi.push(descending ? null : v)
    } else {
      lo.push(Math.min(w, c))
      hi.push(Math.max(w, c))
    }
  })
  return { lo, hi }
}

function inBand(x: number, lo: number | null, hi: number | null, descending: boolean): boolean {
  return descending ? (lo === null || x >= lo) && (hi === null || x < hi) : (lo === null || x > lo) && (hi === null || x <= hi)
}

/**
 * The customers (a predicate on `{key}`) whose input lies in one of the bands: those with a value
 * of the input tag there, and, for an input that counts as 0 when absent, those without one when 0
 * is in a band. (A missing input is bucket 1 whatever the cut points are.)
 */
export function bandSql(input: TagDefinition, bands: { lo: (number | null)[]; hi: (number | null)[] }, descending: boolean): Band | undefined {
  if (!bands.lo.length) return undefined
  const inside = descending ? '(isNull(lo) OR num >= lo) AND (isNull(hi) OR num < hi)' : '(isNull(lo) OR num > lo) AND (isNull(hi) OR num <= hi)'
  const values = `SELECT customer_key FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {qb_tag:String} AND is_deleted = 0`
  const parts = [
    `{key} IN (${values} AND arrayExists((lo, hi) -> ${inside}, {qb_lo:Array(Nullable(Float64))}, {qb_hi:Array(Nullable(Float64))}))`,
  ]
  if (zeroWhenAbsent(input) && bands.lo.some((lo, i) => inBand(0, lo, bands.hi[i]!, descending))) parts.push(`{key} NOT IN (${values})`)
  return { sql: `(${parts.join(' OR ')})`, params: { qb_tag: input.name, qb_lo: bands.lo, qb_hi: bands.hi } }
}

export interface ScoreNarrowing {
  inputs: string[]
  band?: Band
}

/**
 * Whether a quantile score can be computed for some customers only, and for whom: `changed` is
 * what the tag's freshness says (its input alone moved, changed by this run); the state must
 * record the cut points its values were computed with, and no run but this one may have written
 * the score's or its input's values since (a run cut short after writing them left cut points
 * that no longer describe them).
 */
export async function scoreNarrowing(
  db: TenantDb,
  d: TagDefinition,
  o: {
    known: ReadonlyMap<string, TagDefinition>
    changed: { inputs: string[]; customers: boolean } | undefined
    state: { run_id: string; cuts: readonly (number | null)[] } | undefined
    cuts: Cuts
    runId: string
  },
): Promise<ScoreNarrowing | undefined> {
  const r = d.rule as ScoreRule
  const input = r.method === 'quantile' && r.input && 'tag' in r.input ? o.known.get(r.input.tag) : undefined
  if (!input || !o.changed || o.changed.customers || !o.state || o.state.cuts.length !== o.cuts.length) return undefined
  const [w] = await db.query(
    `SELECT toString(max(run_id)) AS r FROM tag_values WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND run_id != {run:UInt64}`,
    { tags: [d.name, input.name], run: o.runId },
    z.object({ r: z.string() }),
  )
  if (BigInt(w?.r ?? '0') > BigInt(o.state.run_id)) return undefined
  const band = bandSql(input, cutBands(o.state.cuts, o.cuts, r.descending), r.descending)
  return { inputs: o.changed.inputs, ...(band ? { band } : {}) }
}

/**
 * A quantile score's stage for a run: its cut points now, and, when `scoreNarrowing` allows it,
 * the customers whose input changed or a moved cut point reached alone (`narrowed`: whom the
 * comparison is limited to); otherwise every customer.
 */
export async function quantileStage(
  db: TenantDb,
  d: TagDefinition,
  o: {
    known: ReadonlyMap<string, TagDefinition>
    asOf: boolean
    params: Record<string, unknown>
    changed: { inputs: string[]; customers: boolean } | undefined
    state: { run_id: string; cuts: readonly (number | null)[] } | undefined
    runId: string
  },
): Promise<{ query: StageQuery; cuts: Cuts; narrowed?: ScoreNarrowing }> {
  const cuts = await quantileCuts(db, d, o.known, o.asOf, o.params)
  const narrowed = await scoreNarrowing(db, d, { known: o.known, changed: o.changed, state: o.state, cuts, runId: o.runId })
  const by = narrowed ? { changed: narrowed.inputs, ...(narrowed.band ? { band: narrowed.band } : {}) } : {}
  return { query: profileStage([d], o.known, { asOf: o.asOf, cuts: new Map([[d.name, cuts]]), ...by }), cuts, ...(narrowed ? { narrowed } : {}) }
}
