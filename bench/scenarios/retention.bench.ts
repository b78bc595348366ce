import { z } from 'zod'
import { createTenantService } from '../../tenants/tenants.service.js'
import { createRetentionJob, type RetentionResult } from '../../tenants/retention.job.js'
import type { BenchContext, BenchScenario } from '../harness.js'

/**
 * The daily retention job at bank scale (`npm run bench retention -- --set customers=N --set
 * events=E --set days=D --set other=M`), in this process on the embedded engine. Three banks whose
 * rows share the daily partitions and their parts, as in production: the measured bank with N
 * customers and E events each spread evenly over D days, exposures over 200 days, push outcomes
 * over 500 and two versions of a tag per customer (one superseded 800 days ago); a bank beside it
 * of M customers on the same (default) retention; and a keeper of M customers keeping five years,
 * which must lose nothing. Then:
 *
 * 1. the floors: a count of the bank's events the job deletes (what it must at least read) and
 *    one full scan of the bank's events;
 * 2. the first run over every bank (the catch-up: everything past retention goes at once);
 * 3. the same run again (nothing left: counts only);
 * 4. the next day's work for the measured bank alone; then a day's work bank by bank, as the job
 *    ran before it grouped banks, against the same work for every bank together;
 * 5. a point read of the keeper's customer (one customer's events, as a profile read does) while
 *    idle and during the runs, on the same connection.
 */

const DAY_S = 86_400

async function seed(ctx: BenchContext, tenant: number, n: number, perCustomer: number, days: number, nowS: number): Promise<void> {
  const sys = ctx.db.system
  const p = { t: tenant, n, e: n * perCustomer, days, now: nowS }
  const at = (expr: string) => `toDateTime64({now:UInt32}, 3, 'UTC') - toIntervalSecond(${expr})`
  // Events evenly over `days` (event i of the bank falls i * 7919 mod the span seconds back), in
  // one insert although events have one partition per day (sql/007): a seed, not an ingest path.
  await sys.command(
    `INSERT INTO events (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id, properties, context, sent_at, received_at)
     SELECT {t:UInt16}, number % {n:UInt32} + 1, ${at('(number * 7919) % ({days:UInt32} * 86400)')}, 'track', 'product_viewed', concat('m', toString(number)),
            '', '', '', '{"product_id":"p1"}', '{}', ${at('(number * 7919) % ({days:UInt32} * 86400)')}, ${at('(number * 7919) % ({days:UInt32} * 86400)')}
     FROM numbers({e:UInt64}) SETTINGS max_partitions_per_insert_block = 0`,
    p,
  )
  await sys.command(
    `INSERT INTO layout_exposures (tenant_id, customer_key, served_at, screen, experiment, variant, holdout, elder, model_build, modules, items)
     SELECT {t:UInt16}, number % {n:UInt32} + 1, ${at('(number * 7919) % (200 * 86400)')}, 'home', '', '', 0, 0, 1, ['m'], ['i'] FROM numbers({n:UInt32} * 2)`,
    p,
  )
  await sys.command(
    `INSERT INTO push_outcomes (tenant_id, target_id, campaign_id, customer_key, status, final, reason, lease_id, at)
     SELECT {t:UInt16}, hex(MD5(toString(number))), 'c1', number + 1, 'delivered', 1, '', 'l', ${at('(number * 7919) % (500 * 86400)')} FROM numbers({n:UInt32})`,
    p,
  )
  // Per customer: a value from 1000 days ago superseded 800 days ago (goes), and the one in effect.
  await sys.command(
    `INSERT INTO tag_history (tenant_id, tag, customer_key, valid_from, value, num, list, removed, run_id, tag_version)
     SELECT {t:UInt16}, 'lifecycle', number % {n:UInt32} + 1, ${at('if(number < {n:UInt32}, 1000, 800) * 86400')}, if(number < {n:UInt32}, 'new', 'active'), 0, [], 0, 1, 1
     FROM numbers({n:UInt32} * 2)`,
    p,
  )
}

