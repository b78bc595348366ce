import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { resolvedEventsSql } from '../core/identity.sql.js'
import { ParamBinder } from '../core/params.js'
import { measureConditionSql } from '../tags/tag.measures.js'
import type { SavedCampaign } from './campaign.schema.js'

/**
 * The funnel of push/stats.ts per message variant (A/B), from the same rows: targets by
 * `message_variant`, their final outcomes, the app's feedback events naming their target id, and
 * the conversion goal within the window after each queued target's due time.
 *
 * Rates come with 95% Wilson score intervals (sound with small counts and rates near 0 or 1,
 * where the normal approximation gives bounds outside [0, 1]); each variant's difference from the
 * first (the baseline, "A") with Newcombe's hybrid score interval, which is built from the two
 * Wilson intervals. Everything is computed in the engine; a rate without a denominator is null.
 *
 * Click-through: sent targets (acknowledged as delivered to the channel) with a `push_clicked`
 * event, over sent targets. Conversion: queued targets whose customer did the goal in the window,
 * over queued targets (the customers who were sent this variant).
 */

export interface Rate {
  /** Numerator and denominator. */
  count: number
  of: number
  rate: number | null
  low: number | null
  high: number | null
}
export interface RateDiff {
  /** This variant's rate minus the baseline's, in rate points. */
  diff: number | null
  low: number | null
  high: number | null
}
export interface VariantStats {
  variant: string
  /** Its weight in the campaign's current split; null when the campaign no longer has it. */
  weight: number | null
  targeted: number
  queued: number
  suppressed: number
  sent: number
  failed: number
  withdrawn: number
  delivered: number
  opened: number
  clicked: number
  clickThrough: Rate
  /** Null when the campaign names no conversion goal. */
  conversion: Rate | null
  /** Null for the baseline itself. */
  vsBaseline: null | { clickThrough: RateDiff; conversion: RateDiff | null }
}

const FEEDBACK = ['push_delivered', 'push_opened', 'push_clicked'] as const
/** The normal quantile of a two-sided 95% interval. */
const Z = 1.959963984540054
const n = z.coerce.number()
const num = z.coerce.number().nullable()

/** Wilson's score interval of x successes in n as SQL, over column names this file owns. */
function wilson(x: string, nn: string): { rate: string; low: string; high: string } {
  const p = `(${x} / ${nn})`
  const centre = `(${p} + {z:Float64} * {z:Float64} / (2 * ${nn}))`
  const half = `({z:Float64} * sqrt(${p} * (1 - ${p}) / ${nn} + {z:Float64} * {z:Float64} / (4 * ${nn} * ${nn})))`
  const denom = `(1 + {z:Float64} * {z:Float64} / ${nn})`
  const when = (e: string) => `if(${nn} = 0, NULL, round(${e}, 6))`
  return { rate: when(p), low: when(`greatest(0, (${centre} - ${half}) / ${denom})`), high: when(`least(1, (${centre} + ${half}) / ${denom})`) }
}

/** Newcombe's interval of rate minus the baseline's (columns `<m>`, `<m>_lo`, `<m>_hi` and the baseline's `a_<m>...`). */
function newcombe(m: string): { diff: string; low: string; high: string } {
  const d = `(${m} - a_${m})`
  return {
    diff: `if(ord = 1, NULL, round(${d}, 6))`,
    low: `if(ord = 1, NULL, round(${d} - sqrt(pow(${m} - ${m}_lo, 2) + pow(a_${m}_hi - a_${m}, 2)), 6))`,
    high: `if(ord = 1, NULL, round(${d} + sqrt(pow(${m}_hi - ${m}, 2) + pow(a_${m} - a_${m}_lo, 2)), 6))`,
  }
}

const row = z.object({
  v: z.string(),
  weight: z.coerce.number(),
  known: n,
  targeted: n,
  queued: n,
  suppressed: n,
  sent: n,
  failed: n,
  withdrawn: n,
  delivered: n,
  opened: n,
  clicked: n,
  clicked_sent: n,
  converted: n,
  ctr: num,
  ctr_lo: num,
  ctr_hi: num,
  cr: num,
  cr_lo: num,
  cr_hi: num,
  d_ctr: num,
  d_ctr_lo: num,
  d_ctr_hi: num,
  d_cr: num,
  d_cr_lo: num,
  d_cr_hi: num,
})

/**
 * Per-variant results of a campaign, in the order of its variants, then any variant its targets
 * carry that it no longer has (a variant removed later). Empty for a campaign that never had
 * variants. `since`: the earliest due time of its targets (where goal events are looked for).
 */
