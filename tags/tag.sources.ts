import { resolvedEventsSql } from '../core/identity.sql.js'

/**
 * What SQL tags may read, as `$name`: tenant-scoped subqueries built here, with only the columns
 * a tag needs (no phone digests, no names, no account numbers: minimum necessary). `$events`
 * has identities resolved, as every other tag sees them.
 */
export const SQL_TAG_SOURCES: Readonly<Record<string, string>> = Object.freeze({
  events: resolvedEventsSql(['customer_key', 'timestamp', 'type', 'event', 'session_id', 'properties', 'product_id', 'amount']),
  customers: `(SELECT customer_key, gender, birth_date, region_code, branch_code, occupation, language, elder_mode, opened_at
    FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0)`,
  accounts: `(SELECT customer_key, kind, currency, balance, opened_at, status FROM accounts FINAL WHERE tenant_id = {tenant:UInt16})`,
  loans: `(SELECT customer_key, product_id, principal, outstanding, annual_rate, start_date, maturity_date, status, overdue_days
    FROM loans FINAL WHERE tenant_id = {tenant:UInt16})`,
  loan_schedules: `(SELECT customer_key, installment_no, due_date, amount_due, amount_paid, paid_at, status
    FROM loan_schedules FINAL WHERE tenant_id = {tenant:UInt16})`,
  bills: `(SELECT customer_key, biller, amount, due_date, status, paid_at, payer_key FROM bills FINAL WHERE tenant_id = {tenant:UInt16})`,
  products: `(SELECT product_id, kind, category, risk_level, min_amount, annual_rate, valid_from, valid_to, status
    FROM products FINAL WHERE tenant_id = {tenant:UInt16})`,
  consents: `(SELECT customer_key, purpose, channel, argMax(granted, updated_at) AS granted FROM consents FINAL
    WHERE tenant_id = {tenant:UInt16} GROUP BY customer_key, purpose, channel)`,
  // The run's clock: tags compare with the time they are computed as of, so backfills agree.
  run: `(SELECT {asOf:DateTime64(3, 'UTC')} AS as_of, {today:Date32} AS today, {tz:String} AS time_zone)`,
  tags: `(SELECT tag, customer_key, value, num, list FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0)`,
})

const SENSITIVITY_ORDER = ['low', 'medium', 'high'] as const

/**
 * The sources of a SQL tag of this sensitivity: `$tags` holds only the tags no more sensitive
 * than it (by their current definitions), so a low or medium tag cannot copy a high one's values
 * into a tag that keys without personal:read see, list and break down.
 */
export function sqlTagSources(sensitivity: (typeof SENSITIVITY_ORDER)[number]): Readonly<Record<string, string>> {
  if (sensitivity === 'high') return SQL_TAG_SOURCES
  const allowed = SENSITIVITY_ORDER.slice(0, SENSITIVITY_ORDER.indexOf(sensitivity) + 1).map((s) => `'${s}'`)
  return Object.freeze({
    ...SQL_TAG_SOURCES,
    tags: `(SELECT tag, customer_key, value, num, list FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND is_deleted = 0
      AND tag IN (SELECT name FROM tag_definitions WHERE tenant_id = {tenant:UInt16} GROUP BY name
                  HAVING JSONExtractString(argMax(definition, version), 'sensitivity') IN ('', ${allowed.join(', ')})))`,
  })
}
