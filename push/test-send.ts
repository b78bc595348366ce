import crypto from 'node:crypto'
import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { ParamBinder } from '../core/params.js'
import { newRunId } from '../core/run-id.js'
import { chDateTime, localDate } from '../core/time.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { CAMPAIGN_ID, MAX_TTL_MINUTES, variantsOf, type SavedCampaign } from './campaign.schema.js'
import type { Policy, PolicyRepository } from './policy.js'
import { openingProduct } from './targeting.audience.js'
import type { OpeningProduct } from './targeting.fields.js'
import { targetingSql } from './targeting.sql.js'

/**
 * Test sends: a campaign's message, filled for each customer of one of the bank's test lists
 * (staff phones registered as customers), queued now as targets the notification service pulls
 * like any other, marked as tests. A test target has status 'test' and the campaign id followed
 * by TEST_SUFFIX, '~' and the send id (and ':' and the variant, for a campaign with message
 * variants), so it counts in none of the campaign's statistics and spends no frequency cap (caps count queued targets only). Holdout, control group, caps, quiet hours and the validity
 * window are not applied: the tester wants the message on the phone now. Consent and the
 * personalization switch still are: a test customer who withdrew consent gets nothing, and the
 * answer says so, customer by customer.
 */

export const TEST_SUFFIX = '~test'
export const MAX_TEST_MEMBERS = 50

/** A test target's stored campaign id; lease.queue.ts builds the same from push_test_sends. */
export const testCampaignId = (campaignId: string, sendId: string, variant = '') => `${campaignId}${TEST_SUFFIX}~${sendId}${variant ? `:${variant}` : ''}`

export const testListInput = z.strictObject({
  name: z.string().trim().min(1).max(100),
  members: z
    .array(z.strictObject({ customerNo: z.string().trim().min(1).max(64), label: z.string().trim().max(100).default('') }))
    .max(MAX_TEST_MEMBERS)
    .refine((m) => new Set(m.map((x) => x.customerNo)).size === m.length, 'a customer is on the list once'),
})

export interface TestMember {
  customerNo: string
  label: string
}
export interface TestList {
  id: string
  name: string
  members: TestMember[]
  changedBy: string
  changedAt: string
}

export interface TestSendResult {
  sendId: string
  campaignId: string
  version: number
  listId: string
  /** The message variants sent (each member gets each of them); empty for a campaign without variants. */
  variants: string[]
  /** `messageVariant`: which variant, for a campaign with variants. */
  queued: (TestMember & { targetId: string; messageVariant?: string; language: string; variant: string; title: string; body: string })[]
  /** Members who get nothing, with why: no_consent, consent_refused, personalization_off, missing_field, unknown_customer. */
  leftOut: (TestMember & { messageVariant?: string; reason: string })[]
}

const listRow = z.object({ list_id: z.string(), list_name: z.string(), customer_key: z.coerce.number(), no: z.string(), member_label: z.string(), gone: z.coerce.number(), by: z.string(), at: z.string() })
const decidedRow = z.object({ k: z.coerce.number(), cust_no: z.string(), lang: z.string(), variant: z.string(), message_variant: z.string(), title: z.string().nullable(), body: z.string().nullable(), reason: z.string() })
const iso = (s: string) => `${s.replace(' ', 'T')}Z`

export interface TestSends {
  lists(tenantId: number): Promise<TestList[]>
  list(tenantId: number, id: string): Promise<TestList>
  saveList(tenantId: number, id: string, input: unknown, holder: string): Promise<TestList>
  /** `variant`: send that message variant only; without it, every variant of the campaign (each member gets each). */
  send(tenantId: number, c: SavedCampaign, listId: string, holder: string, variant?: string): Promise<TestSendResult>
}

