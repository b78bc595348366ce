import autocannon from 'autocannon'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { createAuditModule } from '../../audit/audit.module.js'
import { loadConfig } from '../../core/config.js'
import { chDateTime } from '../../core/time.js'
import { createMetrics } from '../../core/metrics.js'
import { buildApp } from '../../server/app.js'
import { createTagsModule } from '../../tags/tags.module.js'
import { createKeyService } from '../../tenants/keys.service.js'
import { createTenantService } from '../../tenants/tenants.service.js'
import type { BenchContext, BenchScenario } from '../harness.js'

/**
 * What the audit trail costs. (1) A personal-data read (`GET /v1/customers/:id`) writes its
 * entry before answering: the same route on the same engine with and without the audit hook,
 * alternated in one run. (2) Reading the trail: `GET /v1/audit` pages and filters over a tenant
 * holding many entries, against a plain count of that tenant's rows in the same range.
 */

async function load(url: string, path: string, key: string, seconds: number, connections: number) {
  const r = await autocannon({ url, connections, duration: seconds, requests: [{ method: 'GET', path, headers: { authorization: `Bearer ${key}` } }] })
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx }
}

async function timed<T>(fn: () => Promise<T>, times: number): Promise<{ ms: number; out: T }> {
  let out!: T
  const t0 = performance.now()
  for (let i = 0; i < times; i++) out = await fn()
  return { ms: (performance.now() - t0) / times, out }
}

