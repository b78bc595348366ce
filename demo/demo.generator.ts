import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Pii } from '../core/pii.js'
import { chDateTime, localDate } from '../core/time.js'
import type { KeyService } from '../tenants/keys.service.js'
import type { Role } from '../tenants/permissions.js'
import type { Tenant, TenantService } from '../tenants/tenants.service.js'
import { DEMO_BANKS, DEMO_GROUP, splitCustomers, type DemoBank } from './demo.banks.js'
import { buildCatalogue, type Catalogue } from './demo.catalog.js'
import { CUSTOMER_COLUMNS, customerRows } from './demo.customers.js'
import { eventParams, generateEventSlice } from './demo.events.js'
import { createProgress, type Progress } from './demo.progress.js'
import { generateStock, STOCK_TABLES } from './demo.stock.js'

/**
 * The demo bank group: a provincial union and three member banks with customers, stock data
 * and a window of app behaviour, deterministic for a seed and a `now`.
 *
 * Where rows are made, and why:
 * - tenants and keys through their services (the keys' secrets are random by design);
 * - products (a few dozen rows) through TenantDb.insert;
 * - customers in JavaScript (the phone digest needs the PII key), sent in chunks through the
 *   system's TabSeparated bulk path (handed to the embedded engine as a buffer); TenantDb.insert
 *   sends JSONEachRow, which parses several times slower, and one body per chunk keeps memory
 *   bounded;
 * - everything else engine-side by INSERT ... SELECT from the customers (demo.stock.ts,
 *   demo.events.ts): no serialization at all, several times faster than any client format.
 */

export interface DemoOptions {
  customers: number
  /**
   * Customers, over all banks, who use the app in the window; the others have their stock data
   * and no events. Default: every customer may (with the generator's own dormant share).
   */
  active?: number
  days: number
  seed: number
  /** Generation time; default: now. */
  now?: Date
  /** A cli-progress bar on stderr. */
  progress?: boolean
  /**
   * A time box for events (benchmarks on a shared machine): each bank stops starting new event
   * slices after its share of these seconds, so its events cover keys 1..k only; the summary's
   * `eventsCut` says where each bank stopped. Default: no limit.
   */
  eventSeconds?: number
  /** Called as each table of each bank is done (and after each event slice), with its seconds. */
  onStep?: (step: { bank: string; table: string; seconds: number; toKey?: number }) => void
}

/** A demo key: one role each, held by the system or person a bank would give it to. */
export interface DemoKey {
  role: Role
  holder: string
  key: string
}

/** The keys of a member bank of the demo, one per system that connects to Qianmian. */
const MEMBER_KEYS: readonly (readonly [Role, string])[] = [
  ['ingest', 'demo mobile app'],
  ['layout', 'demo app gateway'],
  ['push', 'demo notification service'],
  ['consent', 'demo app back end'],
  ['analyst', 'demo analyst'],
  ['marketer', 'demo marketer'],
  ['admin', 'demo administrator'],
]

export interface DemoSummary {
  tenants: {
    id: number
    slug: string
    name: string
    kind: 'group' | 'member'
    keys: DemoKey[]
  }[]
  rows: Record<string, number>
  seconds: number
  /** Wall seconds by phase over all banks: catalogue and customers, stock tables, events. */
  phases: { customers: number; stock: number; events: number }
  /** Wall seconds by table over all banks (products with the customers), for rows/s per table. */
  tables: Record<string, number>
  /** Banks whose events the time box cut (DemoOptions.eventSeconds): the last key with events, of how many. */
  eventsCut: { bank: string; toKey: number; customers: number }[]
}

export interface DemoDeps {
  db: Db
  tenants: TenantService
  keys: KeyService
  pii: Pii
  log: Logger
}

/** Customers per customers insert: ~20 MB of text, a bounded body per insert. */
const CUSTOMER_CHUNK = 100_000
/** Customers per events insert: ~5M events, large enough to keep the engine's threads busy. */
const EVENT_SLICE = 100_000
/**
 * With an active share, a slice spans EVENT_SLICE active customers (the same events per insert);
 * the bound keeps the key range, and the loans joined per slice, small.
 */
const MAX_EVENT_SLICE = 1_000_000

export const DEMO_SLUGS = [DEMO_GROUP.slug, ...DEMO_BANKS.map((b) => b.slug)]

const SUMMARY_TABLES = ['products', 'customers', 'identities', ...STOCK_TABLES.filter((t) => t !== 'identities'), 'events'] as const

/**
 * Creates the demo group and fills it. Throws CONFLICT, before writing anything, when a demo
 * tenant already exists; VALIDATION_FAILED on bad options. The returned keys are shown once.
 */
