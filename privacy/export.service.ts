import { z } from 'zod'
import type { Db, TenantDb, TenantTable } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { exposuresSql } from '../core/exposures.sql.js'
import { CUSTOMER_EVENTS, streamArchive, type ArchiveInput } from './export.archive.js'
import { withMergedKeys } from './merged-keys.js'
import type { Tombstones } from './tombstones.js'

/**
 * A customer's copy of their data (PIPL art. 45): everything held about them, one section per
 * place, with the field names in Chinese and English beside the values and each tag with its
 * description (the reason it holds). Events come in pages (`after` cursor), newest first; other
 * sections are complete up to `SECTION_LIMIT` rows each (newest first; `truncated` says so).
 * The archive form (export.archive.ts) holds the same sections and every event, streamed.
 */

export const SECTION_LIMIT = 10_000

/** Field names of every section, for a person reading the export. */
export const FIELD_LABELS: Record<string, { zh: string; en: string }> = {
  customer_no: { zh: '客户号', en: 'customer number' },
  gender: { zh: '性别', en: 'gender' },
  birth_date: { zh: '出生日期', en: 'date of birth' },
  region_code: { zh: '地区代码', en: 'region code' },
  branch_code: { zh: '服务网点', en: 'serving branch' },
  occupation: { zh: '职业', en: 'occupation' },
  phone_hash: { zh: '手机号摘要（不存原号）', en: 'mobile number digest (the number is not kept)' },
  name_masked: { zh: '姓名（脱敏）', en: 'name (masked)' },
  language: { zh: '语言', en: 'language' },
  elder_mode: { zh: '长辈模式', en: 'elder mode' },
  opened_at: { zh: '开户时间', en: 'customer since' },
  deleted: { zh: '银行已标记注销', en: 'marked deleted by the bank' },
  updated_at: { zh: '更新时间', en: 'updated at' },
  trait: { zh: '属性', en: 'trait' },
  value: { zh: '值', en: 'value' },
  hashed: { zh: '是否为摘要', en: 'stored as a digest' },
  purpose: { zh: '用途', en: 'purpose' },
  channel: { zh: '渠道', en: 'channel' },
  granted: { zh: '是否同意', en: 'granted' },
  source: { zh: '来源', en: 'source' },
  customer_at: { zh: '决定时间', en: 'decided at' },
  received_at: { zh: '接收时间', en: 'received at' },
  notice_version: { zh: '隐私政策版本', en: 'privacy notice version' },
  id_kind: { zh: '标识类型', en: 'identifier kind' },
  id_value: { zh: '标识', en: 'identifier' },
  created_at: { zh: '创建时间', en: 'created at' },
  tag: { zh: '标签', en: 'tag' },
  description: { zh: '标签含义', en: 'what the tag means' },
  list: { zh: '列表值', en: 'list value' },
  num: { zh: '数值', en: 'numeric value' },
  segment_id: { zh: '客群', en: 'segment' },
  name: { zh: '名称', en: 'name' },
  kind: { zh: '进入/退出', en: 'entered or left' },
  at: { zh: '时间', en: 'at' },
  campaign_id: { zh: '推送活动', en: 'campaign' },
  title: { zh: '标题', en: 'title' },
  body: { zh: '内容', en: 'text' },
  status: { zh: '状态', en: 'status' },
  outcome: { zh: '送达结果', en: 'delivery outcome' },
  outcome_at: { zh: '结果时间', en: 'outcome at' },
  message_id: { zh: '消息编号', en: 'message id' },
  reason: { zh: '原因', en: 'reason' },
  due_at: { zh: '发送时间', en: 'due at' },
  served_at: { zh: '展示时间', en: 'shown at' },
  screen: { zh: '页面', en: 'screen' },
  modules: { zh: '模块', en: 'modules' },
  items: { zh: '内容项', en: 'items' },
  account_no: { zh: '账号', en: 'account number' },
  account_kind: { zh: '账户类型', en: 'account type' },
  currency: { zh: '币种', en: 'currency' },
  balance: { zh: '余额', en: 'balance' },
  account_opened_at: { zh: '开立日期', en: 'opened on' },
  loan_no: { zh: '贷款编号', en: 'loan number' },
  product_id: { zh: '产品', en: 'product' },
  principal: { zh: '本金', en: 'principal' },
  outstanding: { zh: '未还本金', en: 'outstanding' },
  annual_rate: { zh: '年利率', en: 'annual rate' },
  start_date: { zh: '起始日期', en: 'start date' },
  maturity_date: { zh: '到期日期', en: 'maturity date' },
  overdue_days: { zh: '逾期天数', en: 'days overdue' },
  installment_no: { zh: '期数', en: 'installment' },
  due_date: { zh: '到期日', en: 'due date' },
  amount_due: { zh: '应还金额', en: 'amount due' },
  amount_paid: { zh: '已还金额', en: 'amount paid' },
  paid_at: { zh: '支付时间', en: 'paid at' },
  bill_no: { zh: '账单编号', en: 'bill number' },
  biller: { zh: '缴费项目', en: 'biller' },
  amount: { zh: '金额', en: 'amount' },
  paid_by_another: { zh: '是否由他人代缴', en: 'paid by someone else' },
  valid_from: { zh: '生效时间', en: 'from' },
  removed: { zh: '是否移除', en: 'removed' },
  action: { zh: '操作', en: 'action' },
  undone_at: { zh: '撤销时间', en: 'undone at' },
  affinity: { zh: '偏好程度', en: 'affinity' },
  timestamp: { zh: '事件时间', en: 'event time' },
  type: { zh: '事件类型', en: 'event type' },
  event: { zh: '事件', en: 'event' },
  properties: { zh: '事件属性', en: 'properties' },
  context: { zh: '设备与应用', en: 'device and app' },
}

