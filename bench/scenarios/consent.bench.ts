import { z } from 'zod'
import { createConsentModule } from '../../consent/consent.module.js'
import type { TenantDb } from '../../core/db.js'
import { loadConfig } from '../../core/config.js'
import { createMetrics } from '../../core/metrics.js'
import { createPii } from '../../core/pii.js'
import { chDateTime, localDate } from '../../core/time.js'
import { createIngestModule } from '../../ingest/ingest.module.js'
import { MAX_TTL_MINUTES } from '../../push/campaign.schema.js'
import { createWithdrawalIndex, type WithdrawalIndex } from '../../push/consent.index.js'
import { createLeaseManager, type LeaseManager } from '../../push/lease.manager.js'
import { buildApp } from '../../server/app.js'
import { createKeyService } from '../../tenants/keys.service.js'
import { createTenantService } from '../../tenants/tenants.service.js'
import type { BenchScenario } from '../harness.js'
import { codeVersion } from '../support.js'

/**
 * Consent withdrawal against queued pushes (`npm run bench consent -- --set customers=N`):
 *
 * 1. a tenant of N customers (marketing push granted to all) and N queued targets of a marketing
 *    campaign, written with INSERT ... SELECT FROM numbers(); beside them N targets of a second
 *    campaign, the baseline's;
 * 2. `withdraw` customers send the Segment `Consent Preference Updated` event with
 *    `push_marketing: false` through POST /v1/batch (100 events per request, 4 requests at a
 *    time); for each customer, the time from its request being sent to: the withdrawal reaching
 *    this process's pull index (the consent service's notice, before the answer), and reaching a
 *    second process's index, which learns it only from its one-second refresh of the history;
 * 3. pull throughput with the consent check (the wired lease manager, its index holding the
 *    withdrawals) against a lease manager without it over the baseline campaign, in alternating
 *    rounds of the same size, acknowledging every target;
 * 4. the withdrawn customers' targets fall due first, so the first pull after the withdrawals
 *    meets all of them: none may come out, each is closed as consent_withdrawn.
 */

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN
}
const n = z.coerce.number()

/** `step`: every step-th customer (number % step = 0) is one who will withdraw; their targets fall due first. */
async function seed(db: TenantDb, customers: number, step: number, at: string, today: string, dueAt: string, firstDueAt: string, expiresAt: string) {
  await db.command(
    `INSERT INTO customers (tenant_id, customer_key, customer_no, gender, birth_date, region_code, branch_code, occupation, phone_hash, name_masked, language, elder_mode, opened_at, updated_at, deleted)
     SELECT {tenant:UInt16}, toUInt32(number + 1), concat('CB', leftPad(toString(number + 1), 10, '0')), 'unknown', NULL, 'r', 'b', 'o', '', '客*', 'zh', 0, {at:DateTime64(3)}, {at:DateTime64(3)}, 0
     FROM numbers({n:UInt32})`,
    { n: customers, at },
  )
  await db.command(
    `INSERT INTO identities (tenant_id, id_kind, id_value, customer_key, source, created_at, updated_at)
     SELECT {tenant:UInt16}, 'customer_no', concat('CB', leftPad(toString(number + 1), 10, '0')), toUInt32(number + 1), 'bench', {at:DateTime64(3)}, {at:DateTime64(3)}
     FROM numbers({n:UInt32})`,
    { n: customers, at },
  )
  await db.command(
    `INSERT INTO consents (tenant_id, customer_key, purpose, channel, granted, source, updated_at)
     SELECT {tenant:UInt16}, toUInt32(number + 1), 'marketing', 'push', 1, 'import', {at:DateTime64(3)} FROM numbers({n:UInt32})`,
    { n: customers, at },
  )
  for (const [cid, priority] of [['promo', 'normal'], ['baseline', 'low']] as const) {
    await db.command(
      `INSERT INTO push_targets (tenant_id, campaign_id, local_date, customer_key, target_id, campaign_version, run_id, customer_no, purpose, channel, priority, status, reason,
         due_at, expires_at, send_date, quiet_exempt, language, variant, title, body, trigger, created_at)
       SELECT {tenant:UInt16}, {cid:String}, {today:Date}, toUInt32(number + 1), lower(hex(MD5(concat({cid:String}, ':', toString(number + 1))))), 1, 1,
         concat('CB', leftPad(toString(number + 1), 10, '0')), 'marketing', 'push', {priority:String}, 'queued', '',
         if(number % {step:UInt32} = 0, {first:DateTime64(3)}, {due:DateTime64(3)}), {exp:DateTime64(3)}, {today:Date}, 0, 'zh', 'standard', '', '您好，为您精选稳健理财', 'schedule', {due:DateTime64(3)}
       FROM numbers({n:UInt32})`,
      { n: customers, cid, priority, today, due: dueAt, first: firstDueAt, exp: expiresAt, step },
    )
  }
}

