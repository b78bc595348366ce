import fs from 'node:fs'
import { isDeepStrictEqual } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError, type ErrorIssue } from '../core/errors.js'
import { projectPath } from '../core/paths.js'
import { chDateTime } from '../core/time.js'
import { prepare } from '../segments/segment.compile.js'
import { tagLeavesOf } from '../segments/segment.schema.js'
import type { TagUse, TagUseFinder } from '../tags/tag.repository.js'
import type { Purpose, TagDefinition } from '../tags/tag.schema.js'
import type { Tenant } from '../tenants/tenants.service.js'
import { checkCatalogShape, invalidCatalog, parseCatalog, parseCondition, purposeOf, type Catalog } from './catalog.schema.js'

/**
 * Catalogues per tenant, one row per version (who, when, a note): an unchanged save is a no-op,
 * `expectedVersion` guards against lost updates. `effective()` is what a tenant serves: the
 * built-in catalogue, overridden by the group's, overridden by the member bank's own.
 */

export const DEFAULT_CATALOG = projectPath('recommend', 'pack', 'catalog.yaml')

export interface SavedCatalog {
  version: number
  catalog: Catalog
  createdBy: string
  createdAt: string
  changeNote: string
}

export interface EffectiveCatalog {
  catalog: Catalog
  /** Versions it was merged from: 0 where the level has none. */
  groupVersion: number
  ownVersion: number
}

const row = z.object({ version: z.coerce.number(), document: z.string(), created_by: z.string(), created_at: z.string(), change_note: z.string() })

/** The built-in catalogue, read and parsed (the repository does it once, on first use). */
export function builtInCatalog(): Catalog {
  return parseCatalog(parseYaml(fs.readFileSync(DEFAULT_CATALOG, 'utf8'), { maxAliasCount: 0 }))
}

/** `over` replaces `base` entries by id and adds its own; ids in `over.disable` leave. */
export function mergeCatalogs(base: Catalog, over: Catalog): Catalog {
  const off = new Set(over.disable)
  const byId = <T extends { id: string }>(a: T[], b: T[]): T[] => {
    const out = new Map<string, T>()
    for (const x of a) if (!off.has(x.id)) out.set(x.id, x)
    for (const x of b) out.set(x.id, x)
    return [...out.values()]
  }
  return {
    modules: byId(base.modules, over.modules),
    items: byId(base.items, over.items).filter((i) => !off.has(i.module)),
    // A member may add exclusions, never lift the group's: they protect customers.
    productRules: [...base.productRules, ...over.productRules],
    disable: [...new Set([...base.disable, ...over.disable])],
    ...((over.experiment ?? base.experiment) ? { experiment: over.experiment ?? base.experiment } : {}),
    ...((over.holdoutPerMille ?? base.holdoutPerMille) !== undefined ? { holdoutPerMille: over.holdoutPerMille ?? base.holdoutPerMille } : {}),
  }
}

/**
 * The conditions and reminder tags of `own`'s entries against a tenant's tag definitions: the
 * issues, fields named as in `own`. `served` keeps only the entries that tenant serves.
 */
function conditionIssues(own: Catalog, defs: ReadonlyMap<string, TagDefinition>, timeZone: string, served: (entry: object) => boolean = () => true): ErrorIssue[] {
  const issues: ErrorIssue[] = []
  const check = (raw: unknown, field: string, purpose: ReturnType<typeof purposeOf>) => {
    const rule = parseCondition(raw, field, purpose, issues)
    if (!rule) return
    try {
      prepare(rule, { purpose, defs, asOf: new Date(), timeZone })
    } catch (e) {
      if (!(e instanceof AppError)) throw e
      for (const i of e.issues ?? [{ field: 'rule', message: e.message }]) issues.push({ field: (i.field ?? 'rule').replace(/^rule/, field), message: i.message })
    }
  }
  own.modules.forEach((m, i) => m.when !== undefined && served(m) && check(m.when, `modules.${i}.when`, purposeOf('module')))
  own.items.forEach((it, i) => {
    if (!served(it)) return
    if (it.when !== undefined) check(it.when, `items.${i}.when`, purposeOf(it.type))
    if (it.reminderTag && !defs.has(it.reminderTag)) issues.push({ field: `items.${i}.reminderTag`, message: `tag ${it.reminderTag} is not defined` })
  })
  own.productRules.forEach((p, i) => check(p.exclude, `productRules.${i}.exclude`, purposeOf('rule')))
  return issues
}

