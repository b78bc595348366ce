import zlib from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import { ERROR_CATALOGUE } from '../core/errors.js'
import { createRng } from '../demo/demo.random.js'

/**
 * A seeded request fuzzer for the HTTP API. Routes come from the app's own OpenAPI document
 * (every route registered with a schema), so a new route is fuzzed without touching this file.
 * Each request is either a valid shape drawn from the route's schemas (and a few realistic seed
 * bodies where a schema is opaque) or one mutation of it: wrong types, huge numbers, deep
 * nesting, long strings, odd Unicode, missing and extra fields, bad encodings, bad keys.
 * The verdict on an answer: never 5xx, and every 4xx carries a catalogue code with its status.
 */

type Schema = {
  type?: string | string[]
  properties?: Record<string, Schema>
  required?: string[]
  items?: Schema
  enum?: unknown[]
  const?: unknown
  anyOf?: Schema[]
  oneOf?: Schema[]
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  minItems?: number
  maxItems?: number
  pattern?: string
  format?: string
  default?: unknown
  additionalProperties?: Schema | boolean
  $ref?: string
}

export interface FuzzRoute {
  method: string
  /** The OpenAPI path, `{param}` style. */
  path: string
  pathParams: { name: string; schema: Schema }[]
  query: { name: string; schema: Schema; required: boolean }[]
  body: Schema | undefined
  contentTypes: string[]
}

export interface FuzzKey {
  /** `operator` marks the operator token, used on /v1/operator routes. */
  name: string
  authorization: string | undefined
}

export interface FuzzRequest {
  route: string
  mutation: string
  method: string
  url: string
  headers: Record<string, string>
  payload: string | Buffer | undefined
}

/** The routes of an app, from its OpenAPI document (`@fastify/swagger`). */
export function fuzzRoutes(app: FastifyInstance): FuzzRoute[] {
  const doc = (app as unknown as { swagger(): { paths: Record<string, Record<string, OpenApiOp>> } }).swagger()
  const out: FuzzRoute[] = []
  for (const [p, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (!['get', 'post', 'put', 'delete', 'patch'].includes(method)) continue
      const params = op.parameters ?? []
      const content = op.requestBody?.content ?? {}
      out.push({
        method: method.toUpperCase(),
        path: p,
        pathParams: params.filter((x) => x.in === 'path').map((x) => ({ name: x.name, schema: x.schema ?? {} })),
        query: params.filter((x) => x.in === 'query').map((x) => ({ name: x.name, schema: x.schema ?? {}, required: !!x.required })),
        body: content['application/json']?.schema ?? (Object.keys(content).length ? {} : undefined),
        contentTypes: Object.keys(content),
      })
    }
  }
  return out
}

interface OpenApiOp {
  parameters?: { in: string; name: string; required?: boolean; schema?: Schema }[]
  requestBody?: { content?: Record<string, { schema?: Schema }> }
}

