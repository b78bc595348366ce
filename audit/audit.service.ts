import crypto from 'node:crypto'
import { z } from 'zod'
import type { AuditActor, AuditEntry, AuditSink } from '../core/audit.js'
import type { Db } from '../core/db.js'
import { AppError, type ErrorIssue } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { chDateTime, DAY_MS, instantSchema } from '../core/time.js'

/**
 * The audit trail. Every `record` is one INSERT awaited before it returns: the hook awaits it
 * before the answer leaves (onSend), so an answer that carried personal data never exists
 * without its entry, and a crash cannot lose an entry the caller was told about. Batching would
 * save inserts but a regulator's trail cannot lose the tail of a buffer; audited requests are
 * management and staff actions, not the event stream, so one insert each is affordable.
 *
 * Append-only: this module has no update or delete, and no route reaches one.
 * Tenant 0 is the platform operator's trail (actions outside any tenant).
 */

export const OPERATOR_TENANT = 0
/** The longest range one query may span: a year and a day, so a calendar year always fits. */
export const MAX_RANGE_DAYS = 366
export const MAX_PAGE = 1000
const DEFAULT_RANGE_DAYS = 30

export const auditFilters = z.strictObject({
  actor: z.string().min(1).max(200).optional().describe('a key holder or a key id'),
  action: z.string().min(1).max(100).optional().describe('an action or its prefix: `segment.` matches every segment action'),
  objectKind: z.string().min(1).max(50).optional(),
  objectId: z.string().min(1).max(200).optional(),
  customer: z.string().min(1).max(128).optional().describe('a customer number'),
  from: instantSchema.optional().describe('ISO time, inclusive; default: 30 days before `to`'),
  to: instantSchema.optional().describe('ISO time, exclusive; default: now'),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(100),
  cursor: z.string().max(200).optional().describe('nextCursor of the previous page'),
})
export type AuditFilters = z.infer<typeof auditFilters>

export const auditEntryView = z.object({
  entryId: z.string(),
  at: z.string(),
  keyId: z.string(),
  holder: z.string(),
  roles: z.array(z.string()),
  clientIp: z.string(),
  requestId: z.string(),
  action: z.string(),
  objectKind: z.string(),
  objectId: z.string(),
  customerNo: z.string(),
  customers: z.number(),
  outcome: z.string(),
  status: z.number(),
  detail: z.record(z.string(), z.unknown()),
})
export type AuditEntryView = z.infer<typeof auditEntryView>

// Selected under other names than the columns: an alias named like its column would replace
// the column in WHERE and ORDER BY (a string compared with a time).
const row = z.object({
  entry_text: z.string(),
  at_text: z.string(),
  key_id: z.string(),
  holder: z.string(),
  roles: z.array(z.string()),
  client_ip: z.string(),
  request_id: z.string(),
  action: z.string(),
  object_kind: z.string(),
  object_id: z.string(),
  customer_no: z.string(),
  customers: z.coerce.number(),
  outcome: z.string(),
  status: z.coerce.number(),
  detail: z.string(),
})

/** An entry as the hook records it: the route's status rides along. */
export type RecordedEntry = AuditEntry & { status?: number }

export interface AuditLog extends AuditSink {
  record(tenantId: number, actor: AuditActor, entries: readonly RecordedEntry[]): Promise<void>
  query(tenantId: number, filters: AuditFilters): Promise<{ entries: AuditEntryView[]; nextCursor: string | null }>
}

/** The opaque cursor: the last entry's (at, entry_id), the trail's sort key. */
function encodeCursor(at: string, entryId: string): string {
  return Buffer.from(`${at}|${entryId}`, 'utf8').toString('base64url')
}
function decodeCursor(cursor: string): { at: string; id: string } {
  const [at, id, extra] = Buffer.from(cursor, 'base64url').toString('utf8').split('|')
  if (extra !== undefined || !at || !id || !/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/.test(at) || !z.uuid().safeParse(id).success) {
    throw new AppError('VALIDATION_FAILED', 'The cursor is not one this API returned.', { issues: [{ field: 'cursor', message: 'not a cursor of this trail' }] })
  }
  return { at, id }
}

/** The time range, validated: both ends ISO, from ≤ to, at most MAX_RANGE_DAYS apart. */
export function auditRange(filters: Pick<AuditFilters, 'from' | 'to'>, now = Date.now()): { from: Date; to: Date } {
  const to = filters.to ? new Date(filters.to) : new Date(now)
  const from = filters.from ? new Date(filters.from) : new Date(to.getTime() - DEFAULT_RANGE_DAYS * DAY_MS)
  const issues: ErrorIssue[] = []
  if (from.getTime() > to.getTime()) issues.push({ field: 'from', message: `from (${from.toISOString()}) is after to (${to.toISOString()})` })
  else if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * DAY_MS) {
    issues.push({ field: 'to', message: `the range spans more than ${MAX_RANGE_DAYS} days; query it in parts` })
  }
  if (issues.length) throw new AppError('VALIDATION_FAILED', 'The time range is invalid.', { issues })
  return { from, to }
}

