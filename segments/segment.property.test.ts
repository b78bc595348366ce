import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createRng, type Rng } from '../demo/demo.random.js'
import { compileSegment } from './segment.compile.js'
import { compileReference } from './segment.reference.js'
import { members, setupFixture, type Fixture } from './segment.fixture.js'
import { parseSegment } from './segment.schema.js'

/**
 * Random trees (seeded): the bitmap path equals the reference path on every one; and no user
 * string ever reaches the SQL text except as a bound parameter.
 */

let fx: Fixture
beforeAll(async () => {
  fx = await setupFixture()
})
afterAll(async () => fx?.engine.close())

const NUM_OPS = ['eq', 'ne', 'in', 'not_in', 'gt', 'gte', 'lt', 'lte', 'between', 'exists', 'not_exists'] as const
const LABEL_OPS = ['eq', 'ne', 'in', 'not_in', 'exists', 'not_exists'] as const

function tagLeaf(r: Rng): unknown {
  const num = (lo: number, hi: number) => (r.chance(0.2) ? r.int(lo * 10, hi * 10) / 10 : r.int(lo, hi))
  const withOp = (op: string, one: () => unknown) => {
    if (op === 'exists' || op === 'not_exists') return { op }
    if (op === 'in' || op === 'not_in') return { op, value: Array.from({ length: r.int(1, 4) }, one) }
    if (op === 'between') {
      const [a, b] = [one(), one()] as [number | string, number | string]
      return { op, value: a <= b ? [a, b] : [b, a] }
    }
    return { op, value: one() }
  }
  const date = () => new Date(Date.UTC(2026, 0, 1) + r.int(-5, 110) * 86_400_000).toISOString().slice(0, 10)
  switch (r.int(0, 6)) {
    case 0:
      return { tag: 'score', ...withOp(r.pick(NUM_OPS), () => num(-5, 155)) }
    case 1:
      return { tag: 'small', ...withOp(r.pick(NUM_OPS), () => num(-1, 5)) }
    case 2:
      return { tag: 'views_30d', ...withOp(r.pick(NUM_OPS), () => num(0, 6)) }
    case 3:
      return { tag: 'birth', ...withOp(r.pick(NUM_OPS), date) }
    case 4:
      return { tag: 'flag', ...withOp(r.pick(LABEL_OPS), () => r.chance(0.5)) }
    case 5:
      return { tag: 'tier', ...withOp(r.pick(LABEL_OPS), () => r.pick(['gold', 'silver', 'bronze'])) }
    default:
      return { tag: 'kinds', ...withOp(r.pick(LABEL_OPS), () => r.pick(['even', 'three', 'odd'])) }
  }
}

function eventLeaf(r: Rng): unknown {
  const window = r.chance(0.7) ? { lastDays: r.pick([3, 7, 30, 60]) } : { from: '2026-03-10', to: r.pick(['2026-03-10', '2026-03-12']) }
  if (r.chance(0.2)) {
    const [a, b] = r.chance(0.7) ? ['product_viewed', 'purchase'] : ['purchase', 'product_viewed']
    return { sequence: [{ event: { names: [a] } }, { event: { names: [b] } }], withinDays: r.int(1, 4) }
  }
  const op = r.pick(['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between'] as const)
  const value = op === 'between' ? [r.int(0, 2), r.int(2, 5)] : r.int(0, 5)
  switch (r.int(0, 2)) {
    case 0:
      return { event: { names: [r.pick(['product_viewed', 'login', 'purchase'])] }, measure: 'count', op, value, window }
    case 1:
      return { event: { names: ['product_viewed'] }, measure: 'distinct', property: 'page', op, value, window }
    default:
      return { event: { names: ['purchase'] }, measure: 'sum', property: 'amount', op, value: op === 'between' ? [0, 100] : r.int(0, 150), window }
  }
}

function tree(r: Rng, depth: number): unknown {
  const k = r.float()
  if (depth >= 4 || k < 0.4) return r.chance(0.8) ? tagLeaf(r) : eventLeaf(r)
  if (k < 0.55) return { not: tree(r, depth + 1) }
  const kids = Array.from({ length: r.int(1, 3) }, () => tree(r, depth + 1))
  return k < 0.78 ? { all: kids } : { any: kids }
}

