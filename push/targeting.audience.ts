import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { MERGE_ARRAYS_SQL, survivorRowsSql, survivorsBitmapSql } from '../core/identity.sql.js'
import { addDays, chDateTime, daysBetween } from '../core/time.js'
import { compileSegment } from '../segments/segment.compile.js'
import type { SegmentRepository } from '../segments/segment.repository.js'
import { parseSegment } from '../segments/segment.schema.js'
import { COMPLETE_BUILDS } from '../segments/segment.materialize.js'
import type { ParamBinder } from '../core/params.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import type { Audience, DateTrigger, PushPurpose, Schedule } from './campaign.schema.js'
import { wallClockSql, type AudienceSql } from './targeting.sql.js'
import type { OpeningProduct } from './targeting.fields.js'

/**
 * Who a campaign reaches, as SQL the targeting query reads: the audience bitmap (a saved
 * segment's materialized build when it is current, else the segment compiled now; an inline
 * rule compiled now; or every customer), narrowed by a date trigger, with each customer's due
 * time (the occurrence's, or their usual active hour).
 */

/** Which segment purposes a campaign of each purpose may target. */
export const SEGMENT_PURPOSES: Record<PushPurpose, readonly string[]> = {
  marketing: ['marketing'],
  service: ['service'],
  security: ['security', 'risk'],
}

export interface AudienceContext {
  db: TenantDb
  segments: SegmentRepository
  defs: ReadonlyMap<string, TagDefinition>
  timeZone: string
  asOf: Date
  purpose: PushPurpose
}

const buildRow = z.object({ build: z.coerce.string(), version: z.coerce.number() })

/**
 * SQL of one row with `seg`, the audience bitmap (AggregateFunction(groupBitmap, UInt32)), in
 * which a customer merged into another is its survivor: a key merged away is never a target, and
 * a materialized build made before a merge (or its undo) is read as the merges stand now.
 */
export async function audienceBitmap(a: Audience, ctx: AudienceContext, b: ParamBinder): Promise<string> {
  const seg = await keysBitmap(a, ctx, b)
  return `SELECT ${survivorsBitmapSql('au.seg', 'mg')} AS seg FROM (${seg}) AS au CROSS JOIN ${MERGE_ARRAYS_SQL} AS mg`
}

/** The audience's bitmap by the keys its source holds. */
async function keysBitmap(a: Audience, ctx: AudienceContext, b: ParamBinder): Promise<string> {
  if (a.all) return `SELECT groupBitmapState(customer_key) AS seg FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0`
  const tenantId = ctx.db.tenantId
  let rule = a.rule
  let purpose: string = ctx.purpose
  if (a.segment) {
    const s = await ctx.segments.get(tenantId, a.segment)
    if (!SEGMENT_PURPOSES[ctx.purpose].includes(s.purpose)) {
      throw new AppError('VALIDATION_FAILED', `Segment ${s.id} is a ${s.purpose} segment; a ${ctx.purpose} campaign cannot target it.`, {
        issues: [{ field: 'audience.segment', message: `purpose ${s.purpose} does not fit ${ctx.purpose}` }],
      })
    }
    // The materialized build answers when it was made by the segment's current version; complete
    // builds only (their run is recorded last: segments/segment.materialize.ts).
    const [cur] = await ctx.db.query(
      `SELECT toString(build) AS build, version FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = {sid:String}
         AND build IN ${COMPLETE_BUILDS} ORDER BY build DESC LIMIT 1`,
      { sid: s.id },
      buildRow,
    )
    if (cur && cur.version === s.version) {
      return `SELECT keys AS seg FROM segment_members WHERE tenant_id = {tenant:UInt16} AND segment_id = ${b.str(s.id)} AND build = ${b.bind('UInt64', cur.build)}`
    }
    rule = s.rule
    purpose = s.purpose
  }
  const expanded = await ctx.segments.expanded(tenantId, rule)
  const compiled = compileSegment(parseSegment({ purpose, rule: expanded }), { defs: ctx.defs, asOf: ctx.asOf, timeZone: ctx.timeZone })
  Object.assign(b.params, compiled.params)
  return `SELECT seg FROM (${compiled.sql})`
}