/** Every condition against the tenant's tag definitions, every item's module present: the issues. */
export function checkCatalog(effective: Catalog, own: Catalog, defs: ReadonlyMap<string, TagDefinition>, timeZone: string): ErrorIssue[] {
  const issues = conditionIssues(own, defs, timeZone)
  const modules = new Set(effective.modules.map((m) => m.id))
  own.items.forEach((it, i) => {
    if (!modules.has(it.module)) issues.push({ field: `items.${i}.module`, message: `no module ${it.module} in the catalogue this tenant serves` })
  })
  return issues
}

/** Where the catalogue a tenant serves uses `tag`, with the purpose each entry uses it for. */
export function catalogTagUses(c: Catalog, tag: string): TagUse[] {
  const uses: TagUse[] = []
  const scan = (id: string, raw: unknown, field: string, purpose: Purpose) => {
    for (const l of tagLeavesOf(raw, field)) if (l.tag === tag) uses.push({ kind: 'catalogue', id, field: l.field, purpose })
  }
  c.modules.forEach((m) => m.when !== undefined && scan(m.id, m.when, `modules.${m.id}.when`, purposeOf('module')))
  c.items.forEach((it) => it.when !== undefined && scan(it.id, it.when, `items.${it.id}.when`, purposeOf(it.type)))
  c.productRules.forEach((p, i) => scan(`productRules.${i}`, p.exclude, `productRules.${i}.exclude`, purposeOf('rule')))
  return uses
}

