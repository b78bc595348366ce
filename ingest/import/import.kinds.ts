import {
  date,
  dateTime,
  flag,
  id,
  integer,
  Invalid,
  money,
  number,
  oneOf,
  optional,
  orDefault,
  stringMap,
  text,
  type Field,
} from './import.fields.js'
import { defineKind, type KindSpec, type StageCtx, type StageTables } from './import.kinds.spec.js'
import type { ImportKind, ImportKindDoc } from './import.schemas.js'

/**
 * What each kind of file holds and where its rows go. A file's columns are parsed by the kind's
 * fields (its zod row schema, see import.fields.ts), turned into staging rows (personal fields
 * hashed or masked here, never stored in clear), and moved into the target table by one
 * `INSERT … SELECT` per target. Targets are ReplacingMergeTree(updated_at) ordered by the natural
 * key (behind the dense customer key), so a re-import upserts.
 */

const updatedAt = optional(dateTime())
const stamp = (v: string | null, ctx: StageCtx) => v ?? ctx.importedAt

/** Digits with optional spaces, dashes, parentheses and a leading +; hashed, never stored. */
function phone(): Field<string> {
  const base = text(32)
  return {
    ...base,
    doc: 'mobile number (stored only as a keyed hash)',
    parse(v, env) {
      const s = base.parse(v, env)
      if (s instanceof Invalid) return s
      if (!/^\+?[\d\s\-()]+$/.test(s)) return new Invalid('expected a phone number (digits)')
      const digits = s.replace(/\D/g, '').length
      return digits >= 6 && digits <= 20 ? s : new Invalid('expected 6 to 20 digits')
    },
  }
}

/** Resident identity number, 15 or 18 characters; hashed, never stored. */
function nationalId(): Field<string> {
  const base = id(32)
  return {
    ...base,
    doc: 'resident identity number (stored only as a keyed hash in customer_traits)',
    parse(v, env) {
      const s = base.parse(v, env)
      if (s instanceof Invalid) return s
      return /^(\d{15}|\d{17}[\dXx])$/.test(s) ? s : new Invalid('expected 15 or 18 characters (digits, last may be X)')
    },
  }
}

const currency = () => {
  const base = id(3)
  return { ...base, doc: 'ISO 4217 code', parse: (v: unknown, env: { zone: string }) => {
    const s = base.parse(v, env)
    if (s instanceof Invalid) return s
    return /^[A-Za-z]{3}$/.test(s) ? s.toUpperCase() : new Invalid('expected a 3-letter currency code such as CNY')
  } } satisfies Field<string>
}

const customerNo = id(64)
const byCustomer = (target: string, cols: readonly string[]) => (t: StageTables) => [
  `INSERT INTO ${target} (tenant_id, customer_key, ${cols.join(', ')})
   SELECT {tenant:UInt16}, k.customer_key, ${cols.map((c) => `s.${c}`).join(', ')}
   FROM ${t.stage} AS s INNER JOIN ${t.keys} AS k ON k.customer_no = s.customer_no`,
]

// ---------------------------------------------------------------------------------------------

const CUSTOMER_COLS = ['customer_no', 'gender', 'birth_date', 'region_code', 'branch_code', 'occupation', 'phone_hash', 'name_masked', 'language', 'elder_mode', 'opened_at', 'updated_at', 'deleted'] as const

