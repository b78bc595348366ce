import { isDeepStrictEqual } from 'node:util'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError, issuesFromZod } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import type { CampaignCheck } from './campaign.check.js'
import { CAMPAIGN_ID, campaignInput, type Campaign, type SavedCampaign } from './campaign.schema.js'

/**
 * Campaigns per tenant, one row per version: who changed what and when, with a note. An
 * unchanged save is a no-op; `expectedVersion` guards against lost updates (409 CONFLICT); a
 * retired campaign keeps its history and its targets. Active campaigns are cached briefly for
 * the hot paths (event triggers, pulls); a save in this process refreshes them at once.
 */

const row = z.object({
  campaign_id: z.string(),
  version: z.coerce.number(),
  definition: z.string(),
  status: z.enum(['active', 'paused', 'retired', 'archived']),
  created_by: z.string(),
  created_at: z.string(),
  change_note: z.string(),
})

const COLUMNS = `campaign_id, version, definition, toString(status) AS status, created_by, toString(created_at) AS created_at, change_note`

function toSaved(r: z.infer<typeof row>): SavedCampaign {
  const def = JSON.parse(r.definition) as Omit<Campaign, 'status' | 'changeNote'>
  return { ...def, id: r.campaign_id, version: r.version, status: r.status, createdBy: r.created_by, createdAt: r.created_at, changeNote: r.change_note }
}

/** The definition as stored: everything but the bookkeeping. */
function definitionOf(c: Campaign | SavedCampaign): Omit<Campaign, 'status' | 'changeNote'> {
  const { status: _s, changeNote: _n, id: _i, version: _v, createdBy: _b, createdAt: _a, ...def } = c as Campaign & Partial<SavedCampaign>
  return def
}

export interface CampaignRepository {
  /** Latest versions, retired ones left out. */
  list(tenantId: number): Promise<SavedCampaign[]>
  get(tenantId: number, id: string): Promise<SavedCampaign>
  versions(tenantId: number, id: string): Promise<SavedCampaign[]>
  /**
   * Validates (the schema, then `check` for what needs the tenant's tags and segments) and
   * stores the next version. `withSensitive`: whether the caller may use high-sensitivity tags
   * (a key with personal:read); the routes say; internal callers (the bench, tests) have them all.
   */
  save(tenantId: number, id: string, input: unknown, actor: string, opts?: { expectedVersion?: number; withSensitive?: boolean }): Promise<{ campaign: SavedCampaign; changed: boolean }>
  retire(tenantId: number, id: string, actor: string, note?: string): Promise<void>
  /**
   * Archives (status archived: it never runs, and leaves the default list) or restores a
   * campaign; restored, it is paused, so sending again is a decision of its own. A new version.
   */
  setArchived(tenantId: number, id: string, archived: boolean, actor: string, note?: string): Promise<{ campaign: SavedCampaign; changed: boolean }>
  /** Active campaigns, from a cache at most `cacheMs` old. */
  active(tenantId: number): Promise<SavedCampaign[]>
  /** Called after every change made through this repository. */
  onChange(listener: (tenantId: number) => void): void
}

