/**
 * Profile features: the allow-listed per-customer facts over profile and stock data that rule
 * tags may read. Each comes from one source, a per-customer aggregate over one table; a run
 * joins only the sources its tags need, once. Expressions are code, never user text; `{today}`
 * is the tenant's local date of the run (bound) and `{tz}` its time zone. Every source reads one
 * range of customer keys (`{klo}`..`{khi}`, bound by the run; the whole key space when unsplit).
 */
import { keyInRange } from './tag.ranges.js'

export type FeatureType = 'boolean' | 'enum' | 'number' | 'date' | 'string_list'

export interface SourceDef {
  /** A subquery yielding one row per customer_key, tenant-scoped by `{tenant:UInt16}`, of keys in `{klo}`..`{khi}`. */
  sql: string
  /** The table it reads (stock_changes says when it last changed). */
  table: string
  /** The join key column of that subquery (customers rows join on themselves). */
  key: string
}

/** Stock tables are ReplacingMergeTree upserts: FINAL reads the latest row per natural key. */
export const SOURCES = {
  customers: {
    table: 'customers',
    key: 'customer_key',
    sql: `SELECT customer_key, gender, birth_date, region_code, branch_code, occupation, language, elder_mode, opened_at
      FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND ${keyInRange('customer_key')} AND deleted = 0`,
  },
  accounts: {
    table: 'accounts',
    key: 'customer_key',
    sql: `SELECT customer_key,
        toFloat64(sumIf(balance, status != 'closed')) AS aum,
        arraySort(groupUniqArrayIf(toString(kind), status != 'closed')) AS kinds,
        countIf(status != 'closed') AS open_accounts
      FROM accounts FINAL WHERE tenant_id = {tenant:UInt16} AND ${keyInRange('customer_key')} GROUP BY customer_key`,
  },
  loans: {
    table: 'loans',
    key: 'customer_key',
    sql: `SELECT customer_key,
        countIf(status != 'closed') AS active,
        countIf(status = 'overdue' OR (status != 'closed' AND overdue_days > 0)) AS overdue,
        maxIf(overdue_days, status != 'closed') AS max_overdue_days,
        toFloat64(sumIf(outstanding, status != 'closed')) AS outstanding
      FROM loans FINAL WHERE tenant_id = {tenant:UInt16} AND ${keyInRange('customer_key')} GROUP BY customer_key`,
  },
  installments: {
    table: 'loan_schedules',
    key: 'customer_key',
    sql: `SELECT customer_key,
        minIf(due_date, status != 'paid' AND due_date >= {today:Date32}) AS next_due,
        toFloat64(argMinIf(amount_due - amount_paid, due_date, status != 'paid' AND due_date >= {today:Date32})) AS next_amount,
        countIf(status = 'overdue' OR (status = 'due' AND due_date < {today:Date32})) AS overdue
      FROM loan_schedules FINAL WHERE tenant_id = {tenant:UInt16} AND ${keyInRange('customer_key')} GROUP BY customer_key
      HAVING countIf(status != 'paid') > 0`,
  },
  bills: {
    table: 'bills',
    key: 'customer_key',
    sql: `SELECT customer_key,
        minIf(due_date, status = 'unpaid' AND due_date >= {today:Date32}) AS next_due,
        countIf(status = 'unpaid') AS unpaid,
        countIf(status = 'overdue' OR (status = 'unpaid' AND due_date < {today:Date32})) AS overdue
      FROM bills FINAL WHERE tenant_id = {tenant:UInt16} AND ${keyInRange('customer_key')} GROUP BY customer_key`,
  },
  // 180 days as windows count them: the run's local date and the 179 before it, whole local
  // days; the end bounds a backfill of a past day to what was paid by then.
  paid_for_others: {
    table: 'bills',
    key: 'payer_key',
    sql: `SELECT payer_key, count() AS bills, uniqExact(customer_key) AS people
      FROM bills FINAL WHERE tenant_id = {tenant:UInt16} AND ${keyInRange('payer_key')} AND payer_key != 0 AND payer_key != customer_key
        AND status = 'paid' AND paid_at >= toDateTime(subtractDays({today:Date32}, 179), {tz:String})
        AND paid_at < toDateTime(addDays({today:Date32}, 1), {tz:String})
      GROUP BY payer_key`,
  },
  consents: {
    table: 'consents',
    key: 'customer_key',
    sql: `SELECT customer_key,
        argMaxIf(granted, updated_at, purpose = 'marketing' AND channel = 'push') AS marketing_push,
        argMaxIf(granted, updated_at, purpose = 'marketing' AND channel = 'sms') AS marketing_sms,
        argMaxIf(granted, updated_at, purpose = 'service' AND channel = 'push') AS service_push
      FROM consents FINAL WHERE tenant_id = {tenant:UInt16} AND ${keyInRange('customer_key')} GROUP BY customer_key`,
  },
} as const satisfies Record<string, SourceDef>

