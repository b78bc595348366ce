import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../core/errors.js'
import { createPii, type Pii } from '../core/pii.js'
import { createKeyService, type KeyService } from '../tenants/keys.service.js'
import { createTenantService, type TenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { DEMO_BANKS } from './demo.banks.js'
import { generateDemo, type DemoOptions, type DemoSummary } from './demo.generator.js'

// One small generation shared by the realism checks, then two more (same seed, other seed) for
// determinism. Everything runs against the real embedded engine.

const NOW = new Date('2025-06-15T04:00:00.000Z') // 12:00 in Asia/Shanghai, a Sunday
const TODAY = '2025-06-15'
const OPTS: DemoOptions = { customers: 2000, days: 7, seed: 7, now: NOW }
const DATA_TABLES = ['products', 'customers', 'identities', 'consents', 'accounts', 'loans', 'loan_schedules', 'bills', 'events']
const TIME = { now: '2025-06-15 04:00:00.000', today: TODAY }

let engine: TestEngine
let tenants: TenantService
let keys: KeyService
let summary: DemoSummary
let firstChecksums: Record<string, string>
const phones = new Set<string>()
const names: string[] = []
const phoneTenants: [number, string][] = []

/** The real PII service, recording what the generator asked it to protect. */
function recordingPii(): Pii {
  const real = createPii('test-secret-of-at-least-thirty-two-chars')
  return {
    hash(kind, value, tenantId) {
      if (kind === 'phone') {
        phones.add(value)
        phoneTenants.push([tenantId, value])
      }
      return real.hash(kind, value, tenantId)
    },
    digests: (kind, value, tenantId) => real.digests(kind, value, tenantId),
    rekey: (digest, tenantId) => real.rekey(digest, tenantId),
    contentDigest: (text, tenantId) => real.contentDigest(text, tenantId),
    maskName(name) {
      names.push(name)
      return real.maskName(name)
    },
  }
}

function deps(pii: Pii = createPii('test-secret-of-at-least-thirty-two-chars')) {
  return { db: engine.db, tenants, keys, pii, log: engine.log }
}

async function query<T = Record<string, unknown>>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
  return engine.db.system.query<T>(sql, { ...TIME, ...params })
}

async function one(sql: string, params: Record<string, unknown> = {}): Promise<number> {
  const [row] = await query<{ v: string | number }>(sql, params)
  return Number(row?.v)
}

/** count and content hash of each data table; api keys and tenants carry random secrets and clocks. */
async function checksums(): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const t of DATA_TABLES) {
    const [r] = await query<{ n: string; h: string }>(`SELECT toString(count()) AS n, toString(sum(cityHash64(*))) AS h FROM ${t}`)
    out[t] = `${r?.n}:${r?.h}`
  }
  return out
}

async function wipe(): Promise<void> {
  for (const t of ['tenants', 'api_keys', ...DATA_TABLES]) await engine.db.system.command(`TRUNCATE TABLE ${t}`)
}

beforeAll(async () => {
  engine = await openTestEngine()
  tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
  keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 0 })
  summary = await generateDemo(deps(recordingPii()), OPTS)
  firstChecksums = await checksums()
})

afterAll(async () => {
  await engine?.close()
})

