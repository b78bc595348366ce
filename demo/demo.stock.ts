import type { TenantDb } from '../core/db.js'
import type { DemoBank } from './demo.banks.js'
import type { Catalogue } from './demo.catalog.js'
import { sqlIndex, sqlNormal, sqlU, weightTable } from './demo.random.js'
import { AGE, anonymousId, CUSTOMER_HASH, DEVICE_COUNT, SALT } from './demo.traits.js'

/**
 * The bank's stock data ("存量数据"), derived engine-side from the customers already inserted:
 * `INSERT ... SELECT` runs at millions of rows a second, where building the same rows in
 * JavaScript and sending them as text is bound by serialization (a few hundred thousand a
 * second). Every random draw is a hash of (seed, bank, customer, salt), see demo.random.ts.
 */

export interface StockParams {
  seed: number
  bank: DemoBank
  catalogue: Catalogue
  customers: number
  /** Generation time, as DateTime64(3) text; all bookkeeping times derive from it. */
  now: string
  /** The bank's local date at `now`. */
  today: string
  timeZone: string
  /** Days of history (bills cover them). */
  days: number
}

const H = CUSTOMER_HASH

function common(p: StockParams) {
  return { seed: p.seed, bank: p.bank.index, today: p.today, now: p.now }
}

// --- consents -------------------------------------------------------------------------------

// Nine decisions per customer: (security | service | marketing) x (push | sms | in_app).
// Security and service terms were agreed when the relationship opened (or migrated in from the
// old core system); marketing choices were made later, mostly in the app. A tenth of customers
// refuse all marketing; the others are scaled up so the bank's overall rate holds.
const CONSENTS_SQL = `
INSERT INTO consents (tenant_id, customer_key, purpose, channel, granted, source, updated_at)
SELECT {tenant:UInt16}, customer_key, purpose, channel,
  toUInt8(${sqlU('cityHash64(h, slot)', SALT.consentGrant)} < multiIf(
    purpose = 'security', 0.985,
    purpose = 'service', [0.86, 0.93, 0.95][channel_no],
    privacy_minded, 0,
    least(1, ({marketing:Float64} + [0.0, -0.08, 0.07][channel_no] + multiIf(age >= 60, -0.05, age < 30, 0.05, 0)) / 0.9))),
  if(purpose = 'marketing',
     if(${sqlU('h', SALT.consentSource)} < 0.8, 'app', 'counter'),
     if(opened_at < toDateTime64('2016-01-01 00:00:00', 3, 'UTC'), 'import', 'counter')),
  if(purpose = 'marketing',
     fromUnixTimestamp64Milli(toUnixTimestamp64Milli(opened_at)
       + toInt64(${sqlU('cityHash64(h, slot)', SALT.consentTime)} * (toUnixTimestamp64Milli({now:DateTime64(3, 'UTC')}) - toUnixTimestamp64Milli(opened_at))), 'UTC'),
     opened_at)
FROM (
  SELECT customer_key, opened_at, age, h, privacy_minded, slot,
    ['security', 'service', 'marketing'][intDiv(slot, 3) + 1] AS purpose,
    slot % 3 + 1 AS channel_no,
    ['push', 'sms', 'in_app'][channel_no] AS channel
  FROM (
    SELECT customer_key, opened_at, ${AGE} AS age, ${H} AS h, ${sqlU(H, SALT.consentPrivacy)} < 0.1 AS privacy_minded
    FROM customers WHERE tenant_id = {tenant:UInt16}
  )
  ARRAY JOIN range(9) AS slot
)`

// --- identities -----------------------------------------------------------------------------

