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
  createdBy: r.created_by,
  createdAt: r.created_at,
  changeNote: r.change_note,
})

const COLUMNS = `segment_id, version, name, description, purpose, definition, schedule, retired, created_by, toString(created_at) AS created_at, change_note`

export function createSegmentRepository(deps: { db: Db }) {
  const tdb = (t: number): TenantDb => deps.db.forTenant(t)

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
    async list(tenantId: number): Promise<SavedSegment[]> {
      return (await latest(tenantId)).filter((s) => !s.retired)
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
        return s && !s.retired ? s.rule : undefined
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
          created_by: actor,
          created_at: createdAt,
          change_note: p.changeNote,
        },
      ])
      return {
        segment: { id, version, name: p.name, description: p.description, purpose: segment.purpose, rule: segment.rule, schedule: p.schedule, retired: false, createdBy: actor, createdAt, changeNote: p.changeNote },
        changed: true,
      }
    },
    async retire(tenantId: number, id: string, actor: string, note = ''): Promise<void> {
      const s = await repo.get(tenantId, id)
      await tdb(tenantId).insert('segment_definitions', [
        {
          segment_id: id,
          version: s.version + 1,
          name: s.name,
          description: s.description,
          purpose: s.purpose,
          definition: JSON.stringify(s.rule),
          schedule: s.schedule,
          retired: 1,
          created_by: actor,
          created_at: chDateTime(new Date()),
          change_note: note || 'retired',
        },
      ])
    },
  }
  return repo
}

export type SegmentRepository = ReturnType<typeof createSegmentRepository>