export const SECTION_LABELS: Record<string, { zh: string; en: string }> = {
  profile: { zh: '基本信息', en: 'profile' },
  traits: { zh: '应用上报的属性', en: 'traits sent by the app' },
  consents: { zh: '当前授权', en: 'consents (current)' },
  consentHistory: { zh: '授权历史', en: 'consent history' },
  identities: { zh: '标识与设备', en: 'identifiers and devices' },
  tags: { zh: '标签及含义', en: 'tags and what they mean' },
  segments: { zh: '客群进出记录', en: 'segment entries and exits' },
  pushes: { zh: '推送记录', en: 'pushes' },
  layouts: { zh: '首页展示记录', en: 'home screens shown' },
  accounts: { zh: '账户（银行导入）', en: 'accounts (imported by the bank)' },
  loans: { zh: '贷款（银行导入）', en: 'loans (imported by the bank)' },
  loanSchedules: { zh: '还款计划（银行导入）', en: 'loan repayment schedules (imported by the bank)' },
  bills: { zh: '生活缴费账单（银行导入）', en: 'bills (imported by the bank)' },
  billsPaidForOthers: { zh: '为他人代缴的账单', en: 'bills you paid for others' },
  tagHistory: { zh: '标签历史', en: 'tag history' },
  identityHistory: { zh: '标识关联记录', en: 'identifier link history' },
  recommendations: { zh: '推荐模型中的偏好', en: 'preferences in the recommendation model' },
  events: { zh: '应用行为事件', en: 'app events' },
}