// The customer number, and the anonymous id of each app installation the events will use.
const IDENTITIES_SQL = `
INSERT INTO identities (tenant_id, id_kind, id_value, customer_key, source, created_at, updated_at)
SELECT {tenant:UInt16}, if(slot = 0, 'customer_no', 'anonymous_id'),
  if(slot = 0, customer_no, ${anonymousId('slot')}),
  customer_key, if(slot = 0, 'core_banking', 'app'),
  if(slot = 0, opened_at, greatest(opened_at, {appLaunch:DateTime64(3, 'UTC')})),
  {now:DateTime64(3, 'UTC')}
FROM (SELECT customer_key, customer_no, opened_at, ${DEVICE_COUNT} AS devices FROM customers WHERE tenant_id = {tenant:UInt16})
ARRAY JOIN range(devices + 1) AS slot`

// --- accounts -------------------------------------------------------------------------------

// Kinds: 1 current, 2 savings, 3 time deposit, 4 wealth, 5 pension, 6 social security card.
// AUM is lognormal (median ~9k CNY, sigma 1.9: about 1% above a million), higher for elders,
// split over the accounts a customer holds by kind weights.
const ACCOUNTS_SQL = `
INSERT INTO accounts (tenant_id, customer_key, account_no, kind, currency, balance, opened_at, status, updated_at)
SELECT {tenant:UInt16}, customer_key,
  concat({bin:String}, leftPad(toString(customer_key), 10, '0'), toString(kind_no)) AS account_no,
  ['current', 'savings', 'time_deposit', 'wealth', 'pension', 'social_security'][kind_no] AS kind,
  'CNY',
  toDecimal64(if(status = 'closed', 0, round(aum * w / total_w, 2)), 2) AS balance,
  if(kind_no = 1, toDate32(opened_at), toDate32(opened_at) + toInt32(floor(${sqlU('cityHash64(h, kind_no)', SALT.accountOpened)} * dateDiff('day', toDate32(opened_at), {today:Date32})))) AS opened,
  multiIf(${sqlU('cityHash64(h, kind_no)', SALT.accountStatus)} < 0.015 AND kind_no != 1, 'closed',
          aum * w / total_w < 50 AND ${sqlU('cityHash64(h, kind_no)', SALT.accountDormant)} < 0.5, 'dormant', 'active') AS status,
  {now:DateTime64(3, 'UTC')}
FROM (
  SELECT customer_key, opened_at, h, aum, kinds, ws, arraySum(ws) AS total_w
  FROM (
    SELECT customer_key, opened_at, occupation, ${AGE} AS age, ${H} AS h,
      exp(log(9000) + 1.9 * ${sqlNormal(H, SALT.aum)} + if(age >= 60, 0.35, 0)) AS aum,
      arrayFilter(k -> k = 1 OR ${sqlU('cityHash64(h, k)', SALT.accountHas)} < multiIf(
          k = 2, 0.5,
          k = 3, if(aum > 20000, 0.6, 0.2) + if(age >= 60, 0.1, 0),
          k = 4, if(age >= 80, 0, multiIf(aum > 50000, 0.45, aum > 10000, 0.12, 0.02)),
          k = 5, multiIf(occupation = 'retiree', 0.9, age >= 60, 0.45, 0.03),
          0.65), [1, 2, 3, 4, 5, 6]) AS kinds,
      arrayMap(k -> [1.0, 1.5, 3.0, 4.0, 0.6, 0.2][k] * (0.5 + ${sqlU('cityHash64(h, k)', SALT.accountWeight)}), kinds) AS ws
    FROM customers WHERE tenant_id = {tenant:UInt16}
  )
)
ARRAY JOIN kinds AS kind_no, ws AS w`

// --- loans ----------------------------------------------------------------------------------

// Loan types (index 0..3): micro ("丰福"-style credit), agricultural, consumer, mortgage.
const LOAN_TYPE_BY_GROUP = [
  weightTable([30, 55, 10, 5]), // farmers
  weightTable([60, 5, 15, 20]), // small business
  weightTable([35, 5, 35, 25]), // everyone else
]

