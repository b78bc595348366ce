import { describe, expect, it } from 'vitest'
import { AppError } from '../../core/errors.js'
import { easeFromGram, fitEase, invertSpd } from './ease.js'
import { runEvaluation } from './evaluate.run.js'
import { evaluateInteractions } from './evaluate.js'
import { fitPopularity } from './popularity.js'
import { generateSyntheticInteractions } from './synthetic.js'
import { selectRows, tableFromInteractions, type Interaction, type InteractionTable } from './table.js'

/** Seeded uniform numbers in [0, 1), so the random matrices are the same on every run. */
function lcg(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/** A = RᵀR + I with R uniform in [-1, 1): symmetric positive definite. */
function randomSpd(n: number, seed: number): Float64Array {
  const rnd = lcg(seed)
  const r = Float64Array.from({ length: n * n }, () => 2 * rnd() - 1)
  const a = new Float64Array(n * n)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = i === j ? 1 : 0
      for (let k = 0; k < n; k++) s += r[k * n + i]! * r[k * n + j]!
      a[i * n + j] = s
    }
  }
  return a
}

/** Gauss-Jordan with partial pivoting on plain arrays: a reference that shares nothing with ease.ts. */
function referenceInverse(a: ArrayLike<number>, n: number): number[][] {
  const m = Array.from({ length: n }, (_, i) => [...Array.from({ length: n }, (_, j) => a[i * n + j]!), ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))])
  for (let c = 0; c < n; c++) {
    let p = c
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[p]![c]!)) p = r
    ;[m[c], m[p]] = [m[p]!, m[c]!]
    const row = m[c]!
    const d = row[c]!
    for (let k = 0; k < 2 * n; k++) row[k]! /= d
    for (let r = 0; r < n; r++) {
      if (r === c) continue
      const f = m[r]![c]!
      for (let k = 0; k < 2 * n; k++) m[r]![k]! -= f * row[k]!
    }
  }
  return m.map((row) => row.slice(n))
}

/** X as dense rows (1 per pair when binary, else the pair's summed ratings) and G = XᵀX. */
function denseXAndGram(t: InteractionTable, binary: boolean): { x: number[][]; g: Float64Array } {
  const n = t.items.length
  const x = Array.from({ length: t.users.length }, () => new Array<number>(n).fill(0))
  for (let r = 0; r < t.length; r++) {
    const row = x[t.user[r]!]!
    row[t.item[r]!] = binary ? 1 : row[t.item[r]!]! + t.rating[r]!
  }
  const g = new Float64Array(n * n)
  for (const row of x) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) g[i * n + j]! += row[i]! * row[j]!
  return { x, g }
}

// u0 {A, B}, u1 {A, B, C}, u2 {B, C}, u3 {A}; items A=0, B=1, C=2 (the example of sar.test.ts).
// G = [[3, 2, 1], [2, 3, 2], [1, 2, 2]]; with λ = 1, G + I = [[4, 2, 1], [2, 4, 2], [1, 2, 3]],
// det 24, P = adj / det = [[8, -4, 0], [-4, 11, -6], [0, -6, 12]] / 24, and B[i][j] = -P[i][j] / P[j][j]:
// B = [[0, 4/11, 0], [1/2, 0, 1/2], [0, 6/11, 0]]: with B known, A and C tell nothing about each other.
const pairs: [string, string][] = [
  ['u0', 'A'], ['u0', 'B'],
  ['u1', 'A'], ['u1', 'B'], ['u1', 'C'],
  ['u2', 'B'], ['u2', 'C'],
  ['u3', 'A'],
]
const small = tableFromInteractions(pairs.map(([user, item]) => ({ user, item })))
const smallGram = Float64Array.from([3, 2, 1, 2, 3, 2, 1, 2, 2])
const smallB = [0, 4 / 11, 0, 1 / 2, 0, 1 / 2, 0, 6 / 11, 0]

