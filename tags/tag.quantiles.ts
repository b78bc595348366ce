import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { ParamBinder } from '../core/params.js'
import { profileStage, quantileCutsSql, zeroWhenAbsent, type Band, type Cuts, type StageQuery } from './tag.queries.js'
import type { ScoreRule, TagDefinition } from './tag.schema.js'
import { changedBySql } from './tag.values.js'

/**
 * Quantile scores kept up without ranking every customer again. A score is
 * 1 + the cut points its input is beyond (tag.queries.ts quantileCutsSql), so between two runs a
 * customer's score can change only when their input changed or a cut point moved across it. A
 * run computes the cut points (one sorted pass over the input), and when the score's stored
 * values are those of the cut points its state records, stages and compares only the customers
 * whose input changed in the run or lies between a cut point's old and new place.
 */

/**
 * A quantile score's cut points over every customer, as the run sees them now, and the newest run
 * other than this one that wrote values of `written` (tags; '0' when none did).
 */
export async function quantileCuts(
  db: TenantDb,
  d: TagDefinition,
  known: ReadonlyMap<string, TagDefinition>,
  asOf: boolean,
  params: Record<string, unknown>,
  written: readonly string[] = [],
): Promise<{ cuts: Cuts; written: string }> {
  const b = new ParamBinder('q')
  const last = `(SELECT toString(max(run_id)) FROM tag_values WHERE tenant_id = {tenant:UInt16} AND tag IN ${b.strs(written)} AND run_id != {run:UInt64})`
  const [row] = await db.query(
    `SELECT ${quantileCutsSql(d, known, asOf, b)} AS cuts, ${last} AS written`,
    { run: '0', ...params, ...b.params },
    z.object({ cuts: z.array(z.number().nullable()), written: z.string() }),
  )
  return row!
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
  /** The input tag and the bands between the cut points' old and new places (none when no cut point moved). */
  input: TagDefinition
  bands: { lo: (number | null)[]; hi: (number | null)[] }
  descending: boolean
}

/**
 * Whether a quantile score can be computed for some customers only, and for whom: `changed` is
 * what the tag's freshness says (its input alone moved, changed by this run); the state must
 * record the cut points its values were computed with, and no run but this one may have written
 * the score's or its input's values since (`written`: a run cut short after writing them left
 * cut points that no longer describe them).
 */
export function scoreNarrowing(
  d: TagDefinition,
  o: {
    known: ReadonlyMap<string, TagDefinition>
    changed: { inputs: string[]; customers: boolean } | undefined
    state: { run_id: string; cuts: readonly (number | null)[] } | undefined
    cuts: Cuts
    written: string
  },
): ScoreNarrowing | undefined {
  const r = d.rule as ScoreRule
  const input = quantileInput(d, o.known)
  if (!input || !o.changed || o.changed.customers || !o.state || o.state.cuts.length !== o.cuts.length) return undefined
  if (BigInt(o.written) > BigInt(o.state.run_id)) return undefined
  return { inputs: o.changed.inputs, input, bands: cutBands(o.state.cuts, o.cuts, r.descending), descending: r.descending }
}

/** A quantile score's input, when it is a tag. */
function quantileInput(d: TagDefinition, known: ReadonlyMap<string, TagDefinition>): TagDefinition | undefined {
  const r = d.rule
  return r.kind === 'score' && r.method === 'quantile' && r.input && 'tag' in r.input ? known.get(r.input.tag) : undefined
}

/**
 * The customers narrowed quantile scores are compared for, as one predicate on `{key}` and the
 * value's `tag`: per score, those whose input this run changed. The customers a moved cut point
 * reached are staged but not read back: each of them changes bucket (cut points are ordered, so
 * no two of them cross one input in opposite directions), and a staged value without a current
 * one to compare with is written as the change it is.
 */
export function narrowedScoresSql(scores: readonly { tag: string; narrowed: ScoreNarrowing }[]): Band {
  const params: Record<string, unknown> = {}
  const parts = scores.map(({ tag, narrowed: n }, i) => {
    params[`qn${i}_t`] = tag
    params[`qn${i}_in`] = n.inputs
    return `(tag = {qn${i}_t:String} AND ${changedBySql(`{qn${i}_in:Array(String)}`)})`
  })
  return { sql: `(${parts.join(' OR ')})`, params }
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
  },
): Promise<{ query: StageQuery; cuts: Cuts; narrowed?: ScoreNarrowing }> {
  const input = quantileInput(d, o.known)
  const { cuts, written } = await quantileCuts(db, d, o.known, o.asOf, o.params, input ? [d.name, input.name] : [])
  const narrowed = scoreNarrowing(d, { known: o.known, changed: o.changed, state: o.state, cuts, written })
  const band = narrowed && bandSql(narrowed.input, narrowed.bands, narrowed.descending)
  const by = narrowed ? { changed: narrowed.inputs, ...(band ? { band } : {}) } : {}
  return { query: profileStage([d], o.known, { asOf: o.asOf, cuts: new Map([[d.name, cuts]]), ...by }), cuts, ...(narrowed ? { narrowed } : {}) }
}