const LOANS_SQL = `
INSERT INTO loans (tenant_id, customer_key, loan_no, product_id, principal, outstanding, annual_rate, start_date, maturity_date, status, overdue_days, updated_at)
SELECT {tenant:UInt16}, customer_key,
  concat({loanPrefix:String}, leftPad(toString(customer_key), 10, '0'), '-', toString(li + 1)) AS loan_no,
  {loanIds:Array(Array(String))}[lt + 1][product_idx + 1] AS product_id,
  toDecimal64(principal, 2),
  toDecimal64(if(closed, 0, round(principal * (pow(1 + r, term) - pow(1 + r, paid)) / (pow(1 + r, term) - 1), 2)), 2) AS outstanding,
  rate AS annual_rate, start_date, addMonths(start_date, term) AS maturity_date,
  multiIf(closed, 'closed', late > 0, 'overdue', 'active') AS status,
  toUInt16(if(late > 0, dateDiff('day', addMonths(start_date, past_due - late + 1), {today:Date32}), 0)) AS overdue_days,
  {now:DateTime64(3, 'UTC')}
FROM (
  SELECT customer_key, li, cityHash64(h, li) AS lh,
    {loanTypeTable:Array(Array(UInt8))}[grp + 1][${sqlIndex('lh', SALT.loanType, '200')} + 1] AS lt,
    toUInt32(floor(pow(${sqlU('lh', SALT.loanProduct)}, 1.5) * length({loanIds:Array(Array(String))}[lt + 1]))) AS product_idx,
    round({loanRates:Array(Array(Float64))}[lt + 1][product_idx + 1] + (${sqlU('lh', SALT.loanRate)} - 0.5) * 0.01, 4) AS rate,
    rate / 12 AS r,
    -- Principal: lognormal around the median of the type, clamped to its range, whole thousands.
    round(least([300000, 500000, 200000, 1500000][lt + 1], greatest([10000, 10000, 5000, 150000][lt + 1],
      [50000, 80000, 30000, 400000][lt + 1] * exp([0.8, 0.7, 0.8, 0.5][lt + 1] * ${sqlNormal('lh', SALT.loanPrincipal)}))), -3) AS principal,
    [[12, 24, 36], [12, 24], [6, 12, 24, 36], [60, 120, 180, 240]][lt + 1] AS terms,
    terms[${sqlIndex('lh', SALT.loanTerm, 'length(terms)')} + 1] AS term,
    ${sqlU('lh', SALT.loanClosed)} < 0.12 AS closed,
    toUInt32(if(closed, term + ${sqlIndex('lh', SALT.loanElapsed, '12')}, ${sqlIndex('lh', SALT.loanElapsed, 'term')})) AS elapsed,
    -- Days 0..27 before the month mark: due days spread over the month, and an active loan
    -- always has its last installment still ahead.
    addMonths({today:Date32}, -toInt32(elapsed)) - ${sqlIndex('lh', SALT.loanDay, '28')} AS start_date,
    arrayCount(i -> addMonths(start_date, i) < {today:Date32}, range(1, term + 1)) AS past_due,
    -- A few active loans are behind by one to three installments (the latest ones).
    if(NOT closed AND past_due > 0 AND ${sqlU('lh', SALT.loanOverdue)} < [0.05, 0.06, 0.04, 0.015][lt + 1],
       least(past_due, 1 + (${sqlU('lh', SALT.loanOverdueCount)} < 0.35) + (${sqlU('lh', SALT.loanOverdueMore)} < 0.12)), 0) AS late,
    if(closed, term, past_due - late) AS paid
  FROM (
    SELECT customer_key, ${H} AS h, ${AGE} AS age,
      multiIf(occupation = 'farmer', 0, occupation = 'small_business', 1, 2) AS grp,
      if(age > 75, 0.02, multiIf(occupation = 'farmer', 0.3, occupation = 'small_business', 0.34, occupation = 'migrant_worker', 0.18,
         occupation IN ('civil_servant', 'teacher'), 0.14, occupation = 'retiree', 0.07, 0.02)) AS p_borrow,
      if(${sqlU(H, SALT.loanHas)} < p_borrow, 1 + (${sqlU(H, SALT.loanCount)} < 0.12), 0) AS n_loans
    FROM customers WHERE tenant_id = {tenant:UInt16}
  )
  ARRAY JOIN range(n_loans) AS li
)`

