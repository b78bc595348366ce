import { describe, expect, it } from 'vitest'
import { evaluateInteractions, type AlgorithmFactory, type EvaluationReport } from './evaluate.js'
import { buildUserItemMatrix } from './matrix.js'
import { fitPopularity } from './popularity.js'
import { fitSar } from './sar.js'
import { generateSyntheticInteractions } from './synthetic.js'
import type { InteractionTable } from './table.js'

const withoutTimings = (r: EvaluationReport) =>
  Object.fromEntries(Object.entries(r.algorithms).map(([name, a]) => [name, { ...a, fitMs: 0, recommendMs: 0 }]))

/** Recommends exactly what each user has outside train: the answer key, to check the plumbing. */
function oracle(all: InteractionTable): AlgorithmFactory {
  return (train) => {
    const full = buildUserItemMatrix(all)
    const had = buildUserItemMatrix(train)
    return {
      recommend(user, k) {
        const seen = new Set(had.cols.subarray(had.rowPtr[user]!, had.rowPtr[user + 1]!))
        return Int32Array.from(full.cols.subarray(full.rowPtr[user]!, full.rowPtr[user + 1]!).filter((i) => !seen.has(i))).slice(0, k)
      },
    }
  }
}

describe('evaluateInteractions', () => {
  const data = generateSyntheticInteractions({ users: 400, items: 300, perUser: 20, clusters: 8, seed: 1 })

  it('reports the split and, per algorithm, the metrics over every test user', () => {
    const r = evaluateInteractions(data, { seed: 4 })
    expect(r.k).toBe(10)
    expect(r.split.method).toBe('stratified')
    expect(r.split.trainRows + r.split.testRows).toBe(data.length)
    expect(r.split.testRows / data.length).toBeGreaterThan(0.24)
    expect(r.split.testRows / data.length).toBeLessThan(0.3)
    expect(r.split.testUsers).toBe(400)
    expect(r.split.coldTestUsers).toBe(0)
    expect(Object.keys(r.algorithms)).toEqual(['sar', 'popularity'])
    for (const a of Object.values(r.algorithms)) {
      expect(a.users).toBe(400)
      for (const v of [a.ndcg, a.precision, a.recall, a.map, a.mapAtK, a.coverage]) {
        expect(v).toBeGreaterThan(0)
        expect(v).toBeLessThanOrEqual(1)
      }
      expect(a.fitMs).toBeGreaterThanOrEqual(0)
    }
  })

  it('finds SAR well ahead of popularity on data with taste groups', () => {
    const { sar, popularity } = evaluateInteractions(data, { seed: 4 }).algorithms
    expect(sar!.ndcg).toBeGreaterThan(popularity!.ndcg * 1.5)
    expect(sar!.precision).toBeGreaterThan(popularity!.precision * 1.5)
    expect(sar!.recall).toBeGreaterThan(popularity!.recall)
    expect(sar!.map).toBeGreaterThan(popularity!.map)
    expect(sar!.coverage).toBeGreaterThan(popularity!.coverage)
  })

  it('is deterministic for a seed', () => {
    const a = evaluateInteractions(data, { seed: 9 })
    const b = evaluateInteractions(data, { seed: 9 })
    expect(withoutTimings(b)).toEqual(withoutTimings(a))
    expect(b.split).toEqual(a.split)
  })

  it('scores a perfect recommender at 1 when no user has more test items than k', () => {
    const small = generateSyntheticInteractions({ users: 50, items: 100, perUser: 8, seed: 2 })
    const r = evaluateInteractions(small, { k: 10, algorithms: { oracle: oracle(small) } })
    const o = r.algorithms.oracle!
    expect(o.ndcg).toBeCloseTo(1, 12)
    expect(o.recall).toBeCloseTo(1, 12)
    expect(o.map).toBeCloseTo(1, 12)
  })

  it('accepts plain rows, other k and ratio, and named algorithm variants', () => {
    const rows = [
      ...['a', 'b', 'c', 'd'].flatMap((user) => ['p', 'q', 'r', 's'].map((item) => ({ user, item }))),
      { user: 'e', item: 'p' },
    ]
    const r = evaluateInteractions(rows, {
      k: 2,
      ratio: 0.5,
      algorithms: { lift: (t) => fitSar(t, { similarity: 'lift' }), pop: (t) => fitPopularity(t) },
    })
    expect(r.k).toBe(2)
    expect(r.split).toMatchObject({ trainRows: 8, testRows: 9, testUsers: 5, coldTestUsers: 1 })
    expect(r.algorithms.lift!.users).toBe(4)
    expect(r.algorithms.pop!.users).toBe(4)
  })

  it('splits by time when given a cut, leaving test users without history out of the means', () => {
    const rows = [
      { user: 'a', item: 'x', timestamp: 1 }, { user: 'a', item: 'y', timestamp: 2 }, { user: 'a', item: 'z', timestamp: 5 },
      { user: 'b', item: 'y', timestamp: 1 }, { user: 'b', item: 'z', timestamp: 2 }, { user: 'b', item: 'x', timestamp: 6 },
      { user: 'c', item: 'x', timestamp: 7 },
    ]
    const r = evaluateInteractions(rows, { cut: 4 })
    expect(r.split).toMatchObject({ method: 'time', trainRows: 4, testRows: 3, testUsers: 3, coldTestUsers: 1 })
    expect(r.algorithms.sar!.users).toBe(2)
    expect(r.algorithms.sar!.precision).toBeCloseTo(0.1, 12)
  })

  it('refuses a k that is not a positive integer', () => {
    expect(() => evaluateInteractions(data, { k: 0 })).toThrow(RangeError)
  })

  it('handles a thousand users and two thousand items quickly', () => {
    const big = generateSyntheticInteractions({ users: 1000, items: 2000, perUser: 40, seed: 3 })
    const r = evaluateInteractions(big)
    expect(r.algorithms.sar!.users).toBe(1000)
    expect(r.algorithms.sar!.ndcg).toBeGreaterThan(r.algorithms.popularity!.ndcg)
  })
})
