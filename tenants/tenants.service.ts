import { z } from 'zod'
import type { SystemDb } from '../core/db.js'
import { createKeyedLock, type KeyedLock } from '../core/keyed-lock.js'
import { AppError, issuesFromZod } from '../core/errors.js'
import { chDateTime, timeZoneSchema } from '../core/time.js'
import { applyPrivacy, defaultPrivacy, privacyInput, type PrivacyInput, type PrivacySettings } from './privacy.schema.js'

/**
 * The tenant registry: the group and its member banks. It is small and read on every request
 * (auth checks the tenant is active), so it is held in memory and reloaded after each change made
 * here. Changes made by another process (several API processes, or several against one server)
 * are read when the registry is older than `maxAgeMs` (in the background: requests keep the one
 * held meanwhile), and at once for an id or slug not held (at most once a second).
 */

export const tenantSlug = z
  .string()
  .regex(/^[a-z][a-z0-9-]{1,39}$/, { message: 'expected 2-40 lower-case letters, digits or -, starting with a letter' })

export const createTenantInput = z.object({
  slug: tenantSlug,
  name: z.string().trim().min(1).max(200),
  kind: z.enum(['group', 'member']).default('member'),
  parent: tenantSlug.optional().describe('slug of the group this member bank belongs to'),
  timeZone: timeZoneSchema.optional(),
})
export type CreateTenantInput = z.input<typeof createTenantInput>

export const tenantView = z.object({
  id: z.number().int(),
  slug: z.string(),
  name: z.string(),
  kind: z.enum(['group', 'member']),
  parentId: z.number().int().nullable(),
  timeZone: z.string(),
  status: z.enum(['active', 'disabled']),
  createdAt: z.string(),
})
export type Tenant = z.infer<typeof tenantView>

const tenantRow = z.object({
  tenant_id: z.coerce.number(),
  slug: z.string(),
  name: z.string(),
  kind: z.enum(['group', 'member']),
  parent_id: z.coerce.number(),
  time_zone: z.string(),
  status: z.enum(['active', 'disabled']),
  created_at: z.string(),
})

export interface TenantService {
  list(): Promise<Tenant[]>
  get(idOrSlug: number | string): Promise<Tenant>
  /** From the in-memory registry, without a query; undefined when unknown. */
  cached(id: number): Tenant | undefined
  create(input: CreateTenantInput): Promise<Tenant>
  setStatus(idOrSlug: number | string, status: Tenant['status']): Promise<Tenant>
  /** Retention and the value policy (defaults until changed); from memory after the first load. */
  privacy(id: number): Promise<PrivacySettings>
  /** Changes some settings; 400 naming the field for a retention out of bounds or below the legal minimum. */
  savePrivacy(id: number, change: PrivacyInput, holder: string): Promise<PrivacySettings>
  reload(): Promise<void>
}

const privacyRow = z.object({
  tenant_id: z.coerce.number(),
  events_days: z.coerce.number(),
  exposures_days: z.coerce.number(),
  push_outcomes_days: z.coerce.number(),
  tag_history_days: z.coerce.number(),
  legal_minimum_days: z.coerce.number(),
  value_policy: z.enum(['digest', 'mask']),
  updated_at: z.string(),
  updated_by: z.string(),
})

