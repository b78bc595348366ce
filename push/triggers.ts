import { z } from 'zod'
import type { Db, TenantDb } from '../core/db.js'
import { errText } from '../core/errors.js'
import { resolvedEventsSql } from '../core/identity.sql.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { chDateTime, localDate } from '../core/time.js'
import type { SegmentRepository } from '../segments/segment.repository.js'
import type { TagRepository } from '../tags/tag.repository.js'
import { measureConditionSql } from '../tags/tag.measures.js'
import { ParamBinder } from '../core/params.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import type { TenantService } from '../tenants/tenants.service.js'
import type { EventSchedule, SavedCampaign } from './campaign.schema.js'
import type { CampaignRepository } from './campaign.repository.js'
import type { KeyedLock } from '../core/keyed-lock.js'
import { audienceBitmap } from './targeting.audience.js'
import type { Targeting } from './targeting.js'
import { newRunId } from '../core/run-id.js'

/**
 * Event triggers: "A then B within N minutes" (up to four steps), evaluated as events arrive.
 * The ingest path calls `onEvents` with a batch it has stored. Only events named by the last
 * step of an active event campaign wake a trigger (the rest cost a set lookup); for those
 * customers one windowFunnel pass over their recent events says who completed the sequence, and
 * the usual targeting query writes their targets: consent, caps, dedup per local date, the
 * holdout and quiet hours apply as for any campaign. Targets are due at once, so the next pull
 * has them.
 *
 * The events are read with identities resolved, as every reader reads them (core/identity.sql.ts):
 * a step sent before sign-in under an anonymous id linked since, and a step of a customer merged
 * into another, count for the customer they belong to now; a waking event of a merged customer
 * targets the customer it was merged into.
 */

export interface IncomingEvent {
  event: string
  /** The bank's customer number (Segment userId). */
  userId?: string | undefined
  /**
   * The dense key when the caller knows it already (0: not known). The ingest writer gives the key
   * of an event sent without the number from a device identify had linked to the customer.
   */
  customerKey?: number | undefined
  /** Event time: epoch milliseconds, a Date or an ISO string. */
  timestamp: number | Date | string
}

export interface TriggerResult {
  campaigns: number
  targeted: number
  queued: number
}

const idRow = z.object({ id_value: z.string(), customer_key: z.coerce.number() })
const ms = (t: IncomingEvent['timestamp']) => (typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : t.getTime())
const mergeRow = z.object({ from_key: z.coerce.number(), into_key: z.coerce.number() })
const EVENT_COLUMNS = ['timestamp', 'type', 'event', 'properties']

/** A waking event's customer: `key` as stored, `customer` the one it resolves to now. */
interface Hit {
  key: number
  customer: number
  no: string
  at: number
}

/**
 * Where the waking keys' customers are now: the customer each key is merged into (merges are
 * routed to the end of their chain, so one step) and the keys stored under each such customer,
 * its own and those merged into it, whose events the sequence may use.
 */
async function customersOf(db: TenantDb, keys: readonly number[]): Promise<{ customer(key: number): number; stored(customers: readonly number[]): number[] }> {
  const rows = await db.query(
    `WITH standing AS (
       SELECT from_key, argMax(into_key, updated_at) AS into_key FROM customer_merges
       WHERE tenant_id = {tenant:UInt16} GROUP BY from_key HAVING argMax(active, updated_at) = 1)
     SELECT from_key, into_key FROM standing
     WHERE from_key IN {keys:Array(UInt32)} OR into_key IN {keys:Array(UInt32)}
        OR into_key IN (SELECT into_key FROM standing WHERE from_key IN {keys:Array(UInt32)})`,
    { keys },
    mergeRow,
  )
  const into = new Map(rows.map((r) => [r.from_key, r.into_key]))
  return {
    customer: (key) => into.get(key) ?? key,
    stored: (customers) => {
      const own = new Set(customers)
      return [...own, ...rows.filter((r) => own.has(r.into_key)).map((r) => r.from_key)]
    },
  }
}