/** Each section's query: columns named for FIELD_LABELS, the customer's keys bound as `ks`. */
const KEYS = 'IN (SELECT arrayJoin({ks:Array(UInt32)}))'
export const SECTIONS: Record<Exclude<keyof typeof SECTION_LABELS, 'events'>, string> = {
  // A profile the bank marked deleted is held until erased: it is given, and says so.
  profile: `SELECT customer_no, gender, birth_date, region_code, branch_code, occupation, phone_hash, name_masked, language, elder_mode, opened_at, updated_at, deleted
            FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS}`,
  traits: `SELECT trait, value, hashed, updated_at FROM customer_traits FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY trait`,
  consents: `SELECT purpose, channel, granted, source, updated_at FROM consents FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY purpose, channel`,
  consentHistory: `SELECT purpose, channel, granted, customer_at, received_at, source, notice_version FROM consent_history FINAL
                   WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY customer_at DESC`,
  identities: `SELECT id_kind, id_value, source, created_at FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY id_kind, created_at`,
  tags: `SELECT v.tag AS tag, v.value AS value, v.list AS list, d.description AS description FROM (
           SELECT tag, value, list FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} AND is_deleted = 0) AS v
         LEFT JOIN (
           SELECT name, argMax(JSONExtractRaw(definition, 'description'), version) AS description FROM tag_definitions
           WHERE tenant_id = {tenant:UInt16} GROUP BY name) AS d ON d.name = v.tag
         ORDER BY tag`,
  segments: `SELECT e.segment_id AS segment_id, d.name AS name, e.kind AS kind, e.at AS at FROM (
               SELECT segment_id, kind, at FROM segment_events WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS}) AS e
             LEFT JOIN (
               SELECT segment_id, argMax(name, version) AS name FROM segment_definitions WHERE tenant_id = {tenant:UInt16} GROUP BY segment_id) AS d
             ON d.segment_id = e.segment_id ORDER BY at DESC`,
  pushes: `SELECT t.campaign_id AS campaign_id, t.channel AS channel, t.purpose AS purpose, t.title AS title, t.body AS body, t.status AS status, t.reason AS reason, t.due_at AS due_at,
                  o.outcome AS outcome, o.outcome_at AS outcome_at FROM (
             SELECT target_id, campaign_id, channel, purpose, title, body, status, reason, due_at FROM push_targets FINAL
             WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS}) AS t
           LEFT JOIN (
             SELECT target_id, argMax(status, at) AS outcome, max(at) AS outcome_at FROM push_outcomes
             WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} GROUP BY target_id) AS o ON o.target_id = t.target_id
           ORDER BY due_at DESC`,
  layouts: `SELECT served_at, screen, modules, items FROM ${exposuresSql(`customer_key ${KEYS}`)} ORDER BY served_at DESC`,
  accounts: `SELECT account_no, kind AS account_kind, currency, balance, opened_at AS account_opened_at, status, updated_at FROM accounts FINAL
             WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY account_no`,
  loans: `SELECT loan_no, product_id, principal, outstanding, annual_rate, start_date, maturity_date, status, overdue_days, updated_at FROM loans FINAL
          WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY loan_no`,
  loanSchedules: `SELECT loan_no, installment_no, due_date, amount_due, amount_paid, paid_at, status FROM loan_schedules FINAL
                  WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY loan_no, installment_no`,
  // Whether someone else paid, not who: the payer is another customer (a key merged into the
  // customer's is the customer).
  bills: `SELECT bill_no, biller, amount, due_date, status, paid_at, payer_key != 0 AND payer_key NOT ${KEYS} AS paid_by_another FROM bills FINAL
          WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY due_date DESC, bill_no`,
  // What the customer paid, not the bill's number or owner: those are another customer's.
  billsPaidForOthers: `SELECT biller, amount, due_date, paid_at FROM bills FINAL
                       WHERE tenant_id = {tenant:UInt16} AND payer_key ${KEYS} AND customer_key NOT ${KEYS} ORDER BY paid_at DESC`,
  tagHistory: `SELECT tag, valid_from, value, num, list, removed FROM tag_history FINAL
               WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS} ORDER BY valid_from DESC, tag`,
  // A merge names the customer number merged away: once undone, that number is another
  // customer's, and only the export of that customer gives it.
  identityHistory: `SELECT action, id_kind, if(action = 'merge' AND from_key NOT ${KEYS}, '', id_value) AS id_value, reason, created_at, undone_at FROM identity_changes FINAL
                    WHERE tenant_id = {tenant:UInt16} AND (into_key ${KEYS} OR from_key ${KEYS}) ORDER BY created_at DESC`,
  // The newest complete model build's row: the items the model holds the customer close to.
  recommendations: `SELECT items, affinity FROM rec_customers
                    WHERE tenant_id = {tenant:UInt16} AND customer_key ${KEYS}
                      AND build = (SELECT max(build) FROM rec_models FINAL WHERE tenant_id = {tenant:UInt16} AND complete = 1)`,
}

