import { isDeepStrictEqual } from 'node:util'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import type { SavedCampaign } from './campaign.schema.js'

/**
 * The four-eyes rule for marketing campaigns: one holder writes a campaign, a second holder
 * approves the version that will run. An approval names a version, so any later version (a
 * changed text, audience, schedule, or status) is not approved until someone approves it again.
 * Holders are compared by the name on their keys, so one person holding two keys cannot approve
 * their own change; nor can one whose change a colleague only paused and resumed since (the
 * text is still theirs). Service and security campaigns (reminders, fraud tips) need no approval.
 */

export type ApprovalStatus = 'not_required' | 'draft' | 'requested' | 'approved'

export interface ApprovalState {
  campaignId: string
  version: number
  /** Whether this campaign needs approval to run (purpose marketing). */
  required: boolean
  status: ApprovalStatus
  /** Who last changed the campaign: the one holder who may not approve it. */
  changedBy: string
  requestedBy: string | null
  requestedAt: string | null
  approvedBy: string | null
  approvedAt: string | null
  note: string
}

export const needsApproval = (c: Pick<SavedCampaign, 'purpose'>) => c.purpose === 'marketing'

const row = z.object({
  campaign_id: z.string(),
  campaign_version: z.coerce.number(),
  kind: z.enum(['requested', 'approved']),
  holder: z.string(),
  at: z.string(),
  note: z.string(),
})

const iso = (s: string) => `${s.replace(' ', 'T')}Z`

export interface Approvals {
  state(tenantId: number, c: SavedCampaign): Promise<ApprovalState>
  /** Campaign ids whose current version is approved, among `campaigns`. */
  approvedIds(tenantId: number, campaigns: readonly SavedCampaign[]): Promise<Set<string>>
  request(tenantId: number, c: SavedCampaign, by: { holder: string; keyId: string }, version: number, note?: string): Promise<ApprovalState>
  approve(tenantId: number, c: SavedCampaign, by: { holder: string; keyId: string }, version: number, note?: string): Promise<ApprovalState>
}

export function createApprovals(deps: { db: Db }): Approvals {
  const tdb = (t: number) => deps.db.forTenant(t)

  async function rows(tenantId: number, ids: readonly { id: string; version: number }[]) {
    if (!ids.length) return []
    return tdb(tenantId).query(
      `SELECT campaign_id, campaign_version, toString(kind) AS kind, holder, toString(at) AS at, note FROM push_campaign_approvals
       WHERE tenant_id = {tenant:UInt16} AND (campaign_id, campaign_version) IN (SELECT tupleElement(x, 1), tupleElement(x, 2) FROM (SELECT arrayJoin(arrayZip({ids:Array(String)}, {versions:Array(UInt32)})) AS x))
       ORDER BY at`,
      { ids: ids.map((c) => c.id), versions: ids.map((c) => c.version) },
      row,
    )
  }

  function fold(c: SavedCampaign, found: readonly z.infer<typeof row>[]): ApprovalState {
    const mine = found.filter((r) => r.campaign_id === c.id && r.campaign_version === c.version)
    const req = mine.filter((r) => r.kind === 'requested').at(-1)
    const ok = mine.filter((r) => r.kind === 'approved').at(-1)
    const required = needsApproval(c)
    const status: ApprovalStatus = !required ? 'not_required' : ok ? 'approved' : req ? 'requested' : 'draft'
    return {
      campaignId: c.id,
      version: c.version,
      required,
      status,
      changedBy: c.createdBy,
      requestedBy: req?.holder ?? null,
      requestedAt: req ? iso(req.at) : null,
      approvedBy: ok?.holder ?? null,
      approvedAt: ok ? iso(ok.at) : null,
      note: (ok ?? req)?.note ?? '',
    }
  }

  async function record(tenantId: number, c: SavedCampaign, kind: 'requested' | 'approved', by: { holder: string; keyId: string }, note: string) {
    await tdb(tenantId).insert('push_campaign_approvals', [
      { campaign_id: c.id, campaign_version: c.version, kind, holder: by.holder, key_id: by.keyId, at: chDateTime(new Date()), note },
    ])
  }

  /** The caller names the version it saw: approving one that changed meanwhile would approve text nobody read. */
  function checkVersion(c: SavedCampaign, version: number) {
    if (c.version !== version) {
      throw new AppError('CONFLICT', `Campaign ${c.id} is at version ${c.version}, not ${version}: read it again before approving.`, {
        issues: [{ field: 'version', message: `current version is ${c.version}` }],
      })
    }
    if (!needsApproval(c)) {
      throw new AppError('VALIDATION_FAILED', `Campaign ${c.id} is a ${c.purpose} campaign: only marketing campaigns need approval.`, { issues: [{ field: 'purpose', message: c.purpose }] })
    }
  }

  /**
   * Holders who changed what the campaign says or does (not only its status) in a version after
   * the last one approved, up to `c`: the text they wrote is still theirs to have checked.
   */
  async function authorsSinceApproval(tenantId: number, c: SavedCampaign): Promise<Set<string>> {
    // max() over no approval is 0: then every version counts, the first one's author included.
    const rows = await tdb(tenantId).query(
      `WITH (SELECT max(campaign_version) FROM push_campaign_approvals
             WHERE tenant_id = {tenant:UInt16} AND campaign_id = {id:String} AND kind = 'approved' AND campaign_version < {v:UInt32}) AS since
       SELECT version, definition, created_by, since FROM push_campaigns FINAL
       WHERE tenant_id = {tenant:UInt16} AND campaign_id = {id:String} AND version >= since AND version <= {v:UInt32}
       ORDER BY version`,
      { id: c.id, v: c.version },
      z.object({ version: z.coerce.number(), definition: z.string(), created_by: z.string(), since: z.coerce.number() }),
    )
    const authors = new Set<string>()
    let before: unknown
    for (const r of rows) {
      const def: unknown = JSON.parse(r.definition)
      if (r.version !== r.since && (before === undefined || !isDeepStrictEqual(def, before))) authors.add(r.created_by)
      before = def
    }
    return authors
  }

  const api: Approvals = {
    async state(tenantId, c) {
      return fold(c, await rows(tenantId, [c]))
    },
    async approvedIds(tenantId, campaigns) {
      const found = await rows(tenantId, campaigns.filter(needsApproval))
      return new Set(campaigns.filter((c) => fold(c, found).status === 'approved').map((c) => c.id))
    },
    async request(tenantId, c, by, version, note = '') {
      checkVersion(c, version)
      await record(tenantId, c, 'requested', by, note)
      return api.state(tenantId, c)
    },
    async approve(tenantId, c, by, version, note = '') {
      checkVersion(c, version)
      if (by.holder === c.createdBy) {
        throw new AppError('SELF_APPROVAL', `${by.holder} made version ${c.version} of ${c.id}: a second holder approves it.`, { issues: [{ field: 'holder', message: 'same holder as the last change' }] })
      }
      if ((await authorsSinceApproval(tenantId, c)).has(by.holder)) {
        throw new AppError('SELF_APPROVAL', `${by.holder} changed ${c.id} since its last approved version: a second holder approves it.`, { issues: [{ field: 'holder', message: 'changed the campaign since its last approval' }] })
      }
      await record(tenantId, c, 'approved', by, note)
      return api.state(tenantId, c)
    },
  }
  return api
}