const customers = defineKind({
  kind: 'customers',
  description:
    'Customer profiles, one row per customer_no. A row replaces the whole profile. phone and name are stored only as a keyed hash and a masked name; national_id only as a keyed hash (customer_traits, trait national_id).',
  target: 'customers',
  fields: {
    customer_no: customerNo,
    gender: orDefault(oneOf(['unknown', 'male', 'female'], { m: 'male', f: 'female', '1': 'male', '2': 'female', '0': 'unknown', 男: 'male', 女: 'female' }), 'unknown'),
    birth_date: optional(date()),
    region_code: orDefault(text(32), ''),
    branch_code: orDefault(text(32), ''),
    occupation: orDefault(text(64), ''),
    phone: optional(phone()),
    name: optional(text(100)),
    national_id: optional(nationalId()),
    language: orDefault(id(16), 'zh'),
    elder_mode: orDefault(flag(), 0),
    opened_at: dateTime(),
    updated_at: updatedAt,
    deleted: orDefault(flag(), 0),
  },
  naturalKey: ['customer_no'],
  stageFromTarget: CUSTOMER_COLS,
  stageExtra: [['national_id_hash', 'String']],
  toStage: (r, ctx) => ({
    customer_no: r.customer_no,
    gender: r.gender,
    birth_date: r.birth_date,
    region_code: r.region_code,
    branch_code: r.branch_code,
    occupation: r.occupation,
    phone_hash: r.phone ? ctx.pii.hash('phone', r.phone, ctx.tenantId) : '',
    name_masked: r.name ? ctx.pii.maskName(r.name) : '',
    language: r.language,
    elder_mode: r.elder_mode,
    opened_at: r.opened_at,
    updated_at: stamp(r.updated_at, ctx),
    deleted: r.deleted,
    national_id_hash: r.national_id ? ctx.pii.hash('national_id', r.national_id, ctx.tenantId) : '',
  }),
  customerColumns: ['customer_no'],
  finalInserts: (t) => [
    ...byCustomer('customers', CUSTOMER_COLS)(t),
    // A row without a national id replaces a stored one with an empty value (the whole profile
    // is replaced), under the row's updated_at so that an older file imported late loses; a
    // customer who never had one gets no row.
    `INSERT INTO customer_traits (tenant_id, customer_key, trait, value, hashed, updated_at)
     SELECT {tenant:UInt16}, k.customer_key, 'national_id', s.national_id_hash, 1, s.updated_at
     FROM ${t.stage} AS s INNER JOIN ${t.keys} AS k ON k.customer_no = s.customer_no
     WHERE s.national_id_hash != ''
        OR k.customer_key IN (SELECT customer_key FROM customer_traits WHERE tenant_id = {tenant:UInt16} AND trait = 'national_id' AND value != '')`,
  ],
})

const ACCOUNT_COLS = ['account_no', 'kind', 'currency', 'balance', 'opened_at', 'status', 'updated_at'] as const
const accounts = defineKind({
  kind: 'accounts',
  description: 'Deposit and wealth accounts, one row per account_no.',
  target: 'accounts',
  fields: {
    customer_no: customerNo,
    account_no: id(64),
    kind: oneOf(['current', 'savings', 'time_deposit', 'wealth', 'pension', 'social_security']),
    currency: orDefault(currency(), 'CNY'),
    balance: money(),
    opened_at: date(),
    status: orDefault(oneOf(['active', 'dormant', 'closed']), 'active'),
    updated_at: updatedAt,
  },
  naturalKey: ['account_no'],
  stageFromTarget: ACCOUNT_COLS,
  stageExtra: [['customer_no', 'String']],
  toStage: (r, ctx) => ({ ...r, updated_at: stamp(r.updated_at, ctx) }),
  customerColumns: ['customer_no'],
  finalInserts: byCustomer('accounts', ACCOUNT_COLS),
  owner: { column: 'account_no' },
})

const RATE_HINT = 'a fraction: 4.35% is 0.0435'
const LOAN_COLS = ['loan_no', 'product_id', 'principal', 'outstanding', 'annual_rate', 'start_date', 'maturity_date', 'status', 'overdue_days', 'updated_at'] as const
const SCHEDULE_COLS = ['loan_no', 'installment_no', 'due_date', 'amount_due', 'amount_paid', 'paid_at', 'status', 'updated_at'] as const
const loans = defineKind({
  kind: 'loans',
  description: 'Loans, one row per loan_no. Their repayment schedules are the separate kind loan_schedules, imported after the loans.',
  target: 'loans',
  fields: {
    customer_no: customerNo,
    loan_no: id(64),
    product_id: orDefault(id(64), ''),
    principal: money(0),
    outstanding: money(0),
    annual_rate: number(0, 1, RATE_HINT),
    start_date: date(),
    maturity_date: date(),
    status: orDefault(oneOf(['active', 'overdue', 'closed']), 'active'),
    overdue_days: orDefault(integer(0, 65535), 0),
    updated_at: updatedAt,
  },
  naturalKey: ['loan_no'],
  stageFromTarget: LOAN_COLS,
  stageExtra: [['customer_no', 'String']],
  toStage: (r, ctx) => ({ ...r, updated_at: stamp(r.updated_at, ctx) }),
  check: (r) => (r.maturity_date < r.start_date ? { column: 'maturity_date', message: 'before start_date' } : undefined),
  customerColumns: ['customer_no'],
  finalInserts: byCustomer('loans', LOAN_COLS),
  owner: { column: 'loan_no', follow: { table: 'loan_schedules', key: ['loan_no', 'installment_no'], columns: SCHEDULE_COLS } },
})