// Installments follow from each loan row: paid before the first unpaid one, overdue from it up
// to yesterday, due from today on. Equal monthly payments (等额本息) at the annual rate. Paid
// installments were paid up to two days early, between 07:00 and 21:00 local time.
const SCHEDULES_SQL = `
INSERT INTO loan_schedules (tenant_id, customer_key, loan_no, installment_no, due_date, amount_due, amount_paid, paid_at, status, updated_at)
SELECT {tenant:UInt16}, customer_key, loan_no, toUInt16(i), due,
  toDecimal64(payment, 2),
  toDecimal64(if(st = 'paid', payment, 0), 2),
  if(st = 'paid', least(
       fromUnixTimestamp64Milli((toInt64(toUnixTimestamp(toDateTime(due, {tz:String}))) - ${sqlIndex('ih', SALT.paidAt, '3')} * 86400
         + 25200 + ${sqlIndex('ih', SALT.paidAt + 1, '50400')}) * 1000, 'UTC'),
       {now:DateTime64(3, 'UTC')} - INTERVAL 1 MINUTE), NULL),
  st, {now:DateTime64(3, 'UTC')}
FROM (
  SELECT customer_key, loan_no, i, payment, addMonths(start_date, i) AS due, cityHash64({seed:UInt64}, loan_no, i) AS ih,
    multiIf(status = 'closed', 'paid', due >= {today:Date32}, 'due',
            status = 'overdue' AND due >= {today:Date32} - overdue_days, 'overdue', 'paid') AS st
  FROM (
    SELECT customer_key, loan_no, start_date, status, overdue_days,
      toUInt32(dateDiff('month', start_date, maturity_date)) AS term,
      annual_rate / 12 AS r,
      round(toFloat64(principal) * r / (1 - pow(1 + r, -toFloat64(term))), 2) AS payment
    FROM loans WHERE tenant_id = {tenant:UInt16}
  )
  ARRAY JOIN range(1, term + 1) AS i
)`

// --- bills ----------------------------------------------------------------------------------

// Billers in the schema's order: electricity, water, gas, telecom, tv, social insurance
// (flexible-employment contributions), medical insurance, property.
const BILLER_SHARE = [0.78, 0.45, 0.15, 0.6, 0.2, 0.1, 0.1, 0.05]
const BILLER_MEDIAN = [95, 38, 60, 58, 25, 560, 120, 150]

