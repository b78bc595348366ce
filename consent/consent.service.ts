import crypto from 'node:crypto'
import { z } from 'zod'
import type { AuditActor, AuditSink } from '../core/audit.js'
import type { Db } from '../core/db.js'
import { AppError, errText, issuesFromZod } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { chDateTime, chInstant, storableInstant } from '../core/time.js'
import {
  categoryMapping,
  consentInput,
  DEFAULT_CATEGORIES,
  pairIssue,
  type CategoryMapping,
  type ConsentChange,
  type ConsentNotice,
  type ConsentSource,
  type IngestConsent,
} from './consent.schema.js'
import { personsOf } from './consent.persons.js'
import { createTenantQueue } from './consent.queue.js'

/**
 * Consent recorded as it happens, with its history.
 *
 * Every change goes to `consent_history` (who, when by the customer's time and by ours, source,
 * notice version). The current state lives in `consents` (ReplacingMergeTree on the customer's
 * time), which targeting already reads: the newest decision by the customer's own clock wins,
 * whatever order the changes arrive in, and an older one is kept in the history only. For a
 * customer merged into another the newest is the person's, under any of its keys, and the state
 * and history shown are the person's (consent.persons.ts). A change
 * that wins is told at once to this process's listeners (the pull's withdrawal index, the
 * layouts' switch); other processes see it at their next refresh from the history table.
 *
 * Changes of a tenant are recorded one batch at a time (consent.queue.ts says how and why).
 */

export interface Recorder {
  keyId: string
  holder: string
}

export interface RecordedChange {
  purpose: string
  channel: string
  granted: boolean
  at: string
  /** false: a newer decision was stored already; this one is in the history only. */
  effective: boolean
}

export interface ConsentState {
  customerId: string
  personalized: boolean
  current: { purpose: string; channel: string; granted: boolean; at: string; source: string }[]
  history: {
    purpose: string
    channel: string
    granted: boolean
    at: string
    receivedAt: string
    source: string
    noticeVersion: string
    keyId: string
    holder: string
    category: string
  }[]
}

/** Told of the changes that won, before they are answered: one that returns a promise is waited for. */
export type ConsentListener = (tenantId: number, notices: readonly ConsentNotice[]) => void | Promise<void>

export interface ConsentService {
  /** `PUT /v1/customers/:id/consents`: one decision of a known customer; 409 when a newer one is stored. */
  put(tenantId: number, customerNo: string, input: unknown, by: Recorder): Promise<RecordedChange>
  /** Consent objects found on accepted events; never throws (the events are stored whatever happens here). */
  fromIngest(tenantId: number, items: readonly IngestConsent[], keyId: string): Promise<{ recorded: number; unmapped: number }>
  /** Records changes of known customers (already validated). */
  record(tenantId: number, changes: readonly ConsentChange[], by: Recorder): Promise<RecordedChange[]>
  state(tenantId: number, customerNo: string, opts?: { limit?: number }): Promise<ConsentState>
  categories(tenantId: number): Promise<{ version: number; mapping: CategoryMapping }>
  saveCategories(tenantId: number, input: unknown, by: Recorder, changeNote?: string): Promise<{ version: number; mapping: CategoryMapping; changed: boolean }>
  onChange(listener: ConsentListener): void
}

const HISTORY_COLUMNS = [
  'customer_key',
  'customer_no',
  'purpose',
  'channel',
  'granted',
  'customer_at',
  'received_at',
  'source',
  'notice_version',
  'key_id',
  'holder',
  'change_id',
  'message_id',
  'category',
] as const
const CONSENT_COLUMNS = ['customer_key', 'purpose', 'channel', 'granted', 'source', 'updated_at'] as const

const storedRow = z.object({ customer_key: z.coerce.number(), purpose: z.string(), channel: z.string(), at: z.coerce.number() })
const idRow = z.object({ customer_key: z.coerce.number() })
const mappingRow = z.object({ version: z.coerce.number(), mapping: z.string() })
const iso = (s: string) => `${s.replace(' ', 'T')}Z`

/** The digest a replayed event or request yields again: one history row per change. */
function changeId(c: ConsentChange): string {
  return crypto
    .createHash('sha256')
    .update([c.customerKey, c.purpose, c.channel, c.granted ? 1 : 0, c.customerAt, c.source, c.messageId, c.noticeVersion, c.category].join('\u0001'))
    .digest('hex')
    .slice(0, 32)
}