describe('generateDemo', () => {
  it('creates the group, three member banks and their keys', async () => {
    expect(summary.tenants.map((t) => [t.slug, t.kind])).toEqual([
      ['demo-group', 'group'],
      ['demo-qingshan', 'member'],
      ['demo-lvshui', 'member'],
      ['demo-jintian', 'member'],
    ])
    const group = summary.tenants[0]!
    for (const t of summary.tenants.slice(1)) expect((await tenants.get(t.id)).parentId).toBe(group.id)
    expect(group.keys.map((k) => k.role)).toEqual(['admin'])
    for (const t of summary.tenants.slice(1)) {
      expect(t.keys.map((k) => k.role)).toEqual(['ingest', 'layout', 'push', 'consent', 'analyst', 'marketer', 'admin'])
    }
    for (const t of summary.tenants) {
      for (const k of t.keys) {
        const p = await keys.authenticate(k.key)
        expect(p).toMatchObject({ tenantId: t.id, roles: [k.role], holder: k.holder })
      }
    }
    expect(summary.rows.customers).toBe(OPTS.customers)
    expect(summary.rows.events).toBeGreaterThan(0)
  })

  it('refuses to run twice, before creating anything', async () => {
    const before = await one('SELECT count() AS v FROM tenants FINAL')
    await expect(generateDemo(deps(), OPTS)).rejects.toMatchObject({ code: 'CONFLICT' })
    await expect(generateDemo(deps(), OPTS)).rejects.toBeInstanceOf(AppError)
    expect(await one('SELECT count() AS v FROM tenants FINAL')).toBe(before)
  })

  it('rejects invalid options', async () => {
    await expect(generateDemo(deps(), { ...OPTS, customers: 2 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(generateDemo(deps(), { ...OPTS, days: 0 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(generateDemo(deps(), { ...OPTS, active: OPTS.customers + 1 })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      issues: [{ field: 'active', message: expect.any(String) }],
    })
  })

  it('splits customers unevenly with dense keys 1..n per bank', async () => {
    const rows = await query<{ tenant_id: number; n: string; lo: number; hi: number; u: string }>(
      'SELECT tenant_id, toString(count()) AS n, min(customer_key) AS lo, max(customer_key) AS hi, toString(uniqExact(customer_key)) AS u FROM customers GROUP BY tenant_id ORDER BY tenant_id',
    )
    const sizes = rows.map((r) => Number(r.n))
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(OPTS.customers)
    expect(sizes[0]!).toBeGreaterThan(sizes[1]!)
    expect(sizes[1]!).toBeGreaterThan(sizes[2]!)
    for (const r of rows) {
      expect(r.lo).toBe(1)
      expect(r.hi).toBe(Number(r.n))
      expect(Number(r.u)).toBe(Number(r.n))
    }
    // Every customer number maps to its key.
    expect(await one(`SELECT count() AS v FROM identities WHERE id_kind = 'customer_no'`)).toBe(OPTS.customers)
    expect(
      await one(`SELECT count() AS v FROM identities i JOIN customers c ON c.tenant_id = i.tenant_id AND c.customer_no = i.id_value
                 WHERE i.id_kind = 'customer_no' AND i.customer_key = c.customer_key`),
    ).toBe(OPTS.customers)
  })

  it('keeps no natural-key duplicates that a ReplacingMergeTree merge would silently drop', async () => {
    for (const t of DATA_TABLES.filter((t) => t !== 'events')) {
      expect(await one(`SELECT count() AS v FROM ${t} FINAL`), t).toBe(await one(`SELECT count() AS v FROM ${t}`))
    }
  })

  it('looks like a rural bank: many elders, birthdays ahead, varied occupations', async () => {
    const age = `floor(dateDiff('day', assumeNotNull(birth_date), {today:Date32}) / 365.2425)`
    const elders = await one(`SELECT avg(${age} >= 60) AS v FROM customers WHERE birth_date IS NOT NULL`)
    expect(elders).toBeGreaterThan(0.27)
    expect(elders).toBeLessThan(0.4)
    const birthdays = await one(
      `SELECT countIf((toDayOfYear(addYears(birth_date, toYear({today:Date32}) - toYear(birth_date))) - toDayOfYear({today:Date32}) + 366) % 366 < 7) AS v FROM customers WHERE birth_date IS NOT NULL`,
    )
    expect(birthdays).toBeGreaterThan(0)
    const occupations = await query<{ o: string }>('SELECT DISTINCT occupation AS o FROM customers')
    expect(occupations.map((r) => r.o).sort()).toEqual(['civil_servant', 'farmer', 'migrant_worker', 'retiree', 'small_business', 'student', 'teacher'])
    expect(await one(`SELECT countIf(elder_mode = 1 AND ${age} < 60) AS v FROM customers WHERE birth_date IS NOT NULL`)).toBe(0)
    expect(await one(`SELECT avg(elder_mode) AS v FROM customers WHERE ${age} >= 60`)).toBeGreaterThan(0.2)
  })

  it('never stores a phone number or a full name', async () => {
    expect(phones.size).toBe(OPTS.customers)
    expect(names).toHaveLength(OPTS.customers)
    const pii = createPii('test-secret-of-at-least-thirty-two-chars')
    const stored = new Set((await query<{ h: string }>('SELECT phone_hash AS h FROM customers')).map((r) => r.h))
    // Each bank's digests under its own key.
    expect(stored).toEqual(new Set(phoneTenants.map(([t, p]) => pii.hash('phone', p, t))))
    expect(new Set(phoneTenants.map(([t]) => t)).size).toBeGreaterThan(1)
    expect(await one(`SELECT countIf(NOT match(name_masked, '^\\\\p{Han}\\\\*+$')) AS v FROM customers`)).toBe(0)
    // No run of 11+ digits anywhere in the text tables contains a generated phone.
    for (const t of ['customers', 'identities', 'events', 'accounts', 'bills', 'loans']) {
      const [r] = await query<{ runs: string[] }>(
        `SELECT groupUniqArray(run) AS runs FROM (SELECT arrayJoin(extractAll(toString(tuple(*)), '[0-9]{11,}')) AS run FROM ${t})`,
      )
      const leaks = (r?.runs ?? []).filter((run) => Array.from({ length: run.length - 10 }, (_, i) => run.slice(i, i + 11)).some((s) => phones.has(s)))
      expect(leaks, t).toEqual([])
    }
    for (const n of names.slice(0, 50)) {
      expect(await one('SELECT count() AS v FROM customers WHERE name_masked = {n:String}', { n })).toBe(0)
    }
  })

  it('has mostly granted security and service consent, and 50-70% marketing consent', async () => {
    expect(await one(`SELECT count() AS v FROM consents`)).toBe(OPTS.customers * 9)
    expect(await one(`SELECT avg(granted) AS v FROM consents WHERE purpose = 'security'`)).toBeGreaterThan(0.95)
    expect(await one(`SELECT avg(granted) AS v FROM consents WHERE purpose = 'service'`)).toBeGreaterThan(0.85)
    const marketing = await one(`SELECT avg(granted) AS v FROM consents WHERE purpose = 'marketing'`)
    expect(marketing).toBeGreaterThan(0.5)
    expect(marketing).toBeLessThan(0.7)
    expect(await one(`SELECT countIf(updated_at > {now:DateTime64(3, 'UTC')}) AS v FROM consents`)).toBe(0)
  })

  it('gives heavy-tailed balances and pension accounts to most retirees', async () => {
    const [aum] = await query<{ p50: number; p99: number; max: number }>(
      'SELECT quantile(0.5)(a) AS p50, quantile(0.99)(a) AS p99, max(a) AS max FROM (SELECT sum(toFloat64(balance)) AS a FROM accounts GROUP BY tenant_id, customer_key)',
    )
    expect(aum!.p50).toBeGreaterThan(3000)
    expect(aum!.p50).toBeLessThan(40000)
    expect(aum!.p99 / aum!.p50).toBeGreaterThan(20)
    const retirees = await one(
      `SELECT avg(has_pension) AS v FROM (SELECT c.customer_key, countIf(a.kind = 'pension') > 0 AS has_pension FROM customers c
       LEFT JOIN accounts a ON a.tenant_id = c.tenant_id AND a.customer_key = c.customer_key WHERE c.occupation = 'retiree' GROUP BY c.tenant_id, c.customer_key)`,
    )
    expect(retirees).toBeGreaterThan(0.7)
  })

  it('has loans with consistent schedules: some due within a week, a few overdue', async () => {
    const borrowers = await one('SELECT uniqExact(tenant_id, customer_key) / 2000 AS v FROM loans')
    expect(borrowers).toBeGreaterThan(0.15)
    expect(borrowers).toBeLessThan(0.25)
    expect(await one(`SELECT count() AS v FROM loan_schedules WHERE status = 'due' AND due_date BETWEEN {today:Date32} AND {today:Date32} + 7`)).toBeGreaterThan(0)
    const overdue = await one(`SELECT avg(status = 'overdue') AS v FROM loans WHERE status != 'closed'`)
    expect(overdue).toBeGreaterThan(0.005)
    expect(overdue).toBeLessThan(0.1)
    // loans.status / overdue_days agree with the schedule, paid rows are paid in the past.
    expect(
      await one(`SELECT count() AS v FROM loans l LEFT JOIN (
          SELECT tenant_id, loan_no, countIf(status = 'overdue') AS od, minIf(due_date, status = 'overdue') AS first_od,
                 countIf(status = 'due' AND due_date < {today:Date32}) AS stale
          FROM loan_schedules GROUP BY tenant_id, loan_no) s ON s.tenant_id = l.tenant_id AND s.loan_no = l.loan_no
        WHERE (l.status = 'overdue') != (s.od > 0) OR s.stale > 0
           OR (s.od > 0 AND dateDiff('day', s.first_od, {today:Date32}) != l.overdue_days)`),
    ).toBe(0)
    expect(
      await one(`SELECT count() AS v FROM loan_schedules WHERE (status = 'paid') != (paid_at IS NOT NULL) OR paid_at > {now:DateTime64(3, 'UTC')}
                   OR (status = 'paid' AND amount_paid != amount_due) OR (status != 'paid' AND amount_paid != 0)`),
    ).toBe(0)
    expect(await one(`SELECT countIf(outstanding > principal OR (status = 'closed' AND outstanding != 0)) AS v FROM loans`)).toBe(0)
  })

  it('has bills due within three days, overdue bills and bills paid by a relative', async () => {
    expect(await one(`SELECT count() AS v FROM bills WHERE status = 'unpaid' AND due_date BETWEEN {today:Date32} AND {today:Date32} + 3`)).toBeGreaterThan(0)
    expect(await one(`SELECT count() AS v FROM bills WHERE status = 'overdue' AND due_date < {today:Date32}`)).toBeGreaterThan(0)
    expect(await one(`SELECT countIf(status = 'overdue' AND due_date >= {today:Date32}) AS v FROM bills`)).toBe(0)
    const agents = await query<{ ok: number }>(
      `SELECT c.customer_key != 0 AND b.payer_key != b.customer_key AND b.status = 'paid' AS ok FROM bills b
       LEFT JOIN customers c ON c.tenant_id = b.tenant_id AND c.customer_key = b.payer_key WHERE b.payer_key != 0`,
    )
    expect(agents.length).toBeGreaterThan(0)
    expect(agents.every((r) => Number(r.ok) === 1)).toBe(true)
    expect(await one(`SELECT countIf(paid_at > {now:DateTime64(3, 'UTC')} OR (status = 'paid') != (paid_at IS NOT NULL)) AS v FROM bills`)).toBe(0)
  })

  it('gives each member bank a catalogue of 25-40 products', async () => {
    const rows = await query<{ n: string; kinds: string[] }>('SELECT toString(count()) AS n, groupUniqArray(kind) AS kinds FROM products GROUP BY tenant_id')
    expect(rows).toHaveLength(DEMO_BANKS.length)
    for (const r of rows) {
      expect(Number(r.n)).toBeGreaterThanOrEqual(25)
      expect(Number(r.n)).toBeLessThanOrEqual(40)
      expect(r.kinds.sort()).toEqual(['agri', 'deposit', 'government', 'insurance', 'loan', 'payment', 'pension', 'wealth'])
    }
    // Every loan and every viewed product is in its bank's catalogue.
    expect(await one('SELECT count() AS v FROM loans l LEFT ANTI JOIN products p ON p.tenant_id = l.tenant_id AND p.product_id = l.product_id')).toBe(0)
    expect(
      await one(`SELECT count() AS v FROM events e LEFT ANTI JOIN products p ON p.tenant_id = e.tenant_id AND p.product_id = e.product_id WHERE e.product_id != ''`),
    ).toBe(0)
  })

  it('keeps events inside the window, linked to real customers and devices', async () => {
    const [w] = await query<{ lo: string; hi: string; rx: string; n: string; ids: string }>(
      `SELECT toString(min(timestamp)) AS lo, toString(max(timestamp)) AS hi, toString(max(received_at)) AS rx,
              toString(count()) AS n, toString(uniqExact(message_id)) AS ids FROM events`,
    )
    expect(Date.parse(w!.lo + 'Z')).toBeGreaterThanOrEqual(NOW.getTime() - OPTS.days * 86_400_000)
    expect(Date.parse(w!.hi + 'Z')).toBeLessThan(NOW.getTime())
    expect(Date.parse(w!.rx + 'Z')).toBeLessThanOrEqual(NOW.getTime())
    expect(w!.ids).toBe(w!.n)
    const perCustomer = Number(w!.n) / OPTS.customers / OPTS.days
    expect(perCustomer).toBeGreaterThan(1.2) // ~50 a month
    expect(perCustomer).toBeLessThan(2.2)
    expect(await one('SELECT count() AS v FROM events e LEFT ANTI JOIN customers c ON c.tenant_id = e.tenant_id AND c.customer_key = e.customer_key')).toBe(0)
    expect(await one(`SELECT countIf(sent_at < timestamp OR received_at < sent_at) AS v FROM events`)).toBe(0)
    // The promoted columns are written directly; they must equal what the schema would extract.
    expect(
      await one(`SELECT countIf(product_id != JSONExtractString(properties, 'product_id') OR amount != JSONExtractFloat(properties, 'amount')) AS v FROM events`),
    ).toBe(0)
    expect(await one(`SELECT countIf(amount > 0) AS v FROM events`)).toBeGreaterThan(0)
    expect(
      await one(`SELECT count() AS v FROM events e LEFT ANTI JOIN identities i
                 ON i.tenant_id = e.tenant_id AND i.id_kind = 'anonymous_id' AND i.id_value = e.anonymous_id AND i.customer_key = e.customer_key`),
    ).toBe(0)
    expect(await one(`SELECT countIf(NOT isValidJSON(properties) OR NOT isValidJSON(context) OR context LIKE '%"ip"%') AS v FROM events`)).toBe(0)
    const types = await query<{ t: string }>('SELECT DISTINCT toString(type) AS t FROM events ORDER BY t')
    expect(types.map((r) => r.t)).toEqual(['identify', 'track', 'screen'].sort())
    const names = new Set((await query<{ e: string }>('SELECT DISTINCT event AS e FROM events')).map((r) => r.e))
    for (const e of ['home', 'transfer', 'wealth', 'product_viewed', 'transfer_completed', 'bill_paid', 'signed_in', 'push_opened', 'voice_assistant_used']) {
      expect(names.has(e), e).toBe(true)
    }
  })

  it('follows the local daily rhythm and favours the most popular products', async () => {
    const hours = await query<{ h: number; n: string }>(`SELECT toHour(timestamp, 'Asia/Shanghai') AS h, toString(count()) AS n FROM events GROUP BY h`)
    const at = (h: number) => Number(hours.find((r) => r.h === h)?.n ?? 0)
    expect(at(20)).toBeGreaterThan(8 * at(3))
    expect(at(8)).toBeGreaterThan(8 * at(2))
    const views = await query<{ n: string }>(
      `SELECT toString(count()) AS n FROM events WHERE event = 'product_viewed' GROUP BY tenant_id, product_id ORDER BY count() DESC`,
    )
    expect(Number(views[0]!.n)).toBeGreaterThan(5 * Number(views[views.length - 1]!.n))
    // Elders use the voice assistant far more than others.
    const voice = await query<{ elder: number; share: number }>(
      `SELECT c.age >= 60 AS elder, avg(e.event = 'voice_assistant_used') AS share FROM events e
       JOIN (SELECT tenant_id, customer_key, floor(dateDiff('day', assumeNotNull(birth_date), {today:Date32}) / 365.2425) AS age FROM customers) c
         ON c.tenant_id = e.tenant_id AND c.customer_key = e.customer_key GROUP BY elder ORDER BY elder`,
    )
    expect(voice[1]!.share).toBeGreaterThan(2 * voice[0]!.share)
  })

  it('is deterministic for a seed and a time, and differs for another seed', async () => {
    await wipe()
    await generateDemo(deps(), OPTS)
    expect(await checksums()).toEqual(firstChecksums)

    await wipe()
    await generateDemo(deps(), { ...OPTS, seed: OPTS.seed + 1 })
    const other = await checksums()
    for (const t of DATA_TABLES) expect(other[t], t).not.toBe(firstChecksums[t])
  })

  it('gives events to the active share only, spread over every bank and the whole key range, none of them dormant', async () => {
    await wipe()
    const customers = 3000
    const active = 600
    await generateDemo(deps(), { ...OPTS, customers, active, days: 30 })
    // Every customer keeps the stock data: nine consent decisions each, accounts beyond the actives.
    expect(await one('SELECT count() AS v FROM customers')).toBe(customers)
    expect(await one('SELECT count() AS v FROM consents')).toBe(9 * customers)
    expect(await one('SELECT uniqExact(tenant_id, customer_key) AS v FROM accounts')).toBeGreaterThan(2 * active)
    // A hash draw per customer: about `active` of them (binomial, sd ~22), none dormant over 30 days.
    const withEvents = await one('SELECT uniqExact(tenant_id, customer_key) AS v FROM events')
    expect(withEvents).toBeGreaterThan(0.85 * active)
    expect(withEvents).toBeLessThan(1.1 * active)
    const perBank = await query<{ share: number; top: number }>(
      `SELECT uniqExact(e.customer_key) / any(c.n) AS share, max(e.customer_key) / any(c.n) AS top
       FROM events AS e INNER JOIN (SELECT tenant_id, count() AS n FROM customers GROUP BY tenant_id) AS c ON c.tenant_id = e.tenant_id
       GROUP BY e.tenant_id`,
    )
    expect(perBank).toHaveLength(3)
    for (const b of perBank) {
      expect(b.share).toBeGreaterThan(0.12)
      expect(b.share).toBeLessThan(0.28)
      // Not the first keys of the bank: actives are drawn over all of them.
      expect(b.top).toBeGreaterThan(0.9)
    }
    // An app user's month: a few sessions a week of several events each.
    const perActive = (await one('SELECT count() AS v FROM events')) / withEvents
    expect(perActive).toBeGreaterThan(30)
    expect(perActive).toBeLessThan(150)
  })
})
