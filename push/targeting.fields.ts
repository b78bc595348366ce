import { AppError } from '../core/errors.js'
import { survivorRowsSql } from '../core/identity.sql.js'
import type { ParamBinder } from '../core/params.js'
import { TAG_FIELD } from './template.js'

/**
 * The SQL behind each template field, joined only when a message names it. Every expression
 * reads the targeting query's aliases: `a` (the audience row), `c` (the customer's profile) and
 * one alias per source below; it is NULL when the customer has no value. Sources are one row per
 * customer, tenant-scoped, with a `present` column (a LEFT JOIN miss reads 0), so the query
 * needs no join_use_nulls, which would change the segment compiler's joins too.
 */

/** The opening product a product_opening trigger found (constant for the run). */
export interface OpeningProduct {
  productId: string
  nameZh: string
  nameEn: string
  openingDate: string
  /** Annual rate as a fraction (0.0385). */
  annualRate: number
}

const BILLERS = ['electricity', 'water', 'gas', 'telecom', 'tv', 'social_insurance', 'medical_insurance', 'property']
const BILLERS_ZH = ['电费', '水费', '燃气费', '通信费', '有线电视费', '社保费', '医保费', '物业费']
const BILLERS_EN = ['electricity', 'water', 'gas', 'telecom', 'cable TV', 'social insurance', 'medical insurance', 'property management']

// The next unpaid installment or bill due today or later; amounts as text with two decimals.
// Those of a customer merged into another are the survivor's (the only key targeted).
const LOAN_SOURCE = `SELECT customer_key, min(due_date) AS next_due, toDecimalString(argMin(amount_due - amount_paid, due_date), 2) AS next_amount, toUInt8(1) AS present
  FROM ${survivorRowsSql('loan_schedules', ['due_date', 'amount_due', 'amount_paid'], `x.status != 'paid' AND x.due_date >= {today:Date}`, { final: true })} GROUP BY customer_key`
const BILL_SOURCE = `SELECT customer_key, min(due_date) AS next_due, toDecimalString(argMin(amount, due_date), 2) AS next_amount,
    argMin(toString(biller), due_date) AS next_biller, toUInt8(1) AS present
  FROM ${survivorRowsSql('bills', ['due_date', 'amount', 'biller'], `x.status = 'unpaid' AND x.due_date >= {today:Date}`, { final: true })} GROUP BY customer_key`

export interface FieldPlan {
  /** LEFT JOIN clauses, each joining on `a.customer_key`. */
  joins: string[]
  /** The SQL of a field; the message language is English where `en` (an SQL condition) holds. */
  expr(field: string): string
}

/** Which tags a message may name was checked when the campaign was saved (campaign.check.ts). */
export function planFields(fields: readonly string[], b: ParamBinder, o: { en: string; product?: OpeningProduct | undefined }): FieldPlan {
  const joins: string[] = []
  const tagAlias = new Map<string, string>()
  const join = (sql: string, alias: string) => joins.push(`LEFT JOIN (${sql}) AS ${alias} ON ${alias}.customer_key = a.customer_key`)
  if (fields.some((f) => f.startsWith('loan.'))) join(LOAN_SOURCE, 'ln')
  if (fields.some((f) => f.startsWith('bill.'))) join(BILL_SOURCE, 'bl')
  for (const f of fields) {
    const m = TAG_FIELD.exec(f)
    if (!m || tagAlias.has(f)) continue
    const alias = `tg${tagAlias.size}`
    // Saving refuses a high-sensitivity tag in message text, and raising a tag a message names
    // is refused; a tag raised before those refusals still fills nothing (its customers are left
    // out as missing the field): its current definition is read here, as the values are.
    const tag = b.str(m[1]!)
    join(`SELECT customer_key, value, toUInt8(1) AS present FROM tag_values FINAL
      WHERE tenant_id = {tenant:UInt16} AND tag = ${tag} AND is_deleted = 0
        AND (SELECT argMax(JSONExtractString(definition, 'sensitivity'), version) FROM tag_definitions FINAL
             WHERE tenant_id = {tenant:UInt16} AND name = ${tag}) != 'high'`, alias)
    tagAlias.set(f, alias)
  }
  const product = () => {
    if (!o.product) throw new AppError('VALIDATION_FAILED', 'product fields need a product_opening date trigger', { issues: [{ field: 'message', message: 'product field without a product' }] })
    return o.product
  }
  const when = (alias: string, x: string) => `if(${alias}.present = 1, ${x}, NULL)`
  const byLang = (zh: string, en: string) => `if(${o.en}, ${en}, ${zh})`
  return {
    joins,
    expr(field) {
      switch (field) {
        case 'name':
          return 'c.name_masked'
        case 'today':
          return 'toString(a.occ_date)'
        case 'loan.due_date':
          return when('ln', 'toString(ln.next_due)')
        case 'loan.amount':
          return when('ln', 'ln.next_amount')
        case 'bill.due_date':
          return when('bl', 'toString(bl.next_due)')
        case 'bill.amount':
          return when('bl', 'bl.next_amount')
        case 'bill.biller': {
          const from = b.strs(BILLERS)
          return when('bl', byLang(`transform(bl.next_biller, ${from}, ${b.strs(BILLERS_ZH)}, bl.next_biller)`, `transform(bl.next_biller, ${from}, ${b.strs(BILLERS_EN)}, bl.next_biller)`))
        }
        case 'product.name':
          return byLang(b.str(product().nameZh), b.str(product().nameEn))
        case 'product.opening_date':
          return b.str(product().openingDate)
        case 'product.rate':
          return b.str((product().annualRate * 100).toFixed(2))
      }
      const alias = tagAlias.get(field)
      if (!alias) throw new AppError('INTERNAL', `No SQL for template field ${field}.`)
      return when(alias, `${alias}.value`)
    },
  }
}