const quantile = (xs: number[], q: number) => {
  if (!xs.length) return 0
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

export const scenario: BenchScenario = {
  name: 'retention',
  description:
    "The daily retention job (lightweight DELETE) on a bank of 1M customers' events over 500 days beside two more banks: the catch-up run, a run with nothing to do, and the next day's work bank by bank against all banks in one statement per table; against a count of the rows it deletes and a full scan of the bank's events, with a point read of another bank meanwhile.",
  async run(ctx: BenchContext) {
    const n = Number(ctx.args.customers ?? 1_000_000)
    const perCustomer = Number(ctx.args.events ?? 10)
    const days = Number(ctx.args.days ?? 500)
    const other = Number(ctx.args.other ?? 200_000)
    const say = (s: string) => console.log(`  ${s}`)
    const tenants = createTenantService({ system: ctx.db.system, defaultTimeZone: 'Asia/Shanghai' })
    const bank = await tenants.create({ slug: 'bench-retention', name: 'bench' })
    // Beside it: a bank on the same (default) retention, and one keeping everything for five years.
    const beside = await tenants.create({ slug: 'bench-beside', name: 'beside' })
    const keeper = await tenants.create({ slug: 'bench-keeper', name: 'keeper' })
    await tenants.savePrivacy(keeper.id, { eventsDays: 1825, tagHistoryDays: 1825, exposuresDays: 400, pushOutcomesDays: 400 }, 'bench')
    const nowS = Math.floor(Date.now() / 1000)
    let t0 = performance.now()
    await seed(ctx, bank.id, n, perCustomer, days, nowS)
    await seed(ctx, beside.id, other, perCustomer, days, nowS)
    await seed(ctx, keeper.id, other, perCustomer, days, nowS)
    // Old days are merged into one part per day in a running deployment; so here.
    await ctx.db.system.command('OPTIMIZE TABLE events FINAL')
    const seedS = (performance.now() - t0) / 1000
    const countRow = z.object({ n: z.coerce.number() })
    const parts = async () => (await ctx.db.system.query(`SELECT count() AS n FROM system.parts WHERE database = currentDatabase() AND table = 'events' AND active`, {}, countRow))[0]!.n
    const partsBefore = await parts()
    say(`seeded ${n} + 2 x ${other} customers, ${(n + 2 * other) * perCustomer} events (${partsBefore} parts) in ${seedS.toFixed(1)} s`)
    const db = ctx.db.forTenant(bank.id)
    const dbKeeper = ctx.db.forTenant(keeper.id)
    const eventsOf = async (tdb: typeof db) => (await tdb.query(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16}`, {}, countRow))[0]!.n

    // 1. Floors.
    const cutoff = new Date((nowS - 400 * DAY_S) * 1000).toISOString().replace('T', ' ').replace('Z', '')
    t0 = performance.now()
    const toDelete = (await db.query(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND timestamp < {cutoff:DateTime64(3, 'UTC')}`, { cutoff }, countRow))[0]!.n
    const countS = (performance.now() - t0) / 1000
    t0 = performance.now()
    await db.query(`SELECT count() AS n, sum(length(properties)) AS b FROM events WHERE tenant_id = {tenant:UInt16}`)
    const scanS = (performance.now() - t0) / 1000
    say(`floor: count of the ${toDelete} events past retention ${countS.toFixed(2)} s, full scan of the bank's events ${scanS.toFixed(2)} s`)

    // The keeper's point read, idle and during runs (same connection: it waits for the statement running).
    const pointRead = async () => {
      const k = 1 + Math.floor(Math.random() * other)
      const s = performance.now()
      await dbKeeper.query(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = {k:UInt32}`, { k }, countRow)
      return performance.now() - s
    }
    const idle: number[] = []
    for (let i = 0; i < 30; i++) idle.push(await pointRead())
    const during = async <T>(fn: () => Promise<T>) => {
      const lat: number[] = []
      let done = false
      const s = performance.now()
      const job = fn().finally(() => (done = true))
      const reader = (async () => {
        while (!done) {
          lat.push(await pointRead())
          await new Promise((r) => setTimeout(r, 20))
        }
      })()
      const r = await job
      const secs = (performance.now() - s) / 1000
      await reader
      return { r, secs, lat }
    }
    const keeperBefore = await eventsOf(dbKeeper)
    const job = (dayOffset: number) => createRetentionJob({ db: ctx.db, tenants, log: ctx.log, now: () => new Date((nowS + dayOffset * DAY_S) * 1000) })
    const ids = [bank.id, beside.id, keeper.id]
    const sum = (rs: RetentionResult[], table: string) => rs.reduce((a, r) => a + (r.deleted[table] ?? 0), 0)

    // 2. The catch-up, every bank.
    const first = await during(() => job(0).runAll())
    const mine = first.r.find((r) => r.tenantId === bank.id)!
    say(`first run ${first.secs.toFixed(2)} s: ${JSON.stringify(mine.deleted)} ms ${JSON.stringify(mine.ms)}`)
    const left = (await db.query(`SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND timestamp < {cutoff:DateTime64(3, 'UTC')}`, { cutoff }, countRow))[0]!.n
    // 3. Nothing left.
    const again = await during(() => job(0).runAll())
    say(`again ${again.secs.toFixed(2)} s`)
    // 4. The next day's work: the measured bank alone (what each bank paid a day, run bank by bank) ...
    const one = await during(async () => [await job(1).run(bank.id)])
    say(`next day, one bank ${one.secs.toFixed(2)} s: ${JSON.stringify(one.r[0]!.deleted)}`)
    // ... every bank one after the other, as the job ran before (day 2) ...
    t0 = performance.now()
    const byBank: RetentionResult[] = []
    for (const id of ids) byBank.push(await job(2).run(id))
    const byBankS = (performance.now() - t0) / 1000
    say(`day 2, bank by bank ${byBankS.toFixed(2)} s: ${sum(byBank, 'events')} events`)
    // ... and every bank together, one statement per table and cutoff (day 3).
    const together = await during(() => job(3).runAll())
    say(`day 3, together ${together.secs.toFixed(2)} s: ${sum(together.r, 'events')} events`)
    const keeperAfter = await eventsOf(dbKeeper)
    const mutations = await ctx.db.system.query(`SELECT count() AS n FROM system.mutations WHERE database = currentDatabase() AND table = 'events' AND NOT is_done`, {}, countRow)

    const ms = (x: number) => Number(x.toFixed(1))
    const max = (xs: number[]) => Math.max(0, ...xs)
    return {
      params: { customers: n, events_per_customer: perCustomer, days, banks_beside: 2, customers_per_bank_beside: other, events_total: (n + 2 * other) * perCustomer, retention_events_days: 400, keeper_events_days: 1825 },
      figures: {
        seed_s: Number(seedS.toFixed(2)),
        event_parts: partsBefore,
        floor_count_deleted_s: Number(countS.toFixed(3)),
        floor_scan_bank_events_s: Number(scanS.toFixed(3)),
        first_run_all_banks_s: Number(first.secs.toFixed(2)),
        first_events_deleted_bank: mine.deleted.events ?? 0,
        first_rows_deleted_all_banks_tables: first.r.reduce((a, r) => a + Object.values(r.deleted).reduce((x, y) => x + y, 0), 0),
        first_events_ms: mine.ms.events ?? 0,
        first_exposures_ms: mine.ms.layout_exposures ?? 0,
        first_outcomes_ms: mine.ms.push_outcomes ?? 0,
        first_tag_history_ms: mine.ms.tag_history ?? 0,
        events_left_past_cutoff: left,
        noop_run_s: Number(again.secs.toFixed(2)),
        next_day_one_bank_s: Number(one.secs.toFixed(2)),
        next_day_events_deleted_bank: one.r[0]!.deleted.events ?? 0,
        day2_bank_by_bank_s: Number(byBankS.toFixed(2)),
        day2_events_deleted: sum(byBank, 'events'),
        day3_together_s: Number(together.secs.toFixed(2)),
        day3_events_deleted: sum(together.r, 'events'),
        keeper_events_lost: keeperBefore - keeperAfter,
        event_mutations_pending: mutations[0]!.n,
        point_read_idle_p50_ms: ms(quantile(idle, 0.5)),
        point_read_idle_p95_ms: ms(quantile(idle, 0.95)),
        point_read_first_run_p50_ms: ms(quantile(first.lat, 0.5)),
        point_read_first_run_max_ms: ms(max(first.lat)),
        point_read_day3_max_ms: ms(max(together.lat)),
      },
      ratios: {
        first_run_vs_count: first.secs / countS,
        first_run_vs_scan: first.secs / scanS,
        next_day_one_bank_vs_scan: one.secs / scanS,
        day3_together_vs_day2_bank_by_bank: together.secs / byBankS,
        day3_together_vs_one_bank: together.secs / one.secs,
        noop_vs_scan: again.secs / scanS,
        point_read_first_run_max_vs_idle_p50: max(first.lat) / quantile(idle, 0.5),
      },
      notes: [
        'Events have one partition per day (sql/007); a DELETE is a mutation that versions every part of the table, matching rows or not, so its cost follows the part count more than the rows deleted.',
        'Day 2 runs each bank alone, as the job did before it grouped banks: one DELETE per bank and table. Day 3 is the job as it runs now: one per table and cutoff. The keeper (five years) must lose nothing.',
        "Point reads share the job's connection, as the API and the scheduler share one in a single-process deployment: a read waits for the statement running.",
      ],
    }
  },
}