/** Realistic bodies where the schema is opaque (rules, definitions) or events. */
const SEEDS: Record<string, unknown[]> = {
  'PUT /v1/tags/{name}': [
    {
      name: 'fuzz_elder',
      type: 'boolean',
      description: { zh: '老年客户', en: 'Elder customer' },
      owner: 'data-team',
      purpose: ['service', 'marketing'],
      sensitivity: 'low',
      schedule: '5 0 * * *',
      rule: { kind: 'rule', when: { any: [{ tag: 'age', op: 'gte', value: 60 }, { feature: 'elder_mode_chosen', op: 'eq', value: true }] } },
    },
    {
      name: 'fuzz_active',
      type: 'number',
      description: { zh: '活跃', en: 'Active days' },
      owner: 'data-team',
      purpose: ['marketing'],
      sensitivity: 'low',
      schedule: '5 0 * * *',
      rule: { kind: 'sql', sql: 'SELECT customer_key, count() AS value FROM $events GROUP BY customer_key' },
    },
  ],
  'POST /v1/segments/preview': [
    { purpose: 'marketing', rule: { all: [{ tag: 'elder', op: 'eq', value: true }, { tag: 'aum_tier', op: 'in', value: ['affluent'] }] } },
    { purpose: 'service', rule: { any: [{ event: 'app_open', within: { days: 7 }, count: { gte: 1 } }, { not: { tag: 'elder', op: 'eq', value: true } }] } },
  ],
  'PUT /v1/segments/{id}': [{ name: 'Rich elders', purpose: 'marketing', rule: { all: [{ tag: 'elder', op: 'eq', value: true }] } }],
  'PUT /v1/push/campaigns/{id}': [
    {
      name: 'Loan due',
      purpose: 'service',
      priority: 'high',
      dateTrigger: { on: 'loan_due', daysBefore: 3 },
      schedule: { kind: 'cron', cron: '0 9 * * *' },
      message: { body: { zh: '{{name}}，您的贷款{{loan.amount}}元将于{{loan.due_date}}到期', en: '{{loan.amount}} is due on {{loan.due_date}}' } },
    },
  ],
  'PUT /v1/layout/catalog': [{ disable: ['promotions'] }],
  'POST /v1/batch': [
    {
      batch: [
        { type: 'track', userId: 'C0001', event: 'product_viewed', properties: { product_id: 'wm-01' } },
        { type: 'identify', userId: 'C0002', anonymousId: 'dev-2', traits: { name: '王' } },
      ],
    },
  ],
  'POST /v1/track': [{ userId: 'C0001', event: 'app_open', properties: { screen: 'home' } }],
  'POST /v1/push/pull': [{ limit: 50, leaseSeconds: 60 }],
  'POST /v1/pipelines/runs': [{ pipeline: 'tags', wait: true }],
}
SEEDS['POST /v1/segments/explain'] = SEEDS['POST /v1/segments/preview']!

const POOL = ['elder', 'age', 'fuzz_elder', 'rich-elders', 'loan-due', '81010000000001', 'C0001', '2026-11-01', '2026-11-01T00:00:00Z', 'marketing', 'service', 'zh', 'en', 'csv', '1', '0', 'true', 'abc', 'x1', '100']

/** Strings that break things: long, control characters, lone surrogates, RTL, zero-width, SQL and template syntax. */
const NASTY = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  '\udfff\ud800',
  '😀'.repeat(50),
  '\u202e\u0645\u0631\u062d\u0628\u0627',
  '\u200b\ufeff',
  "' OR 1=1 --",
  '{tenant:UInt16}',
  '{{name}}{{#each}}{{/if}}',
  '../../etc/passwd',
  '%00%zz',
  '${7*7}',
  '__proto__',
  'constructor',
  '-1',
  '1e309',
  'NaN',
  '9'.repeat(40),
  '2026-02-30',
  '0000-00-00T25:61:61Z',
  '\\',
  '"',
  '\n\r\t',
]
const HUGE_NUMBERS = [-1, 0, 1e308, -1e308, 2 ** 53 + 2, -(2 ** 63), 1.5, 4294967296, 65536, -0.0001]

/** Routes whose valid request does a whole job (applying the banking pack, a pipeline run): drawn less often. */
export const HEAVY_ROUTES: Record<string, number> = { 'POST /v1/tags/apply': 0.1, 'POST /v1/pipelines/runs': 0.1, 'POST /v1/push/campaigns/{id}/run': 0.3 }

/** Percent-encodes a string; a lone surrogate becomes its three WTF-8 bytes (invalid UTF-8 on purpose). */
function enc(s: string): string {
  return s
    .split(/([\ud800-\udfff])/)
    .map((part) => (/^[\ud800-\udfff]$/.test(part) ? Buffer.from([0xed, 0xa0 | ((part.charCodeAt(0) >> 6) & 0x1f), 0x80 | (part.charCodeAt(0) & 0x3f)]).toString('hex').replace(/(..)/g, '%$1') : encodeURIComponent(part)))
    .join('')
}

