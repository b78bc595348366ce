import { z } from 'zod'
import { createMetrics } from '../../core/metrics.js'
import { createPii } from '../../core/pii.js'
import { createPrivacyModule, createPrivacyTombstones } from '../../privacy/privacy.module.js'
import { createTenantService } from '../../tenants/tenants.service.js'
import type { BenchContext, BenchScenario } from '../harness.js'

/**
 * Erasure at bank scale (`npm run bench erasure -- --set customers=N --set events=E`), in this
 * process on the embedded engine. A tenant of N customers written with INSERT ... SELECT FROM
 * numbers(): profiles, identities (number and app id), accounts, E events per customer, traits,
 * five tags (values, history, bitmaps), a segment's membership bitmap and history, layout
 * exposures, push targets and outcomes. Then:
 *
 * 1. the floor: one full read of the tenant's events by the columns the erasure filters on
 *    (customer key, number, app id), which any delete of one customer's events must at least do;
 * 2. the erasure of one customer, start to proof, as the API's job runs it;
 * 3. the erasure of a batch of 10,000 customers in one job.
 *
 * The goal (issue 15): at most an hour each at 1M customers.
 */

const SIX_MONTHS_MS = 180 * 86_400_000

async function seed(ctx: BenchContext, tenant: number, n: number, perCustomer: number): Promise<void> {
  const sys = ctx.db.system
  const p = { t: tenant, n, e: n * perCustomer, days: SIX_MONTHS_MS / 1000 }
  const no = "concat('B', leftPad(toString(number + 1), 9, '0'))"
  const run = (sql: string) => sys.command(sql, p)
  await run(`INSERT INTO customers (tenant_id, customer_key, customer_no, gender, birth_date, region_code, branch_code, occupation, phone_hash, name_masked, opened_at, updated_at)
    SELECT {t:UInt16}, number + 1, ${no}, 'female', toDate32('1950-01-01') + number % 20000, '3301', 'b1', '', '', '王*', now64(3), now64(3) FROM numbers({n:UInt32})`)
  await run(`INSERT INTO identities (tenant_id, id_kind, id_value, customer_key, source, created_at, updated_at)
    SELECT {t:UInt16}, 'customer_no', ${no}, number + 1, 'bench', now64(3), now64(3) FROM numbers({n:UInt32})`)
  await run(`INSERT INTO identities (tenant_id, id_kind, id_value, customer_key, source, created_at, updated_at)
    SELECT {t:UInt16}, 'anonymous_id', concat('anon-', toString(number + 1)), number + 1, 'bench', now64(3), now64(3) FROM numbers({n:UInt32})`)
  await run(`INSERT INTO accounts (tenant_id, customer_key, account_no, kind, currency, balance, opened_at, status, updated_at)
    SELECT {t:UInt16}, number + 1, concat('A', toString(number)), 'savings', 'CNY', 1000, '2015-01-01', 'active', now64(3) FROM numbers({n:UInt32})`)
  await run(`INSERT INTO events (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id, properties, context, sent_at, received_at)
    SELECT {t:UInt16}, k, now64(3) - toIntervalMillisecond(number % {days:UInt32} * 1000), 'track', 'product_viewed', concat('m', toString(number)),
           concat('anon-', toString(k)), concat('B', leftPad(toString(k), 9, '0')), '', '{"product_id":"p1"}', '{}', now64(3), now64(3) - toIntervalDay(10)
    FROM (SELECT number, number % {n:UInt32} + 1 AS k FROM numbers({e:UInt64}))`)
  await run(`INSERT INTO customer_traits (tenant_id, customer_key, trait, value, hashed, updated_at) SELECT {t:UInt16}, number + 1, 'plan', 'gold', 0, now64(3) FROM numbers({n:UInt32})`)
  for (const tag of ['t1', 't2', 't3', 't4', 't5']) {
    const q = { ...p, tag }
    await sys.command(`INSERT INTO tag_values (tenant_id, tag, customer_key, value, num, list, run_id, is_deleted) SELECT {t:UInt16}, {tag:String}, number + 1, toString(number % 3), 0, [], 1, 0 FROM numbers({n:UInt32})`, q)
    await sys.command(`INSERT INTO tag_history (tenant_id, tag, customer_key, valid_from, value, num, list, removed, run_id, tag_version) SELECT {t:UInt16}, {tag:String}, number + 1, now64(3), toString(number % 3), 0, [], 0, 1, 1 FROM numbers({n:UInt32})`, q)
    await sys.command(`INSERT INTO tag_bitmaps (tenant_id, tag, build, value, lo, hi, cardinality, keys)
      SELECT {t:UInt16}, {tag:String}, 1, toString(number % 3), 0, 0, count(), groupBitmapState(toUInt32(number + 1)) FROM numbers({n:UInt32}) GROUP BY number % 3`, q)
  }
  await run(`INSERT INTO segment_members (tenant_id, segment_id, build, version, size, keys, built_at)
    SELECT {t:UInt16}, 's1', 1, 1, count(), groupBitmapState(toUInt32(number + 1)), now64(3) FROM numbers({n:UInt32}) WHERE number % 2 = 0`)
  await run(`INSERT INTO segment_events (tenant_id, segment_id, customer_key, at, kind, version, build) SELECT {t:UInt16}, 's1', number + 1, now64(3), 'enter', 1, 1 FROM numbers({n:UInt32}) WHERE number % 2 = 0`)
  await run(`INSERT INTO layout_exposures (tenant_id, customer_key, served_at, screen, experiment, variant, holdout, elder, model_build, modules, items)
    SELECT {t:UInt16}, number % {n:UInt32} + 1, now64(3) - toIntervalSecond(number), 'home', '', '', 0, 0, 1, ['m'], ['i'] FROM numbers({n:UInt32} * 2)`)
  await run(`INSERT INTO push_targets (tenant_id, campaign_id, local_date, customer_key, target_id, campaign_version, run_id, customer_no, purpose, channel, priority, status, reason,
      due_at, expires_at, send_date, quiet_exempt, language, variant, title, body, trigger, created_at)
    SELECT {t:UInt16}, 'c1', today(), number + 1, hex(MD5(toString(number))), 1, 1, ${no}, 'service', 'push', 'normal', 'queued', '', now64(3), now64(3) + toIntervalDay(1), today(), 0, 'zh', 'standard', 't', 'b', 'schedule', now64(3)
    FROM numbers({n:UInt32})`)
  await run(`INSERT INTO push_outcomes (tenant_id, target_id, campaign_id, customer_key, status, final, reason, lease_id, at)
    SELECT {t:UInt16}, hex(MD5(toString(number))), 'c1', number + 1, 'delivered', 1, '', 'l', now64(3) FROM numbers({n:UInt32})`)
}

