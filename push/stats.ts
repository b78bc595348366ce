import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { resolvedEventsSql } from '../core/identity.sql.js'
import { measureConditionSql } from '../tags/tag.measures.js'
import { ParamBinder } from '../core/params.js'
import type { SavedCampaign } from './campaign.schema.js'
import { variantStats, type VariantStats } from './stats.variants.js'

/**
 * What a campaign did, and its targets page by page.
 *
 * Funnel: targeted (every target row, suppressed ones included), queued, suppressed by reason,
 * sent (the notification service acknowledged delivery to its channel), failed, and from the
 * events the app sends back through ingest (`push_delivered`, `push_opened`, `push_clicked`
 * with a `target_id` property): delivered, opened, clicked. Conversion, when the campaign names
 * a goal event: a target converts when its customer does the goal within `withinHours` after
 * the target's due time; uplift compares the rate of the queued targets with that of the
 * customers kept out by the global holdout and by the campaign's control group, measured the
 * same way from when they would have been due. Targeting records those two reasons only for
 * customers nothing else kept the message from (targeting.sql.ts), so the three groups are alike
 * but for the message. Per variant (stats.variants.ts) only queued targets are compared, which
 * that order does not change.
 */

const FEEDBACK = ['push_delivered', 'push_opened', 'push_clicked'] as const

export interface CampaignStats {
  campaignId: string
  targeted: number
  queued: number
  suppressed: Record<string, number>
  sent: number
  failed: number
  /** Queued targets closed at pull because the customer withdrew consent after targeting. */
  withdrawn: number
  delivered: number
  opened: number
  clicked: number
  conversion: null | {
    event: string[]
    withinHours: number
    groups: Record<'treated' | 'holdout' | 'control', { customers: number; converted: number; rate: number | null }>
    /** Treated rate minus the holdout's (or the control group's), in rate points. */
    upliftVsHoldout: number | null
    upliftVsControl: number | null
  }
  /** The same funnel per message variant, with rates and intervals (stats.variants.ts); empty without variants. */
  variants: VariantStats[]
}

const n = z.coerce.number()

export async function campaignStats(db: TenantDb, c: SavedCampaign): Promise<CampaignStats> {
  const cid = { cid: c.id }
  const TARGETS = `SELECT target_id FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String}`
  const [counts, outcomes, feedback, since] = await Promise.all([
    db.query(
      `SELECT toString(status) AS status, reason, uniqExact(target_id) AS n FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} GROUP BY status, reason`,
      cid,
      z.object({ status: z.string(), reason: z.string(), n }),
    ),
    db.query(
      // A target ends once: a repeated or contradicting ack, or a late ack of a target closed at
      // pull, leaves a second final row, and the latest decides (as in the list of targets).
      `SELECT status, count() AS n FROM (SELECT target_id, argMax(toString(status), at) AS status FROM push_outcomes
       WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} AND final = 1 GROUP BY target_id) GROUP BY status`,
      cid,
      z.object({ status: z.string(), n }),
    ),
    db.query(
      `SELECT event, uniqExact(JSONExtractString(properties, 'target_id')) AS n FROM events
       WHERE tenant_id = {tenant:UInt16} AND event IN {names:Array(String)}
         AND timestamp >= (SELECT min(created_at) FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String})
         AND JSONExtractString(properties, 'target_id') IN (${TARGETS})
       GROUP BY event`,
      { ...cid, names: [...FEEDBACK] },
      z.object({ event: z.string(), n }),
    ),
    db.query(`SELECT toString(min(due_at)) AS since FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String}`, cid, z.object({ since: z.string() })),
  ])
  const out: CampaignStats = { campaignId: c.id, targeted: 0, queued: 0, suppressed: {}, sent: 0, failed: 0, withdrawn: 0, delivered: 0, opened: 0, clicked: 0, conversion: null, variants: [] }
  for (const r of counts) {
    out.targeted += r.n
    if (r.status === 'queued') out.queued += r.n
    else out.suppressed[r.reason] = (out.suppressed[r.reason] ?? 0) + r.n
  }
  for (const r of outcomes) {
    if (r.status === 'delivered') out.sent = r.n
    else if (r.status === 'withdrawn') out.withdrawn = r.n
    else out.failed = r.n
  }
  const fb = new Map(feedback.map((r) => [r.event, r.n]))
  out.delivered = fb.get('push_delivered') ?? 0
  out.opened = fb.get('push_opened') ?? 0
  out.clicked = fb.get('push_clicked') ?? 0
  const from = since[0]?.since ?? '1970-01-01 00:00:00.000'
  if (c.conversion && out.targeted > 0) out.conversion = await conversion(db, c, from)
  out.variants = await variantStats(db, c, from)
  return out
}