// The loan's customer, from the newest version of each loan named in the file.
const loanOwners = (t: StageTables) =>
  `SELECT loan_no, argMax(customer_key, updated_at) AS customer_key FROM loans
   WHERE tenant_id = {tenant:UInt16} AND loan_no IN (SELECT loan_no FROM ${t.stage}) GROUP BY loan_no`
const loanSchedules = defineKind({
  kind: 'loan_schedules',
  description:
    'Repayment schedules, one row per (loan_no, installment_no). Each row names its loan only: the customer is the loan\'s, so import the loans first (a row whose loan is unknown is rejected; one of an erased customer\'s loan is counted as erased).',
  target: 'loan_schedules',
  fields: {
    loan_no: id(64),
    installment_no: integer(1, 65535),
    due_date: date(),
    amount_due: money(0),
    amount_paid: orDefault(money(0), '0.00'),
    paid_at: optional(dateTime()),
    status: orDefault(oneOf(['due', 'paid', 'overdue']), 'due'),
    updated_at: updatedAt,
  },
  naturalKey: ['loan_no', 'installment_no'],
  stageFromTarget: SCHEDULE_COLS,
  stageExtra: [],
  toStage: (r, ctx) => ({ ...r, updated_at: stamp(r.updated_at, ctx) }),
  customerColumns: [],
  finalInserts: (t) => [
    `INSERT INTO loan_schedules (tenant_id, customer_key, ${SCHEDULE_COLS.join(', ')})
     SELECT {tenant:UInt16}, l.customer_key, ${SCHEDULE_COLS.map((c) => `s.${c}`).join(', ')}
     FROM ${t.stage} AS s INNER JOIN (${loanOwners(t)}) AS l ON l.loan_no = s.loan_no`,
  ],
  unresolved: {
    column: 'loan_no',
    sql: (t) =>
      `SELECT s.row_no AS row_no, s.loan_no AS value FROM ${t.stage} AS s
       LEFT ANTI JOIN (${loanOwners(t)}) AS l ON l.loan_no = s.loan_no`,
    message: (v) => `unknown loan ${v}: import the loan first`,
    erased: 'loan_no',
  },
})

const BILL_COLS = ['bill_no', 'biller', 'amount', 'due_date', 'status', 'paid_at', 'updated_at'] as const
const bills = defineKind({
  kind: 'bills',
  description: 'Utility and insurance bills, one row per bill_no. payer_customer_no names the family member who paid, when not the owner.',
  target: 'bills',
  fields: {
    customer_no: customerNo,
    bill_no: id(64),
    biller: oneOf(['electricity', 'water', 'gas', 'telecom', 'tv', 'social_insurance', 'medical_insurance', 'property']),
    amount: money(),
    due_date: date(),
    status: orDefault(oneOf(['unpaid', 'paid', 'overdue']), 'unpaid'),
    paid_at: optional(dateTime()),
    payer_customer_no: orDefault(id(64), ''),
    updated_at: updatedAt,
  },
  naturalKey: ['bill_no'],
  stageFromTarget: BILL_COLS,
  stageExtra: [
    ['customer_no', 'String'],
    ['payer_customer_no', 'String'],
  ],
  toStage: (r, ctx) => ({ ...r, updated_at: stamp(r.updated_at, ctx) }),
  customerColumns: ['customer_no', 'payer_customer_no'],
  finalInserts: (t) => [
    `INSERT INTO bills (tenant_id, customer_key, payer_key, ${BILL_COLS.join(', ')})
     SELECT {tenant:UInt16}, k.customer_key, if(s.payer_customer_no = '', 0, p.customer_key), ${BILL_COLS.map((c) => `s.${c}`).join(', ')}
     FROM ${t.stage} AS s INNER JOIN ${t.keys} AS k ON k.customer_no = s.customer_no
     LEFT JOIN ${t.keys} AS p ON p.customer_no = s.payer_customer_no`,
  ],
  owner: { column: 'bill_no' },
})