export async function variantStats(db: TenantDb, c: SavedCampaign, since: string): Promise<VariantStats[]> {
  const current = c.variants ?? []
  const b = new ParamBinder('g')
  const goal = c.conversion
  const cond = goal
    ? measureConditionSql({ id: '', role: 'count', events: goal.event.names ?? [], eventTypes: goal.event.types ?? [], where: goal.event.where ?? [], property: undefined }, b)
    : '0'
  const goalEvents = goal
    ? `LEFT JOIN (SELECT customer_key, groupArray(timestamp) AS ts FROM ${resolvedEventsSql(['timestamp', 'event', 'type', 'properties'], `timestamp >= ${b.bind(`DateTime64(3, 'UTC')`, since)} AND (${cond})`)}
                  GROUP BY customer_key) AS ev ON ev.customer_key = t.k`
    : ''
  const converted = goal ? `arrayExists(x -> x >= t.due_at AND x < t.due_at + toIntervalHour({hours:UInt32}), ev.ts)` : '0'
  const targets = `push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String}`
  // A target is counted once, whatever copies a replacing merge has not yet folded, by its latest
  // final outcome (a repeated or contradicting ack leaves a second one, as in stats.ts).
  const counts = `SELECT t.v AS v, count() AS targeted, countIf(t.st = 'queued') AS queued, countIf(t.st = 'suppressed') AS suppressed,
        countIf(has(o.os, 'delivered')) AS sent, countIf(has(o.os, 'failed')) AS failed, countIf(has(o.os, 'withdrawn')) AS withdrawn,
        countIf(has(f.fb, 'push_delivered')) AS delivered, countIf(has(f.fb, 'push_opened')) AS opened, countIf(has(f.fb, 'push_clicked')) AS clicked,
        countIf(has(o.os, 'delivered') AND has(f.fb, 'push_clicked')) AS clicked_sent,
        countIf(t.st = 'queued' AND ${converted}) AS converted
      FROM (SELECT target_id, any(message_variant) AS v, any(toString(status)) AS st, any(customer_key) AS k, any(due_at) AS due_at FROM ${targets} GROUP BY target_id) AS t
      LEFT JOIN (SELECT target_id, [argMax(toString(status), at)] AS os FROM push_outcomes
                 WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} AND final = 1 GROUP BY target_id) AS o ON o.target_id = t.target_id
      LEFT JOIN (SELECT JSONExtractString(properties, 'target_id') AS tid, groupUniqArray(event) AS fb FROM events
                 WHERE tenant_id = {tenant:UInt16} AND event IN {names:Array(String)}
                   AND timestamp >= (SELECT min(created_at) FROM ${targets})
                   AND tid IN (SELECT target_id FROM ${targets})
                 GROUP BY tid) AS f ON f.tid = t.target_id
      ${goalEvents}
      GROUP BY v`
  // The variants listed: the campaign's, then those only its targets name.
  const listed = `SELECT ord, vs[ord] AS v, if(ord <= length({weights:Array(UInt8)}), {weights:Array(UInt8)}[ord], 0) AS weight, toUInt8(ord <= length({weights:Array(UInt8)})) AS known
      FROM (SELECT arrayConcat({vids:Array(String)}, arraySort(arrayFilter(x -> x != '' AND NOT has({vids:Array(String)}, x),
              (SELECT groupUniqArray(message_variant) FROM ${targets})))) AS vs)
      ARRAY JOIN arrayEnumerate(vs) AS ord`
  const ctr = wilson('clicked_sent', 'sent')
  const cr = wilson('converted', 'queued')
  const cols = ['targeted', 'queued', 'suppressed', 'sent', 'failed', 'withdrawn', 'delivered', 'opened', 'clicked', 'clicked_sent', 'converted'].map((x) => `c.${x} AS ${x}`).join(', ')
  const rated = `SELECT l.ord AS ord, l.v AS v, l.weight AS weight, l.known AS known, ${cols},
        ${ctr.rate} AS ctr, ${ctr.low} AS ctr_lo, ${ctr.high} AS ctr_hi, ${cr.rate} AS cr, ${cr.low} AS cr_lo, ${cr.high} AS cr_hi
      FROM (${listed}) AS l LEFT JOIN (${counts}) AS c ON c.v = l.v`
  const base = (m: string) =>
    [m, `${m}_lo`, `${m}_hi`].map((x, i) => `tupleElement(first_value(tuple(${m}, ${m}_lo, ${m}_hi)) OVER (ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING), ${i + 1}) AS a_${x}`).join(', ')
  const dctr = newcombe('ctr')
  const dcr = newcombe('cr')
  const sql = `SELECT *, ${dctr.diff} AS d_ctr, ${dctr.low} AS d_ctr_lo, ${dctr.high} AS d_ctr_hi, ${dcr.diff} AS d_cr, ${dcr.low} AS d_cr_lo, ${dcr.high} AS d_cr_hi
    FROM (SELECT *, ${base('ctr')}, ${base('cr')} FROM (${rated}))
    ORDER BY ord`
  const rows = await db.query(
    sql,
    { ...b.params, cid: c.id, names: [...FEEDBACK], vids: current.map((v) => v.id), weights: current.map((v) => v.weight), z: Z, hours: goal?.withinHours ?? 0 },
    row,
  )
  if (rows.length < 2 && !current.length) return []
  return rows.map((r, i) => ({
    variant: r.v,
    weight: r.known ? r.weight : null,
    targeted: r.targeted,
    queued: r.queued,
    suppressed: r.suppressed,
    sent: r.sent,
    failed: r.failed,
    withdrawn: r.withdrawn,
    delivered: r.delivered,
    opened: r.opened,
    clicked: r.clicked,
    clickThrough: { count: r.clicked_sent, of: r.sent, rate: r.ctr, low: r.ctr_lo, high: r.ctr_hi },
    conversion: goal ? { count: r.converted, of: r.queued, rate: r.cr, low: r.cr_lo, high: r.cr_hi } : null,
    vsBaseline:
      i === 0
        ? null
        : { clickThrough: { diff: r.d_ctr, low: r.d_ctr_lo, high: r.d_ctr_hi }, conversion: goal ? { diff: r.d_cr, low: r.d_cr_lo, high: r.d_cr_hi } : null },
  }))
}