export type SourceName = keyof typeof SOURCES

export interface FeatureDef {
  type: FeatureType
  source: SourceName
  /** SQL over the source's alias (`customers.x`, `loans.y`, ...); NULL when unknown. */
  sql: string
  description: string
  /** The value moves with the date (ages, countdowns): recomputed on every new local day. */
  daily?: boolean
}

/**
 * Age in completed years of a Nullable(Date32) birth date on the date `today` (both SQL
 * expressions from code); NULL without a birth date. Features, segments and the customer API
 * all use this one.
 */
export function ageSql(birthDate: string, today: string): string {
  const b = `assumeNotNull(${birthDate})`
  return `if(isNull(${birthDate}), NULL, toYear(${today}) - toYear(${b})
    - if(toMonth(${today}) * 100 + toDayOfMonth(${today}) < toMonth(${b}) * 100 + toDayOfMonth(${b}), 1, 0))`
}

const BIRTH = 'assumeNotNull(customers.birth_date)'
// The next birthday on or after today; 29 February falls on 1 March in other years.
const NEXT_BIRTHDAY_THIS_YEAR = `addDays(makeDate32(toYear({today:Date32}), toMonth(${BIRTH}), 1), toDayOfMonth(${BIRTH}) - 1)`
const NEXT_BIRTHDAY_NEXT_YEAR = `addDays(makeDate32(toYear({today:Date32}) + 1, toMonth(${BIRTH}), 1), toDayOfMonth(${BIRTH}) - 1)`

