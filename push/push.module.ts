import type { FastifyInstance } from 'fastify'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { createSegmentRepository, type SegmentRepository } from '../segments/segment.repository.js'
import { createTagRepository, type TagRepository } from '../tags/tag.repository.js'
import type { Auth } from '../tenants/auth.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { registerApprovalRoutes } from './approval.routes.js'
import { createApprovals } from './campaign.approval.js'
import { campaignSegmentUses, campaignTagUses, createCampaignCheck } from './campaign.check.js'
import { createCampaignRepository, type CampaignRepository } from './campaign.repository.js'
import { MAX_TTL_MINUTES, type SavedCampaign } from './campaign.schema.js'
import { createWithdrawalIndex, type ConsentNoticeLike } from './consent.index.js'
import { createKeyedLock } from '../core/keyed-lock.js'
import { createLeaseManager, type LeaseManager, type LeaseOptions } from './lease.manager.js'
import { createRemoteLeases } from './lease.remote.js'
import type { ProcessChannel } from '../core/cluster-locks.js'
import type { KeyedLock } from '../core/keyed-lock.js'
import { createPolicyRepository, type PolicyRepository } from './policy.js'
import { registerPushPreviewRoutes } from './preview.routes.js'
import { registerPushRoutes } from './push.routes.js'
import { createTargeting, type TargetingResult } from './targeting.js'
import { isPersonalized } from './targeting.sql.js'
import { createTestSends } from './test-send.js'
import { createTriggers, type IncomingEvent, type TriggerResult } from './triggers.js'

/** The push scheduler wired from its dependencies; the composition roots build one. */
export interface PushModule {
  campaigns: CampaignRepository
  policies: PolicyRepository
  leases: LeaseManager
  routes(app: FastifyInstance, auth: Auth): void
  /**
   * Targets the tenant's due scheduled campaigns (all of them, or `campaignIds`) as of `asOf`
   * (default now). Idempotent per (campaign, customer, local date): call it after each tag and
   * segment run and on a timer; targets are due at their occurrence's time, not when made.
   */
  runTargeting(tenantId: number, opts?: { asOf?: Date; campaignIds?: string[]; signal?: AbortSignal }): Promise<TargetingResult>
  /** Event triggers over a batch of events the ingest path has stored; never throws. */
  onEvents(tenantId: number, events: readonly IncomingEvent[]): Promise<TriggerResult>
  /** Consent decisions recorded in this process: pulls stop handing out withdrawn targets at once. */
  consentChanged(tenantId: number, notices: readonly ConsentNoticeLike[]): void
  /** Waits for targeting, triggers and pulls in progress; later calls are refused. */
  close(): Promise<void>
}

export interface PushDeps {
  db: Db
  tenants: TenantService
  log: Logger
  metrics: Metrics
  /** The tags module's repository (one is made from `db` when absent). */
  tags?: TagRepository
  /** The segments module's repository (one is made from `db` when absent). */
  segments?: SegmentRepository
  /**
   * The tenant's global holdout in per mille, shared with the layout experiments (their
   * catalogue's holdoutPerMille); default 20.
   */
  holdoutPerMille?: (tenantId: number) => number | Promise<number>
  lease?: LeaseOptions
  /** How often pulls re-read consent changes other processes recorded (default 1 s). */
  consentRefreshMs?: number
  /**
   * Whether a marketing campaign runs only once a second holder approved its current version
   * (campaign.approval.ts). Default true; tests of targeting rules that are not about approval turn it off.
   */
  requireApproval?: boolean
  /**
   * One of several API processes (server/cluster.ts): pulls, acknowledgements and notices go over
   * this channel to the engine process's lease manager, the one that hands out targets.
   */
  leaseChannel?: ProcessChannel
  /** Targeting runs and event triggers of a tenant, one at a time (one is made when absent; server/runtime.ts shares it between processes). */
  lock?: KeyedLock
}

export const DEFAULT_HOLDOUT_PER_MILLE = 20