async function conversion(db: TenantDb, c: SavedCampaign, since: string): Promise<NonNullable<CampaignStats['conversion']>> {
  const goal = c.conversion!
  const b = new ParamBinder('g')
  // One row per target (LIMIT 1 BY): copies a replacing merge has not yet folded count once.
  const cond = measureConditionSql({ id: '', role: 'count', events: goal.event.names ?? [], eventTypes: goal.event.types ?? [], where: goal.event.where ?? [], property: undefined }, b)
  const where = `timestamp >= ${b.bind(`DateTime64(3, 'UTC')`, since)} AND (${cond})`
  const rows = await db.query(
    `SELECT grp, count() AS customers, countIf(arrayExists(x -> x >= t.due_at AND x < t.due_at + toIntervalHour({hours:UInt32}), ev.ts)) AS converted
     FROM (SELECT customer_key, due_at, multiIf(status = 'queued', 'treated', reason = 'holdout', 'holdout', reason = 'control_group', 'control', '') AS grp
           FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} LIMIT 1 BY target_id) AS t
     LEFT JOIN (SELECT customer_key, groupArray(timestamp) AS ts FROM ${resolvedEventsSql(['timestamp', 'event', 'type', 'properties'], where)}
                GROUP BY customer_key) AS ev ON ev.customer_key = t.customer_key
     WHERE grp != ''
     GROUP BY grp`,
    { ...b.params, cid: c.id, hours: goal.withinHours },
    z.object({ grp: z.enum(['treated', 'holdout', 'control']), customers: n, converted: n }),
  )
  const group = (g: 'treated' | 'holdout' | 'control') => {
    const r = rows.find((x) => x.grp === g)
    return { customers: r?.customers ?? 0, converted: r?.converted ?? 0, rate: r && r.customers ? r.converted / r.customers : null }
  }
  const groups = { treated: group('treated'), holdout: group('holdout'), control: group('control') }
  const diff = (o: { rate: number | null }) => (groups.treated.rate === null || o.rate === null ? null : Number((groups.treated.rate - o.rate).toFixed(6)))
  return { event: goal.event.names ?? [], withinHours: goal.withinHours, groups, upliftVsHoldout: diff(groups.holdout), upliftVsControl: diff(groups.control) }
}

// --- targets, page by page ------------------------------------------------------------------------

export const TARGET_STATUSES = ['suppressed', 'scheduled', 'due', 'leased', 'delivered', 'failed', 'withdrawn', 'expired'] as const
export type TargetStatus = (typeof TARGET_STATUSES)[number]

export interface TargetView {
  targetId: string
  customerNo: string
  localDate: string
  status: TargetStatus
  reason: string
  dueAt: string
  expiresAt: string
  language: string
  variant: string
  /** The message variant (A/B); empty without variants. */
  messageVariant: string
  title: string
  body: string
  quietExempt: boolean
  createdAt: string
}

const viewRow = z.object({
  target_id: z.string(),
  customer_no: z.string(),
  day: z.string(),
  customer_key: n,
  st: z.enum(TARGET_STATUSES),
  why: z.string(),
  due_s: z.string(),
  expires_s: z.string(),
  language: z.string(),
  variant_s: z.string(),
  message_variant: z.string(),
  title: z.string(),
  body: z.string(),
  quiet_exempt: n,
  created_s: z.string(),
})

