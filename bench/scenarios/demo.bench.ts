import crypto from 'node:crypto'
import { createPii } from '../../core/pii.js'
import { generateDemo } from '../../demo/demo.generator.js'
import { createKeyService } from '../../tenants/keys.service.js'
import { createTenantService } from '../../tenants/tenants.service.js'
import type { BenchScenario } from '../harness.js'

/**
 * The demo generator at scale (`--set customers=N days=D`), against the engine's own insert
 * speed in the same run: about as many trivially generated rows inserted into a copy of the
 * events table by INSERT ... SELECT FROM numbers(). The ratios say how much of the raw engine
 * rate the realistic generator keeps.
 */
export const scenario: BenchScenario = {
  name: 'demo',
  description: 'Demo bank group generation (customers, stock tables, ~50 events per customer a month) vs raw engine inserts',
  async run(ctx) {
    const customers = Number(ctx.args.customers ?? 200_000)
    const days = Number(ctx.args.days ?? 30)
    const seed = Number(ctx.args.seed ?? 42)
    const system = ctx.db.system
    const tenants = createTenantService({ system, defaultTimeZone: 'Asia/Shanghai' })
    const keys = createKeyService({ system, tenants, cacheTtlMs: 30_000 })
    const pii = createPii(crypto.randomBytes(32).toString('base64url'))

    // Baseline first, so the demo's background merges do not slow it: as many event rows as the
    // demo will make (about 50 per customer a month), trivially generated engine-side, into a copy
    // of the events table through the same insert path (explicit promoted columns and violations).
    const baselineRows = Math.round((customers * 50 * days) / 30)
    await system.command('CREATE TABLE bench_events_baseline AS events')
    const t0 = performance.now()
    await system.command(
      `INSERT INTO bench_events_baseline (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id,
                                          properties, context, sent_at, received_at, product_id, amount, violations)
       SELECT 1, toUInt32(number % {customers:UInt32} + 1), now64(3) - toIntervalSecond(number % {span:UInt32}), 'track', 'x',
              toString(number), '', '', '', '{}', '{}', now64(3), now64(3), '', 0, emptyArrayString()
       FROM numbers({n:UInt64})
       SETTINGS insert_allow_materialized_columns = 1`,
      { customers, span: days * 86_400, n: baselineRows },
    )
    const baselineSeconds = (performance.now() - t0) / 1000
    await system.command('DROP TABLE bench_events_baseline SYNC')

    const summary = await generateDemo(
      { db: ctx.db, tenants, keys, pii, log: ctx.log },
      { customers, days, seed, progress: process.stderr.isTTY === true },
    )
    const events = summary.rows.events ?? 0
    const total = Object.values(summary.rows).reduce((a, b) => a + b, 0)
    const baselineRate = baselineRows / baselineSeconds
    const eventsRate = events / summary.seconds
    const eventsPhaseRate = events / summary.phases.events
    return {
      params: { customers, days, seed },
      figures: {
        seconds: summary.seconds,
        customers_per_s: customers / summary.seconds,
        events_per_s: eventsRate,
        rows_per_s: total / summary.seconds,
        rows_total: total,
        ...Object.fromEntries(Object.entries(summary.rows).map(([t, n]) => [`rows_${t}`, n])),
        phase_customers_seconds: summary.phases.customers,
        phase_stock_seconds: summary.phases.stock,
        phase_events_seconds: summary.phases.events,
        events_phase_rows_per_s: eventsPhaseRate,
        baseline_rows: baselineRows,
        baseline_seconds: baselineSeconds,
        baseline_rows_per_s: baselineRate,
      },
      ratios: {
        events_rate_vs_raw_engine_insert: eventsRate / baselineRate,
        events_phase_rate_vs_raw_engine_insert: eventsPhaseRate / baselineRate,
      },
      notes: [
        'seconds covers the whole demo: tenants and keys, catalogues, customers (JavaScript, TabSeparated), stock tables and events (engine-side INSERT ... SELECT); phase_* split it.',
        'events_per_s divides the events by the whole time, events_phase_rows_per_s by the events phase only (background merges of earlier slices included).',
        'The baseline runs first: as many trivial rows (tiny strings, no JSON) inserted into a copy of the events table through the same insert path.',
        'The machine is shared and noisy; compare ratios from the same run rather than absolute figures.',
      ],
    }
  },
}
