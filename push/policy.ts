import { isDeepStrictEqual } from 'node:util'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError, issuesFromZod } from '../core/errors.js'
import { chDateTime } from '../core/time.js'

/**
 * A tenant's push policy, versioned like campaigns (who, when, a note):
 *
 * - quiet hours in the tenant's local time (default 21:00-08:00): marketing and service
 *   messages due inside them are held to the end of the quiet period; security messages go out
 *   and are flagged (quiet_exempt) and logged. `null` turns quiet hours off.
 * - consent for service and security messages: `explicit` (a granted row for the purpose and
 *   channel), `unless_refused` (no row counts as yes; a withdrawal counts) or `always`. Marketing
 *   always needs an explicit grant: that is not a setting.
 * - caps: one pressure budget per customer across every campaign, counted per local day and per
 *   rolling 7 days. A message of class C goes out only while the customer's count is below C's
 *   cap, so a loan reminder (high) still fits where a promotion (low) no longer does. Security
 *   messages neither spend nor are held by the budget; `critical` is uncapped.
 * - maxAttempts: leases of a target before it is given up (a target returned by a failed
 *   delivery with `retry`, or whose lease ran out, is leased again).
 */

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'a local time HH:MM')
const consentMode = z.enum(['explicit', 'unless_refused', 'always'])
const cap = z.strictObject({ day: z.number().int().min(0).max(100), week: z.number().int().min(0).max(700) })

export const DEFAULT_POLICY = {
  quietHours: { start: '21:00', end: '08:00' },
  consent: { service: 'unless_refused', security: 'always' },
  caps: { low: { day: 1, week: 3 }, normal: { day: 2, week: 6 }, high: { day: 4, week: 14 } },
  maxAttempts: 5,
} as const

export const policyInput = z.strictObject({
  quietHours: z
    .strictObject({ start: hhmm, end: hhmm })
    .refine((q) => q.start !== q.end, { message: 'start and end differ (null turns quiet hours off)' })
    .nullable()
    .default({ ...DEFAULT_POLICY.quietHours }),
  consent: z
    .strictObject({ service: consentMode.default(DEFAULT_POLICY.consent.service), security: consentMode.default(DEFAULT_POLICY.consent.security) })
    .default({ ...DEFAULT_POLICY.consent }),
  caps: z
    .strictObject({ low: cap.default(DEFAULT_POLICY.caps.low), normal: cap.default(DEFAULT_POLICY.caps.normal), high: cap.default(DEFAULT_POLICY.caps.high) })
    .default({ low: { ...DEFAULT_POLICY.caps.low }, normal: { ...DEFAULT_POLICY.caps.normal }, high: { ...DEFAULT_POLICY.caps.high } }),
  maxAttempts: z.number().int().min(1).max(20).default(DEFAULT_POLICY.maxAttempts),
  changeNote: z.string().max(500).default(''),
})
export type PolicyInput = z.input<typeof policyInput>
export type Policy = Omit<z.infer<typeof policyInput>, 'changeNote'>

export interface SavedPolicy extends Policy {
  version: number
  createdBy: string
  createdAt: string
  changeNote: string
}

export const defaultPolicy = (): SavedPolicy => {
  const { changeNote: _n, ...p } = policyInput.parse({})
  return { ...p, version: 0, createdBy: '', createdAt: '', changeNote: 'default' }
}

/** Minutes after local midnight of an HH:MM. */
export const minutesOf = (hm: string): number => Number(hm.slice(0, 2)) * 60 + Number(hm.slice(3, 5))

/** Whether a local minute of the day is inside the quiet period [start, end), which may wrap midnight. */
export function inQuiet(minute: number, q: { start: string; end: string } | null): boolean {
  if (!q) return false
  const s = minutesOf(q.start)
  const e = minutesOf(q.end)
  return s < e ? minute >= s && minute < e : minute >= s || minute < e
}

const clocks = new Map<string, Intl.DateTimeFormat>()
/** Minutes after local midnight of an instant in a time zone. */
export function localMinute(d: Date, timeZone: string): number {
  let f = clocks.get(timeZone)
  if (!f) clocks.set(timeZone, (f = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })))
  const p = f.formatToParts(d)
  return Number(p.find((x) => x.type === 'hour')?.value) * 60 + Number(p.find((x) => x.type === 'minute')?.value)
}

const row = z.object({ version: z.coerce.number(), policy: z.string(), created_by: z.string(), created_at: z.string(), change_note: z.string() })

export interface PolicyRepository {
  get(tenantId: number): Promise<SavedPolicy>
  save(tenantId: number, input: unknown, actor: string, opts?: { expectedVersion?: number }): Promise<{ policy: SavedPolicy; changed: boolean }>
}

/** `cacheMs`: how long a read policy is reused (a change made by another process shows after it). */
export function createPolicyRepository(deps: { db: Db; cacheMs?: number }): PolicyRepository {
  const cache = new Map<number, { at: number; policy: SavedPolicy }>()
  const ttl = deps.cacheMs ?? 30_000

  async function load(tenantId: number): Promise<SavedPolicy> {
    const [r] = await deps.db.forTenant(tenantId).query(
      `SELECT version, policy, created_by, toString(created_at) AS created_at, change_note FROM push_policies FINAL
       WHERE tenant_id = {tenant:UInt16} ORDER BY version DESC LIMIT 1`,
      {},
      row,
    )
    if (!r) return defaultPolicy()
    // Parsed again through the schema: a policy stored by an older version gains new defaults.
    const { changeNote: _n, ...p } = policyInput.parse(JSON.parse(r.policy))
    return { ...p, version: r.version, createdBy: r.created_by, createdAt: r.created_at, changeNote: r.change_note }
  }

  const repo: PolicyRepository = {
    async get(tenantId) {
      const hit = cache.get(tenantId)
      if (hit && Date.now() - hit.at < ttl) return hit.policy
      const policy = await load(tenantId)
      cache.set(tenantId, { at: Date.now(), policy })
      return policy
    },
    async save(tenantId, input, actor, opts = {}) {
      const parsed = policyInput.safeParse(input)
      if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The push policy is invalid.', { issues: issuesFromZod(parsed.error.issues) })
      const { changeNote, ...p } = parsed.data
      const current = await load(tenantId)
      if (opts.expectedVersion !== undefined && current.version !== opts.expectedVersion) {
        throw new AppError('CONFLICT', `The push policy is at version ${current.version}, not ${opts.expectedVersion}.`, { issues: [{ field: 'expectedVersion', message: `current version is ${current.version}` }] })
      }
      const { version: _v, createdBy: _b, createdAt: _a, changeNote: _c, ...was } = current
      if (current.version > 0 && isDeepStrictEqual(was, p)) return { policy: current, changed: false }
      const saved: SavedPolicy = { ...p, version: current.version + 1, createdBy: actor, createdAt: chDateTime(new Date()), changeNote }
      await deps.db.forTenant(tenantId).insert('push_policies', [
        { version: saved.version, policy: JSON.stringify(p), created_by: actor, created_at: saved.createdAt, change_note: changeNote },
      ])
      cache.set(tenantId, { at: Date.now(), policy: saved })
      return { policy: saved, changed: true }
    },
  }
  return repo
}
