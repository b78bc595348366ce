import { z } from 'zod'
import type { Db } from '../core/db.js'
import { chDateTime } from '../core/time.js'

/**
 * Optional per-tenant tracking plans: which track events the app may send and what their
 * properties look like. In `block` mode a violating event is rejected (with the reason); in
 * `flag` mode it is stored with its violations listed, so analysts can find and fix the sender.
 */

const propertySpec = z.object({
  type: z.enum(['string', 'number', 'boolean', 'object', 'array']),
  required: z.boolean().default(false),
  enum: z.array(z.union([z.string(), z.number()])).max(500).optional(),
})

export const trackingPlanInput = z.object({
  mode: z.enum(['flag', 'block']),
  allowUnplannedEvents: z.boolean().default(false),
  events: z
    .record(
      z.string().min(1).max(200),
      z.object({
        description: z.string().max(1000).optional(),
        properties: z.record(z.string().min(1).max(200), propertySpec).default({}),
        allowAdditionalProperties: z.boolean().default(true),
      }),
    )
    .refine((e) => Object.keys(e).length <= 2000, { message: 'at most 2000 events' }),
})
export type TrackingPlan = z.infer<typeof trackingPlanInput>

export const trackingPlanView = trackingPlanInput.extend({ version: z.number(), createdAt: z.string(), createdBy: z.string() })
export type TrackingPlanView = z.infer<typeof trackingPlanView>

const typeOf = (v: unknown) => (Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v)

/**
 * A name the app sent, looked up as an own property only: event and property names are the
 * app's, and `constructor` or `toString` must not find Object.prototype's (a plan read from JSON
 * is a plain object).
 */
const own = <T>(o: Record<string, T>, name: string): T | undefined => (Object.hasOwn(o, name) ? o[name] : undefined)

/** The violations of one track event against a plan; empty when it conforms. */
export function checkEvent(plan: TrackingPlan, event: string, properties: Record<string, unknown>): string[] {
  const spec = own(plan.events, event)
  if (!spec) return plan.allowUnplannedEvents ? [] : [`unplanned_event:${event}`]
  const out: string[] = []
  for (const [name, p] of Object.entries(spec.properties)) {
    const v = own(properties, name)
    if (v === undefined || v === null) {
      if (p.required) out.push(`missing_property:${name}`)
      continue
    }
    if (typeOf(v) !== p.type) out.push(`wrong_type:${name}:${p.type}`)
    else if (p.enum && !p.enum.includes(v as string | number)) out.push(`not_in_enum:${name}`)
  }
  if (!spec.allowAdditionalProperties) {
    for (const name of Object.keys(properties)) if (!Object.hasOwn(spec.properties, name)) out.push(`unplanned_property:${name}`)
  }
  return out
}

export interface TrackingPlans {
  /** The active plan, from memory (reloaded when a plan is saved here or every minute). */
  current(tenantId: number): Promise<TrackingPlanView | undefined>
  save(tenantId: number, plan: TrackingPlan, by: string): Promise<TrackingPlanView>
  /** Removes the plan: every event is accepted again. */
  clear(tenantId: number, by: string): Promise<void>
}

const planRow = z.object({ version: z.coerce.number(), mode: z.enum(['flag', 'block']), plan: z.string(), created_by: z.string(), created_at: z.string() })

export function createTrackingPlans(deps: { db: Db; now?: () => Date; ttlMs?: number }): TrackingPlans {
  const now = deps.now ?? (() => new Date())
  const ttl = deps.ttlMs ?? 60_000
  const cache = new Map<number, { at: number; plan: TrackingPlanView | undefined }>()

  async function load(tenantId: number): Promise<TrackingPlanView | undefined> {
    const rows = await deps.db.forTenant(tenantId).query(
      `SELECT version, mode, plan, created_by, toString(created_at) AS created_at FROM tracking_plans
       WHERE tenant_id = {tenant:UInt16} ORDER BY version DESC LIMIT 1`,
      {},
      planRow,
    )
    const r = rows[0]
    // An empty plan text is how a plan is cleared.
    const plan = r && r.plan ? { ...(JSON.parse(r.plan) as TrackingPlan), version: r.version, createdAt: r.created_at, createdBy: r.created_by } : undefined
    cache.set(tenantId, { at: Date.now(), plan })
    return plan
  }

  async function write(tenantId: number, mode: 'flag' | 'block', text: string, by: string) {
    const latest = await load(tenantId)
    const version = (latest?.version ?? (await maxVersion(tenantId))) + 1
    await deps.db.forTenant(tenantId).insert('tracking_plans', [{ version, mode, plan: text, created_by: by, created_at: chDateTime(now()) }])
    return load(tenantId)
  }

  async function maxVersion(tenantId: number) {
    const [r] = await deps.db.forTenant(tenantId).query(
      'SELECT max(version) AS v FROM tracking_plans WHERE tenant_id = {tenant:UInt16}',
      {},
      z.object({ v: z.coerce.number() }),
    )
    return r?.v ?? 0
  }

  return {
    async current(tenantId) {
      const c = cache.get(tenantId)
      if (c && Date.now() - c.at < ttl) return c.plan
      return load(tenantId)
    },
    async save(tenantId, plan, by) {
      return (await write(tenantId, plan.mode, JSON.stringify(plan), by))!
    },
    async clear(tenantId, by) {
      await write(tenantId, 'flag', '', by)
    },
  }
}