export interface ConsentDeps {
  db: Db
  log: Logger
  metrics: Metrics
  /** Keys of senders as the ingest writer resolves them (unknown customer numbers get keys). */
  resolveKeys: (tenantId: number, refs: readonly { userId?: string; anonymousId?: string }[]) => Promise<number[]>
  /** The audit trail, for changes that arrive through ingest (routes are audited by their hook). */
  audit?: AuditSink | undefined
  /** The holder of an ingest key (the app), recorded as who made the change; cached per key. */
  holderOf?: ((tenantId: number, keyId: string) => Promise<string | undefined>) | undefined
  now?: () => number
  categoriesCacheMs?: number
}

export function createConsentService(deps: ConsentDeps): ConsentService {
  const now = deps.now ?? Date.now
  const listeners: ConsentListener[] = []
  const holders = new Map<string, string>()
  async function holder(tenantId: number, keyId: string): Promise<string> {
    const k = `${tenantId}:${keyId}`
    let h = holders.get(k)
    if (h === undefined && deps.holderOf) holders.set(k, (h = (await deps.holderOf(tenantId, keyId)) ?? ''))
    return h ?? ''
  }
  const mappings = new Map<number, { at: number; version: number; mapping: CategoryMapping }>()
  const cacheMs = deps.categoriesCacheMs ?? 5_000
  const changesTotal = deps.metrics.counter('qianmian_consent_changes_total', 'Consent changes recorded, by source and whether they won', ['source', 'effective'])
  const unmappedTotal = deps.metrics.counter('qianmian_consent_unmapped_categories_total', 'Consent categories received that the tenant does not map')
  const unstorableTotal = deps.metrics.counter('qianmian_consent_unstorable_total', 'Consent objects from ingest left out: their time is outside what the tables hold')

  const queue = createTenantQueue(write)
  const record = (tenantId: number, changes: readonly ConsentChange[], by: Recorder): Promise<RecordedChange[]> =>
    queue(tenantId, changes.map((c) => ({ c, by })))

  async function write(tenantId: number, items: readonly { c: ConsentChange; by: Recorder }[]): Promise<RecordedChange[]> {
    const db = deps.db.forTenant(tenantId)
    // A decision wins against the newest of its person's: under any key of a merged customer.
    const persons = await personsOf(db, [...new Set(items.map((x) => x.c.customerKey))])
    const keys = [...new Set(items.flatMap((x) => persons.keysOf(x.c.customerKey)))]
    const stored = await db.query(
      `SELECT customer_key, toString(purpose) AS purpose, toString(channel) AS channel, toUnixTimestamp64Milli(max(updated_at)) AS at
       FROM consents WHERE tenant_id = {tenant:UInt16} AND customer_key IN {keys:Array(UInt32)} GROUP BY customer_key, purpose, channel`,
      { keys },
      storedRow,
    )
    const newest = new Map<string, number>()
    for (const r of stored) {
      const k = `${persons.survivor(r.customer_key)}|${r.purpose}|${r.channel}`
      newest.set(k, Math.max(newest.get(k) ?? r.at, r.at))
    }
    const received = now()
    const history: unknown[][] = []
    // One current row per (customer, purpose, channel) of this write: the last effective one.
    const current = new Map<string, unknown[]>()
    const notices: ConsentNotice[] = []
    const out: RecordedChange[] = []
    for (const { c, by } of items) {
      const k = `${persons.survivor(c.customerKey)}|${c.purpose}|${c.channel}`
      const was = newest.get(k)
      // A tie is the same decision replayed, or two at the same millisecond (an import stamped by
      // day): the later received wins. The table keeps, of rows with the same time, the one
      // inserted last, and so do its readers (FINAL); aggregating the rows by time alone would
      // pick either.
      const effective = was === undefined || c.customerAt >= was
      history.push([
        c.customerKey,
        c.customerNo,
        c.purpose,
        c.channel,
        c.granted ? 1 : 0,
        chInstant(c.customerAt),
        chInstant(received),
        c.source,
        c.noticeVersion,
        by.keyId,
        by.holder,
        changeId(c),
        c.messageId,
        c.category,
      ])
      if (effective) {
        newest.set(k, c.customerAt)
        // The row is under the key the decision came through (the last one of this write for
        // the pair, per key): that customer's own again should the merge be undone.
        const row = `${c.customerKey}|${c.purpose}|${c.channel}`
        current.delete(row)
        current.set(row, [c.customerKey, c.purpose, c.channel, c.granted ? 1 : 0, c.source, chInstant(c.customerAt)])
        notices.push({ customerKey: c.customerKey, purpose: c.purpose, channel: c.channel, granted: c.granted })
      }
      out.push({ purpose: c.purpose, channel: c.channel, granted: c.granted, at: new Date(c.customerAt).toISOString(), effective })
    }
    // History first: a current state is never without the change that made it.
    await db.insertTsv('consent_history', HISTORY_COLUMNS, history)
    if (current.size) await db.insertTsv('consents', CONSENT_COLUMNS, [...current.values()])
    // Counted once stored: a batch the engine refuses is written again request by request.
    items.forEach(({ c }, i) => changesTotal.inc({ source: c.source, effective: String(out[i]!.effective) }))
    if (notices.length) {
      await Promise.all(
        listeners.map((l) =>
          Promise.resolve()
            .then(() => l(tenantId, notices))
            .catch((e: unknown) => deps.log.warn({ tenant: tenantId, err: errText(e) }, 'a consent listener failed')),
        ),
      )
    }
    return out
  }

  async function categories(tenantId: number) {
    const hit = mappings.get(tenantId)
    if (hit && now() - hit.at < cacheMs) return hit
    const [r] = await deps.db
      .forTenant(tenantId)
      .query(`SELECT version, mapping FROM consent_categories FINAL WHERE tenant_id = {tenant:UInt16} ORDER BY version DESC LIMIT 1`, {}, mappingRow)
    const entry = { at: now(), version: r?.version ?? 0, mapping: r ? categoryMapping.parse(JSON.parse(r.mapping)) : DEFAULT_CATEGORIES }
    mappings.set(tenantId, entry)
    return entry
  }

  async function customerKey(tenantId: number, customerNo: string): Promise<number> {
    const [r] = await deps.db.forTenant(tenantId).query(
      `SELECT argMax(customer_key, updated_at) AS customer_key FROM identities
       WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = {no:String} GROUP BY id_value`,
      { no: customerNo },
      idRow,
    )
    if (!r || r.customer_key === 0) throw new AppError('NOT_FOUND', `No customer ${customerNo} in this tenant.`, { issues: [{ field: 'id', message: 'unknown customer number' }] })
    return r.customer_key
  }

  return {
    record,

    async put(tenantId, customerNo, input, by) {
      const parsed = consentInput.safeParse(input)
      if (!parsed.success) throw new AppError('CONSENT_INVALID', 'The consent is invalid.', { issues: issuesFromZod(parsed.error.issues) })
      const p = parsed.data
      const channel = p.channel ?? (p.purpose === 'personalization' ? 'all' : undefined)
      if (!channel) throw new AppError('CONSENT_INVALID', 'channel is required for this purpose.', { issues: [{ field: 'channel', message: 'push, sms or in_app' }] })
      const pi = pairIssue(p.purpose, channel, 'channel')
      if (pi) throw new AppError('CONSENT_INVALID', pi.message, { issues: [pi] })
      const at = p.at ? Date.parse(p.at) : now()
      if (at > now() + 5 * 60_000) throw new AppError('CONSENT_INVALID', 'at is in the future.', { issues: [{ field: 'at', message: 'a decision cannot be dated in the future' }] })
      const key = await customerKey(tenantId, customerNo)
      const change: ConsentChange = { customerKey: key, customerNo, purpose: p.purpose, channel, granted: p.granted, customerAt: at, source: p.source as ConsentSource, noticeVersion: p.noticeVersion, messageId: '', category: '' }
      const [r] = await record(tenantId, [change], by)
      if (!r!.effective) {
        throw new AppError('CONSENT_SUPERSEDED', `A decision newer than ${r!.at} is stored for ${p.purpose}/${channel}; this one is kept in the history only.`, {
          issues: [{ field: 'at', message: 'older than the stored decision' }],
        })
      }
      return r!
    },

    async fromIngest(tenantId, found, keyId) {
      // The events are stored already (ingest bounds their times); a consent time the tables
      // cannot hold is left out here, so it cannot fail the insert of the others.
      const items = found.filter((i) => storableInstant(i.timestamp))
      if (items.length < found.length) {
        unstorableTotal.inc(found.length - items.length)
        deps.log.warn({ tenant: tenantId, consents: found.length - items.length }, 'consent from ingest with a time outside the stored range left out')
      }
      if (!items.length) return { recorded: 0, unmapped: 0 }
      try {
        const { mapping } = await categories(tenantId)
        const keys = await deps.resolveKeys(tenantId, items.map((i) => (i.userId ? { userId: i.userId } : { anonymousId: i.anonymousId })))
        const changes: ConsentChange[] = []
        let unmapped = 0
        items.forEach((it, i) => {
          const key = keys[i] ?? 0
          if (!key) return
          for (const [category, granted] of Object.entries(it.categories)) {
            const pairs = mapping[category]
            if (!pairs) {
              unmapped++
              continue
            }
            for (const p of pairs) {
              changes.push({ customerKey: key, customerNo: it.userId, purpose: p.purpose, channel: p.channel, granted, customerAt: it.timestamp, source: 'ingest', noticeVersion: '', messageId: it.messageId, category })
            }
          }
        })
        if (unmapped) unmappedTotal.inc(unmapped)
        const by = { keyId, holder: await holder(tenantId, keyId) }
        const out = await record(tenantId, changes, by)
        if (deps.audit && changes.length) {
          const actor: AuditActor = { keyId, holder: by.holder, roles: ['ingest'], clientIp: '', requestId: '' }
          await deps.audit
            .record(
              tenantId,
              actor,
              changes.map((c, i) => ({
                action: 'consent.record',
                objectKind: 'customer',
                objectId: c.customerNo,
                customerNo: c.customerNo,
                detail: { purpose: c.purpose, channel: c.channel, granted: c.granted, source: 'ingest', effective: out[i]!.effective },
              })),
            )
            .catch((e: unknown) => deps.log.warn({ tenant: tenantId, err: errText(e) }, 'consent audit entries not written'))
        }
        return { recorded: changes.length, unmapped }
      } catch (e) {
        deps.log.error({ tenant: tenantId, consents: items.length, err: errText(e) }, 'consent from ingest not recorded')
        return { recorded: 0, unmapped: 0 }
      }
    },

    async state(tenantId, customerNo, opts = {}) {
      const key = await customerKey(tenantId, customerNo)
      const db = deps.db.forTenant(tenantId)
      // The person's: a merged customer's decisions under all its keys, the latest per pair (what push targeting reads).
      const keys = (await personsOf(db, [key])).keysOf(key)
      const [current, history] = await Promise.all([
        db.query(
          `SELECT toString(purpose) AS purpose, toString(channel) AS channel, argMax(granted, updated_at) AS granted,
                  toString(max(updated_at)) AS at, argMax(source, updated_at) AS source
           FROM consents FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key IN {keys:Array(UInt32)} GROUP BY purpose, channel ORDER BY purpose, channel`,
          { keys },
          z.object({ purpose: z.string(), channel: z.string(), granted: z.coerce.number(), at: z.string(), source: z.string() }),
        ),
        db.query(
          `SELECT toString(purpose) AS purpose, toString(channel) AS channel, granted, toString(customer_at) AS at, toString(received_at) AS received,
                  toString(source) AS source, notice_version, key_id, holder, category
           FROM consent_history FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key IN {keys:Array(UInt32)}
           ORDER BY received_at DESC, customer_at DESC LIMIT {limit:UInt32}`,
          { keys, limit: opts.limit ?? 200 },
          z.object({ purpose: z.string(), channel: z.string(), granted: z.coerce.number(), at: z.string(), received: z.string(), source: z.string(), notice_version: z.string(), key_id: z.string(), holder: z.string(), category: z.string() }),
        ),
      ])
      const sw = current.find((c) => c.purpose === 'personalization')
      return {
        customerId: customerNo,
        personalized: !sw || sw.granted === 1,
        current: current.map((c) => ({ purpose: c.purpose, channel: c.channel, granted: c.granted === 1, at: iso(c.at), source: c.source })),
        history: history.map((h) => ({
          purpose: h.purpose,
          channel: h.channel,
          granted: h.granted === 1,
          at: iso(h.at),
          receivedAt: iso(h.received),
          source: h.source,
          noticeVersion: h.notice_version,
          keyId: h.key_id,
          holder: h.holder,
          category: h.category,
        })),
      }
    },

    async categories(tenantId) {
      const c = await categories(tenantId)
      return { version: c.version, mapping: c.mapping }
    },

    async saveCategories(tenantId, input, by, changeNote = '') {
      const parsed = categoryMapping.safeParse(input)
      if (!parsed.success) throw new AppError('CONSENT_INVALID', 'The category mapping is invalid.', { issues: issuesFromZod(parsed.error.issues) })
      mappings.delete(tenantId)
      const cur = await categories(tenantId)
      if (JSON.stringify(cur.mapping) === JSON.stringify(parsed.data) && cur.version > 0) return { version: cur.version, mapping: cur.mapping, changed: false }
      const version = cur.version + 1
      await deps.db.forTenant(tenantId).insert('consent_categories', [{ version, mapping: JSON.stringify(parsed.data), created_by: by.holder || by.keyId, created_at: chDateTime(now()), change_note: changeNote }])
      mappings.set(tenantId, { at: now(), version, mapping: parsed.data })
      return { version, mapping: parsed.data, changed: true }
    },

    onChange(listener) {
      listeners.push(listener)
    },
  }
}