/**
 * The tables that hold a customer's rows (erasure.places.ts) and that no section reads, each with
 * why: they are derived from what the sections hold, or a run's working state. The coverage test
 * (export.coverage.test.ts) fails for any other such table no section reads.
 */
export const NOT_EXPORTED: Readonly<Partial<Record<TenantTable, string>>> = {
  ingest_dedup: 'the message ids of the events stored, for deduplication: the events section holds each event',
  ingest_dedup_digests: 'digests of the same message ids',
  customer_merges: 'customer keys merged into this one (internal numbers): the identities section holds the identifiers they carried',
  tag_event_daily: 'per-day counts of the events by measure (positions, no names), from which window tags are computed: the events section holds the events, and for days the events retention has deleted, the tags and tag history sections hold what the counts were computed into',
  tag_changes: 'each run’s changes of tag values: the tag history holds them',
  tag_stage: 'a tag run’s working rows, removed after the run',
  tag_scope: 'the customers a tag run recomputes, removed after the run',
  tag_customer_prints: 'a hash of the customer’s opening date and deletion flag, compared between tag runs',
  tag_bitmaps: 'the tag values as sets of customer keys: the tags section holds them',
  tag_numeric: 'numeric tag values sorted for buckets: the tags section holds them',
  segment_members: 'segment memberships as sets of customer keys: the segment entries and exits hold them',
  push_leases: 'which sender holds a push for sending, removed when sent',
  push_test_lists: 'the bank’s lists of staff test recipients',
  audit_log: 'the record of what the bank’s staff did, kept for the bank and its regulator',
}

const eventRow = z.object({ ms: z.coerce.number(), message_id: z.string(), type: z.string(), event: z.string(), properties: z.string(), context: z.string() })

export interface CustomerExport {
  customerId: string
  exportedAt: string
  labels: { sections: typeof SECTION_LABELS; fields: typeof FIELD_LABELS }
  sections: Record<string, { rows: Record<string, unknown>[]; truncated: boolean }>
  events: { rows: Record<string, unknown>[]; next: string | null }
}

/** Every section but the events (and those in `skip`), each up to `limit` rows (one more tells it was truncated). */
async function readSections(db: TenantDb, ks: number[], limit: number, skip: readonly string[] = []): Promise<CustomerExport['sections']> {
  const sections: CustomerExport['sections'] = {}
  for (const [name, sql] of Object.entries(SECTIONS)) {
    if (skip.includes(name)) continue
    const rows = await db.query<Record<string, unknown>>(`${sql} LIMIT {limit:UInt32}`, { ks, limit: limit + 1 })
    if (name === 'tags') for (const r of rows) r.description = r.description ? (JSON.parse(String(r.description)) as unknown) : null
    sections[name] = { rows: rows.slice(0, limit), truncated: rows.length > limit }
  }
  return sections
}