export async function generateDemo(deps: DemoDeps, opts: DemoOptions): Promise<DemoSummary> {
  const { db, tenants, keys, log } = deps
  validate(opts)
  const started = performance.now()
  const now = opts.now ?? new Date()

  // Refuse before creating anything, so a second run cannot leave a half-made group behind.
  await tenants.reload()
  const existing = (await tenants.list()).filter((t) => DEMO_SLUGS.includes(t.slug)).map((t) => t.slug)
  if (existing.length > 0) {
    throw new AppError(
      'CONFLICT',
      `The demo tenants already exist (${existing.join(', ')}): the demo is generated only once per data directory. ` +
        'Start from an empty data directory to generate it again.',
      { issues: existing.map((slug) => ({ field: 'slug', message: `${slug} already exists` })) },
    )
  }

  const counts = splitCustomers(opts.customers)
  const progress = createProgress(opts.progress === true, opts.customers * 4)
  log.info({ customers: opts.customers, active: opts.active ?? 'all', days: opts.days, seed: opts.seed, now: now.toISOString() }, 'generating the demo bank group')
  try {
    const group = await tenants.create({ slug: DEMO_GROUP.slug, name: DEMO_GROUP.name, kind: 'group' })
    const out: DemoSummary['tenants'] = [{ ...view(group), keys: [await issue(keys, group.id, 'admin', 'demo group administrator')] }]
    const members: { bank: DemoBank; tenant: Tenant; count: number }[] = []
    for (const bank of DEMO_BANKS) {
      const tenant = await tenants.create({ slug: bank.slug, name: bank.name, kind: 'member', parent: DEMO_GROUP.slug })
      const issued: DemoKey[] = []
      for (const [role, holder] of MEMBER_KEYS) issued.push(await issue(keys, tenant.id, role, holder))
      out.push({ ...view(tenant), keys: issued })
      members.push({ bank, tenant, count: counts[bank.index]! })
    }

    const phases = { customers: 0, stock: 0, events: 0 }
    const tables: Record<string, number> = {}
    const eventsCut: DemoSummary['eventsCut'] = []
    for (const m of members) {
      const toKey = await generateBank(deps, m, opts, now, progress, phases, tables)
      if (toKey < m.count) eventsCut.push({ bank: m.bank.slug, toKey, customers: m.count })
    }

    const rows = await countRows(db, out.map((t) => t.id))
    const seconds = (performance.now() - started) / 1000
    log.info({ rows, seconds: Number(seconds.toFixed(2)), phases }, 'demo bank group ready')
    return { tenants: out, rows, seconds, phases, tables, eventsCut }
  } catch (e) {
    log.error({ err: e }, 'demo generation failed; the demo tenants created so far stay, start from an empty data directory to retry')
    throw e
  } finally {
    progress.stop()
  }
}

async function generateBank(
  deps: DemoDeps,
  m: { bank: DemoBank; tenant: Tenant; count: number },
  opts: DemoOptions,
  now: Date,
  progress: Progress,
  phases: DemoSummary['phases'],
  tables: DemoSummary['tables'],
): Promise<number> {
  const { db, log } = deps
  const { bank, tenant, count } = m
  const tdb = db.forTenant(tenant.id)
  const today = localDate(now, tenant.timeZone)
  let t0 = performance.now()
  let cpu = process.cpuUsage()
  // Wall and process CPU time (JS and engine threads, background merges included) per phase.
  let tableStart = performance.now()
  const tableDone = (table: string) => {
    const now = performance.now()
    tables[table] = Number(((tables[table] ?? 0) + (now - tableStart) / 1000).toFixed(3))
    opts.onStep?.({ bank: bank.slug, table, seconds: (now - tableStart) / 1000 })
    tableStart = now
  }
  const lap = (phase: keyof DemoSummary['phases']) => {
    const c = process.cpuUsage(cpu)
    const seconds = (performance.now() - t0) / 1000
    tableDone(phase === 'stock' ? 'stock_other' : phase)
    phases[phase] = Number((phases[phase] + seconds).toFixed(3))
    cpu = process.cpuUsage()
    t0 = performance.now()
    return { seconds: Number(seconds.toFixed(2)), cpuSeconds: Number(((c.user + c.system) / 1e6).toFixed(2)) }
  }

  const catalogue = buildCatalogue(bank, opts.seed, today)
  await tdb.insert('products', catalogue.rows.map((r) => ({ ...r, updated_at: chDateTime(now) })))

  await insertCustomers(deps, { bank, tenantId: tenant.id, count, now, today, seed: opts.seed }, progress)
  log.debug({ tenant: bank.slug, customers: count, ...lap('customers') }, 'demo customers inserted')

  await generateStock(
    tdb,
    { seed: opts.seed, bank, catalogue, customers: count, now: chDateTime(now), today, timeZone: tenant.timeZone, days: opts.days },
    (table) => {
      tableDone(table)
      progress.advance(count / STOCK_TABLES.length, `${bank.slug}: ${table}`)
    },
  )
  log.debug({ tenant: bank.slug, ...lap('stock') }, 'demo stock tables derived')

  const until = opts.eventSeconds === undefined ? Infinity : performance.now() + opts.eventSeconds * bank.share * 1000
  const toKey = await insertEvents(tdb, { bank, catalogue, count, now, today, timeZone: tenant.timeZone, opts, until }, progress)
  log.debug({ tenant: bank.slug, ...lap('events') }, 'demo events generated')
  return toKey
}