export const scenario: BenchScenario = {
  name: 'audit',
  description: 'The audit trail: a personal-data read with and without its entry written before the answer; trail queries over many entries against a plain count.',
  async run(ctx: BenchContext) {
    const seconds = Number(ctx.args.seconds ?? 8)
    const connections = Number(ctx.args.connections ?? 8)
    const entries = Number(ctx.args.entries ?? 2_000_000)
    const say = (s: string) => console.log(`  ${s}`)
    const metrics = createMetrics({ collectDefault: false })
    const tenants = createTenantService({ system: ctx.db.system, defaultTimeZone: 'Asia/Shanghai' })
    const keys = createKeyService({ system: ctx.db.system, tenants, cacheTtlMs: 60_000 })
    const tags = createTagsModule({ db: ctx.db, tenants, log: ctx.log, metrics, runner: loadConfig({ QIANMIAN_DATA_DIR: ctx.dataDir }).pipelines })
    const tenant = await tenants.create({ slug: 'bench-audit', name: 'bench' })
    const now = chDateTime(new Date())
    const customerNo = 'B0000001'
    await ctx.db.forTenant(tenant.id).insert('customers', [{ customer_key: 1, customer_no: customerNo, gender: 'unknown', birth_date: '1960-01-01', region_code: 'r', branch_code: 'b', occupation: 'o', phone_hash: '', name_masked: '*', opened_at: '2015-01-01 00:00:00', updated_at: now }])
    await ctx.db.forTenant(tenant.id).insert('identities', [{ id_kind: 'customer_no', id_value: customerNo, customer_key: 1, source: 'bench', created_at: now, updated_at: now }])
    const { key } = await keys.issue(tenant.id, { roles: ['admin'], holder: 'bench staff tool' })
    const audit = createAuditModule({ db: ctx.db, log: ctx.log, metrics, tenants })
    const build = (withAudit: boolean) =>
      buildApp({ db: ctx.db, log: ctx.log, metrics: createMetrics({ collectDefault: false }), tenants, keys, readiness: { phase: 'ready' }, operatorToken: undefined, version: 'bench', modules: [tags.routes], ...(withAudit ? { audit } : {}) })
    const apps: Record<'plain' | 'audited', FastifyInstance> = { plain: await build(false), audited: await build(true) }
    const urls = { plain: await apps.plain.listen({ host: '127.0.0.1', port: 0 }), audited: await apps.audited.listen({ host: '127.0.0.1', port: 0 }) }
    const path = `/v1/customers/${customerNo}`
    const runs: Record<'plain' | 'audited', Awaited<ReturnType<typeof load>>[]> = { plain: [], audited: [] }
    try {
      for (const round of [1, 2]) {
        for (const which of ['plain', 'audited'] as const) {
          const r = await load(urls[which], path, key, seconds, connections)
          runs[which].push(r)
          say(`round ${round} ${which}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, non-2xx ${r.non2xx}`)
        }
      }
    } finally {
      await apps.plain.close()
      await apps.audited.close()
    }
    const best = (which: 'plain' | 'audited') => runs[which].reduce((a, b) => (b.rps > a.rps ? b : a))
    const [rowsOfReads] = await ctx.db.forTenant(tenant.id).query(`SELECT count() AS n FROM audit_log WHERE tenant_id = {tenant:UInt16}`, {}, z.object({ n: z.coerce.number() }))

    // (2) A trail of many entries over 90 days, written in one INSERT ... SELECT.
    const t0 = performance.now()
    await ctx.db.forTenant(tenant.id).command(
      `INSERT INTO audit_log (tenant_id, at, entry_id, key_id, holder, roles, client_ip, request_id, action, object_kind, object_id, customer_no, customers, outcome, status, detail)
       SELECT {tenant:UInt16}, now64(3) - toIntervalMillisecond(number * 3888), generateUUIDv4(), 'k' || toString(number % 50), 'staff ' || toString(number % 50), ['admin'],
              '10.0.0.1', 'req-' || toString(number), ['customer.profile.read', 'segment.members.read', 'tag.save', 'push.pull'][1 + number % 4], 'customer', '',
              'C' || toString(number % 200000), 1, 'ok', 200, '{}'
       FROM numbers({n:UInt64})`,
      { n: entries },
    )
    const seedS = (performance.now() - t0) / 1000
    say(`${entries.toLocaleString('en-US')} entries written in ${seedS.toFixed(1)} s`)
    const ninety = { from: new Date(Date.now() - 91 * 86_400_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString() }
    const q = (f: { cursor?: string; customer?: string; actor?: string; action?: string }) => audit.log.query(tenant.id, { limit: 100, ...ninety, ...f })
    const count = await timed(
      () => ctx.db.forTenant(tenant.id).query(`SELECT count() AS n FROM audit_log WHERE tenant_id = {tenant:UInt16} AND at >= {from:DateTime64(3, 'UTC')}`, { from: chDateTime(new Date(ninety.from)) }),
      5,
    )
    const first = await timed(() => q({}), 5)
    const deep = await timed(() => q({ cursor: first.out.nextCursor! }), 5)
    const byCustomer = await timed(() => q({ customer: 'C123' }), 5)
    const byActor = await timed(() => q({ actor: 'staff 7', action: 'tag.' }), 5)
    say(`count ${count.ms.toFixed(1)} ms; first page ${first.ms.toFixed(1)} ms; second page ${deep.ms.toFixed(1)} ms; by customer ${byCustomer.ms.toFixed(1)} ms (${byCustomer.out.entries.length}); by actor+action ${byActor.ms.toFixed(1)} ms`)
    const plain = best('plain')
    const audited = best('audited')
    return {
      params: { seconds, connections, entries, route: `GET ${path}`, range_days: 91 },
      figures: {
        plain_rps: plain.rps,
        plain_p50_ms: plain.p50,
        plain_p99_ms: plain.p99,
        audited_rps: audited.rps,
        audited_p50_ms: audited.p50,
        audited_p99_ms: audited.p99,
        audit_rows_from_reads: rowsOfReads?.n ?? 0,
        trail_seed_s: seedS,
        trail_count_ms: count.ms,
        trail_first_page_ms: first.ms,
        trail_second_page_ms: deep.ms,
        trail_by_customer_ms: byCustomer.ms,
        trail_by_actor_action_ms: byActor.ms,
      },
      ratios: {
        audited_over_plain_rps: audited.rps / plain.rps,
        audited_over_plain_p50: audited.p50 / Math.max(plain.p50, 0.01),
        first_page_over_count: first.ms / count.ms,
        by_customer_over_count: byCustomer.ms / count.ms,
      },
      notes: [
        'Both apps share one engine and the same key; rounds alternate plain and audited twice, the better round of each is kept.',
        `Every audited answer is one INSERT of one row awaited in onSend (${(rowsOfReads?.n ?? 0).toLocaleString('en-US')} entries written by the audited rounds).`,
        'Trail queries: 100 entries a page over 91 days; the customer and actor filters scan the range (the sort key is tenant, time, entry).',
      ],
    }
  },
}