export function createExportService(deps: { db: Db; tombstones: Tombstones }) {
  async function keysOf(db: TenantDb, customerNo: string): Promise<number[]> {
    const rows = await db.query(
      `SELECT customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = {no:String}
       UNION ALL SELECT customer_key AS k FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND customer_no = {no:String}`,
      { no: customerNo },
      z.object({ k: z.coerce.number() }),
    )
    return [...(await withMergedKeys(db, new Set(rows.map((r) => r.k).filter((k) => k > 0))))]
  }

  /** 410 for an erased customer, 404 for an unknown one; else the customer's keys (merged ones too). */
  async function resolve(tenantId: number, customerNo: string): Promise<{ db: TenantDb; ks: number[] }> {
    if (await deps.tombstones.erased(tenantId, customerNo)) throw new AppError('CUSTOMER_ERASED')
    const db = deps.db.forTenant(tenantId)
    const ks = await keysOf(db, customerNo)
    if (!ks.length) throw new AppError('NOT_FOUND', `No customer ${customerNo} in this tenant.`)
    return { db, ks }
  }

  return {
    /**
     * The archive: checked and the sections read before it returns (so a refusal is still a
     * coded answer), the events then read page by page while the stream is consumed.
     */
    async archive(tenantId: number, customerNo: string, sizes: Pick<ArchiveInput, 'pageRows' | 'fileRows' | 'fileBytes'> = {}) {
      const { db, ks } = await resolve(tenantId, customerNo)
      // The archive reads the layouts shown page by page, as it reads the events.
      const sections = await readSections(db, ks, SECTION_LIMIT, ['layouts'])
      return streamArchive({ db, ks, customerNo, sections, labels: { sections: SECTION_LABELS, fields: FIELD_LABELS }, ...sizes })
    },

    async export(tenantId: number, customerNo: string, page: { after?: string | undefined; limit: number }): Promise<CustomerExport> {
      const { db, ks } = await resolve(tenantId, customerNo)
      const sections = await readSections(db, ks, SECTION_LIMIT)
      // Keyset pages over (timestamp, message_id), newest first: stable while events arrive.
      let cursor: { t: number; m: string } | undefined
      if (page.after) {
        try {
          const [t, m] = JSON.parse(Buffer.from(page.after, 'base64url').toString('utf8')) as [number, string]
          if (!Number.isInteger(t) || typeof m !== 'string') throw new Error('shape')
          cursor = { t, m }
        } catch {
          throw new AppError('VALIDATION_FAILED', 'after: not a cursor this export gave.', { issues: [{ field: 'after', message: 'invalid cursor' }] })
        }
      }
      // The first key past the page from the narrow columns, then the wide columns of the page
      // alone: sorting whole rows to take a page read every remaining event's properties (a
      // 10,000-event page of a 1M-event history held ~300 MB in the engine, npm run bench export).
      const of = `${CUSTOMER_EVENTS}
        ${cursor ? `AND timestamp <= fromUnixTimestamp64Milli({t:Int64}, 'UTC') AND (timestamp, message_id) < (fromUnixTimestamp64Milli({t:Int64}, 'UTC'), {m:String})` : ''}`
      const [past] = await db.query(
        `SELECT toUnixTimestamp64Milli(timestamp) AS ms, message_id ${of} ORDER BY timestamp DESC, message_id DESC LIMIT 1 OFFSET {limit:UInt32}`,
        { ks, limit: page.limit, ...(cursor ?? {}) },
        z.object({ ms: z.coerce.number(), message_id: z.string() }),
      )
      const events = await db.query(
        `SELECT toUnixTimestamp64Milli(timestamp) AS ms, message_id, toString(type) AS type, event, properties, context ${of}
           ${past ? `AND timestamp >= fromUnixTimestamp64Milli({pt:Int64}, 'UTC') AND (timestamp, message_id) > (fromUnixTimestamp64Milli({pt:Int64}, 'UTC'), {pm:String})` : ''}
         ORDER BY timestamp DESC, message_id DESC LIMIT {limit:UInt32}`,
        { ks, limit: page.limit + 1, ...(cursor ?? {}), ...(past ? { pt: past.ms, pm: past.message_id } : {}) },
        eventRow,
      )
      // Events that arrived between the two reads can make the page longer: it is cut, and goes on from its last row.
      const more = !!past || events.length > page.limit
      const rows = events.slice(0, page.limit)
      const last = rows[rows.length - 1]
      return {
        customerId: customerNo,
        exportedAt: new Date().toISOString(),
        labels: { sections: SECTION_LABELS, fields: FIELD_LABELS },
        sections,
        events: {
          rows: rows.map(({ ms, ...e }) => ({ timestamp: new Date(ms).toISOString(), ...e, properties: JSON.parse(e.properties) as unknown, context: JSON.parse(e.context) as unknown })),
          next: more && last ? Buffer.from(JSON.stringify([last.ms, last.message_id])).toString('base64url') : null,
        },
      }
    },
  }
}

export type ExportService = ReturnType<typeof createExportService>