// prettier-ignore
export const FEATURES = {
  age: { type: 'number', daily: true, source: 'customers', description: 'Age in completed years (unknown without a birth date)',
    sql: `toFloat64(${ageSql('customers.birth_date', '{today:Date32}')})` },
  days_to_birthday: { type: 'number', daily: true, source: 'customers', description: 'Days until the next birthday (0: today)',
    sql: `if(isNull(customers.birth_date), NULL, toFloat64(dateDiff('day', {today:Date32},
      if(${NEXT_BIRTHDAY_THIS_YEAR} >= {today:Date32}, ${NEXT_BIRTHDAY_THIS_YEAR}, ${NEXT_BIRTHDAY_NEXT_YEAR}))))` },
  gender: { type: 'enum', source: 'customers', sql: 'toString(customers.gender)', description: 'unknown, male or female' },
  region_code: { type: 'enum', source: 'customers', sql: 'toString(customers.region_code)', description: 'County-level region code' },
  branch_code: { type: 'enum', source: 'customers', sql: 'toString(customers.branch_code)', description: 'Serving branch' },
  occupation: { type: 'enum', source: 'customers', sql: 'toString(customers.occupation)', description: 'Occupation as the bank records it' },
  language: { type: 'enum', source: 'customers', sql: 'toString(customers.language)', description: 'Preferred language (zh, en ...)' },
  elder_mode_chosen: { type: 'boolean', source: 'customers', sql: 'customers.elder_mode = 1', description: 'The customer chose the elder layout' },
  tenure_days: { type: 'number', daily: true, source: 'customers', description: 'Days since the relationship with the bank began',
    sql: `toFloat64(dateDiff('day', toDate32(customers.opened_at, {tz:String}), {today:Date32}))` },
  opened_date: { type: 'date', source: 'customers', sql: 'toDate32(customers.opened_at, {tz:String})', description: 'Date the relationship began' },
  aum: { type: 'number', source: 'accounts', sql: 'coalesce(accounts.aum, 0)', description: 'Assets under management: balances of open accounts (CNY)' },
  account_kinds: { type: 'string_list', source: 'accounts', sql: 'coalesce(accounts.kinds, [])', description: 'Kinds of open accounts' },
  open_accounts: { type: 'number', source: 'accounts', sql: 'toFloat64(coalesce(accounts.open_accounts, 0))', description: 'Open accounts' },
  active_loans: { type: 'number', source: 'loans', sql: 'toFloat64(coalesce(loans.active, 0))', description: 'Loans not closed' },
  overdue_loans: { type: 'number', source: 'loans', sql: 'toFloat64(coalesce(loans.overdue, 0))', description: 'Loans overdue now' },
  max_overdue_days: { type: 'number', source: 'loans', sql: 'toFloat64(coalesce(loans.max_overdue_days, 0))', description: 'Longest current overdue, days' },
  loan_outstanding: { type: 'number', source: 'loans', sql: 'coalesce(loans.outstanding, 0)', description: 'Outstanding principal of open loans (CNY)' },
  next_installment_date: { type: 'date', daily: true, source: 'installments', description: 'Due date of the next unpaid loan installment',
    sql: `if(installments.next_due IS NULL OR installments.next_due < {today:Date32}, NULL, installments.next_due)` },
  days_to_next_installment: { type: 'number', daily: true, source: 'installments', description: 'Days until the next unpaid loan installment',
    sql: `if(installments.next_due IS NULL OR installments.next_due < {today:Date32}, NULL, toFloat64(dateDiff('day', {today:Date32}, installments.next_due)))` },
  next_installment_amount: { type: 'number', daily: true, source: 'installments', description: 'Amount of the next unpaid installment (CNY)',
    sql: `if(installments.next_due IS NULL OR installments.next_due < {today:Date32}, NULL, installments.next_amount)` },
  overdue_installments: { type: 'number', daily: true, source: 'installments', sql: 'toFloat64(coalesce(installments.overdue, 0))', description: 'Installments past due and unpaid' },
  next_bill_date: { type: 'date', daily: true, source: 'bills', description: 'Due date of the next unpaid bill',
    sql: `if(bills.next_due IS NULL OR bills.next_due < {today:Date32}, NULL, bills.next_due)` },
  days_to_next_bill: { type: 'number', daily: true, source: 'bills', description: 'Days until the next unpaid bill is due',
    sql: `if(bills.next_due IS NULL OR bills.next_due < {today:Date32}, NULL, toFloat64(dateDiff('day', {today:Date32}, bills.next_due)))` },
  unpaid_bills: { type: 'number', source: 'bills', sql: 'toFloat64(coalesce(bills.unpaid, 0))', description: 'Unpaid bills' },
  overdue_bills: { type: 'number', daily: true, source: 'bills', sql: 'toFloat64(coalesce(bills.overdue, 0))', description: 'Bills past due and unpaid' },
  bills_paid_for_others_180d: { type: 'number', daily: true, source: 'paid_for_others', sql: 'toFloat64(coalesce(paid_for_others.bills, 0))', description: 'Bills of other customers this customer paid in 180 days' },
  people_paid_for_180d: { type: 'number', daily: true, source: 'paid_for_others', sql: 'toFloat64(coalesce(paid_for_others.people, 0))', description: 'Other customers whose bills this customer paid in 180 days' },
  marketing_push_consent: { type: 'boolean', source: 'consents', sql: 'coalesce(consents.marketing_push, 0) = 1', description: 'Marketing by push is consented' },
  marketing_sms_consent: { type: 'boolean', source: 'consents', sql: 'coalesce(consents.marketing_sms, 0) = 1', description: 'Marketing by SMS is consented' },
  service_push_consent: { type: 'boolean', source: 'consents', sql: 'coalesce(consents.service_push, 0) = 1', description: 'Service messages by push are consented' },
} as const satisfies Record<string, FeatureDef>

export type FeatureName = keyof typeof FEATURES

/**
 * A source's SQL with `extra` (a predicate on its key column) beside its key range: the range
 * predicate is the source's own, written once in its SQL.
 */
function sourceSql(s: SourceName, extra: string): string {
  const { sql, key } = SOURCES[s]
  if (!extra) return sql
  const range = keyInRange(key)
  if (sql.split(range).length !== 2) throw new Error(`source ${s}: its key range must appear once`)
  return sql.replace(range, `${range} AND ${extra.replaceAll('{key}', key)}`)
}

/**
 * The profile relation: customers joined with the sources the features need, in one query.
 * `only` restricts every source to some customers: a predicate on `{key}`, the source's key
 * column (e.g. `{key} IN (SELECT ...)`).
 */
export function profileSql(features: readonly FeatureName[], only = ''): string {
  const sources = new Set<SourceName>(['customers'])
  for (const f of features) sources.add(FEATURES[f].source)
  const joins = [...sources]
    .filter((s) => s !== 'customers')
    .map((s) => `LEFT JOIN (${sourceSql(s, only)}) AS ${s} ON ${s}.${SOURCES[s].key} = customers.customer_key`)
  const cols = features.map((f) => `${FEATURES[f].sql} AS f_${f}`)
  return `SELECT customers.customer_key AS customer_key${cols.map((c) => `, ${c}`).join('')}
    FROM (${sourceSql('customers', only)}) AS customers
    ${joins.join('\n    ')}`
}