async function insertCustomers(
  deps: DemoDeps,
  c: { bank: DemoBank; tenantId: number; count: number; now: Date; today: string; seed: number },
  progress: Progress,
): Promise<void> {
  const chunks = customerRows({ ...c, pii: deps.pii }, c.count, CUSTOMER_CHUNK)
  // While the engine parses one chunk (off the JS thread), the next one is built.
  let pending: Promise<void> | undefined
  for (const rows of chunks) {
    const insert = deps.db.system.insertTsv('customers', CUSTOMER_COLUMNS, rows)
    if (pending) await pending
    pending = insert.then(() => progress.advance(rows.length, `${c.bank.slug}: customers`))
  }
  await pending
}

async function insertEvents(
  tdb: ReturnType<Db['forTenant']>,
  e: { bank: DemoBank; catalogue: Catalogue; count: number; now: Date; today: string; timeZone: string; opts: DemoOptions; until: number },
  progress: Progress,
): Promise<number> {
  const activeShare = e.opts.active === undefined ? undefined : e.opts.active / e.opts.customers
  const params = eventParams({
    seed: e.opts.seed,
    bank: e.bank,
    catalogue: e.catalogue,
    today: e.today,
    timeZone: e.timeZone,
    now: e.now,
    days: e.opts.days,
    ...(activeShare === undefined ? {} : { activeShare }),
  })
  const slice = activeShare ? Math.min(MAX_EVENT_SLICE, Math.ceil(EVENT_SLICE / activeShare)) : activeShare === 0 ? e.count : EVENT_SLICE
  progress.phase(`${e.bank.slug}: events`)
  let done = 0
  for (let from = 1; from <= e.count && performance.now() < e.until; from += slice) {
    const to = Math.min(e.count, from + slice - 1)
    const t0 = performance.now()
    await generateEventSlice(tdb, params, from, to)
    done = to
    e.opts.onStep?.({ bank: e.bank.slug, table: 'events_slice', seconds: (performance.now() - t0) / 1000, toKey: to })
    progress.advance(2 * (to - from + 1), `${e.bank.slug}: events`)
  }
  return done
}

async function issue(keys: KeyService, tenantId: number, role: Role, holder: string): Promise<DemoKey> {
  const { key } = await keys.issue(tenantId, { roles: [role], holder, label: `demo ${role} key` })
  return { role, holder, key }
}

function view(t: Tenant) {
  return { id: t.id, slug: t.slug, name: t.name, kind: t.kind }
}

async function countRows(db: Db, tenantIds: number[]): Promise<Record<string, number>> {
  const rows: Record<string, number> = { tenants: tenantIds.length }
  // Table names come from this module's own list; tenant ids are bound.
  for (const table of ['api_keys', ...SUMMARY_TABLES]) {
    const [r] = await db.system.query<{ n: string }>(
      `SELECT toString(count()) AS n FROM ${table} WHERE tenant_id IN {ids:Array(UInt16)}`,
      { ids: tenantIds },
    )
    rows[table] = Number(r?.n ?? 0)
  }
  return rows
}

function validate(o: DemoOptions): void {
  const issues: { field: string; message: string }[] = []
  if (!Number.isInteger(o.customers) || o.customers < DEMO_BANKS.length || o.customers > 20_000_000) {
    issues.push({ field: 'customers', message: `expected an integer between ${DEMO_BANKS.length} and 20000000` })
  }
  if (o.active !== undefined && (!Number.isInteger(o.active) || o.active < 0 || o.active > o.customers)) {
    issues.push({ field: 'active', message: 'expected an integer between 0 and customers' })
  }
  if (!Number.isInteger(o.days) || o.days < 1 || o.days > 400) issues.push({ field: 'days', message: 'expected an integer between 1 and 400' })
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 2 ** 31 - 1) issues.push({ field: 'seed', message: 'expected an integer between 0 and 2147483647' })
  if (o.now !== undefined && Number.isNaN(o.now.getTime())) issues.push({ field: 'now', message: 'expected a valid date' })
  if (issues.length) throw new AppError('VALIDATION_FAILED', 'Invalid demo options.', { issues })
}
