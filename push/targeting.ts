import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { errText, isAppError, type ErrorCode, type ErrorIssue } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { localDate } from '../core/time.js'
import type { SegmentRepository } from '../segments/segment.repository.js'
import type { TagRepository } from '../tags/tag.repository.js'
import { ParamBinder } from '../core/params.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { PRIORITIES, type SavedCampaign } from './campaign.schema.js'
import type { CampaignRepository } from './campaign.repository.js'
import type { KeyedLock } from '../core/keyed-lock.js'
import type { PolicyRepository } from './policy.js'
import { occurrenceOf } from './schedule.js'
import { audienceBitmap, dateTriggerSql, openingProduct, scheduledAudience } from './targeting.audience.js'
import type { OpeningProduct } from './targeting.fields.js'
import { checkHoldoutParity, targetingSql, type AudienceSql } from './targeting.sql.js'
import { newRunId } from '../core/run-id.js'

/**
 * Targeting runs: for each due campaign of a tenant, its audience becomes targets in one
 * INSERT ... SELECT (targeting.sql.ts). Runs of a tenant, and event triggers, take the tenant's
 * lock: whether a (campaign, customer, date) has a target and how much of a customer's budget is
 * spent are read and then written, and two of those must not interleave. Campaigns run highest
 * priority class first, so a reminder claims the day's budget before a promotion does.
 */

export interface TargetingDeps {
  db: Db
  tenants: TenantService
  campaigns: CampaignRepository
  policies: PolicyRepository
  segments: SegmentRepository
  tags: TagRepository
  log: Logger
  metrics: Metrics
  lock: KeyedLock
  holdoutPerMille(tenantId: number): number | Promise<number>
  /** Called when targets were queued (the lease manager reads its queue again). */
  queued(tenantId: number): void
  /**
   * Ids of the campaigns among those given whose current version is approved (campaign.approval.ts);
   * a marketing campaign not among them is skipped as `not_approved`. Without it nothing is checked.
   */
  approved?(tenantId: number, campaigns: readonly SavedCampaign[]): Promise<Set<string>>
}

export interface CampaignRunResult {
  campaignId: string
  version: number
  /** Why nothing was targeted: paused, not_approved, not_yet, not_today, event_triggered, expired, no_product_opening. */
  skipped?: string
  localDate?: string
  /** Targets written by this run (queued + suppressed). */
  targeted: number
  queued: number
  suppressed: Record<string, number>
  /** Security messages released inside quiet hours. */
  quietExempt: number
  ms: number
}

/** A dry run: what targeting the campaign now would make, nothing written. */
export interface ReachResult {
  /** The local date targeted; `asIfToday`: the schedule has no occurrence today, so today's was assumed. */
  localDate: string
  asIfToday: boolean
  /** Customers of the audience not targeted yet for that date. */
  audience: number
  /** Those who would be queued. */
  reached: number
  /** Those left out, by reason (consent, holdout, control group, quiet hours, caps, missing field). */
  suppressed: Record<string, number>
  ms: number
}

export interface TargetingResult {
  runId: string
  asOf: string
  campaigns: CampaignRunResult[]
  errors: { campaignId: string; code: ErrorCode; message: string; issues?: ErrorIssue[] | undefined }[]
}

const countRow = z.object({ status: z.string(), reason: z.string(), n: z.coerce.number(), exempt: z.coerce.number() })