export function createTenantService(deps: {
  system: SystemDb
  defaultTimeZone: string
  now?: () => Date
  maxAgeMs?: number
  lock?: KeyedLock
  /** Told after each change is stored, before it is answered: other processes reload (tenants/registry.sync.ts). */
  changed?: () => Promise<void>
}): TenantService {
  const { system } = deps
  const now = deps.now ?? (() => new Date())
  const maxAgeMs = deps.maxAgeMs ?? 30_000
  let byId = new Map<number, Tenant>()
  let privacyById = new Map<number, PrivacySettings>()
  let loaded = false
  let loadedAt = 0
  let lastMissReload = 0
  let reloading: Promise<void> | undefined
  /** One reload at a time; callers arriving meanwhile share it. */
  const reloadShared = () => (reloading ??= load().finally(() => (reloading = undefined)))
  const refreshIfStale = () => {
    if (loaded && Date.now() - loadedAt > maxAgeMs) void reloadShared().catch(() => undefined)
  }

  /** After a change: a load already running may have read before it, so this one starts after. */
  async function reload() {
    if (reloading) await reloading.catch(() => undefined)
    await reloadShared()
  }

  async function load() {
    const startedAt = Date.now()
    const rows = await system.query(
      `SELECT tenant_id, slug, name, kind, parent_id, time_zone, status, toString(created_at) AS created_at
       FROM tenants FINAL ORDER BY tenant_id`,
      {},
      tenantRow,
    )
    byId = new Map(
      rows.map((r) => [
        r.tenant_id,
        {
          id: r.tenant_id,
          slug: r.slug,
          name: r.name,
          kind: r.kind,
          parentId: r.parent_id === 0 ? null : r.parent_id,
          timeZone: r.time_zone,
          status: r.status,
          createdAt: r.created_at,
        },
      ]),
    )
    const settings = await system.query(
      `SELECT tenant_id, events_days, exposures_days, push_outcomes_days, tag_history_days, legal_minimum_days, value_policy,
              toString(updated_at) AS updated_at, updated_by
       FROM tenant_privacy FINAL`,
      {},
      privacyRow,
    )
    privacyById = new Map(
      settings.map((r) => [
        r.tenant_id,
        {
          ...defaultPrivacy(),
          eventsDays: r.events_days,
          exposuresDays: r.exposures_days,
          pushOutcomesDays: r.push_outcomes_days,
          tagHistoryDays: r.tag_history_days,
          legalMinimumDays: r.legal_minimum_days,
          valuePolicy: r.value_policy,
          updatedAt: r.updated_at,
          updatedBy: r.updated_by,
        },
      ]),
    )
    loaded = true
    loadedAt = startedAt
  }

  async function privacy(id: number) {
    await get(id)
    return privacyById.get(id) ?? defaultPrivacy()
  }

  async function ensure() {
    if (!loaded) await reloadShared()
    else refreshIfStale()
  }

  function find(idOrSlug: number | string): Tenant | undefined {
    if (typeof idOrSlug === 'number') return byId.get(idOrSlug)
    if (/^\d+$/.test(idOrSlug)) return byId.get(Number(idOrSlug))
    for (const t of byId.values()) if (t.slug === idOrSlug) return t
    return undefined
  }

  async function get(idOrSlug: number | string) {
    await ensure()
    let t = find(idOrSlug)
    if (!t && Date.now() - lastMissReload > 1000) {
      // Perhaps created by another process since the last load.
      lastMissReload = Date.now()
      await reloadShared()
      t = find(idOrSlug)
    }
    if (!t) throw new AppError('NOT_FOUND', `No tenant ${JSON.stringify(String(idOrSlug))}.`)
    return t
  }

  async function write(t: Tenant, createdAt: string) {
    await system.insert('tenants', [
      {
        tenant_id: t.id,
        slug: t.slug,
        name: t.name,
        kind: t.kind,
        parent_id: t.parentId ?? 0,
        time_zone: t.timeZone,
        status: t.status,
        created_at: createdAt,
        updated_at: chDateTime(now()),
      },
    ])
    await reload()
    await deps.changed?.()
  }

  async function create(raw: CreateTenantInput): Promise<Tenant> {
    const parsed = createTenantInput.safeParse(raw)
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The tenant is invalid.', { issues: issuesFromZod(parsed.error.issues) })
    const input = parsed.data
    await reload()
    if (find(input.slug)) throw new AppError('CONFLICT', `Tenant ${input.slug} already exists.`, { issues: [{ field: 'slug', message: 'already exists' }] })
    let parentId: number | null = null
    if (input.kind === 'member' && input.parent) {
      const parent = find(input.parent)
      if (!parent) throw new AppError('VALIDATION_FAILED', `No tenant ${input.parent}.`, { issues: [{ field: 'parent', message: 'unknown tenant' }] })
      if (parent.kind !== 'group') {
        throw new AppError('VALIDATION_FAILED', 'A member bank belongs to a group.', { issues: [{ field: 'parent', message: 'not a group' }] })
      }
      parentId = parent.id
    } else if (input.kind === 'group' && input.parent) {
      throw new AppError('VALIDATION_FAILED', 'A group has no parent.', { issues: [{ field: 'parent', message: 'not allowed for a group' }] })
    }
    const id = Math.max(0, ...byId.keys()) + 1
    if (id > 65535) throw new AppError('CONFLICT', 'No tenant ids left.')
    const created = chDateTime(now())
    const tenant: Tenant = {
      id,
      slug: input.slug,
      name: input.name,
      kind: input.kind,
      parentId,
      timeZone: input.timeZone ?? deps.defaultTimeZone,
      status: 'active',
      createdAt: created,
    }
    await write(tenant, created)
    return (await get(id))
  }

  async function savePrivacy(id: number, raw: PrivacyInput, holder: string): Promise<PrivacySettings> {
    const parsed = privacyInput.safeParse(raw)
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The privacy settings are invalid.', { issues: issuesFromZod(parsed.error.issues) })
    const next = applyPrivacy(await privacy(id), parsed.data)
    await system.insert('tenant_privacy', [
      {
        tenant_id: id,
        events_days: next.eventsDays,
        exposures_days: next.exposuresDays,
        push_outcomes_days: next.pushOutcomesDays,
        tag_history_days: next.tagHistoryDays,
        legal_minimum_days: next.legalMinimumDays,
        value_policy: next.valuePolicy,
        updated_at: chDateTime(now()),
        updated_by: holder,
      },
    ])
    await reload()
    await deps.changed?.()
    return privacy(id)
  }

  // Changes read the registry and write whole rows: one at a time. A new tenant's id is the
  // highest held plus one, so two creations at once would take the same id and one bank would
  // silently become the other; two partial privacy changes at once would each write the
  // settings they read, and the first would be lost.
  // Shared by every API process when there are several (core/cluster-locks.ts).
  const lock = deps.lock ?? createKeyedLock()
  const oneAtATime = <T>(change: () => Promise<T>): Promise<T> => lock.run('registry', change)

  return {
    async list() {
      await ensure()
      return [...byId.values()]
    },
    get,
    cached: (id) => {
      refreshIfStale()
      return byId.get(id)
    },
    create: (raw) => oneAtATime(() => create(raw)),
    async setStatus(idOrSlug, status) {
      const t = await get(idOrSlug)
      if (t.status === status) return t
      await write({ ...t, status }, t.createdAt)
      return get(t.id)
    },
    privacy,
    savePrivacy: (id, raw, holder) => oneAtATime(() => savePrivacy(id, raw, holder)),
    reload,
  }
}