export function createPushModule(deps: PushDeps): PushModule {
  const log = deps.log.child({ component: 'push' })
  const tags = deps.tags ?? createTagRepository({ db: deps.db })
  const segments = deps.segments ?? createSegmentRepository({ db: deps.db })
  const check = createCampaignCheck({ segments, tags, tenants: deps.tenants })
  const campaigns = createCampaignRepository({ db: deps.db, check })
  tags.registerUses(campaignTagUses(campaigns))
  segments.registerUses(campaignSegmentUses(campaigns))
  const policies = createPolicyRepository({ db: deps.db })
  const approvals = createApprovals({ db: deps.db })
  const approved = deps.requireApproval === false ? undefined : (t: number, list: readonly SavedCampaign[]) => approvals.approvedIds(t, list)
  const lock = deps.lock ?? createKeyedLock()
  const remote = deps.leaseChannel && createRemoteLeases(deps.leaseChannel)
  // Targets live at most the longest TTL plus a day deferred past quiet hours: older decisions were known to targeting.
  const withdrawals = remote
    ? undefined
    : createWithdrawalIndex({
        db: deps.db,
        windowMs: (MAX_TTL_MINUTES + 2 * 1440) * 60_000,
        ...(deps.consentRefreshMs ? { refreshMs: deps.consentRefreshMs } : {}),
        onError: (tenant, err) => log.warn({ tenant, err: err instanceof Error ? err.message : String(err) }, 'consent withdrawals not refreshed; pulls use the ones held'),
      })
  const leases: LeaseManager =
    remote ??
    createLeaseManager({
      db: deps.db,
      log,
      metrics: deps.metrics,
      activeCampaigns: async (t) => (await campaigns.active(t)).map((c) => c.id),
      personalizedCampaigns: async (t) => new Set((await campaigns.active(t)).filter(isPersonalized).map((c) => c.id)),
      policy: async (t) => {
        const [p, tenant] = await Promise.all([policies.get(t), deps.tenants.get(t)])
        return { maxAttempts: p.maxAttempts, quietHours: p.quietHours, timeZone: tenant.timeZone, consent: p.consent }
      },
      withdrawals,
      ...(deps.lease ? { options: deps.lease } : {}),
    })
  // A paused, resumed or retired campaign changes what may be handed out.
  campaigns.onChange((t) => leases.invalidate(t))
  // Targeting and triggers scan whole audiences: the pipeline lane. Pulls stay on the request lane.
  const targeting = createTargeting({
    db: deps.db.lane('pipeline'),
    tenants: deps.tenants,
    campaigns,
    policies,
    segments,
    tags,
    log,
    metrics: deps.metrics,
    lock,
    holdoutPerMille: deps.holdoutPerMille ?? (() => DEFAULT_HOLDOUT_PER_MILLE),
    queued: (t) => leases.invalidate(t),
    ...(approved ? { approved } : {}),
  })
  const triggers = createTriggers({ db: deps.db.lane('pipeline'), tenants: deps.tenants, campaigns, segments, tags, targeting, lock, log, metrics: deps.metrics, ...(approved ? { approved } : {}) })
  const tests = createTestSends({ db: deps.db, tenants: deps.tenants, policies, queued: (t) => leases.invalidate(t) })
  let closed = false
  const open = () => {
    if (closed) throw new AppError('SHUTTING_DOWN')
  }

  return {
    campaigns,
    policies,
    leases,
    routes(app, auth) {
      registerPushRoutes(app, { auth, campaigns, policies, targeting, leases, check })
      registerApprovalRoutes(app, { auth, campaigns, approvals, tests })
      registerPushPreviewRoutes(app, { auth, db: deps.db, tenants: deps.tenants, tags })
    },
    async runTargeting(tenantId, opts = {}) {
      open()
      return targeting.runTargeting(tenantId, opts)
    },
    consentChanged(tenantId, notices) {
      withdrawals?.apply(tenantId, notices)
      remote?.consentChanged(tenantId, notices)
    },
    async onEvents(tenantId, events) {
      if (closed) return { campaigns: 0, targeted: 0, queued: 0 }
      return triggers.onEvents(tenantId, events)
    },
    async close() {
      closed = true
      await lock.idle()
      await leases.close()
    },
  }
}