export const scenario: BenchScenario = {
  name: 'erasure',
  description: 'Erasure of one customer and of a batch of 10,000 in a 1M-customer bank (every place, bitmaps rewritten, proof re-read) against one full read of the events it filters.',
  async run(ctx: BenchContext) {
    const n = Number(ctx.args.customers ?? 1_000_000)
    const perCustomer = Number(ctx.args.events ?? 10)
    const batch = Math.min(Number(ctx.args.batch ?? 10_000), n - 2)
    const say = (s: string) => console.log(`  ${s}`)
    const metrics = createMetrics({ collectDefault: false })
    const tenants = createTenantService({ system: ctx.db.system, defaultTimeZone: 'Asia/Shanghai' })
    const tenant = await tenants.create({ slug: 'bench-erasure', name: 'bench' })
    let t0 = performance.now()
    await seed(ctx, tenant.id, n, perCustomer)
    const seedS = (performance.now() - t0) / 1000
    say(`seeded ${n} customers, ${n * perCustomer} events in ${seedS.toFixed(1)} s`)
    const tombstones = createPrivacyTombstones({ db: ctx.db, pii: createPii('bench-secret-bench-secret-bench-secret'), metrics })
    const privacy = createPrivacyModule({ db: ctx.db, tenants, log: ctx.log, tombstones, forget: [] })
    const db = ctx.db.forTenant(tenant.id)

    // The floor: the columns the erasure filters events on, read once over the whole tenant.
    t0 = performance.now()
    await db.query(
      `SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND (customer_key IN (SELECT arrayJoin({ks:Array(UInt32)})) OR user_id IN {nos:Array(String)} OR anonymous_id IN {anons:Array(String)})`,
      { ks: [1], nos: ['B000000001'], anons: ['anon-1'] },
      z.object({ n: z.coerce.number() }),
    )
    const floorS = (performance.now() - t0) / 1000
    say(`floor (one filtered read of the events): ${floorS.toFixed(2)} s`)

    const no = (k: number) => `B${String(k).padStart(9, '0')}`
    const by = { keyId: 'bench', holder: 'bench' }
    t0 = performance.now()
    const one = await privacy.erasure.start(tenant.id, { customers: [no(n)], reason: 'bench' }, by, { wait: true })
    const oneS = (performance.now() - t0) / 1000
    say(`one customer: ${oneS.toFixed(1)} s, ${one.status}, verified ${String(one.proof?.verified)}`)

    const many = Array.from({ length: batch }, (_, i) => no(i + 1))
    t0 = performance.now()
    const big = await privacy.erasure.start(tenant.id, { customers: many, reason: 'bench batch' }, by, { wait: true })
    const batchS = (performance.now() - t0) / 1000
    say(`${batch} customers: ${batchS.toFixed(1)} s, ${big.status}, verified ${String(big.proof?.verified)}`)
    const erasedEvents = big.steps.find((s) => s.table === 'events')?.before ?? 0
    const slowest = [...one.steps].sort((a, b) => (b.before ?? 0) - (a.before ?? 0)).slice(0, 3)

    return {
      figures: {
        seed_s: round(seedS),
        floor_events_read_s: round(floorS),
        one_customer_s: round(oneS),
        batch_s: round(batchS),
        batch_events_erased: erasedEvents,
        one_verified: one.proof?.verified ? 1 : 0,
        batch_verified: big.proof?.verified ? 1 : 0,
      },
      ratios: { one_customer_vs_floor: round(oneS / floorS), batch_vs_floor: round(batchS / floorS), one_vs_batch_per_customer: round(oneS / (batchS / batch)) },
      params: { customers: n, events_per_customer: perCustomer, batch, places: one.steps.length },
      notes: [
        `Goal: ≤ 3600 s for one customer and for a batch of ${batch} at 1M customers; measured ${round(oneS)} s and ${round(batchS)} s.`,
        `The places of the one-customer job with most rows: ${slowest.map((s) => `${s.table} (${s.before})`).join(', ')}.`,
      ],
    }
  },
}

const round = (x: number) => Math.round(x * 100) / 100
