import { isDeepStrictEqual } from 'node:util'
import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { AppError, isAppError, issuesFromZod } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import { tagDefinitionInput, tagDependencies, type Purpose, type StoredTag, type TagDefinition } from './tag.schema.js'
import { dryRunTag } from './tag.dryrun.js'
import { assertTagDefinitionSize } from './tag.limits.js'
import { assertNoRawC2Value } from './tag.c2guard.js'
import { guardSqlTag } from './tag.sqlguard.js'
import { SQL_TAG_SOURCES } from './tag.sources.js'

/**
 * Tag definitions per tenant, one row per version. Saving an unchanged definition is a no-op
 * (files kept in git can be applied again and again); a change makes the next version; a tag
 * that other tags, segments, campaigns or the catalogue use cannot be retired, and a definition
 * that would close a cycle is refused.
 */

const row = z.object({
  name: z.string(),
  version: z.coerce.number(),
  definition: z.string(),
  retired: z.coerce.number(),
  created_by: z.string(),
  created_at: z.string(),
})

/** A use of a tag for a purpose: a saved segment, a campaign, a catalogue entry. */
export interface TagUse {
  kind: 'segment' | 'campaign' | 'catalogue'
  id: string
  /** Where in that definition the tag is named. */
  field: string
  purpose: Purpose
}
export type TagUseFinder = (tenantId: number, tag: string) => Promise<TagUse[]>
/**
 * Which uses a new definition of a tag would break (a condition whose value no longer fits the
 * tag's type or values), found by the capability that compiles them against `defs` (the active
 * definitions as they are) with `next` in place; each with the field at fault and why.
 */
export type TagChangeCheck = (tenantId: number, next: TagDefinition, defs: ReadonlyMap<string, TagDefinition>) => Promise<(TagUse & { reason: string })[]>

export interface TagRepository {
  /** Active definitions (newest version of each, not retired). */
  list(tenantId: number): Promise<StoredTag[]>
  get(tenantId: number, name: string): Promise<StoredTag | undefined>
  versions(tenantId: number, name: string): Promise<(StoredTag & { retired: boolean })[]>
  /** Validates and stores; returns the stored definition and whether it changed. */
  /**
   * `dryRun: false` / `checked: true`: the caller already ran the dry run / `check` against the
   * set as it will be (applying many definitions, where the set in between may not pass).
   */
  save(tenantId: number, input: unknown, actor: string, opts?: { expectedVersion?: number; dryRun?: boolean; checked?: boolean }): Promise<{ tag: StoredTag; changed: boolean }>
  /** Computes a definition once on a sample (as `save` does): DRY_RUN_FAILED naming the field. */
  dryRun(tenantId: number, def: TagDefinition, others: readonly TagDefinition[], fieldPrefix?: string): Promise<void>
  /**
   * What `save` refuses besides the dry run (a cycle, sensitivity, what uses the tag), against
   * `others` as the active definitions will be: so many definitions can be checked before any is
   * saved. Fields are prefixed with `fieldPrefix`.
   */
  check(tenantId: number, def: TagDefinition, others: readonly TagDefinition[], fieldPrefix?: string): Promise<void>
  retire(tenantId: number, name: string, actor: string): Promise<void>
  /**
   * Capabilities that use tags (segments, push, layouts) say where, so retiring a tag or a
   * purpose change that would break one of their definitions is refused naming it, instead of
   * failing its runs; with `check`, so is a type or values change their conditions would not fit.
   */
  registerUses(finder: TagUseFinder, check?: TagChangeCheck): void
}

/** Parses a definition, reporting every problem with its field. */
export function parseDefinition(input: unknown, fieldPrefix = ''): TagDefinition {
  // Before zod: its recursive condition schema overflows the stack on very deep input.
  assertTagDefinitionSize(input, fieldPrefix)
  const r = tagDefinitionInput.safeParse(input)
  if (!r.success) {
    const issues = issuesFromZod(r.error.issues).map((i) => ({ ...i, field: fieldPrefix + (i.field ?? '') }))
    throw new AppError('VALIDATION_FAILED', `The tag definition is invalid: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`, { issues })
  }
  if (r.data.rule.kind === 'sql') {
    guardSqlTag(r.data.rule.sql, SQL_TAG_SOURCES, `${fieldPrefix}rule.sql`)
    assertNoRawC2Value(r.data.rule.sql, `${fieldPrefix}rule.sql`)
  }
  return r.data
}