const PRODUCT_COLS = ['product_id', 'kind', 'name_zh', 'name_en', 'category', 'risk_level', 'min_amount', 'annual_rate', 'valid_from', 'valid_to', 'attributes', 'status', 'updated_at'] as const
const products = defineKind({
  kind: 'products',
  description: "The bank's product catalogue, one row per product_id.",
  target: 'products',
  fields: {
    product_id: id(64),
    kind: oneOf(['deposit', 'wealth', 'loan', 'insurance', 'pension', 'government', 'payment', 'agri']),
    name_zh: text(200),
    name_en: orDefault(text(200), ''),
    category: orDefault(text(64), ''),
    risk_level: orDefault(integer(0, 5), 0),
    min_amount: orDefault(money(0), '0.00'),
    annual_rate: orDefault(number(0, 1, RATE_HINT), 0),
    valid_from: date(),
    valid_to: orDefault(date(), '2299-12-31'),
    attributes: orDefault(stringMap(), {}),
    status: orDefault(oneOf(['active', 'inactive']), 'active'),
    updated_at: updatedAt,
  },
  naturalKey: ['product_id'],
  stageFromTarget: PRODUCT_COLS,
  stageExtra: [],
  toStage: (r, ctx) => ({ ...r, updated_at: stamp(r.updated_at, ctx) }),
  check: (r) => (r.valid_to < r.valid_from ? { column: 'valid_to', message: 'before valid_from' } : undefined),
  customerColumns: [],
  finalInserts: (t) => [
    `INSERT INTO products (tenant_id, ${PRODUCT_COLS.join(', ')})
     SELECT {tenant:UInt16}, ${PRODUCT_COLS.map((c) => `s.${c}`).join(', ')} FROM ${t.stage} AS s`,
  ],
})

const CONSENT_COLS = ['purpose', 'channel', 'granted', 'source', 'updated_at'] as const
const consents = defineKind({
  kind: 'consents',
  description:
    'Consent decisions taken outside the app (at the counter), one row per (customer_no, purpose, channel). updated_at is required: it is when the customer decided, so a later decision taken in the app is not overwritten by an older one imported afterwards.',
  target: 'consents',
  fields: {
    customer_no: customerNo,
    purpose: oneOf(['security', 'service', 'marketing']),
    channel: oneOf(['push', 'sms', 'in_app']),
    granted: flag(),
    source: orDefault(id(32), 'import'),
    updated_at: dateTime(),
  },
  naturalKey: ['customer_no', 'purpose', 'channel'],
  stageFromTarget: CONSENT_COLS,
  stageExtra: [['customer_no', 'String']],
  toStage: (r) => r,
  customerColumns: ['customer_no'],
  finalInserts: (t) => [consentHistory(t), ...byCustomer('consents', CONSENT_COLS)(t)],
})

/**
 * A file's decisions in the consent history, as the consent service records one through the API
 * (consent/consent.service.ts): before the current state, so that state is never without the
 * change that made it. The pulls' withdrawal index and the layouts' switch learn of changes
 * through the history, so a withdrawal loaded from a file holds back what was queued before it.
 * The change id is a digest of the decision, as the service makes it, so loading a file again adds no
 * second row; a source the history does not name is recorded as `import`.
 */
function consentHistory(t: StageTables): string {
  const source = `if(s.source IN ('app', 'counter', 'call_centre'), s.source, 'import')`
  const ms = `toString(toUnixTimestamp64Milli(s.updated_at))`
  const fields = [`toString(k.customer_key)`, `toString(s.purpose)`, `toString(s.channel)`, `toString(s.granted)`, ms, source, `''`, `''`, `''`]
  return `INSERT INTO consent_history (tenant_id, customer_key, customer_no, purpose, channel, granted, customer_at, received_at, source, notice_version, key_id, holder, change_id, message_id, category)
   SELECT {tenant:UInt16}, k.customer_key, s.customer_no, toString(s.purpose), toString(s.channel), s.granted, s.updated_at, {receivedAt:DateTime64(3, 'UTC')},
          ${source}, '', {keyId:String}, {holder:String}, lower(hex(substring(SHA256(concat(${fields.join(", char(1), ")})), 1, 16))), '', ''
   FROM ${t.stage} AS s INNER JOIN ${t.keys} AS k ON k.customer_no = s.customer_no`
}

export const KINDS: Readonly<Record<ImportKind, KindSpec>> = Object.freeze({
  customers,
  accounts,
  loans,
  loan_schedules: loanSchedules,
  bills,
  products,
  consents,
})

export function kindDoc(spec: KindSpec): ImportKindDoc {
  return {
    kind: spec.kind,
    description: spec.description,
    naturalKey: [...spec.naturalKey],
    columns: Object.entries(spec.fields).map(([name, f]) => ({ name, required: f.required, type: f.doc })),
  }
}
