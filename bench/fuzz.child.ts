import { z } from 'zod'
import { openTestApp, tenantWithKeys } from '../test/app.js'
import { createFuzzer, fuzzRoutes, HEAVY_ROUTES, runFuzz } from '../test/fuzz.js'

/**
 * The fuzz bench's worker, in its own process (one embedded engine per process): the full app on
 * a fresh engine, `requests` seeded fuzz requests, then the cost of the structural tenant check.
 * Prints one JSON document on stdout.
 */
const args = z.object({ seed: z.coerce.number().int(), requests: z.coerce.number().int().positive(), checks: z.coerce.number().int().positive() }).parse(JSON.parse(process.argv[2] ?? '{}'))

const OPERATOR = 'fuzz-operator-token-fuzz-operator-token'
const t = await openTestApp({ QIANMIAN_OPERATOR_TOKEN: OPERATOR })
try {
  const a = await tenantWithKeys(t, 'fuzz-a')
  const keys = [
    { name: 'write', authorization: `Bearer ${a.write}` },
    { name: 'read', authorization: `Bearer ${a.read}` },
    { name: 'admin', authorization: `Bearer ${a.admin}` },
    { name: 'basic admin', authorization: `Basic ${Buffer.from(`${a.admin}:`).toString('base64')}` },
    { name: 'operator', authorization: `Bearer ${OPERATOR}` },
    { name: 'none', authorization: undefined },
  ]
  const report = await runFuzz(t.app, createFuzzer({ seed: args.seed, routes: fuzzRoutes(t.app), keys, weights: HEAVY_ROUTES, protect: [String(a.tenant.id), a.tenant.slug] }), args.requests)
  const health = await t.app.inject({ method: 'GET', url: '/health' })

  // The tenant check: a text's first run (one EXPLAIN AST, then the query) and later runs (the
  // cached verdict) against the same text on the unchecked system handle, in this run.
  const tdb = t.engine.db.forTenant(a.tenant.id)
  const sys = t.engine.db.system
  const text = (i: number) => `SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = ${i}`
  // Checked and unchecked runs alternate, so load on the machine falls on both alike.
  const pair = async (n: number, unchecked: (i: number) => Promise<unknown>, checked: (i: number) => Promise<unknown>) => {
    let u = 0
    let c = 0
    for (let i = 0; i < n; i++) {
      const t0 = performance.now()
      await unchecked(i)
      const t1 = performance.now()
      await checked(i)
      u += t1 - t0
      c += performance.now() - t1
    }
    return [u / n, c / n] as const
  }
  const n = args.checks
  await pair(50, (i) => sys.query(text(10_000_000 + i), { tenant: a.tenant.id }), () => sys.query('SELECT 1')) // warm-up
  const [systemFirst, tenantFirst] = await pair(n, (i) => sys.query(text(1 + i), { tenant: a.tenant.id }), (i) => tdb.query(text(1_000_000 + i)))
  const [systemRepeat, tenantRepeat] = await pair(n, () => sys.query(text(1), { tenant: a.tenant.id }), () => tdb.query(text(1_000_000)))
  const [selectOne] = await pair(n, () => sys.query('SELECT 1'), async () => undefined)

  const byRoute: Record<string, Record<string, number>> = {}
  for (const [route, m] of report.byRoute) byRoute[route] = Object.fromEntries([...m].map(([s, c]) => [String(s), c]))
  process.stdout.write(
    JSON.stringify({
      requests: report.requests,
      ms: report.ms,
      health: health.statusCode,
      byRoute,
      failures: report.failures,
      check: { selectOne, systemFirst, tenantFirst, systemRepeat, tenantRepeat },
    }) + '\n',
  )
} finally {
  await t.close()
}