/** Tags in dependency order, level by level; throws on a cycle or a missing dependency. */
export function dependencyLevels(defs: readonly TagDefinition[], available: ReadonlySet<string> = new Set()): TagDefinition[][] {
  const byName = new Map(defs.map((d) => [d.name, d]))
  const level = new Map<string, number>()
  const visiting = new Set<string>()
  const visit = (d: TagDefinition, chain: string[]): number => {
    const known = level.get(d.name)
    if (known !== undefined) return known
    if (visiting.has(d.name)) {
      const cycle = [...chain.slice(chain.indexOf(d.name)), d.name].join(' -> ')
      throw new AppError('VALIDATION_FAILED', `Tags depend on each other in a cycle: ${cycle}.`, { issues: [{ field: 'rule', message: `cycle ${cycle}` }] })
    }
    visiting.add(d.name)
    let l = 0
    for (const dep of tagDependencies(d)) {
      const dd = byName.get(dep)
      if (dd) l = Math.max(l, visit(dd, [...chain, d.name]) + 1)
      else if (!available.has(dep)) {
        throw new AppError('VALIDATION_FAILED', `Tag ${d.name} reads tag ${dep}, which is not defined.`, { issues: [{ field: 'rule', message: `unknown tag ${dep}` }] })
      }
    }
    visiting.delete(d.name)
    level.set(d.name, l)
    return l
  }
  for (const d of defs) visit(d, [])
  const out: TagDefinition[][] = []
  for (const d of defs) (out[level.get(d.name)!] ??= []).push(d)
  return out.filter(Boolean)
}

function toStored(r: z.infer<typeof row>): StoredTag & { retired: boolean } {
  const def = JSON.parse(r.definition) as TagDefinition
  return { ...def, version: r.version, createdBy: r.created_by, createdAt: r.created_at, retired: r.retired === 1 }
}

const strip = (t: StoredTag & { retired?: boolean }): TagDefinition => {
  const { version: _v, createdBy: _b, createdAt: _a, retired: _r, ...d } = t
  return d
}