const CURSOR = /^(\d{4}-\d{2}-\d{2}):(\d{1,10})$/
const iso = (s: string) => `${s.replace(' ', 'T')}Z`

/**
 * Targets of a campaign in (local date, customer key) order, `limit` after `cursor` (the previous
 * page's nextCursor), optionally of one status. The status is derived: suppressed; else the
 * final outcome (delivered, failed); else leased while a lease runs; else expired, scheduled
 * (not yet due) or due.
 */
export async function listTargets(db: TenantDb, campaignId: string, o: { status?: TargetStatus | undefined; cursor?: string | undefined; limit: number }) {
  const m = o.cursor === undefined ? null : CURSOR.exec(o.cursor)
  if (o.cursor !== undefined && !m) throw new AppError('VALIDATION_FAILED', 'cursor: the nextCursor of a previous page', { issues: [{ field: 'cursor', message: 'invalid' }] })
  // Without a status filter the page is cut before the joins; with one, after them.
  const cut = o.status ? '' : 'LIMIT {limit:UInt32}'
  const rows = await db.query(
    `SELECT t.target_id AS target_id, t.customer_no AS customer_no, toString(t.local_date) AS day, t.customer_key AS customer_key,
            multiIf(t.status = 'suppressed', 'suppressed', o.present = 1, o.outcome, l.until > now64(3), 'leased',
                    t.expires_at <= now64(3), 'expired', t.due_at > now64(3), 'scheduled', 'due') AS st,
            if(st IN ('delivered', 'failed', 'withdrawn'), o.outcome_reason, t.reason) AS why, toString(t.due_at) AS due_s, toString(t.expires_at) AS expires_s,
            t.language AS language, toString(t.variant) AS variant_s, t.message_variant AS message_variant, t.title AS title, t.body AS body, t.quiet_exempt AS quiet_exempt, toString(t.created_at) AS created_s
     FROM (SELECT * FROM push_targets WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String}
             AND (local_date, customer_key) > ({cdate:Date}, {ckey:UInt32})
           ORDER BY local_date, customer_key LIMIT 1 BY local_date, customer_key ${cut}) AS t
     LEFT JOIN (SELECT target_id, argMax(toString(status), at) AS outcome, argMax(reason, at) AS outcome_reason, toUInt8(1) AS present FROM push_outcomes
                WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} AND final = 1 GROUP BY target_id) AS o ON o.target_id = t.target_id
     LEFT JOIN (SELECT target_id, argMax(lease_until, leased_at) AS until FROM push_leases
                WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} GROUP BY target_id) AS l ON l.target_id = t.target_id
     WHERE ({status:String} = '' OR st = {status:String})
     ORDER BY t.local_date, t.customer_key
     LIMIT {limit:UInt32}`,
    { cid: campaignId, cdate: m ? m[1] : '1970-01-01', ckey: m ? Number(m[2]) : 0, status: o.status ?? '', limit: o.limit + 1 },
    viewRow,
  )
  const more = rows.length > o.limit
  const page = more ? rows.slice(0, o.limit) : rows
  const lastRow = page[page.length - 1]
  return {
    targets: page.map(
      (r): TargetView => ({
        targetId: r.target_id,
        customerNo: r.customer_no,
        localDate: r.day,
        status: r.st,
        reason: r.why,
        dueAt: iso(r.due_s),
        expiresAt: iso(r.expires_s),
        language: r.language,
        variant: r.variant_s,
        messageVariant: r.message_variant,
        title: r.title,
        body: r.body,
        quietExempt: r.quiet_exempt === 1,
        createdAt: iso(r.created_s),
      }),
    ),
    nextCursor: more && lastRow ? `${lastRow.day}:${lastRow.customer_key}` : null,
  }
}
