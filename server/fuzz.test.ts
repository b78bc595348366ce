import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { createFuzzer, fuzzRoutes, HEAVY_ROUTES, runFuzz, type FuzzFailure, type FuzzKey, type FuzzRoute } from '../test/fuzz.js'

/**
 * Every bad input is a coded 4xx, and stays so: a seeded fuzz over every route of the full app
 * (enumerated from its OpenAPI document, so new routes are included), with keys of several roles,
 * no key and bad keys. No answer may be a 5xx, every 4xx carries a catalogue code, and the server
 * still answers /health after. `npm run bench fuzz` runs the same fuzzer longer.
 */
const SEED = 20261201
const REQUESTS = 2000
/**
 * 5xx the fuzzer found in areas being built by others, left to them: excluded from the verdict
 * here and listed, input and answer, by the skipped cases below.
 */
// Empty now: the one found (POST /v1/customers/{id}/erasure, ILLEGAL_AGGREGATION) was fixed in privacy/.
const KNOWN: { route: string; input: string; answer: string }[] = []

let t: TestApp
let routes: FuzzRoute[]
let keys: FuzzKey[]
let protect: string[]
beforeAll(async () => {
  t = await openTestApp({ QIANMIAN_OPERATOR_TOKEN: 'fuzz-operator-token-fuzz-operator-token' })
  const a = await tenantWithKeys(t, 'fuzz-a')
  routes = fuzzRoutes(t.app)
  protect = [String(a.tenant.id), a.tenant.slug]
  keys = [
    { name: 'write', authorization: `Bearer ${a.write}` },
    { name: 'read', authorization: `Bearer ${a.read}` },
    { name: 'admin', authorization: `Bearer ${a.admin}` },
    { name: 'basic admin', authorization: `Basic ${Buffer.from(`${a.admin}:`).toString('base64')}` },
    { name: 'operator', authorization: 'Bearer fuzz-operator-token-fuzz-operator-token' },
    { name: 'none', authorization: undefined },
  ]
})
afterAll(async () => t?.close())

const show = (f: FuzzFailure) => `${f.route} [${f.mutation}] ${f.method} ${f.url.slice(0, 120)} ${f.payload.slice(0, 160)} -> ${f.status} ${f.answer.slice(0, 160)} (${f.why})`

describe('fuzz', () => {
  // Found by the fuzzer: the router answered these itself, in its own shape and (the second) with 414.
  it.each([
    ['a bad percent-encoding', '/v1/segments/%E0%A4%A'],
    ['a path parameter over 100 characters', `/v1/segments/${'a'.repeat(101)}`],
  ])('answers %s with a coded 400 naming the url', async (_what, url) => {
    const res = await t.app.inject({ method: 'GET', url, headers: { authorization: keys[2]!.authorization! } })
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED', issues: [{ field: 'url' }] } })
  })

  it('enumerates the routes from the app itself', () => {
    expect(routes.length).toBeGreaterThan(60)
    const names = routes.map((r) => `${r.method} ${r.path}`)
    for (const r of ['POST /v1/batch', 'POST /v1/segments/preview', 'PUT /v1/push/campaigns/{id}', 'GET /v1/layout']) expect(names).toContain(r)
  })

  it(`answers ${REQUESTS} seeded requests without a 5xx, every 4xx coded, and stays up`, async () => {
    const report = await runFuzz(t.app, createFuzzer({ seed: SEED, routes, keys, weights: HEAVY_ROUTES, protect }), REQUESTS)
    const known = new Set(KNOWN.map((k) => k.route))
    expect(report.failures.filter((f) => !(known.has(f.route) && f.status >= 500)).map(show)).toEqual([])
    const health = await t.app.inject({ method: 'GET', url: '/health' })
    expect(health.statusCode).toBe(200)
    // The run reached past validation, not only 4xx: some answers were successes.
    const ok = [...report.byRoute.values()].reduce((n, m) => n + [...m].filter(([s]) => s < 300).reduce((a, [, c]) => a + c, 0), 0)
    expect(ok).toBeGreaterThan(REQUESTS / 20)
  }, 180_000)
})

if (KNOWN.length) {
  describe('known 5xx in areas others are building', () => {
    for (const k of KNOWN) it.skip(`${k.route} with ${k.input} answers ${k.answer}`, () => {})
  })
}