describe('random trees', () => {
  it('the fixture has bucketed numeric bitmaps (else the edge logic is not exercised)', async () => {
    const [r] = await fx.engine.db.forTenant(fx.tenant).query(
      `SELECT countIf(tag = 'score' AND lo < hi) AS score, countIf(tag = 'birth' AND lo < hi) AS birth FROM tag_bitmaps WHERE tenant_id = {tenant:UInt16}`,
      {},
      z.object({ score: z.coerce.number(), birth: z.coerce.number() }),
    )
    expect(r!.score).toBeGreaterThan(10)
    expect(r!.birth).toBeGreaterThan(10)
  })

  it('bitmap path == reference path on 80 seeded trees', async () => {
    const r = createRng(20260315, 0)
    const sizes: number[] = []
    for (let i = 0; i < 80; i++) {
      const rule = tree(r, 1)
      const ks = await members(fx, rule)
      sizes.push(ks.length)
    }
    // The trees select a spread of segment sizes, not only empty and full ones.
    expect(sizes.filter((n) => n > 0 && n < 149).length).toBeGreaterThan(30)
  })
})

describe('user strings are bound parameters only', () => {
  const evil = [
    "x'); DROP TABLE customers; --",
    "' OR 1=1 --",
    '{tenant:UInt16} OR {p0:String}',
    '`tag_values`',
    '\\\'; SELECT * FROM system.users',
    '*/ SELECT 1 /*',
    '雪花\u0000null',
  ]

  it('never appear in the SQL text, and the queries run', async () => {
    const rule = {
      any: [
        { tag: 'kinds', op: 'in', value: evil },
        ...evil.map((s) => ({ tag: 'kinds', op: 'ne', value: s })),
        {
          event: { names: evil, where: [{ property: 'page', op: 'in', value: evil }, { property: 'page', op: 'ne', value: evil[0] }] },
          measure: 'distinct',
          property: 'page',
          op: 'gte',
          value: 1,
          window: { lastDays: 30 },
        },
        { sequence: [{ event: { names: [evil[1]!] } }, { event: { names: [evil[2]!], where: [{ property: 'page', op: 'eq', value: evil[3] }] } }], withinDays: 2 },
      ],
    }
    const seg = parseSegment({ purpose: 'marketing', rule })
    const c = compileSegment(seg, fx.opts)
    const ref = compileReference(seg, fx.opts)
    for (const [sql, params] of [
      [c.sql, c.params],
      [ref.sql, ref.params],
    ] as const) {
      for (const s of evil) expect(sql.includes(s), s).toBe(false)
      // Only code-made placeholders: {s12:String}, {tenant:UInt16} ...
      for (const m of sql.matchAll(/\{([^}]*)\}/g)) expect(m[1]).toMatch(/^(tenant:UInt16|[sr]\d+:(String|Float64|Date32|Array\((String|Float64)\)))$/)
      const bound = JSON.stringify(Object.values(params))
      for (const s of evil) expect(bound.includes(JSON.stringify(s).slice(1, -1)), s).toBe(true)
    }
    // "ne" of strings nobody has: everyone; both paths agree and nothing was dropped.
    expect((await members(fx, rule)).length).toBe(149)
    const [n] = await fx.engine.db.forTenant(fx.tenant).query('SELECT count() AS n FROM customers WHERE tenant_id = {tenant:UInt16}', {}, z.object({ n: z.coerce.number() }))
    expect(n!.n).toBeGreaterThan(0)
  })

  it('tag and property names cannot carry SQL: the schema refuses them', () => {
    expect(() => parseSegment({ purpose: 'marketing', rule: { tag: "score'--", op: 'exists' } })).toThrow(/rule.tag/)
    expect(() =>
      parseSegment({ purpose: 'marketing', rule: { event: {}, measure: 'sum', property: 'a) OR (1', op: 'gt', value: 1, window: { lastDays: 3 } } }),
    ).toThrow(/rule.property/)
  })
})