export const scenario: BenchScenario = {
  name: 'consent',
  description: 'Withdrawing push marketing consent for many customers through ingest while a million targets are queued: time until none can be pulled, and the pull rate with the consent check against without',
  async run(ctx) {
    const customers = Number(ctx.args.customers ?? 1_000_000)
    const withdraw = Number(ctx.args.withdraw ?? 10_000)
    const batch = Number(ctx.args.batch ?? 10_000)
    const rounds = Number(ctx.args.rounds ?? 20)
    const say = (m: string) => console.error(`[consent ${new Date().toISOString().slice(11, 19)}] ${m}`)
    const system = ctx.db.system
    const metrics = createMetrics({ collectDefault: false })
    const tenants = createTenantService({ system, defaultTimeZone: 'UTC' })
    const tenant = await tenants.create({ slug: 'bench-consent', name: 'Consent bench', timeZone: 'UTC' })
    const db = ctx.db.forTenant(tenant.id)
    const now = Date.now()
    const step = Math.max(1, Math.floor(customers / withdraw))
    const t0 = performance.now()
    await seed(db, customers, step, chDateTime(new Date('2026-01-01T00:00:00Z')), localDate(new Date(now), 'UTC'), chDateTime(now - 60_000), chDateTime(now - 120_000), chDateTime(now + 86_400_000))
    const seedS = (performance.now() - t0) / 1000
    say(`seeded ${customers} customers and ${2 * customers} queued targets in ${seedS.toFixed(1)} s`)

    // The process as the composition root wires it: ingest hands consent objects to the consent
    // service, whose notices reach the pull index. Two lease managers alike but for the consent
    // check, each over its own campaign of `customers` targets: the one with the check (its index
    // fed as push.module.ts feeds it) and the baseline without.
    const config = loadConfig({ QIANMIAN_DATA_DIR: ctx.dataDir })
    const windowMs = (MAX_TTL_MINUTES + 2 * 1440) * 60_000
    const index = createWithdrawalIndex({ db: ctx.db, windowMs, refreshMs: 1_000 })
    const manager = (campaign: string, withdrawals?: WithdrawalIndex): LeaseManager =>
      createLeaseManager({
        db: ctx.db,
        log: ctx.log,
        metrics: createMetrics({ collectDefault: false }),
        activeCampaigns: async () => [campaign],
        policy: async () => ({ maxAttempts: 5, quietHours: null, timeZone: 'UTC', consent: { service: 'unless_refused', security: 'always' } }),
        withdrawals,
      })
    const checked = manager('promo', index)
    const plain = manager('baseline')
    const consent = createConsentModule({ db: ctx.db, log: ctx.log, metrics, resolveKeys: (t, refs) => ingest.identities.resolve(t, refs) })
    const ingest = createIngestModule({ db: ctx.db, log: ctx.log, metrics, pii: createPii('bench-secret-bench-secret-bench-secret'), config: config.ingest, consent: consent.service.fromIngest })
    const noticed = new Map<number, number>()
    consent.service.onChange((t, notices) => {
      index.apply(t, notices)
      const at = performance.now()
      for (const x of notices) if (!x.granted && !noticed.has(x.customerKey)) noticed.set(x.customerKey, at)
    })
    const keys = createKeyService({ system, tenants, cacheTtlMs: 60_000 })
    const app = await buildApp({ db: ctx.db, log: ctx.log, metrics, tenants, keys, readiness: { phase: 'ready' }, operatorToken: undefined, version: 'bench', modules: [ingest.routes] })
    const { key } = await keys.issue(tenant.id, { roles: ['ingest'], holder: 'bench app' })

    // Both queues read once and the index loaded (a warm pull path), before the withdrawals.
    await checked.pull(tenant.id, { limit: 1, leaseSeconds: 1 })
    await plain.pull(tenant.id, { limit: 1, leaseSeconds: 1 })
    // A second process: its own index, told nothing, refreshing every second from the history.
    const other = createWithdrawalIndex({ db: ctx.db, windowMs, refreshMs: 1_000 })
    await other.refresh(tenant.id)

    // Withdrawals: every step-th customer, whose targets are the first in the queue.
    const victims = Array.from({ length: withdraw }, (_, i) => 1 + i * step)
    const no = (k: number) => `CB${String(k).padStart(10, '0')}`
    const sentAt = new Map<number, number>()
    const answered: number[] = []
    const seenOther = new Map<number, number>()
    let polling = true
    const tStart = performance.now()
    const poller = (async () => {
      while (polling || seenOther.size < victims.length) {
        await other.refresh(tenant.id)
        const at = performance.now()
        for (const k of victims) if (!seenOther.has(k) && other.withdrawn(tenant.id, k, 'marketing', 'push')) seenOther.set(k, at)
        if (!polling && performance.now() - tStart > 120_000) break
        await new Promise((r) => setTimeout(r, 20))
      }
    })()
    const per = 100
    const requests: number[][] = []
    for (let i = 0; i < victims.length; i += per) requests.push(victims.slice(i, i + per))
    let next = 0
    const worker = async () => {
      while (next < requests.length) {
        const ks = requests[next++]!
        const ts = new Date().toISOString()
        const sent = performance.now()
        for (const k of ks) sentAt.set(k, sent)
        const res = await app.inject({
          method: 'POST',
          url: '/v1/batch',
          headers: { authorization: `Bearer ${key}` },
          payload: { batch: ks.map((k) => ({ type: 'track', event: 'Segment Consent Preference Updated', userId: no(k), messageId: `w-${k}`, timestamp: ts, context: { consent: { categoryPreferences: { push_marketing: false } } } })) },
        })
        if (res.statusCode !== 200) throw new Error(`ingest answered ${res.statusCode}: ${res.body}`)
        answered.push(performance.now() - sent)
      }
    }
    await Promise.all([worker(), worker(), worker(), worker()])
    const ingestS = (performance.now() - tStart) / 1000
    polling = false
    await poller
    const here = victims.map((k) => (noticed.get(k) ?? Infinity) - sentAt.get(k)!)
    const there = victims.map((k) => (seenOther.get(k) ?? Infinity) - sentAt.get(k)!)
    say(`${withdraw} withdrawals through ingest in ${ingestS.toFixed(1)} s; in this process p99 ${pct(here, 99).toFixed(0)} ms, in another p99 ${pct(there, 99).toFixed(0)} ms`)

    // The first pull after the withdrawals meets every withdrawn customer's target at the head
    // of the queue: it closes them and hands out others.
    const handedOut = new Set<number>()
    const cycle = async (m: LeaseManager, record: boolean) => {
      const p0 = performance.now()
      const got = await m.pull(tenant.id, { limit: batch, leaseSeconds: 600 })
      const pullMs = performance.now() - p0
      if (record) for (const g of got) if (g.campaignId === 'promo') handedOut.add(Number(g.customerNo.slice(2)))
      if (got.length) await m.ack(tenant.id, got.map((g) => ({ targetId: g.targetId, status: 'delivered' as const })))
      return { n: got.length, pullMs }
    }
    const first = await cycle(checked, true)
    // Pull throughput with the check (its index holding the withdrawals) and without, alternating rounds.
    const rate = { check: { n: 0, ms: 0 }, plain: { n: 0, ms: 0 } }
    for (let r = 0; r < rounds; r++) {
      const a = await cycle(checked, true)
      const b = await cycle(plain, false)
      rate.check.n += a.n
      rate.check.ms += a.pullMs
      rate.plain.n += b.n
      rate.plain.ms += b.pullMs
    }
    const checkRate = rate.check.n / (rate.check.ms / 1000)
    const plainRate = rate.plain.n / (rate.plain.ms / 1000)
    say(`first pull ${first.pullMs.toFixed(0)} ms; pull with the check ${checkRate.toFixed(0)}/s, without ${plainRate.toFixed(0)}/s`)
    const leaked = victims.filter((k) => handedOut.has(k)).length
    const [closed] = await db.query(
      `SELECT count() AS n FROM push_outcomes WHERE tenant_id = {tenant:UInt16} AND campaign_id = 'promo' AND status = 'withdrawn' AND reason = 'consent_withdrawn'`,
      {},
      z.object({ n }),
    )
    say(`${handedOut.size} customers handed a target, ${leaked} of them withdrawn; ${closed?.n ?? 0} closed as consent_withdrawn`)
    await app.close()
    await plain.close()
    await checked.close()
    await ingest.close(5_000)
    return {
      params: { customers, queued_targets: customers, withdraw, events_per_request: per, concurrent_requests: 4, pull_batch: batch, rounds, code: codeVersion() },
      figures: {
        seed_s: seedS,
        withdraw_ingest_s: ingestS,
        withdraw_requests_p50_ms: pct(answered, 50),
        withdraw_requests_p99_ms: pct(answered, 99),
        effective_here_p50_ms: pct(here, 50),
        effective_here_p99_ms: pct(here, 99),
        effective_here_max_ms: pct(here, 100),
        effective_other_process_p50_ms: pct(there, 50),
        effective_other_process_p99_ms: pct(there, 99),
        effective_other_process_max_ms: pct(there, 100),
        pull_with_check_targets_per_s: checkRate,
        pull_without_check_targets_per_s: plainRate,
        pulled_with_check: rate.check.n,
        pulled_without_check: rate.plain.n,
        first_pull_after_withdrawals_ms: first.pullMs,
        customers_handed_a_target: handedOut.size,
        withdrawn_customers_handed_a_target: leaked,
        closed_consent_withdrawn: closed?.n ?? 0,
      },
      ratios: { pull_rate_with_check_over_without: checkRate / plainRate },
      notes: [
        `Goal: withdrawal effective within 10 s (p99). In this process (the consent service's notice reaches the pull index before the ingest answer): p99 ${pct(here, 99).toFixed(0)} ms from the request being sent; in a second process, which learns it from its one-second refresh of consent_history: p99 ${pct(there, 99).toFixed(0)} ms (polled every 20 ms). ${pct(there, 99) <= 10_000 ? 'Met.' : 'NOT met.'}`,
        `Goal: pull rate within 10% of today's: ${(checkRate / plainRate).toFixed(3)} of the rate without the check, in ${rounds} alternating rounds of ${batch.toLocaleString('en-US')} (pull time only; both acknowledge what they pulled). ${checkRate / plainRate >= 0.9 ? 'Met.' : 'NOT met.'}`,
        `The withdrawn customers' targets fall due first, so they head the queue: of the ${handedOut.size.toLocaleString('en-US')} customers handed a target after the withdrawals, ${leaked} had withdrawn; ${(closed?.n ?? 0).toLocaleString('en-US')} targets were closed as consent_withdrawn (visible in the campaign stats), by the first pull (${first.pullMs.toFixed(0)} ms, which also handed out ${first.n.toLocaleString('en-US')} others).`,
        'Both lease managers are built alike, each over its own campaign of as many targets; the baseline has no withdrawal index (no lookups, no refresh query). Pull time only; both acknowledge what they pulled. The machine is shared: absolute rates move with its load, the ratio of alternating rounds less so.',
      ],
    }
  },
}