describe('invertSpd', () => {
  it('inverts small matrices computed by hand', () => {
    // [[4, 2, 0], [2, 3, 1], [0, 1, 2]]: det 12, inverse = [[5, -4, 2], [-4, 8, -4], [2, -4, 8]] / 12.
    const p = invertSpd(Float64Array.from([4, 2, 0, 2, 3, 1, 0, 1, 2]), 3)
    ;[5, -4, 2, -4, 8, -4, 2, -4, 8].forEach((v, x) => expect(p[x]).toBeCloseTo(v / 12, 14))
    const q = invertSpd(smallGram, 3, 1)
    ;[8, -4, 0, -4, 11, -6, 0, -6, 12].forEach((v, x) => expect(q[x]).toBeCloseTo(v / 24, 14))
    expect([...invertSpd(Float64Array.of(4), 1)]).toEqual([0.25])
    expect(invertSpd(new Float64Array(0), 0)).toHaveLength(0)
  })

  it('gives (A + shift·I)·P = I on random SPD matrices of every size parity', () => {
    for (const n of [1, 2, 3, 4, 5, 8, 13, 31, 64, 101]) {
      const a = randomSpd(n, n)
      const shift = 0.5
      const p = invertSpd(a, n, shift)
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0
          for (let k = 0; k < n; k++) s += (a[i * n + k]! + (i === k ? shift : 0)) * p[k * n + j]!
          expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-9)
          expect(p[i * n + j]).toBe(p[j * n + i])
        }
      }
    }
  })

  it('agrees with Gauss-Jordan and reads only the lower triangle', () => {
    const n = 40
    const a = randomSpd(n, 7)
    const ref = referenceInverse(a, n)
    const upperGarbage = a.map((v, x) => (x % n > Math.floor(x / n) ? NaN : v))
    const p = invertSpd(upperGarbage, n)
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(p[i * n + j]).toBeCloseTo(ref[i]![j]!, 10)
  })

  it('refuses matrices that are not SPD or not n × n', () => {
    expect(() => invertSpd(Float64Array.from([1, 2, 2, 1]), 2)).toThrow(/not positive definite/)
    expect(() => invertSpd(new Float64Array(4), 2)).toThrow(/pivot 0/)
    expect(() => invertSpd(new Float64Array(4), 2, 1)).not.toThrow()
    expect(() => invertSpd(new Float64Array(5), 2)).toThrow(RangeError)
    expect(() => invertSpd(new Float64Array(4), 2, NaN)).toThrow(RangeError)
  })
})

describe('easeFromGram', () => {
  it('computes B = I − P·diag(1/diag(P)) on the hand-computed example', () => {
    const b = easeFromGram(smallGram, 3, 1)
    smallB.forEach((v, x) => expect(b[x]).toBeCloseTo(v, 6))
  })

  it('has a zero diagonal and B[i][j] = −P[i][j] / P[j][j] off it', () => {
    const t = generateSyntheticInteractions({ users: 200, items: 61, perUser: 12, seed: 3 })
    const n = t.items.length
    const { g } = denseXAndGram(t, true)
    const b = easeFromGram(g, n, 20)
    const p = invertSpd(g, n, 20)
    for (let i = 0; i < n; i++) {
      expect(b[i * n + i]).toBe(0)
      for (let j = 0; j < n; j++) if (i !== j) expect(b[i * n + j]).toBeCloseTo(-p[i * n + j]! / p[j * n + j]!, 6)
    }
  })

  it('refuses a negative or non-finite penalty', () => {
    expect(() => easeFromGram(smallGram, 3, -1)).toThrow(/lambda/)
    expect(() => easeFromGram(smallGram, 3, Infinity)).toThrow(/lambda/)
  })
})