/** Customers a date trigger holds for on `today` (a subquery of customer_key), or null (product openings hold for all). */
export function dateTriggerSql(t: DateTrigger, today: string, b: ParamBinder): string | null {
  const day = (n: number) => b.bind('Date32', addDays(today, n))
  switch (t.on) {
    case 'birthday': {
      // The birthday of 29 February falls on 1 March in other years, as the age features say.
      // A key merged away holds here, but never in the audience bitmap: the survivor's own
      // birth date decides.
      const birth = 'assumeNotNull(birth_date)'
      const d = day(0)
      return `SELECT customer_key FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0 AND birth_date IS NOT NULL
        AND addDays(makeDate32(toYear(${d}), toMonth(${birth}), 1), toDayOfMonth(${birth}) - 1) = ${d}`
    }
    // Installments and bills of a customer merged into another remind the survivor: the next
    // one due is the earliest of either key's.
    case 'loan_due':
      return `SELECT customer_key FROM ${survivorRowsSql('loan_schedules', ['due_date'], `x.status != 'paid' AND x.due_date >= ${day(0)}`, { final: true })}
        GROUP BY customer_key HAVING min(due_date) = ${day(t.daysBefore)}`
    case 'bill_due':
      return `SELECT customer_key FROM ${survivorRowsSql('bills', ['due_date'], `x.status = 'unpaid' AND x.due_date >= ${day(0)}`, { final: true })}
        GROUP BY customer_key HAVING min(due_date) = ${day(t.daysBefore)}`
    case 'tag_date':
      // Date tags keep days since 1970 in `num`.
      return `SELECT customer_key FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = ${b.str(t.tag)} AND is_deleted = 0
        AND num = ${b.bind('Float64', daysBetween('1970-01-01', addDays(today, t.daysBefore)))}`
    case 'product_opening':
      return null
  }
}

const productRow = z.object({ product_id: z.string(), name_zh: z.string(), name_en: z.string(), opening: z.string(), annual_rate: z.coerce.number() })

/** The product of the kind opening `daysBefore` days after today (the first by id), if any. */
export async function openingProduct(db: TenantDb, t: Extract<DateTrigger, { on: 'product_opening' }>, today: string): Promise<OpeningProduct | undefined> {
  const [p] = await db.query(
    `SELECT product_id, name_zh, name_en, toString(valid_from) AS opening, annual_rate FROM products FINAL
     WHERE tenant_id = {tenant:UInt16} AND kind = {kind:String} AND status = 'active' AND valid_from = {day:Date32}
     ORDER BY product_id LIMIT 1`,
    { kind: t.productKind, day: addDays(today, t.daysBefore) },
    productRow,
  )
  return p && { productId: p.product_id, nameZh: p.name_zh, nameEn: p.name_en, openingDate: p.opening, annualRate: p.annual_rate }
}

/**
 * The audience of a scheduled occurrence on `localDate`: due at `dueAt`, or (active_hour) at the
 * local hour each customer was most often active in the last `lookbackDays` days.
 */
export function scheduledAudience(
  o: { bitmap: string; trigger: string | null; schedule: Schedule; localDate: string; dueAt: Date | null; timeZone: string; asOf: Date },
  b: ParamBinder,
): AudienceSql {
  const keys = `SELECT arrayJoin(bitmapToArray(seg)) AS customer_key FROM (${o.bitmap})`
  const where = (col: string) => (o.trigger ? `WHERE ${col} IN (${o.trigger})` : '')
  const occ = b.bind('Date', o.localDate)
  if (o.schedule.kind === 'active_hour') {
    const since = b.bind(`DateTime64(3, 'UTC')`, chDateTime(o.asOf.getTime() - o.schedule.lookbackDays * 86_400_000))
    const hours = `SELECT customer_key, argMax(h, n) AS hour, toUInt8(1) AS present FROM (
        SELECT customer_key, toHour(timestamp, {tz:String}) AS h, count() AS n FROM events
        WHERE tenant_id = {tenant:UInt16} AND customer_key != 0 AND timestamp >= ${since} AND timestamp < {now:DateTime64(3, 'UTC')}
        GROUP BY customer_key, h) GROUP BY customer_key`
    const hour = `if(ah.present = 1, ah.hour, ${b.bind('UInt8', o.schedule.fallbackHour)})`
    // The hour on the local clock of that day: on a day the clocks change it is not that many
    // hours after local midnight.
    const due = wallClockSql(occ, `concat(leftPad(toString(${hour}), 2, '0'), ':00')`)
    return {
      sql: `SELECT k.customer_key AS customer_key, ${occ} AS occ_date, ${due} AS due_base, '' AS no_hint
        FROM (${keys}) AS k LEFT JOIN (${hours}) AS ah ON ah.customer_key = k.customer_key ${where('k.customer_key')}`,
      dates: { from: o.localDate, to: o.localDate },
    }
  }
  if (!o.dueAt) throw new AppError('INTERNAL', 'A scheduled occurrence without a due time.')
  const due = b.bind(`DateTime64(3, 'UTC')`, chDateTime(o.dueAt))
  return {
    sql: `SELECT customer_key, ${occ} AS occ_date, ${due} AS due_base, '' AS no_hint FROM (${keys}) ${where('customer_key')}`,
    dates: { from: o.localDate, to: o.localDate },
  }
}