export function createTargeting(deps: TargetingDeps) {
  const { log } = deps
  const written = deps.metrics.counter('qianmian_push_targets_total', 'Targets written, by purpose and outcome (queued or the suppression reason)', ['purpose', 'outcome'])
  const seconds = deps.metrics.histogram('qianmian_push_targeting_seconds', 'Targeting one campaign', ['trigger'], [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60])
  const exempted = deps.metrics.counter('qianmian_push_quiet_exempt_total', 'Security messages released inside quiet hours')
  const parity = new Set<number>()

  type WriteSpec = { campaign: SavedCampaign; audience: AudienceSql; b: ParamBinder; asOf: Date; timeZone: string; runId: string; trigger: 'schedule' | 'event' | 'manual'; product?: OpeningProduct | undefined }

  /** The targeting statement of a campaign's audience, with the tenant's policy and holdout. */
  async function statement(db: TenantDb, o: WriteSpec) {
    const tenantId = db.tenantId
    if (!parity.has(tenantId)) {
      await checkHoldoutParity(db)
      parity.add(tenantId)
    }
    const [policy, holdout] = await Promise.all([deps.policies.get(tenantId), deps.holdoutPerMille(tenantId)])
    const spec = { tenantId, campaign: o.campaign, audience: o.audience, policy, timeZone: o.timeZone, now: o.asOf, today: localDate(o.asOf, o.timeZone), holdoutPerMille: holdout, runId: o.runId, trigger: o.trigger, product: o.product }
    return targetingSql(spec, o.b)
  }

  /** Writes one campaign's targets for an audience and counts what this run wrote. */
  async function write(db: TenantDb, o: WriteSpec): Promise<Pick<CampaignRunResult, 'targeted' | 'queued' | 'suppressed' | 'quietExempt'>> {
    const tenantId = db.tenantId
    const c = o.campaign
    const { sql, params } = await statement(db, o)
    const stop = seconds.startTimer({ trigger: o.trigger })
    await db.command(sql, params)
    stop()
    const rows = await db.query(
      `SELECT toString(status) AS status, reason, count() AS n, sum(quiet_exempt) AS exempt FROM push_targets
       WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} AND local_date BETWEEN {dfrom:Date} AND {dto:Date} AND run_id = {run:UInt64}
       GROUP BY status, reason`,
      { cid: c.id, dfrom: o.audience.dates.from, dto: o.audience.dates.to, run: o.runId },
      countRow,
    )
    const out = { targeted: 0, queued: 0, suppressed: {} as Record<string, number>, quietExempt: 0 }
    for (const r of rows) {
      out.targeted += r.n
      out.quietExempt += r.exempt
      if (r.status === 'queued') out.queued += r.n
      else out.suppressed[r.reason] = (out.suppressed[r.reason] ?? 0) + r.n
      written.inc({ purpose: c.purpose, outcome: r.status === 'queued' ? 'queued' : r.reason }, r.n)
    }
    if (out.quietExempt) {
      exempted.inc(out.quietExempt)
      log.info({ tenant: tenantId, campaign: c.id, runId: o.runId, exempt: out.quietExempt }, 'security messages released inside quiet hours')
    }
    if (out.queued) deps.queued(tenantId)
    return out
  }

  async function runOne(
    db: TenantDb,
    c: SavedCampaign,
    ctx: { asOf: Date; timeZone: string; defs: ReadonlyMap<string, TagDefinition>; runId: string; trigger: 'schedule' | 'manual'; approved: ReadonlySet<string> | null },
  ): Promise<CampaignRunResult> {
    const t0 = performance.now()
    const base = { campaignId: c.id, version: c.version, targeted: 0, queued: 0, suppressed: {}, quietExempt: 0 }
    const skip = (skipped: string, day?: string): CampaignRunResult => ({ ...base, skipped, ...(day ? { localDate: day } : {}), ms: 0 })
    if (c.status !== 'active') return skip(c.status)
    if (ctx.approved && c.purpose === 'marketing' && !ctx.approved.has(c.id)) return skip('not_approved')
    const occ = occurrenceOf(c.schedule, ctx.asOf, ctx.timeZone, c.ttlMinutes)
    if (!occ.due) return skip(occ.reason)
    if (c.validUntil && ctx.asOf.getTime() >= Date.parse(c.validUntil)) return skip('expired', occ.localDate)
    if (c.validFrom && localDate(new Date(c.validFrom), ctx.timeZone) > occ.localDate) return skip('not_yet', occ.localDate)
    const today = localDate(ctx.asOf, ctx.timeZone)
    let product: OpeningProduct | undefined
    if (c.dateTrigger?.on === 'product_opening') {
      product = await openingProduct(db, c.dateTrigger, today)
      if (!product) return skip('no_product_opening', occ.localDate)
    }
    const b = new ParamBinder('q')
    const bitmap = await audienceBitmap(c.audience, { db, segments: deps.segments, defs: ctx.defs, timeZone: ctx.timeZone, asOf: ctx.asOf, purpose: c.purpose }, b)
    const trigger = c.dateTrigger ? dateTriggerSql(c.dateTrigger, today, b) : null
    const audience = scheduledAudience({ bitmap, trigger, schedule: c.schedule, localDate: occ.localDate, dueAt: occ.dueAt, timeZone: ctx.timeZone, asOf: ctx.asOf }, b)
    const counts = await write(db, { campaign: c, audience, b, asOf: ctx.asOf, timeZone: ctx.timeZone, runId: ctx.runId, trigger: ctx.trigger, product })
    return { ...base, ...counts, localDate: occ.localDate, ms: Number((performance.now() - t0).toFixed(1)) }
  }

  /**
   * A dry run of a campaign (saved or not): the same audience and the same rules as a run, in
   * the same statement, counted instead of written. A schedule without an occurrence today is
   * counted as if it had one, due now. Reads only, so it takes no lock.
   */
  async function reach(tenantId: number, c: SavedCampaign, opts: { asOf?: Date } = {}): Promise<ReachResult> {
    const t0 = performance.now()
    const asOf = opts.asOf ?? new Date()
    const [tenant, tags] = await Promise.all([deps.tenants.get(tenantId), deps.tags.list(tenantId)])
    const timeZone = tenant.timeZone
    const today = localDate(asOf, timeZone)
    const occ = occurrenceOf(c.schedule, asOf, timeZone, c.ttlMinutes)
    const day = occ.due ? occ.localDate : today
    const db = deps.db.forTenant(tenantId)
    const b = new ParamBinder('q')
    const defs = new Map<string, TagDefinition>(tags.map((d) => [d.name, d]))
    const bitmap = await audienceBitmap(c.audience, { db, segments: deps.segments, defs, timeZone, asOf, purpose: c.purpose }, b)
    const product = c.dateTrigger?.on === 'product_opening' ? await openingProduct(db, c.dateTrigger, today) : undefined
    const trigger = c.dateTrigger ? dateTriggerSql(c.dateTrigger, today, b) : null
    const audience = scheduledAudience({ bitmap, trigger, schedule: c.schedule, localDate: day, dueAt: occ.due ? occ.dueAt : asOf, timeZone, asOf }, b)
    const { decided, params } = await statement(db, { campaign: c, audience, b, asOf, timeZone, runId: '0', trigger: 'manual', product })
    const rows = await db.query(`SELECT reason, count() AS n FROM (${decided}) GROUP BY reason`, params, z.object({ reason: z.string(), n: z.coerce.number() }))
    const out: ReachResult = { localDate: day, asIfToday: !occ.due, audience: 0, reached: 0, suppressed: {}, ms: 0 }
    for (const r of rows) {
      out.audience += r.n
      if (r.reason === '') out.reached += r.n
      else out.suppressed[r.reason] = r.n
    }
    return { ...out, ms: Number((performance.now() - t0).toFixed(1)) }
  }

  /**
   * Targets the tenant's due scheduled campaigns (or those named) as of `asOf`. Safe to call
   * as often as wanted: a (campaign, customer, date) is targeted once. One failing campaign is
   * reported in `errors` and does not stop the others.
   */
  async function runTargeting(
    tenantId: number,
    opts: { asOf?: Date; campaignIds?: string[]; trigger?: 'schedule' | 'manual'; /** Aborted when the run's lease was lost: no further campaign is begun. */ signal?: AbortSignal } = {},
  ): Promise<TargetingResult> {
    const asOf = opts.asOf ?? new Date()
    const runId = newRunId()
    const out: TargetingResult = { runId, asOf: asOf.toISOString(), campaigns: [], errors: [] }
    const [tenant, list, tags] = await Promise.all([deps.tenants.get(tenantId), deps.campaigns.list(tenantId), deps.tags.list(tenantId)])
    const wanted = opts.campaignIds ? new Set(opts.campaignIds) : undefined
    const campaigns = list
      .filter((c) => (wanted ? wanted.has(c.id) : c.schedule.kind !== 'event'))
      .sort((a, b) => PRIORITIES.indexOf(b.priority) - PRIORITIES.indexOf(a.priority) || a.id.localeCompare(b.id))
    for (const id of wanted ?? []) if (!list.some((c) => c.id === id)) out.errors.push({ campaignId: id, code: 'NOT_FOUND', message: `No campaign ${id}.` })
    const defs = new Map<string, TagDefinition>(tags.map((d) => [d.name, d]))
    const db = deps.db.forTenant(tenantId)
    const approved = deps.approved ? await deps.approved(tenantId, campaigns) : null
    await deps.lock.run(tenantId, async () => {
      for (const c of campaigns) {
        opts.signal?.throwIfAborted()
        try {
          out.campaigns.push(await runOne(db, c, { asOf, timeZone: tenant.timeZone, defs, runId, trigger: opts.trigger ?? 'schedule', approved }))
        } catch (e) {
          log.warn({ tenant: tenantId, campaign: c.id, err: errText(e) }, 'push targeting failed')
          out.errors.push({ campaignId: c.id, code: isAppError(e) ? e.code : 'INTERNAL', message: errText(e), ...(isAppError(e) && e.issues ? { issues: [...e.issues] } : {}) })
        }
      }
    })
    return out
  }

  return { runTargeting, write, reach }
}

export type Targeting = ReturnType<typeof createTargeting>