describe('fitEase', () => {
  it('learns the hand-computed weights and recommends by them', () => {
    const m = fitEase(small, { lambda: 1 })
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) expect(m.weight(i, j)).toBeCloseTo(smallB[i * 3 + j]!, 6)
    // u3 has A: scores are row A, [0, 4/11, 0]; B then C. u0 has A and B: only C is left.
    expect([...m.recommend(3, 5)]).toEqual([1, 2])
    expect([...m.recommend(0, 5)]).toEqual([2])
    expect([...m.recommend(1, 5)]).toEqual([])
  })

  it('ranks the missing member of a taste group first', () => {
    const groups = [['a', 'b', 'c', 'd'], ['w', 'x', 'y', 'z']]
    const rows: Interaction[] = []
    for (const [g, items] of groups.entries()) {
      for (let u = 0; u < 6; u++) for (const item of items) rows.push({ user: `g${g}u${u}`, item })
      // Each group also has a user without its last item, and a cross-over pair of users.
      for (const item of items.slice(0, 3)) rows.push({ user: `g${g}partial`, item })
      rows.push({ user: `g${g}cross`, item: items[0]! }, { user: `g${g}cross`, item: groups[1 - g]![3]! })
    }
    const t = tableFromInteractions(rows)
    const m = fitEase(t, { lambda: 2 })
    const name = (u: string, k: number) => [...m.recommend(t.users.indexOf(u), k)].map((i) => t.items[i])
    expect(name('g0partial', 1)).toEqual(['d'])
    expect(name('g1partial', 1)).toEqual(['z'])
    expect(name('g0partial', 8)).toHaveLength(5)
    expect(name('g0partial', 8)).not.toContain('a')
  })

  it('matches x_u · B from a dense reference, with binary and rating-weighted X', () => {
    const base = generateSyntheticInteractions({ users: 50, items: 30, perUser: 7, seed: 11 })
    const rows: Interaction[] = []
    for (let r = 0; r < base.length; r++) rows.push({ user: base.users[base.user[r]!]!, item: base.items[base.item[r]!]!, rating: 1 + (r % 5) })
    rows.push({ ...rows[0]!, rating: 2 }) // a repeated event: counted once when binary, added up otherwise
    const t = tableFromInteractions(rows)
    const n = t.items.length
    for (const binary of [true, false]) {
      const { x, g } = denseXAndGram(t, binary)
      const p = referenceInverse(g.map((v, k) => (k % (n + 1) === 0 ? v + 15 : v)), n)
      const m = fitEase(t, { lambda: 15, binary })
      const out = new Float64Array(n)
      for (let u = 0; u < t.users.length; u++) {
        m.scoreUser(u, out)
        for (let j = 0; j < n; j++) {
          let s = 0
          for (let i = 0; i < n; i++) if (i !== j) s += x[u]![i]! * (-p[i]![j]! / p[j]![j]!)
          expect(out[j]).toBeCloseTo(s, 4)
        }
      }
    }
  })

  it('never recommends items absent from training, nor anything to a cold user', () => {
    const all = tableFromInteractions([...pairs.map(([user, item]) => ({ user, item })), { user: 'u3', item: 'D' }, { user: 'u9', item: 'A' }])
    const train = selectRows(all, [0, 1, 2, 3, 4, 5, 6, 7]) // D and u9 only in the dictionary
    const m = fitEase(train, { lambda: 1 })
    expect([...m.recommend(3, 10)]).toEqual([1, 2])
    expect(m.weight(0, 3)).toBe(0)
    expect([...m.recommend(all.users.indexOf('u9'), 10)]).toEqual([])
    const out = new Float64Array(4).fill(9)
    m.scoreUser(all.users.indexOf('u9'), out)
    expect([...out]).toEqual([0, 0, 0, 0])
  })

  it('refuses a penalty that is not positive and catalogues over the limit', () => {
    expect(() => fitEase(small, { lambda: 0 })).toThrow(AppError)
    expect(() => fitEase(small, { lambda: NaN })).toThrow(/lambda/)
    expect(() => fitEase(small, { maxItems: 2 })).toThrow(/limit is 2 items/)
  })

  it('beats popularity on data with taste groups', () => {
    const data = generateSyntheticInteractions({ users: 400, items: 300, perUser: 20, clusters: 8, seed: 1 })
    const r = evaluateInteractions(data, { seed: 4, algorithms: { ease: (t) => fitEase(t, { lambda: 50 }), popularity: fitPopularity } })
    expect(r.algorithms.ease!.users).toBe(400)
    expect(r.algorithms.ease!.ndcg).toBeGreaterThan(r.algorithms.popularity!.ndcg * 1.5)
  })
})

describe('eval CLI with EASE', () => {
  it('adds one EASE model per λ given, before popularity', async () => {
    const report = await runEvaluation({ synthetic: '100x50' }, { perUser: 10, halfLife: 0, ease: [100, 300] }, () => {})
    expect(Object.keys(report.algorithms)).toEqual(['sar', 'ease_lambda100', 'ease_lambda300', 'served_ease_0.3', 'popularity'])
    expect(report.algorithms.ease_lambda300!.users).toBe(100)
  })

  it('checks the penalties before reading anything', async () => {
    await expect(runEvaluation({ file: 'missing.tsv' }, { ease: [0] }, () => {})).rejects.toThrow(/--ease: penalties greater than 0/)
    await expect(runEvaluation({ file: 'missing.tsv' }, { ease: [Number.NaN] }, () => {})).rejects.toThrow(/--ease/)
  })
})