export function createCatalogRepository(deps: {
  db: Db
  tags: { list(tenantId: number): Promise<TagDefinition[]>; registerUses?(finder: TagUseFinder): void }
  /**
   * With it, a tag purpose change that would break the catalogue a tenant serves is refused, and
   * a group's save that would break one of its member banks'.
   */
  tenants?: { get(id: number): Promise<Tenant>; list?(): Promise<Tenant[]> }
}) {
  async function latest(tenantId: number): Promise<SavedCatalog | undefined> {
    const [r] = await deps.db.forTenant(tenantId).query(
      `SELECT version, document, created_by, toString(created_at) AS created_at, change_note FROM layout_catalogs FINAL
       WHERE tenant_id = {tenant:UInt16} ORDER BY version DESC LIMIT 1`,
      {},
      row,
    )
    return r && { version: r.version, catalog: parseCatalog(JSON.parse(r.document), { stored: true }), createdBy: r.created_by, createdAt: r.created_at, changeNote: r.change_note }
  }

  // Every layout snapshot check asks for the effective catalogue: the file is read once.
  let builtIn: Catalog | undefined
  async function parentOf(tenant: Tenant): Promise<EffectiveCatalog> {
    const base = (builtIn ??= builtInCatalog())
    const group = tenant.parentId ? await latest(tenant.parentId) : undefined
    return { catalog: group ? mergeCatalogs(base, group.catalog) : base, groupVersion: group?.version ?? 0, ownVersion: 0 }
  }

  const tenants = deps.tenants
  if (tenants) deps.tags.registerUses?.(async (tenantId, tag) => catalogTagUses((await effective(await tenants.get(tenantId))).catalog, tag))

  /** What the tenant serves: built-in, then its group's, then its own. */
  async function effective(tenant: Tenant): Promise<EffectiveCatalog> {
    const parent = await parentOf(tenant)
    const own = await latest(tenant.id)
    return own ? { catalog: mergeCatalogs(parent.catalog, own.catalog), groupVersion: parent.groupVersion, ownVersion: own.version } : parent
  }

  /**
   * A group's document against each member bank's tags: the group's entries a member would serve
   * (not replaced or disabled by its own) must compile there, or every layout of the member would
   * fall back on them. Issues name the field in the group's document and the member.
   */
  async function memberIssues(group: Tenant, doc: Catalog): Promise<ErrorIssue[]> {
    if (group.kind !== 'group' || !deps.tenants?.list) return []
    const inherited = mergeCatalogs((builtIn ??= builtInCatalog()), doc)
    const issues: ErrorIssue[] = []
    for (const member of (await deps.tenants.list()).filter((t) => t.parentId === group.id)) {
      const own = await latest(member.id)
      const serves = own ? mergeCatalogs(inherited, own.catalog) : inherited
      const entries = new Set<object>([...serves.modules, ...serves.items])
      const defs = new Map((await deps.tags.list(member.id)).map((d) => [d.name, d]))
      for (const i of conditionIssues(doc, defs, member.timeZone, (e) => entries.has(e))) {
        issues.push({ ...i, message: `member bank ${member.slug}: ${i.message}`, tenant: member.slug })
      }
    }
    return issues
  }

  return {
    latest,

    async versions(tenantId: number): Promise<SavedCatalog[]> {
      const rows = await deps.db.forTenant(tenantId).query(
        `SELECT version, document, created_by, toString(created_at) AS created_at, change_note FROM layout_catalogs FINAL
         WHERE tenant_id = {tenant:UInt16} ORDER BY version DESC`,
        {},
        row,
      )
      return rows.map((r) => ({ version: r.version, catalog: parseCatalog(JSON.parse(r.document), { stored: true }), createdBy: r.created_by, createdAt: r.created_at, changeNote: r.change_note }))
    },

    effective,

    /** Saves a new version (201), or nothing when unchanged (200); 409 on a stale expectedVersion. */
    async save(
      tenant: Tenant,
      input: unknown,
      who: string,
      opts: { expectedVersion?: number; changeNote?: string } = {},
    ): Promise<{ saved: SavedCatalog; created: boolean }> {
      const shape = checkCatalogShape(input)
      if (!shape.catalog) throw invalidCatalog(shape.issues)
      const catalog = shape.catalog
      const parent = await parentOf(tenant)
      const defs = new Map((await deps.tags.list(tenant.id)).map((d) => [d.name, d]))
      // Every problem at once: shape, then tags and modules (a condition reported twice counts once).
      const seen = new Set<string>()
      const issues = [...shape.issues, ...checkCatalog(mergeCatalogs(parent.catalog, catalog), catalog, defs, tenant.timeZone), ...(await memberIssues(tenant, catalog))].filter((i) => {
        const k = `${i.field}\u0000${i.message}`
        return !seen.has(k) && seen.add(k)
      })
      if (issues.length) throw invalidCatalog(issues)
      const current = await latest(tenant.id)
      if (opts.expectedVersion !== undefined && (current?.version ?? 0) !== opts.expectedVersion) {
        throw new AppError('CONFLICT', `The catalogue is at version ${current?.version ?? 0}, not ${opts.expectedVersion}: reload it and apply the change again.`)
      }
      if (current && isDeepStrictEqual(current.catalog, catalog)) return { saved: current, created: false }
      const version = (current?.version ?? 0) + 1
      const now = new Date()
      await deps.db.forTenant(tenant.id).insert('layout_catalogs', [
        { version, document: JSON.stringify(catalog), created_by: who, created_at: chDateTime(now), change_note: opts.changeNote ?? '' },
      ])
      return { saved: { version, catalog, createdBy: who, createdAt: chDateTime(now), changeNote: opts.changeNote ?? '' }, created: true }
    },
  }
}

export type CatalogRepository = ReturnType<typeof createCatalogRepository>