export function createTestSends(deps: { db: Db; tenants: TenantService; policies: PolicyRepository; queued(tenantId: number): void }): TestSends {
  const tdb = (t: number) => deps.db.forTenant(t)

  async function readLists(tenantId: number, id?: string): Promise<TestList[]> {
    // The newest row of each (list, customer) decides; a list whose members were all taken off stays, empty.
    const rows = await tdb(tenantId).query(
      `SELECT list_id, argMax(name, changed_at) AS list_name, customer_key, argMax(customer_no, changed_at) AS no, argMax(label, changed_at) AS member_label,
              argMax(removed, changed_at) AS gone, argMax(changed_by, changed_at) AS by, toString(max(changed_at)) AS at
       FROM push_test_lists WHERE tenant_id = {tenant:UInt16} ${id ? 'AND list_id = {id:String}' : ''}
       GROUP BY list_id, customer_key ORDER BY list_id, no`,
      id ? { id } : {},
      listRow,
    )
    const out = new Map<string, TestList>()
    for (const r of rows) {
      let l = out.get(r.list_id)
      if (!l) out.set(r.list_id, (l = { id: r.list_id, name: r.list_name, members: [], changedBy: r.by, changedAt: iso(r.at) }))
      if (iso(r.at) > l.changedAt) Object.assign(l, { name: r.list_name, changedBy: r.by, changedAt: iso(r.at) })
      if (!r.gone) l.members.push({ customerNo: r.no, label: r.member_label })
    }
    return [...out.values()]
  }

  async function keysOf(tenantId: number, nos: readonly string[]): Promise<Map<string, number>> {
    if (!nos.length) return new Map()
    const rows = await tdb(tenantId).query(
      `SELECT customer_no, argMax(customer_key, updated_at) AS k, argMax(deleted, updated_at) AS gone FROM customers
       WHERE tenant_id = {tenant:UInt16} AND customer_no IN {nos:Array(String)} GROUP BY customer_no`,
      { nos },
      z.object({ customer_no: z.string(), k: z.coerce.number(), gone: z.coerce.number() }),
    )
    return new Map(rows.filter((r) => !r.gone).map((r) => [r.customer_no, r.k]))
  }

  /** The campaign's message filled for the test customers, as targeting would fill variant `variant` ('' without variants). */
  async function decide(
    db: TenantDb,
    c: SavedCampaign,
    o: { keys: number[]; today: string; now: Date; policy: Policy; timeZone: string; product: OpeningProduct | undefined; sendId: string; variant: string },
  ): Promise<z.infer<typeof decidedRow>[]> {
    const b = new ParamBinder('q')
    const audience = {
      sql: `SELECT customer_key, toDate(${b.bind('Date', o.today)}) AS occ_date, toDateTime64(${b.bind("DateTime64(3, 'UTC')", chDateTime(o.now))}, 3, 'UTC') AS due_base, '' AS no_hint
            FROM (SELECT arrayJoin(${b.bind('Array(UInt32)', o.keys)}) AS customer_key)`,
      dates: { from: o.today, to: o.today },
    }
    // What a test leaves out: the holdout, the control group, caps (a critical class is
    // uncapped), quiet hours and the validity window. Consent and missing fields still apply.
    const { validFrom: _f, validUntil: _u, ...rest } = c
    const spec = {
      tenantId: db.tenantId,
      campaign: { ...rest, controlPerMille: 0, priority: 'critical' as const },
      audience,
      policy: { ...o.policy, quietHours: null },
      timeZone: o.timeZone,
      now: o.now,
      today: o.today,
      holdoutPerMille: 0,
      runId: '0',
      trigger: 'manual' as const,
      product: o.product,
      ...(o.variant ? { variant: o.variant } : {}),
    }
    const { decided, params } = targetingSql(spec, b)
    // The statement skips customers already targeted under `cid` today: a fresh id per send, so a second test the same day is sent again.
    return db.query(`SELECT k, cust_no, lang, variant, message_variant, title, body, reason FROM (${decided})`, { ...params, cid: testCampaignId(c.id, o.sendId) }, decidedRow)
  }

  const api: TestSends = {
    lists: (tenantId) => readLists(tenantId),
    async list(tenantId, id) {
      const [l] = await readLists(tenantId, id)
      if (!l) throw new AppError('NOT_FOUND', `No test list ${id}.`)
      return l
    },

    async saveList(tenantId, id, input, holder) {
      if (!CAMPAIGN_ID.test(id)) throw new AppError('VALIDATION_FAILED', 'A test list id is lower case letters, digits, _ and -.', { issues: [{ field: 'id', message: 'invalid' }] })
      const parsed = testListInput.safeParse(input)
      if (!parsed.success) {
        throw new AppError('VALIDATION_FAILED', 'The test list is invalid.', { issues: parsed.error.issues.map((i) => ({ field: i.path.join('.') || 'members', message: i.message })) })
      }
      const { name, members } = parsed.data
      const keys = await keysOf(tenantId, members.map((m) => m.customerNo))
      const unknown = members.map((m, i) => ({ m, i })).filter(({ m }) => !keys.has(m.customerNo))
      if (unknown.length) {
        throw new AppError('VALIDATION_FAILED', 'A test list names customers the bank has: register the test phones as customers first.', {
          issues: unknown.map(({ m, i }) => ({ field: `members.${i}.customerNo`, message: `no customer ${m.customerNo}` })),
        })
      }
      const before = (await readLists(tenantId, id))[0]
      const at = chDateTime(new Date())
      const kept = new Set(members.map((m) => m.customerNo))
      const gone = (before?.members ?? []).filter((m) => !kept.has(m.customerNo))
      const goneKeys = await keysOf(tenantId, gone.map((m) => m.customerNo))
      const row = (m: TestMember, key: number, removed: number) => ({ list_id: id, name, customer_key: key, customer_no: m.customerNo, label: m.label, removed, changed_by: holder, changed_at: at })
      const rows = [...members.map((m) => row(m, keys.get(m.customerNo)!, 0)), ...gone.filter((m) => goneKeys.has(m.customerNo)).map((m) => row(m, goneKeys.get(m.customerNo)!, 1))]
      // An empty list still needs a row to exist: a removed placeholder under key 0 holds its name.
      if (!rows.length) rows.push({ ...row({ customerNo: '', label: '' }, 0, 1) })
      await tdb(tenantId).insert('push_test_lists', rows)
      return api.list(tenantId, id)
    },

    async send(tenantId, c, listId, holder, variant) {
      const all = variantsOf(c).map((v) => v.id)
      if (variant !== undefined && !all.includes(variant)) {
        throw new AppError('VALIDATION_FAILED', `Campaign ${c.id} has no variant ${variant}.`, { issues: [{ field: 'variant', message: all.some(Boolean) ? `one of ${all.join(', ')}` : 'the campaign has no variants' }] })
      }
      const chosen = variant !== undefined ? [variant] : all
      const list = await api.list(tenantId, listId)
      if (!list.members.length) throw new AppError('VALIDATION_FAILED', `Test list ${listId} has no members.`, { issues: [{ field: 'list', message: 'empty' }] })
      const db = tdb(tenantId)
      const [tenant, policy] = await Promise.all([deps.tenants.get(tenantId), deps.policies.get(tenantId)])
      const now = new Date()
      const today = localDate(now, tenant.timeZone)
      const keys = await keysOf(tenantId, list.members.map((m) => m.customerNo))
      const product = c.dateTrigger?.on === 'product_opening' ? await openingProduct(db, c.dateTrigger, today) : undefined
      const sendId = crypto.randomBytes(8).toString('hex')
      const out: TestSendResult = { sendId, campaignId: c.id, version: c.version, listId, variants: chosen.filter(Boolean), queued: [], leftOut: [] }
      const expires = new Date(now.getTime() + Math.min(c.ttlMinutes, MAX_TTL_MINUTES) * 60_000)
      const targets: Record<string, unknown>[] = []
      for (const v of chosen) {
        const rows = await decide(db, c, { keys: [...keys.values()], today, now, policy, timeZone: tenant.timeZone, product, sendId, variant: v })
        const byKey = new Map(rows.map((r) => [r.k, r]))
        // Each send's and each variant's test targets have their own stored id, so none shares
        // another's row key (push_targets' order key): a replacing merge would keep one of them.
        const storedCid = testCampaignId(c.id, sendId, v)
        const tagged = v ? { messageVariant: v } : {}
        for (const m of list.members) {
          const key = keys.get(m.customerNo)
          const r = key === undefined ? undefined : byKey.get(key)
          if (!r) {
            out.leftOut.push({ ...m, ...tagged, reason: 'unknown_customer' })
            continue
          }
          if (r.reason !== '' || r.title === null || r.body === null) {
            out.leftOut.push({ ...m, ...tagged, reason: r.reason || 'missing_field' })
            continue
          }
          const targetId = crypto.createHash('md5').update(`${tenantId}:${storedCid}:${sendId}:${r.k}`).digest('hex')
          out.queued.push({ ...m, targetId, ...tagged, language: r.lang, variant: r.variant, title: r.title, body: r.body })
          targets.push({
            campaign_id: storedCid, local_date: today, customer_key: r.k, target_id: targetId, campaign_version: c.version, run_id: newRunId(), customer_no: r.cust_no,
            purpose: c.purpose, channel: c.channel, priority: c.priority, status: 'test', reason: '', due_at: chDateTime(now), expires_at: chDateTime(expires), send_date: today,
            quiet_exempt: 0, language: r.lang, variant: r.variant, message_variant: v, title: r.title, body: r.body, trigger: 'test', created_at: chDateTime(now),
          })
        }
      }
      if (targets.length) await db.insert('push_targets', targets)
      await db.insert('push_test_sends', [
        { send_id: sendId, campaign_id: c.id, campaign_version: c.version, list_id: listId, holder, at: chDateTime(now), queued: out.queued.length, left_out: out.leftOut.length, variants: out.variants },
      ])
      if (targets.length) deps.queued(tenantId)
      return out
    },
  }
  return api
}
