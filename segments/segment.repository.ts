import { isDeepStrictEqual } from 'node:util'
import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { AppError, issuesFromZod } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import { fiveFieldCron, PURPOSES } from '../tags/tag.schema.js'
import { expandReferences } from './segment.references.js'
import { parseSegment, type Segment } from './segment.schema.js'

/**
 * Saved segments per tenant, one row per version: who changed what and when, with a note. An
 * unchanged save is a no-op; `expectedVersion` guards against lost updates; a retired segment
 * keeps its history.
 */

export const SEGMENT_ID = /^[a-z][a-z0-9_-]{1,62}$/

export const segmentInput = z.strictObject({
  name: z.string().min(1).max(200),
  description: z.string().max(2000).default(''),
  purpose: z.enum(PURPOSES),
  rule: z.unknown(),
  schedule: z
    .string()
    .max(100)
    .refine((c) => c === '' || fiveFieldCron.safeParse(c).success, { message: 'a five-field cron expression, or empty to follow the tag runs' })
    .default(''),
  changeNote: z.string().max(500).default(''),
})
export type SegmentInput = z.input<typeof segmentInput>

export interface SavedSegment {
  id: string
  version: number
  name: string
  description: string
  purpose: Segment['purpose']
  /** As written: `{segment: id}` references stay references (expanded when evaluated). */
  rule: unknown
  schedule: string
  retired: boolean
  /** Put away: out of the default list, not materialized, usable by nothing until restored. */
  archived: boolean
  createdBy: string
  createdAt: string
  changeNote: string
}

const row = z.object({
  segment_id: z.string(),
  version: z.coerce.number(),
  name: z.string(),
  description: z.string(),
  purpose: z.enum(PURPOSES),
  definition: z.string(),
  schedule: z.string(),
  retired: z.coerce.number(),
  archived: z.coerce.number(),
  created_by: z.string(),
  created_at: z.string(),
  change_note: z.string(),
})

const toSaved = (r: z.infer<typeof row>): SavedSegment => ({
  id: r.segment_id,
  version: r.version,
  name: r.name,
  description: r.description,
  purpose: r.purpose,
  rule: JSON.parse(r.definition) as unknown,
  schedule: r.schedule,
  retired: r.retired === 1,
  archived: r.archived === 1,
  createdBy: r.created_by,
  createdAt: r.created_at,
  changeNote: r.change_note,
})

const COLUMNS = `segment_id, version, name, description, purpose, definition, schedule, retired, archived, created_by, toString(created_at) AS created_at, change_note`

/** Who uses a segment (a campaign's audience, another segment's reference), named so an archive can say so. */
export interface SegmentUse {
  kind: 'campaign' | 'segment'
  id: string
  /** Where in that definition the segment is named. */
  field: string
}
export type SegmentUseFinder = (tenantId: number, segmentId: string) => Promise<SegmentUse[]>

/** Which segments a list shows: the default leaves archived ones out. */
export type ArchivedFilter = 'exclude' | 'include' | 'only'

/** Where a rule names `{segment: id}`, as field paths under `prefix`. */
export function segmentReferencesOf(rule: unknown, id: string, prefix: string): string[] {
  const out: string[] = []
  const walk = (n: unknown, at: string, depth: number): void => {
    if (depth > 64 || typeof n !== 'object' || n === null) return
    if (Array.isArray(n)) return n.forEach((c, i) => walk(c, `${at}.${i}`, depth + 1))
    const o = n as Record<string, unknown>
    if (o.segment === id && Object.keys(o).length === 1) out.push(at)
    for (const k of ['all', 'any', 'not']) if (k in o) walk(o[k], `${at}.${k}`, depth + 1)
  }
  walk(rule, prefix, 0)
  return out
}