export function createTagRepository(deps: { db: Db }): TagRepository {
  const tdb = (t: number): TenantDb => deps.db.forTenant(t)
  const finders: TagUseFinder[] = []
  const checks: TagChangeCheck[] = []
  const usesOf = async (tenantId: number, tag: string): Promise<TagUse[]> => (await Promise.all(finders.map((f) => f(tenantId, tag)))).flat()

  /** Refuses dropping a purpose that a segment, campaign or catalogue uses the tag for. */
  async function checkPurposes(tenantId: number, current: StoredTag, def: TagDefinition): Promise<void> {
    const removed = current.purpose.filter((p) => !def.purpose.includes(p))
    if (!removed.length || !finders.length) return
    const uses = (await usesOf(tenantId, def.name)).filter((u) => removed.includes(u.purpose))
    if (!uses.length) return
    const named = uses.map((u) => `${u.kind} ${u.id} (${u.field}, for ${u.purpose})`)
    throw new AppError('IN_USE', `Tag ${def.name} would no longer serve ${removed.join(', ')}, which ${named.join('; ')} use it for: change those first.`, {
      issues: uses.map((u) => ({ field: 'purpose', message: `${u.kind} ${u.id} uses it for ${u.purpose} at ${u.field}`, kind: u.kind, id: u.id, at: u.field })),
    })
  }

  /**
   * Refuses raising a tag to high sensitivity while a campaign puts its value in message text:
   * risk flags never go to a customer's phone, and the campaign was checked when it was saved.
   */
  async function checkMessageUses(tenantId: number, current: StoredTag, def: TagDefinition): Promise<void> {
    if (def.sensitivity !== 'high' || current.sensitivity === 'high') return
    const uses = (await usesOf(tenantId, def.name)).filter((u) => u.kind === 'campaign' && (u.field === 'message' || u.field === 'variants'))
    if (!uses.length) return
    throw new AppError('IN_USE', `Tag ${def.name} would be of high sensitivity while ${uses.map((u) => `campaign ${u.id}`).join(', ')} put its value in message text: change those first.`, {
      issues: uses.map((u) => ({ field: 'sensitivity', message: `campaign ${u.id} names it in its ${u.field}`, kind: u.kind, id: u.id, at: u.field })),
    })
  }

  /**
   * Refuses a type or values change that a use's condition would no longer fit (a boolean
   * compared with true that becomes a number, an enum value a segment names dropped): such a
   * use would fail every run from then on.
   */
  async function checkShape(tenantId: number, current: StoredTag, def: TagDefinition, others: readonly TagDefinition[]): Promise<void> {
    const field = current.type !== def.type ? 'type' : isDeepStrictEqual(current.values, def.values) ? undefined : 'values'
    if (!field || !checks.length) return
    const defs = new Map([...others.map((o) => [o.name, o] as const), [current.name, strip(current)]])
    const broken = (await Promise.all(checks.map((c) => c(tenantId, def, defs)))).flat()
    if (!broken.length) return
    const named = broken.map((u) => `${u.kind} ${u.id} (${u.field}: ${u.reason})`)
    throw new AppError('IN_USE', `Tag ${def.name}: the new ${field} would break ${named.join('; ')}: change those first.`, {
      issues: broken.map((u) => ({ field, message: `${u.kind} ${u.id}: ${u.reason} at ${u.field}`, kind: u.kind, id: u.id, at: u.field })),
    })
  }

  /**
   * A high-sensitivity tag's values reach no tag below high (which keys without personal:read
   * list, break down and use): neither by a lower tag reading it, nor by raising to high a tag
   * that lower ones read. (A SQL tag's `$tags` holds only tags as sensitive as itself.)
   */
  function checkSensitivity(def: TagDefinition, others: readonly TagDefinition[]): void {
    const byName = new Map(others.map((t) => [t.name, t]))
    const issues: { field: string; message: string }[] = []
    if (def.sensitivity !== 'high') {
      for (const n of tagDependencies(def)) {
        if (byName.get(n)?.sensitivity === 'high') issues.push({ field: 'sensitivity', message: `reads ${n}, a high-sensitivity tag: a tag that reads it is high too` })
      }
    } else {
      for (const o of others) {
        if (o.sensitivity !== 'high' && tagDependencies(o).includes(def.name)) issues.push({ field: 'sensitivity', message: `${o.name} (${o.sensitivity}) reads it: raise that tag first or keep this one below high` })
      }
    }
    if (issues.length) throw new AppError('VALIDATION_FAILED', `Tag ${def.name}: ${issues.map((i) => i.message).join('; ')}.`, { issues })
  }

  /** Every check of a save but the dry run; `others`: the other active definitions. */
  async function checkAll(tenantId: number, current: (StoredTag & { retired?: boolean }) | undefined, def: TagDefinition, others: readonly TagDefinition[]): Promise<void> {
    if (current && !current.retired) {
      await checkPurposes(tenantId, current, def)
      await checkMessageUses(tenantId, current, def)
    }
    // The whole active set must still form a DAG with every dependency defined.
    dependencyLevels([...others, def])
    checkSensitivity(def, others)
    if (current && !current.retired) await checkShape(tenantId, current, def, others)
  }

  async function latest(tenantId: number, name?: string) {
    const rows = await tdb(tenantId).query(
      `SELECT name, version, definition, retired, created_by, toString(created_at) AS created_at
       FROM tag_definitions FINAL
       WHERE tenant_id = {tenant:UInt16} ${name ? 'AND name = {name:String}' : ''}
       ORDER BY name, version DESC LIMIT 1 BY name`,
      name ? { name } : {},
      row,
    )
    return rows.map(toStored)
  }

  const repo: TagRepository = {
    registerUses(finder, check) {
      finders.push(finder)
      if (check) checks.push(check)
    },
    dryRun: (tenantId, def, others, fieldPrefix) => dryRunTag(tdb(tenantId), def, others, fieldPrefix),
    async check(tenantId, def, others, fieldPrefix = '') {
      const [current] = await latest(tenantId, def.name)
      try {
        await checkAll(tenantId, current, def, others)
      } catch (e) {
        if (!fieldPrefix || !isAppError(e)) throw e
        throw new AppError(e.code, e.message, { issues: (e.issues ?? []).map((i) => ({ ...i, field: `${fieldPrefix}${i.field ?? ''}` })) })
      }
    },
    async list(tenantId) {
      return (await latest(tenantId)).filter((t) => !t.retired).map(({ retired: _r, ...t }) => t)
    },
    async get(tenantId, name) {
      const [t] = await latest(tenantId, name)
      if (!t || t.retired) return undefined
      const { retired: _r, ...rest } = t
      return rest
    },
    async versions(tenantId, name) {
      const rows = await tdb(tenantId).query(
        `SELECT name, version, definition, retired, created_by, toString(created_at) AS created_at
         FROM tag_definitions FINAL WHERE tenant_id = {tenant:UInt16} AND name = {name:String} ORDER BY version`,
        { name },
        row,
      )
      return rows.map(toStored)
    },
    async save(tenantId, input, actor, opts = {}) {
      const def = parseDefinition(input)
      const [current] = await latest(tenantId, def.name)
      if (opts.expectedVersion !== undefined && (current?.version ?? 0) !== opts.expectedVersion) {
        throw new AppError('CONFLICT', `Tag ${def.name} is at version ${current?.version ?? 0}, not ${opts.expectedVersion}.`)
      }
      if (current && !current.retired && isDeepStrictEqual(strip(current), def)) return { tag: current, changed: false }
      const others = (await repo.list(tenantId)).filter((t) => t.name !== def.name).map(strip)
      if (!opts.checked) await checkAll(tenantId, current, def, others)
      // Computed once on a sample, so what would fail every run is refused now (`dryRun: false`
      // when the caller already did, as applying many definitions does before saving any).
      if (opts.dryRun !== false) await dryRunTag(tdb(tenantId), def, others)
      const version = (current?.version ?? 0) + 1
      const createdAt = chDateTime(new Date())
      await tdb(tenantId).insert('tag_definitions', [
        { name: def.name, version, definition: JSON.stringify(def), retired: 0, created_by: actor, created_at: createdAt },
      ])
      return { tag: { ...def, version, createdBy: actor, createdAt }, changed: true }
    },
    async retire(tenantId, name, actor) {
      const [current] = await latest(tenantId, name)
      if (!current || current.retired) throw new AppError('NOT_FOUND', `No tag named ${name}.`)
      // Whatever reads it would fail every run from then on: refused, naming each user.
      const readers = (await repo.list(tenantId)).filter((t) => t.name !== name && tagDependencies(t).includes(name))
      const users = [...readers.map((t) => ({ kind: 'tag', id: t.name, field: 'rule' })), ...(await usesOf(tenantId, name))]
      if (users.length) {
        throw new AppError('IN_USE', `Tag ${name} is used by ${users.map((u) => `${u.kind} ${u.id} (${u.field})`).join('; ')}: retire or change those first.`, {
          issues: users.map((u) => ({ field: 'name', message: `${u.kind} ${u.id} uses it at ${u.field}`, kind: u.kind, id: u.id, at: u.field })),
        })
      }
      await tdb(tenantId).insert('tag_definitions', [
        { name, version: current.version + 1, definition: JSON.stringify(strip(current)), retired: 1, created_by: actor, created_at: chDateTime(new Date()) },
      ])
    },
  }
  return repo
}