export function createAuditLog(deps: { db: Db; log: Logger; metrics: Metrics }): AuditLog {
  const written = deps.metrics.counter('qianmian_audit_entries_total', 'Audit entries written, by outcome', ['outcome'])
  const failed = deps.metrics.counter('qianmian_audit_write_failures_total', 'Audit inserts that failed')
  const log = deps.log.child({ component: 'audit' })

  return {
    async record(tenantId, actor, entries) {
      if (!entries.length) return
      const at = chDateTime(new Date())
      const rows = entries.map((e) => ({
        at,
        entry_id: crypto.randomUUID(),
        key_id: actor.keyId,
        holder: actor.holder,
        roles: [...actor.roles],
        client_ip: actor.clientIp,
        request_id: actor.requestId,
        action: e.action,
        object_kind: e.objectKind,
        object_id: e.objectId,
        customer_no: e.customerNo ?? '',
        customers: e.customers ?? (e.customerNo ? 1 : 0),
        outcome: e.outcome ?? 'ok',
        status: e.status ?? 0,
        detail: JSON.stringify(e.detail ?? {}),
      }))
      try {
        if (tenantId === OPERATOR_TENANT) await deps.db.system.insert('audit_log', rows.map((r) => ({ ...r, tenant_id: OPERATOR_TENANT })))
        else await deps.db.forTenant(tenantId).insert('audit_log', rows)
      } catch (err) {
        failed.inc()
        log.error({ err, tenantId, actions: entries.map((e) => e.action) }, 'audit entry not written')
        throw err
      }
      for (const r of rows) written.inc({ outcome: r.outcome })
    },

    async query(tenantId, filters) {
      const { from, to } = auditRange(filters)
      const where = ['tenant_id = {tenant:UInt16}', "at >= {from:DateTime64(3, 'UTC')}", "at < {to:DateTime64(3, 'UTC')}"]
      const params: Record<string, unknown> = { from: chDateTime(from), to: chDateTime(to), limit: filters.limit + 1 }
      if (filters.actor) {
        where.push('(holder = {actor:String} OR key_id = {actor:String})')
        params.actor = filters.actor
      }
      if (filters.action) {
        where.push('startsWith(action, {action:String})')
        params.action = filters.action
      }
      if (filters.objectKind) {
        where.push('object_kind = {objectKind:String}')
        params.objectKind = filters.objectKind
      }
      if (filters.objectId) {
        where.push('object_id = {objectId:String}')
        params.objectId = filters.objectId
      }
      if (filters.customer) {
        where.push('customer_no = {customer:String}')
        params.customer = filters.customer
      }
      if (filters.cursor) {
        const c = decodeCursor(filters.cursor)
        where.push("(at, entry_id) < ({cursorAt:DateTime64(3, 'UTC')}, {cursorId:UUID})")
        params.cursorAt = c.at
        params.cursorId = c.id
      }
      const sql = `SELECT toString(entry_id) AS entry_text, toString(at) AS at_text, key_id, holder, roles, client_ip, request_id,
                          action, object_kind, object_id, customer_no, customers, outcome, status, detail
                   FROM audit_log WHERE ${where.join(' AND ')}
                   ORDER BY at DESC, entry_id DESC LIMIT {limit:UInt32}`
      // The operator's trail (tenant 0) is outside every tenant scope: bound here explicitly.
      const rows =
        tenantId === OPERATOR_TENANT
          ? await deps.db.system.query(sql, { ...params, tenant: OPERATOR_TENANT }, row)
          : await deps.db.forTenant(tenantId).query(sql, params, row)
      const page = rows.slice(0, filters.limit)
      const last = page.at(-1)
      return {
        entries: page.map(view),
        nextCursor: rows.length > filters.limit && last ? encodeCursor(last.at_text, last.entry_text) : null,
      }
    },
  }
}

function view(r: z.infer<typeof row>): AuditEntryView {
  let detail: Record<string, unknown> = {}
  try {
    const d = JSON.parse(r.detail) as unknown
    if (d && typeof d === 'object' && !Array.isArray(d)) detail = d as Record<string, unknown>
  } catch {
    detail = { raw: r.detail }
  }
  return {
    entryId: r.entry_text,
    at: r.at_text,
    keyId: r.key_id,
    holder: r.holder,
    roles: r.roles,
    clientIp: r.client_ip,
    requestId: r.request_id,
    action: r.action,
    objectKind: r.object_kind,
    objectId: r.object_id,
    customerNo: r.customer_no,
    customers: r.customers,
    outcome: r.outcome,
    status: r.status,
    detail,
  }
}
