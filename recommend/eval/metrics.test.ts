import { describe, expect, it } from 'vitest'
import {
  catalogueCoverage,
  mapAtK,
  meanAveragePrecision,
  ndcgAtK,
  precisionAtK,
  rankingMetrics,
  recallAtK,
  scoreUser,
  type RankingCase,
} from './metrics.js'

const ln = Math.log

// k = 3. Worked by hand:
//   A: relevant {1, 5}, list [1, 2, 5] → hits at ranks 1 and 3.
//      precision 2/3, recall 2/2, DCG 1/ln2 + 1/ln4, IDCG 1/ln2 + 1/ln3,
//      AP (1/1 + 2/3) / 2 = 5/6, AP@3 the same (min(3, 2) = 2).
//   B: relevant {7, 8, 9, 10}, list [3, 7, 4] → one hit at rank 2.
//      precision 1/3, recall 1/4, DCG 1/ln3, IDCG 1/ln2 + 1/ln3 + 1/ln4,
//      AP (1/2) / 4 = 1/8, AP@3 (1/2) / 3 = 1/6.
//   C: no relevant item → not counted.
//   D: relevant {1}, empty list → counted, all zero.
const A: RankingCase = { relevant: [1, 5], recommended: [1, 2, 5] }
const B: RankingCase = { relevant: [7, 8, 9, 10], recommended: [3, 7, 4] }
const C: RankingCase = { relevant: [], recommended: [1, 2, 3] }
const D: RankingCase = { relevant: [1], recommended: [] }
const cases = [A, B, C, D]

describe('per-user scores', () => {
  it('match the hand computation for user A', () => {
    const s = scoreUser(A, 3)!
    expect(s.precision).toBeCloseTo(2 / 3, 12)
    expect(s.recall).toBeCloseTo(1, 12)
    expect(s.ndcg).toBeCloseTo((1 / ln(2) + 1 / ln(4)) / (1 / ln(2) + 1 / ln(3)), 12)
    expect(s.ap).toBeCloseTo(5 / 6, 12)
    expect(s.apAtK).toBeCloseTo(5 / 6, 12)
  })

  it('match the hand computation for user B', () => {
    const s = scoreUser(B, 3)!
    expect(s.precision).toBeCloseTo(1 / 3, 12)
    expect(s.recall).toBeCloseTo(1 / 4, 12)
    expect(s.ndcg).toBeCloseTo(1 / ln(3) / (1 / ln(2) + 1 / ln(3) + 1 / ln(4)), 12)
    expect(s.ap).toBeCloseTo(1 / 8, 12)
    expect(s.apAtK).toBeCloseTo(1 / 6, 12)
  })

  it('leave out a user without relevant items', () => {
    expect(scoreUser(C, 3)).toBeUndefined()
  })

  it('give 1 everywhere to a perfect list', () => {
    expect(scoreUser({ relevant: [4, 2], recommended: [2, 4, 9] }, 2)).toEqual({ precision: 1, recall: 1, ndcg: 1, ap: 1, apAtK: 1 })
  })

  it('divide precision by k even when the list is shorter', () => {
    expect(scoreUser({ relevant: [1], recommended: [1] }, 10)!.precision).toBeCloseTo(0.1, 12)
  })

  it('read only the first k entries', () => {
    expect(scoreUser({ relevant: [9], recommended: [1, 2, 9] }, 2)!.recall).toBe(0)
  })

  it('count a relevant item once even if the list repeats it', () => {
    const s = scoreUser({ relevant: [1, 2], recommended: [1, 1, 2] }, 3)!
    expect(s.precision).toBeCloseTo(2 / 3, 12)
    expect(s.recall).toBe(1)
    expect(s.ap).toBeCloseTo((1 / 1 + 2 / 3) / 2, 12)
  })

  it('refuse a k that is not a positive integer', () => {
    expect(() => scoreUser(A, 0)).toThrow(RangeError)
  })
})

describe('means over users', () => {
  const n = 3 // A, B and D count; C does not.
  const ndcgA = (1 / ln(2) + 1 / ln(4)) / (1 / ln(2) + 1 / ln(3))
  const ndcgB = 1 / ln(3) / (1 / ln(2) + 1 / ln(3) + 1 / ln(4))

  it('average every metric over users with relevant items', () => {
    const m = rankingMetrics(cases, 3)
    expect(m.users).toBe(n)
    expect(m.precision).toBeCloseTo((2 / 3 + 1 / 3 + 0) / n, 12)
    expect(m.recall).toBeCloseTo((1 + 1 / 4 + 0) / n, 12)
    expect(m.ndcg).toBeCloseTo((ndcgA + ndcgB) / n, 12)
    expect(m.map).toBeCloseTo((5 / 6 + 1 / 8) / n, 12)
    expect(m.mapAtK).toBeCloseTo((5 / 6 + 1 / 6) / n, 12)
  })

  it('expose each metric on its own', () => {
    expect(precisionAtK(cases, 3)).toBeCloseTo(1 / 3, 12)
    expect(recallAtK(cases, 3)).toBeCloseTo(1.25 / 3, 12)
    expect(ndcgAtK(cases, 3)).toBeCloseTo((ndcgA + ndcgB) / 3, 12)
    expect(meanAveragePrecision(cases, 3)).toBeCloseTo((5 / 6 + 1 / 8) / 3, 12)
    expect(mapAtK(cases, 3)).toBeCloseTo(1 / 3, 12)
  })

  it('are zero with no user to average over', () => {
    expect(rankingMetrics([C], 3)).toEqual({ precision: 0, recall: 0, ndcg: 0, map: 0, mapAtK: 0, users: 0 })
  })
})

describe('catalogueCoverage', () => {
  it('is the share of the training catalogue recommended to anyone', () => {
    expect(catalogueCoverage([[1, 2], [2, 3], []], 10)).toBeCloseTo(0.3, 12)
    expect(catalogueCoverage([Int32Array.of(0, 1)], 2)).toBe(1)
    expect(catalogueCoverage([[1]], 0)).toBe(0)
  })
})