function stored(s: SavedSegment, version: number, actor: string, note: string, flags: { retired?: boolean; archived?: boolean }) {
  return {
    segment_id: s.id,
    version,
    name: s.name,
    description: s.description,
    purpose: s.purpose,
    definition: JSON.stringify(s.rule),
    schedule: s.schedule,
    retired: flags.retired ? 1 : 0,
    archived: flags.archived ? 1 : 0,
    created_by: actor,
    created_at: chDateTime(new Date()),
    change_note: note,
  }
}

export function createSegmentRepository(deps: { db: Db }) {
  const tdb = (t: number): TenantDb => deps.db.forTenant(t)
  const finders: SegmentUseFinder[] = []

  async function latest(tenantId: number, id?: string): Promise<SavedSegment[]> {
    const rows = await tdb(tenantId).query(
      `SELECT ${COLUMNS} FROM segment_definitions FINAL WHERE tenant_id = {tenant:UInt16} ${id ? 'AND segment_id = {id:String}' : ''}
       ORDER BY segment_id, version DESC LIMIT 1 BY segment_id`,
      id ? { id } : {},
      row,
    )
    return rows.map(toSaved)
  }

  const repo = {
    /** Live segments; archived ones left out unless asked for. */
    async list(tenantId: number, opts: { archived?: ArchivedFilter } = {}): Promise<SavedSegment[]> {
      const a = opts.archived ?? 'exclude'
      return (await latest(tenantId)).filter((s) => !s.retired && (a === 'include' || (a === 'only') === s.archived))
    },
    async get(tenantId: number, id: string): Promise<SavedSegment> {
      const [s] = await latest(tenantId, id)
      if (!s || s.retired) throw new AppError('NOT_FOUND', `No segment ${id}.`)
      return s
    },
    async versions(tenantId: number, id: string): Promise<SavedSegment[]> {
      const rows = await tdb(tenantId).query(
        `SELECT ${COLUMNS} FROM segment_definitions FINAL WHERE tenant_id = {tenant:UInt16} AND segment_id = {id:String} ORDER BY version`,
        { id },
        row,
      )
      if (!rows.length) throw new AppError('NOT_FOUND', `No segment ${id}.`)
      return rows.map(toSaved)
    },
    /** The rule of a segment with its references expanded, for evaluation. */
    async expanded(tenantId: number, rule: unknown, self?: { id: string; rule: unknown }): Promise<unknown> {
      const load = async (ref: string) => {
        if (self && ref === self.id) return self.rule
        const [s] = await latest(tenantId, ref)
        // An archived segment is usable by nothing (archiving refused while anything used it).
        return s && !s.retired && !s.archived ? s.rule : undefined
      }
      return expandReferences(rule, load, self ? [self.id] : [])
    },
    /** Validates (the expanded rule against the segment language) and stores the next version. */
    async save(tenantId: number, id: string, input: unknown, actor: string, opts: { expectedVersion?: number } = {}): Promise<{ segment: SavedSegment; changed: boolean }> {
      if (!SEGMENT_ID.test(id)) throw new AppError('VALIDATION_FAILED', 'A segment id is lower case letters, digits, _ and -.', { issues: [{ field: 'id', message: 'invalid' }] })
      const parsed = segmentInput.safeParse(input)
      if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The segment is invalid.', { issues: issuesFromZod(parsed.error.issues) })
      const p = parsed.data
      // Validated expanded (with this very definition in place, so a cycle through it shows);
      // stored as written.
      const segment = { ...parseSegment({ purpose: p.purpose, rule: await repo.expanded(tenantId, p.rule, { id, rule: p.rule }) }), rule: p.rule }
      const [current] = await latest(tenantId, id)
      if (opts.expectedVersion !== undefined && (current?.version ?? 0) !== opts.expectedVersion) {
        throw new AppError('CONFLICT', `Segment ${id} is at version ${current?.version ?? 0}, not ${opts.expectedVersion}.`)
      }
      if (current && !current.retired && current.archived) {
        throw new AppError('CONFLICT', `Segment ${id} is archived: restore it before changing it.`, { issues: [{ field: 'archived', message: 'archived: restore it first' }] })
      }
      const same =
        current &&
        !current.retired &&
        current.name === p.name &&
        current.description === p.description &&
        current.purpose === segment.purpose &&
        current.schedule === p.schedule &&
        isDeepStrictEqual(current.rule, segment.rule)
      if (same) return { segment: current, changed: false }
      const version = (current?.version ?? 0) + 1
      const createdAt = chDateTime(new Date())
      await tdb(tenantId).insert('segment_definitions', [
        {
          segment_id: id,
          version,
          name: p.name,
          description: p.description,
          purpose: segment.purpose,
          definition: JSON.stringify(segment.rule),
          schedule: p.schedule,
          retired: 0,
          archived: 0,
          created_by: actor,
          created_at: createdAt,
          change_note: p.changeNote,
        },
      ])
      return {
        segment: { id, version, name: p.name, description: p.description, purpose: segment.purpose, rule: segment.rule, schedule: p.schedule, retired: false, archived: false, createdBy: actor, createdAt, changeNote: p.changeNote },
        changed: true,
      }
    },
    /** Retires (a last version by `actor`); refused (409 IN_USE) while something uses it, as archiving is. */
    async retire(tenantId: number, id: string, actor: string, note = ''): Promise<void> {
      const s = await repo.get(tenantId, id)
      await refuseIfUsed(tenantId, id, 'retire')
      await tdb(tenantId).insert('segment_definitions', [stored(s, s.version + 1, actor, note || 'retired', { retired: true, archived: s.archived })])
    },
    /** Where campaigns and segments use this one (capabilities that reference segments register a finder). */
    async uses(tenantId: number, id: string): Promise<SegmentUse[]> {
      const own = (await repo.list(tenantId, { archived: 'include' })).filter((s) => s.id !== id).flatMap((s) => segmentReferencesOf(s.rule, id, 'rule').map((field) => ({ kind: 'segment' as const, id: s.id, field })))
      return [...own, ...(await Promise.all(finders.map((f) => f(tenantId, id)))).flat()]
    },
    registerUses(finder: SegmentUseFinder): void {
      finders.push(finder)
    },
    /**
     * Archives or restores (a new version either way, by `actor`). Archiving a segment something
     * still uses is refused (409 IN_USE) naming each user; an unchanged state is a no-op.
     */
    async setArchived(tenantId: number, id: string, archived: boolean, actor: string, note = ''): Promise<{ segment: SavedSegment; changed: boolean }> {
      const s = await repo.get(tenantId, id)
      if (s.archived === archived) return { segment: s, changed: false }
      if (archived) await refuseIfUsed(tenantId, id, 'archive')
      const row = stored(s, s.version + 1, actor, note || (archived ? 'archived' : 'restored'), { archived })
      await tdb(tenantId).insert('segment_definitions', [row])
      return { segment: { ...s, version: row.version, archived, createdBy: actor, createdAt: row.created_at, changeNote: row.change_note }, changed: true }
    },
  }
  /** A segment a campaign or another segment still uses would leave them pointing at nothing. */
  async function refuseIfUsed(tenantId: number, id: string, change: 'archive' | 'retire'): Promise<void> {
    const users = await repo.uses(tenantId, id)
    if (users.length === 0) return
    const field = change === 'archive' ? 'archived' : 'id'
    throw new AppError('IN_USE', `Segment ${id} is used by ${users.map((u) => `${u.kind} ${u.id} (${u.field})`).join('; ')}: change those first.`, {
      issues: users.map((u) => ({ field, message: `${u.kind} ${u.id} uses it at ${u.field}`, kind: u.kind, id: u.id, at: u.field })),
    })
  }
  return repo
}

export type SegmentRepository = ReturnType<typeof createSegmentRepository>