export function createFuzzer(opts: {
  seed: number
  routes: FuzzRoute[]
  keys: FuzzKey[]
  mutationRate?: number
  /** Relative weight of a route ("METHOD /path"), 1 by default: heavy routes can be drawn less often. */
  weights?: Record<string, number>
  /**
   * Path values never sent (the fuzzing tenant's id and slug): an operator route could otherwise
   * disable the tenant whose keys the run uses, and every later request would stop at the key check.
   */
  protect?: readonly string[]
}) {
  const rng = createRng(opts.seed, 0)
  const mutationRate = opts.mutationRate ?? 0.6
  const weighted = opts.routes.map((r) => [r, opts.weights?.[`${r.method} ${r.path}`] ?? 1] as const)

  function str(s: Schema): string {
    if (s.enum?.length) return String(rng.pick(s.enum))
    if (s.format === 'date') return '2026-11-0' + rng.int(1, 9)
    if (s.format === 'date-time') return `2026-11-0${rng.int(1, 9)}T0${rng.int(0, 9)}:00:00Z`
    if (s.pattern) {
      let re: RegExp | undefined
      try {
        re = new RegExp(s.pattern, 'u')
      } catch {
        re = undefined
      }
      const fits = re ? POOL.filter((p) => re!.test(p)) : []
      if (fits.length) return rng.pick(fits)
    }
    const min = s.minLength ?? 1
    const max = Math.min(s.maxLength ?? 12, Math.max(min, 12))
    if (rng.chance(0.5)) {
      const fits = POOL.filter((p) => p.length >= min && p.length <= max)
      if (fits.length) return rng.pick(fits)
    }
    let out = ''
    const n = rng.int(min, max)
    for (let i = 0; i < n; i++) out += 'abcdefghijklmnopqrstuvwxyz_0123456789'[rng.int(0, 35)]
    return out
  }

  function num(s: Schema, integer: boolean): number {
    const lo = s.minimum ?? 0
    const hi = Math.min(s.maximum ?? 1000, lo + 1000)
    return integer ? rng.int(Math.ceil(lo), Math.floor(hi)) : lo + rng.float() * (hi - lo)
  }

  function valid(s: Schema | undefined, depth = 0): unknown {
    if (!s || depth > 6) return rng.pick(POOL)
    if (s.const !== undefined) return s.const
    if (s.enum?.length) return rng.pick(s.enum)
    const alts = s.anyOf ?? s.oneOf
    if (alts?.length) return valid(rng.pick(alts), depth + 1)
    const type = Array.isArray(s.type) ? rng.pick(s.type) : s.type
    switch (type) {
      case 'string':
        return str(s)
      case 'integer':
        return num(s, true)
      case 'number':
        return num(s, false)
      case 'boolean':
        return rng.chance(0.5)
      case 'null':
        return null
      case 'array': {
        const n = rng.int(s.minItems ?? 0, Math.min(s.maxItems ?? 3, (s.minItems ?? 0) + 3))
        return Array.from({ length: n }, () => valid(s.items, depth + 1))
      }
      case 'object':
      default: {
        if (!s.properties) return type === 'object' ? {} : rng.pick(POOL)
        const o: Record<string, unknown> = {}
        for (const [k, v] of Object.entries(s.properties)) {
          if (s.required?.includes(k) || rng.chance(0.5)) o[k] = valid(v, depth + 1)
        }
        return o
      }
    }
  }

  function nastyValue(): [string, unknown] {
    switch (rng.int(0, 9)) {
      case 0:
        return ['huge number', rng.pick(HUGE_NUMBERS)]
      case 1:
        return ['long string', rng.pick(['a', '中', '😀', '\\']).repeat(rng.pick([1000, 70_000]))]
      case 2:
        return ['nasty string', rng.pick(NASTY)]
      case 3: {
        let v: unknown = rng.pick([1, 'x', {}])
        const depth = rng.pick([50, 300, 1000])
        for (let i = 0; i < depth; i++) v = rng.chance(0.5) ? [v] : { all: [v] }
        return [`deep nesting (${depth})`, v]
      }
      case 4:
        return ['null', null]
      case 5:
        return ['wrong type: object', { x: 1 }]
      case 6:
        return ['wrong type: array', [1, 'a', null]]
      case 7:
        return ['wrong type: boolean', rng.chance(0.5)]
      case 8:
        return ['wrong type: number', rng.int(-5, 5)]
      default:
        return ['wrong type: string', rng.pick(POOL)]
    }
  }

  /** Replaces one node of a JSON value (or drops / adds a field) and says what it did. */
  function mutate(v: unknown, depth = 0): [string, unknown] {
    const isObj = v !== null && typeof v === 'object' && !Array.isArray(v)
    const entries = isObj ? Object.entries(v as Record<string, unknown>) : Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : []
    if (entries.length && depth < 6 && rng.chance(0.7)) {
      const [k, child] = rng.pick(entries)
      const roll = rng.float()
      if (isObj && roll < 0.15) {
        const o = { ...(v as Record<string, unknown>) }
        delete o[k]
        return [`missing ${k}`, o]
      }
      if (isObj && roll < 0.25) {
        const extra = rng.pick(['__proto__', 'constructor', 'tenant_id', 'tenant', 'zzz', '\u0000'])
        return [`extra field ${JSON.stringify(extra)}`, JSON.parse(JSON.stringify({ ...(v as object), [extra]: { polluted: true } }))]
      }
      const [what, m] = mutate(child, depth + 1)
      if (Array.isArray(v)) return [`${k}: ${what}`, v.map((x, i) => (String(i) === k ? m : x))]
      return [`${k}: ${what}`, { ...(v as Record<string, unknown>), [k]: m }]
    }
    return nastyValue()
  }

  function fill(route: FuzzRoute, mutateOne: string | undefined): { path: string; query: string; mutation: string[] } {
    const mutation: string[] = []
    let p = route.path
    for (const pp of route.pathParams) {
      const value = String(valid(pp.schema))
      let v = enc(opts.protect?.includes(value) ? 'x1' : value)
      if (mutateOne === 'path') {
        const bad = rng.pick(['%zz', '%E0%A4%A', '..', '%2F..%2F', enc('😀'.repeat(20)), 'a'.repeat(5000), '%00', enc("' OR 1=1"), '-1', '99999999999999999999'])
        mutation.push(`path ${pp.name}=${bad.slice(0, 40)}`)
        v = bad
      }
      p = p.replace(`{${pp.name}}`, v)
    }
    const qs: string[] = []
    for (const q of route.query) {
      if (!q.required && rng.chance(0.5) && mutateOne !== 'query') continue
      let v: unknown = valid(q.schema)
      if (mutateOne === 'query' && rng.chance(0.5)) {
        const [what, m] = nastyValue()
        mutation.push(`query ${q.name}: ${what}`)
        v = typeof m === 'string' ? m.slice(0, 10_000) : JSON.stringify(m)?.slice(0, 10_000)
      }
      qs.push(`${enc(q.name)}=${enc(String(v))}`)
      if (mutateOne === 'query' && rng.chance(0.1)) {
        qs.push(`${enc(q.name)}=2`)
        mutation.push(`query ${q.name} repeated`)
      }
    }
    if (mutateOne === 'query' && rng.chance(0.2)) {
      qs.push(`${rng.pick(['tenant', '__proto__', 'x', '%zz'])}=${rng.pick(['1', '%E0%A4%A', ''])}`)
      mutation.push('query extra parameter')
    }
    return { path: p, query: qs.length ? `?${qs.join('&')}` : '', mutation }
  }

  function body(route: FuzzRoute, mutateBody: boolean): { payload: string | Buffer | undefined; headers: Record<string, string>; mutation: string[] } {
    if (route.body === undefined) return { payload: undefined, headers: {}, mutation: [] }
    const key = `${route.method} ${route.path}`
    const seeds = SEEDS[key] ?? (route.path.startsWith('/v1/') && /^\/v1\/[a-z]$/.test(route.path) ? SEEDS['POST /v1/track'] : undefined)
    let value: unknown = seeds && rng.chance(0.6) ? structuredClone(rng.pick(seeds)) : valid(route.body)
    const json = !route.contentTypes.length || route.contentTypes.includes('application/json')
    const headers: Record<string, string> = { 'content-type': json ? 'application/json' : rng.pick(route.contentTypes) }
    if (!json) {
      const csv = 'customer_no,name\nC0001,王\n'
      if (!mutateBody) return { payload: csv, headers: { 'content-type': 'text/csv' }, mutation: [] }
      return { payload: Buffer.from([0xff, 0xfe, 0x00, 0x41, 0x2c, 0x0a]), headers, mutation: ['body: binary garbage'] }
    }
    if (!mutateBody) return { payload: JSON.stringify(value), headers, mutation: [] }
    const roll = rng.float()
    if (roll < 0.55) {
      const [what, m] = mutate(value)
      value = m
      return { payload: JSON.stringify(value), headers, mutation: [`body ${what}`] }
    }
    const text = JSON.stringify(value) ?? 'null'
    const enc = rng.int(0, 8)
    switch (enc) {
      case 0:
        return { payload: text.slice(0, Math.max(1, Math.floor(text.length / 2))), headers, mutation: ['body: truncated JSON'] }
      case 1:
        return { payload: Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), headers, mutation: ['body: invalid UTF-8'] }
      case 2:
        return { payload: text, headers: { 'content-type': rng.pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml']) }, mutation: ['body: wrong content type'] }
      case 3:
        return { payload: 'not gzip at all', headers: { ...headers, 'content-encoding': 'gzip' }, mutation: ['body: content-encoding gzip, not gzip'] }
      case 4:
        return { payload: zlib.gzipSync(text), headers: { ...headers, 'content-encoding': rng.pick(['gzip', 'br', 'deflate', 'x-unknown']) }, mutation: ['body: compressed'] }
      case 5:
        return { payload: '', headers, mutation: ['body: empty'] }
      case 6:
        return { payload: `\ufeff${text}`, headers, mutation: ['body: byte order mark'] }
      case 7:
        return { payload: JSON.stringify({ pad: 'x'.repeat(rng.pick([40_000, 600_000])), ...(typeof value === 'object' ? value : {}) }), headers, mutation: ['body: large'] }
      default:
        return { payload: rng.pick(['[]', 'null', '"x"', '123', '{"__proto__":{"polluted":1}}', '{"a":1,"a":2}', '{"a":1e400}']), headers, mutation: ['body: other JSON value'] }
    }
  }

  return {
    next(): FuzzRequest {
      const route = rng.weighted(weighted)
      // Mostly a key the route could accept (the operator token on operator routes, a tenant key
      // elsewhere), so requests get past authentication; sometimes any key, or none.
      const operator = route.path.startsWith('/v1/operator/')
      const fitting = opts.keys.filter((k) => k.authorization && (k.name === 'operator') === operator)
      const key = rng.chance(0.85) && fitting.length ? rng.pick(fitting) : rng.pick(opts.keys)
      const mutated = rng.chance(mutationRate)
      const parts = [route.body !== undefined ? 'body' : undefined, route.query.length ? 'query' : undefined, route.pathParams.length ? 'path' : undefined].filter(
        (x): x is string => !!x,
      )
      // A broken key stops at the key check, whatever the rest: one mutation in ten is enough there.
      const target = mutated ? (rng.chance(0.1) || !parts.length ? 'auth' : rng.pick(parts)) : undefined
      const f = fill(route, target)
      const b = body(route, target === 'body')
      const headers: Record<string, string> = { ...b.headers }
      const mutation = [...f.mutation, ...b.mutation]
      if (target === 'auth') {
        const [what, auth] = rng.pick([
          ['auth: basic without colon', 'Basic ' + Buffer.from('qm_x').toString('base64')],
          ['auth: basic not base64', 'Basic %%%'],
          ['auth: bearer unknown key', 'Bearer qm_a_' + 'x'.repeat(40)],
          ['auth: bearer empty', 'Bearer '],
          ['auth: unknown scheme', 'Digest x'],
          ['auth: long', 'Bearer ' + 'k'.repeat(10_000)],
        ] as const)
        headers.authorization = auth
        mutation.push(what)
      } else if (key.authorization) headers.authorization = key.authorization
      return { route: `${route.method} ${route.path}`, mutation: mutation.join('; ') || (mutated ? 'none applied' : 'valid'), method: route.method, url: f.path + f.query, headers, payload: b.payload }
    },
  }
}

export interface FuzzAnswer {
  status: number
  body: string
}

/** Why an answer breaks the contract, or undefined when it keeps it. */
export function judge(a: FuzzAnswer): string | undefined {
  if (a.status >= 500) return `status ${a.status}`
  if (a.status < 400) return undefined
  let code: unknown
  try {
    code = (JSON.parse(a.body) as { error?: { code?: unknown } }).error?.code
  } catch {
    return `a ${a.status} without a JSON error body`
  }
  if (typeof code !== 'string' || !(code in ERROR_CATALOGUE)) return `a ${a.status} with code ${JSON.stringify(code)}, not in the catalogue`
  const want = ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status
  if (want !== a.status) return `${code} answered ${a.status}, the catalogue says ${want}`
  return undefined
}

export interface FuzzFailure {
  route: string
  mutation: string
  method: string
  url: string
  payload: string
  status: number
  answer: string
  why: string
}

export interface FuzzReport {
  requests: number
  /** route -> status -> count */
  byRoute: Map<string, Map<number, number>>
  failures: FuzzFailure[]
  ms: number
  /** route -> milliseconds spent answering it */
  msByRoute: Map<string, number>
}

/** Sends `n` requests with `app.inject`, `concurrency` at a time, and judges every answer. */
export async function runFuzz(app: FastifyInstance, fuzzer: { next(): FuzzRequest }, n: number, concurrency = 4): Promise<FuzzReport> {
  const byRoute = new Map<string, Map<number, number>>()
  const failures: FuzzFailure[] = []
  const msByRoute = new Map<string, number>()
  const t0 = performance.now()
  let sent = 0
  const worker = async () => {
    while (sent < n) {
      sent++
      const r = fuzzer.next()
      const t1 = performance.now()
      const res = await app.inject({ method: r.method as 'GET', url: r.url, headers: r.headers, ...(r.payload === undefined ? {} : { payload: r.payload }) })
      const m = byRoute.get(r.route) ?? new Map<number, number>()
      m.set(res.statusCode, (m.get(res.statusCode) ?? 0) + 1)
      byRoute.set(r.route, m)
      msByRoute.set(r.route, (msByRoute.get(r.route) ?? 0) + performance.now() - t1)
      const why = judge({ status: res.statusCode, body: res.body })
      if (why) {
        const payload = r.payload === undefined ? '' : Buffer.isBuffer(r.payload) ? `<${r.payload.length} bytes>` : r.payload
        failures.push({ ...r, payload: payload.length > 300 ? `${payload.slice(0, 300)}… (${payload.length} chars)` : payload, status: res.statusCode, answer: res.body.slice(0, 300), why })
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { requests: sent, byRoute, failures, ms: performance.now() - t0, msByRoute }
}