/** `check`: what a save must also refuse, knowing the tenant's tags and segments (campaign.check.ts). */
export function createCampaignRepository(deps: { db: Db; cacheMs?: number; check?: CampaignCheck }): CampaignRepository {
  const tdb = (t: number) => deps.db.forTenant(t)
  const ttl = deps.cacheMs ?? 10_000
  const cache = new Map<number, { at: number; list: SavedCampaign[] }>()
  const listeners: ((tenantId: number) => void)[] = []
  const changed = (tenantId: number) => {
    cache.delete(tenantId)
    for (const l of listeners) l(tenantId)
  }

  async function latest(tenantId: number, id?: string): Promise<SavedCampaign[]> {
    const rows = await tdb(tenantId).query(
      `SELECT ${COLUMNS} FROM push_campaigns FINAL WHERE tenant_id = {tenant:UInt16} ${id ? 'AND campaign_id = {id:String}' : ''}
       ORDER BY campaign_id, version DESC LIMIT 1 BY campaign_id`,
      id ? { id } : {},
      row,
    )
    return rows.map(toSaved)
  }

  async function write(tenantId: number, c: SavedCampaign) {
    await tdb(tenantId).insert('push_campaigns', [
      {
        campaign_id: c.id,
        version: c.version,
        name: c.name,
        definition: JSON.stringify(definitionOf(c)),
        status: c.status,
        created_by: c.createdBy,
        created_at: c.createdAt,
        change_note: c.changeNote,
      },
    ])
    changed(tenantId)
  }

  const repo: CampaignRepository = {
    async list(tenantId) {
      return (await latest(tenantId)).filter((c) => c.status !== 'retired')
    },
    async get(tenantId, id) {
      const [c] = await latest(tenantId, id)
      if (!c || c.status === 'retired') throw new AppError('NOT_FOUND', `No campaign ${id}.`)
      return c
    },
    async versions(tenantId, id) {
      const rows = await tdb(tenantId).query(
        `SELECT ${COLUMNS} FROM push_campaigns FINAL WHERE tenant_id = {tenant:UInt16} AND campaign_id = {id:String} ORDER BY version`,
        { id },
        row,
      )
      if (!rows.length) throw new AppError('NOT_FOUND', `No campaign ${id}.`)
      return rows.map(toSaved)
    },
    async save(tenantId, id, input, actor, opts = {}) {
      if (!CAMPAIGN_ID.test(id)) throw new AppError('VALIDATION_FAILED', 'A campaign id is lower case letters, digits, _ and -.', { issues: [{ field: 'id', message: 'invalid' }] })
      const parsed = campaignInput.safeParse(input)
      if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The campaign is invalid.', { issues: issuesFromZod(parsed.error.issues) })
      const c = parsed.data
      if (deps.check) await deps.check(tenantId, c, opts.withSensitive ?? true)
      const [current] = await latest(tenantId, id)
      if (opts.expectedVersion !== undefined && (current?.version ?? 0) !== opts.expectedVersion) {
        throw new AppError('CONFLICT', `Campaign ${id} is at version ${current?.version ?? 0}, not ${opts.expectedVersion}.`, {
          issues: [{ field: 'expectedVersion', message: `current version is ${current?.version ?? 0}` }],
        })
      }
      if (current?.status === 'archived') {
        throw new AppError('CONFLICT', `Campaign ${id} is archived: restore it before changing it.`, { issues: [{ field: 'archived', message: 'archived: restore it first' }] })
      }
      if (current && current.status !== 'retired' && current.status === c.status && isDeepStrictEqual(definitionOf(current), JSON.parse(JSON.stringify(definitionOf(c))))) {
        return { campaign: current, changed: false }
      }
      const saved: SavedCampaign = {
        ...definitionOf(c),
        id,
        version: (current?.version ?? 0) + 1,
        status: c.status,
        createdBy: actor,
        createdAt: chDateTime(new Date()),
        changeNote: c.changeNote,
      }
      await write(tenantId, saved)
      return { campaign: saved, changed: true }
    },
    async retire(tenantId, id, actor, note = '') {
      const c = await repo.get(tenantId, id)
      await write(tenantId, { ...c, version: c.version + 1, status: 'retired', createdBy: actor, createdAt: chDateTime(new Date()), changeNote: note || 'retired' })
    },
    async setArchived(tenantId, id, archived, actor, note = '') {
      const c = await repo.get(tenantId, id)
      if ((c.status === 'archived') === archived) return { campaign: c, changed: false }
      const saved: SavedCampaign = { ...c, version: c.version + 1, status: archived ? 'archived' : 'paused', createdBy: actor, createdAt: chDateTime(new Date()), changeNote: note || (archived ? 'archived' : 'restored, paused') }
      await write(tenantId, saved)
      return { campaign: saved, changed: true }
    },
    async active(tenantId) {
      const hit = cache.get(tenantId)
      if (hit && Date.now() - hit.at < ttl) return hit.list
      const list = (await latest(tenantId)).filter((c) => c.status === 'active')
      cache.set(tenantId, { at: Date.now(), list })
      return list
    },
    onChange(listener) {
      listeners.push(listener)
    },
  }
  return repo
}