export function createTriggers(deps: {
  db: Db
  tenants: TenantService
  campaigns: CampaignRepository
  segments: SegmentRepository
  tags: TagRepository
  targeting: Targeting
  lock: KeyedLock
  log: Logger
  metrics: Metrics
  /** Ids of the given campaigns whose current version is approved: an unapproved marketing campaign is not triggered. */
  approved?(tenantId: number, campaigns: readonly SavedCampaign[]): Promise<Set<string>>
}) {
  const latency = deps.metrics.histogram('qianmian_push_trigger_seconds', 'From the last event of a sequence to its target written', [], [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])

  /** Keys of customer numbers, from the identities ingest wrote. */
  async function keysOf(tenantId: number, userIds: string[]): Promise<Map<string, number>> {
    if (!userIds.length) return new Map()
    const rows = await deps.db.forTenant(tenantId).query(
      `SELECT id_value, argMax(customer_key, updated_at) AS customer_key FROM identities
       WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value IN (SELECT arrayJoin({ids:Array(String)}))
       GROUP BY id_value`,
      { ids: userIds },
      idRow,
    )
    return new Map(rows.filter((r) => r.customer_key !== 0).map((r) => [r.id_value, r.customer_key]))
  }

  /** The customer number each of these keys was last identified by. */
  async function numbersOf(tenantId: number, keys: number[]): Promise<Map<number, string>> {
    if (!keys.length) return new Map()
    const rows = await deps.db.forTenant(tenantId).query(
      `SELECT customer_key, argMax(id_value, updated_at) AS id_value FROM identities
       WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND customer_key IN {keys:Array(UInt32)}
       GROUP BY customer_key`,
      { keys },
      idRow,
    )
    return new Map(rows.map((r) => [r.customer_key, r.id_value]))
  }

  async function evaluate(
    tenantId: number,
    c: SavedCampaign & { schedule: EventSchedule },
    hits: Hit[],
    ctx: { timeZone: string; defs: ReadonlyMap<string, TagDefinition>; runId: string; stored(customers: readonly number[]): number[] },
  ) {
    const db = deps.db.forTenant(tenantId)
    const now = new Date()
    const b = new ParamBinder('q')
    const s = c.schedule
    const steps = s.steps.map(({ event: f }) => measureConditionSql({ id: '', role: 'count', events: f.names ?? [], eventTypes: f.types ?? [], where: f.where ?? [], property: undefined }, b))
    const first = Math.min(...hits.map((h) => h.at))
    const last = Math.max(...hits.map((h) => h.at))
    const within = s.withinMinutes * 60
    const audience = c.audience.all ? '' : `AND customer_key IN (SELECT arrayJoin(bitmapToArray(seg)) FROM (${await audienceBitmap(c.audience, { db, segments: deps.segments, defs: ctx.defs, timeZone: ctx.timeZone, asOf: now, purpose: c.purpose }, b)}))`
    const customers = [...new Set(hits.map((h) => h.customer))]
    // The number sent with a customer's own event stands in for a missing profile; one sent under
    // a key merged away is another registration's number, so that customer's profile must say it.
    const nos = new Map(hits.filter((h) => h.customer === h.key && h.no).map((h) => [h.customer, h.no]))
    const time = (at: number) => b.bind(`DateTime64(3, 'UTC')`, chDateTime(at))
    // Read narrowly: the customers' stored keys, and key 0 (anonymous events, one range of the
    // table's order, of which only those linked to these customers are kept); the time the
    // sequence may span; events some step counts.
    const where = `customer_key IN ${b.bind('Array(UInt32)', [0, ...ctx.stored(customers)])}
          AND timestamp BETWEEN ${time(first - within * 1000)} AND ${time(last + 1000)}
          AND (${steps.map((x) => `(${x})`).join(' OR ')})`
    // windowFunnel's window is a validated integer (1..1440 minutes): it takes a literal.
    const sql = `SELECT customer_key, toDate(tb, {tz:String}) AS occ_date, {now:DateTime64(3, 'UTC')} AS due_base,
        transform(customer_key, ${b.bind('Array(UInt32)', [...nos.keys()])}, ${b.strs([...nos.values()])}, '') AS no_hint
      FROM (
        SELECT customer_key, windowFunnel(${within})(toDateTime(timestamp), ${steps.map((x) => `(${x})`).join(', ')}) AS level,
               maxIf(timestamp, ${steps[steps.length - 1]}) AS tb
        FROM ${resolvedEventsSql(EVENT_COLUMNS, where)}
        WHERE customer_key IN ${b.bind('Array(UInt32)', customers)}
        GROUP BY customer_key
        HAVING level = ${steps.length} AND tb >= ${time(first)})
      WHERE 1 ${audience}`
    const dates = { from: localDate(new Date(first), ctx.timeZone), to: localDate(new Date(last), ctx.timeZone) }
    const out = await deps.targeting.write(db, { campaign: c, audience: { sql, dates }, b, asOf: now, timeZone: ctx.timeZone, runId: ctx.runId, trigger: 'event' })
    if (out.targeted) latency.observe((Date.now() - last) / 1000)
    return out
  }

  /**
   * Evaluates the tenant's event triggers over a batch of stored events. Failures are logged and
   * counted, not thrown: the events are stored whatever happens here.
   */
  async function onEvents(tenantId: number, events: readonly IncomingEvent[]): Promise<TriggerResult> {
    const result: TriggerResult = { campaigns: 0, targeted: 0, queued: 0 }
    const active = (await deps.campaigns.active(tenantId)).filter((c): c is SavedCampaign & { schedule: EventSchedule } => c.schedule.kind === 'event')
    let wakes = active.map((c) => {
      const names = new Set(c.schedule.steps[c.schedule.steps.length - 1]!.event.names ?? [])
      return { c, events: events.filter((e) => names.has(e.event) && (e.userId || e.customerKey)) }
    }).filter((w) => w.events.length)
    // Asked only when a marketing campaign woke: most batches wake none.
    if (deps.approved && wakes.some((w) => w.c.purpose === 'marketing')) {
      const ok = await deps.approved(tenantId, wakes.map((w) => w.c))
      wakes = wakes.filter((w) => w.c.purpose !== 'marketing' || ok.has(w.c.id))
    }
    if (!wakes.length) return result
    try {
      const userIds = [...new Set(wakes.flatMap((w) => w.events.flatMap((e) => (!e.customerKey && e.userId ? [e.userId] : []))))]
      const [tenant, tags, keys] = await Promise.all([deps.tenants.get(tenantId), deps.tags.list(tenantId), keysOf(tenantId, userIds)])
      const defs = new Map<string, TagDefinition>(tags.map((d) => [d.name, d]))
      const woken = wakes.map(({ c, events: evs }) => ({
        c,
        events: evs.flatMap((e) => {
          const key = e.customerKey || keys.get(e.userId ?? '')
          const at = ms(e.timestamp)
          return key && Number.isFinite(at) ? [{ key, no: e.userId ?? '', at }] : []
        }),
      })).filter((w) => w.events.length)
      if (!woken.length) return result
      // A step sent without the number names no one: the customer's number is read from their
      // identities (it stands in for a missing profile, as the number sent with an event does).
      const unnamed = [...new Set(woken.flatMap((w) => w.events.flatMap((e) => (e.no ? [] : [e.key]))))]
      const numbers = await numbersOf(tenantId, unnamed)
      for (const w of woken) for (const e of w.events) if (!e.no) e.no = numbers.get(e.key) ?? ''
      const merged = await customersOf(deps.db.forTenant(tenantId), [...new Set(woken.flatMap((w) => w.events.map((e) => e.key)))])
      const runId = newRunId()
      await deps.lock.run(tenantId, async () => {
        for (const { c, events: evs } of woken) {
          const hits = evs.map((e) => ({ ...e, customer: merged.customer(e.key) }))
          try {
            const out = await evaluate(tenantId, c, hits, { timeZone: tenant.timeZone, defs, runId, stored: merged.stored })
            result.campaigns++
            result.targeted += out.targeted
            result.queued += out.queued
          } catch (e) {
            deps.log.warn({ tenant: tenantId, campaign: c.id, err: errText(e) }, 'push event trigger failed')
          }
        }
      })
    } catch (e) {
      deps.log.warn({ tenant: tenantId, err: errText(e) }, 'push event triggers failed')
    }
    return result
  }

  return { onEvents }
}