// Monthly bills from `cycles` months back to next month's, issued 15 days before they are due.
// A third of customers aged 65+ have a younger relative at the same bank who pays most of their
// bills ("family agent"); the relative is found by a self-join so they are really under 55.
const BILLS_SQL = `
INSERT INTO bills (tenant_id, customer_key, bill_no, biller, amount, due_date, status, paid_at, payer_key, updated_at)
SELECT {tenant:UInt16}, customer_key,
  concat({billPrefix:String}, toString(b), '-', leftPad(toString(customer_key), 10, '0'), '-', toString(toYYYYMM(due_date))),
  ['electricity', 'water', 'gas', 'telecom', 'tv', 'social_insurance', 'medical_insurance', 'property'][b],
  toDecimal64(round({billerMedian:Array(Float64)}[b] * exp(if(b IN (5, 6), 0.1, 0.4) * ${sqlNormal('bh', SALT.billAmount)}), 2), 2),
  due_date, status,
  if(status = 'paid', least(
      fromUnixTimestamp64Milli((toInt64(toUnixTimestamp(toDateTime(due_date, {tz:String})))
        - ${sqlIndex('bh', SALT.billPaidDay, '13')} * 86400 + 25200 + ${sqlIndex('bh', SALT.billPaidTime, '54000')}) * 1000, 'UTC'),
      {now:DateTime64(3, 'UTC')} - INTERVAL 1 MINUTE), NULL),
  if(status = 'paid' AND agent_key != 0 AND ${sqlU('bh', SALT.billByAgent)} < 0.75, agent_key, 0),
  {now:DateTime64(3, 'UTC')}
FROM (
  SELECT customer_key, agent_key, b, cycle, cityHash64(h, b, cycle) AS bh,
    addMonths(toStartOfMonth({today:Date32}), -cycle) + toInt32(${sqlIndex('cityHash64(h, b)', SALT.billDay, '28')}) AS due_date,
    multiIf(
      due_date >= {today:Date32}, if(${sqlU('bh', SALT.billStatus)} < 0.25, 'paid', 'unpaid'),
      ${sqlU('bh', SALT.billStatus)} < if(dateDiff('day', due_date, {today:Date32}) <= 31, 0.06, 0.015), 'overdue',
      'paid') AS status
  FROM (
    SELECT c.customer_key AS customer_key, ${H} AS h, fam.agent_key AS agent_key,
      arrayFilter(k -> ${sqlU('cityHash64(h, k)', SALT.billHas)} < if(k = 6 AND c.occupation IN ('small_business', 'migrant_worker'), 0.3, {billerShare:Array(Float64)}[k]),
                  [1, 2, 3, 4, 5, 6, 7, 8]) AS billers
    FROM customers AS c
    LEFT JOIN (
      SELECT e.customer_key AS elder_key, a.customer_key AS agent_key
      FROM (
        SELECT customer_key, 1 + ${sqlIndex(H, SALT.familyAgent, '{customers:UInt32}')} AS candidate
        FROM customers WHERE tenant_id = {tenant:UInt16} AND ${AGE} >= 65 AND ${sqlU(H, SALT.familyHas)} < 0.33
      ) AS e
      INNER JOIN (SELECT customer_key FROM customers WHERE tenant_id = {tenant:UInt16} AND ${AGE} < 55) AS a
        ON a.customer_key = e.candidate
      WHERE a.customer_key != e.customer_key
    ) AS fam ON fam.elder_key = c.customer_key
    WHERE c.tenant_id = {tenant:UInt16}
  )
  ARRAY JOIN billers AS b
  ARRAY JOIN range(-1, {cycles:Int32}) AS cycle
)
WHERE due_date <= {today:Date32} + 15`

// --------------------------------------------------------------------------------------------

export const STOCK_TABLES = ['consents', 'identities', 'accounts', 'loans', 'loan_schedules', 'bills'] as const

/** Derives all stock tables of one bank from its customers; `onStep` reports each table done. */
export async function generateStock(tdb: TenantDb, p: StockParams, onStep: (table: (typeof STOCK_TABLES)[number]) => void): Promise<void> {
  const base = common(p)
  const appLaunch = new Date(Date.parse(p.now.replace(' ', 'T') + 'Z') - 6 * 365 * 86_400_000).toISOString().replace('T', ' ').replace('Z', '')
  await tdb.command(CONSENTS_SQL, { ...base, marketing: p.bank.marketingConsent })
  onStep('consents')
  await tdb.command(IDENTITIES_SQL, { ...base, appLaunch })
  onStep('identities')
  await tdb.command(ACCOUNTS_SQL, { ...base, bin: p.bank.bin })
  onStep('accounts')
  await tdb.command(LOANS_SQL, {
    ...base,
    loanPrefix: `${p.bank.code.toUpperCase()}L`,
    loanIds: p.catalogue.loans.ids,
    loanRates: p.catalogue.loans.rates,
    loanTypeTable: LOAN_TYPE_BY_GROUP,
  })
  onStep('loans')
  await tdb.command(SCHEDULES_SQL, { ...base, tz: p.timeZone })
  onStep('loan_schedules')
  await tdb.command(BILLS_SQL, {
    ...base,
    tz: p.timeZone,
    customers: p.customers,
    cycles: Math.ceil(p.days / 30) + 1,
    billPrefix: `${p.bank.code.toUpperCase()}B`,
    billerShare: BILLER_SHARE,
    billerMedian: BILLER_MEDIAN,
  })
  onStep('bills')
}
