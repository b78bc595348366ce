import { describe, expect, it } from 'vitest'
import { AppError } from '../../core/errors.js'
import { fitSar, type SarSimilarity } from './sar.js'
import { generateSyntheticInteractions } from './synthetic.js'
import { selectRows, tableFromInteractions, type Interaction, type InteractionTable } from './table.js'

// u0 {A, B}, u1 {A, B, C}, u2 {B, C}, u3 {A}; items A=0, B=1, C=2.
// Co-occurrence: AA 3, BB 3, CC 2, AB 2, AC 1, BC 2.
// Jaccard: AB 2/(3+3-2) = 1/2, AC 1/(3+2-1) = 1/4, BC 2/(3+2-2) = 2/3.
// Lift: AB 2/9, AC 1/6, BC 2/6.
const pairs: [string, string][] = [
  ['u0', 'A'], ['u0', 'B'],
  ['u1', 'A'], ['u1', 'B'], ['u1', 'C'],
  ['u2', 'B'], ['u2', 'C'],
  ['u3', 'A'],
]
const small = tableFromInteractions(pairs.map(([user, item]) => ({ user, item })))

describe('SAR similarity', () => {
  it('computes jaccard by default', () => {
    const m = fitSar(small)
    expect(m.similarity(0, 1)).toBeCloseTo(1 / 2, 6)
    expect(m.similarity(0, 2)).toBeCloseTo(1 / 4, 6)
    expect(m.similarity(2, 1)).toBeCloseTo(2 / 3, 6)
    expect(m.similarity(1, 1)).toBe(1)
  })

  it('computes lift and raw co-occurrence', () => {
    const lift = fitSar(small, { similarity: 'lift' })
    expect(lift.similarity(0, 1)).toBeCloseTo(2 / 9, 6)
    expect(lift.similarity(1, 2)).toBeCloseTo(1 / 3, 6)
    const counts = fitSar(small, { similarity: 'cooccurrence' })
    expect([0, 1, 2].map((j) => counts.similarity(0, j))).toEqual([3, 2, 1])
  })

  it('drops co-occurrences below the threshold', () => {
    const m = fitSar(small, { threshold: 2 })
    expect(m.similarity(0, 2)).toBe(0)
    expect(m.similarity(0, 1)).toBeCloseTo(1 / 2, 6)
  })

  it('refuses bad options', () => {
    expect(() => fitSar(small, { threshold: 0 })).toThrow(AppError)
    expect(() => fitSar(small, { similarity: 'cosine' as SarSimilarity })).toThrow(/similarity/)
    expect(() => fitSar(small, { maxItems: 2 })).toThrow(/limit is 2 items/)
  })
})

describe('SAR scores and recommendations', () => {
  it('scores affinity × similarity and removes seen items', () => {
    const m = fitSar(small)
    const out = new Float64Array(3)
    m.scoreUser(3, out) // u3 has A with rating 1: the scores are row A.
    expect([...out].map((x) => Number(x.toFixed(6)))).toEqual([1, 0.5, 0.25])
    expect([...m.recommend(3, 5)]).toEqual([1, 2])
    // u0 has A and B: only C is left, scored 1/4 + 2/3.
    m.scoreUser(0, out)
    expect(out[2]).toBeCloseTo(1 / 4 + 2 / 3, 6)
    expect([...m.recommend(0, 5)]).toEqual([2])
    expect([...m.recommend(1, 5)]).toEqual([])
  })

  it('weights affinity by rating and sums repeated events', () => {
    const t = tableFromInteractions([
      { user: 'a', item: 'x', rating: 2 },
      { user: 'a', item: 'x', rating: 3 },
      { user: 'a', item: 'y', rating: 1 },
    ])
    const m = fitSar(t)
    expect([...m.affinity.vals]).toEqual([5, 1])
  })

  it('decays affinity by half per half-life, to the latest training event', () => {
    const day = 86_400
    const t = tableFromInteractions([
      { user: 'a', item: 'x', rating: 4, timestamp: 10 * day },
      { user: 'a', item: 'y', rating: 4, timestamp: 8 * day },
      { user: 'b', item: 'x', rating: 1, timestamp: 11 * day },
    ])
    // Latest is day 11: x is 1 day old (4 → 2), y 3 days old (4 → 0.5).
    const m = fitSar(t, { halfLifeDays: 1 })
    expect([...m.affinity.vals]).toEqual([2, 0.5, 1])
    const later = fitSar(t, { halfLifeDays: 2, now: 12 * day })
    expect(later.affinity.vals[0]).toBeCloseTo(4 * 0.5, 12)
    // Events after `now` keep their full weight.
    expect(fitSar(t, { halfLifeDays: 1, now: 9 * day }).affinity.vals[0]).toBe(4)
  })

  it('never recommends items absent from training, nor anything to a cold user', () => {
    const all = tableFromInteractions([...pairs.map(([user, item]) => ({ user, item })), { user: 'u3', item: 'D' }, { user: 'u9', item: 'A' }])
    const train = selectRows(all, [0, 1, 2, 3, 4, 5, 6, 7]) // D and u9 only in the dictionary
    const m = fitSar(train)
    expect([...m.recommend(3, 10)]).toEqual([1, 2])
    expect([...m.recommend(all.users.indexOf('u9'), 10)]).toEqual([])
  })

  it('breaks ties by the lower item index', () => {
    const t = tableFromInteractions([
      { user: 'a', item: 'x' }, { user: 'a', item: 'p' }, { user: 'a', item: 'q' },
      { user: 'b', item: 'x' },
    ])
    expect([...fitSar(t).recommend(1, 2)]).toEqual([1, 2])
  })
})

/** Dense, obviously correct SAR scores to compare against. */
function referenceScores(t: InteractionTable, kind: SarSimilarity, halfLifeDays: number): number[][] {
  const nu = t.users.length
  const ni = t.items.length
  const latest = Math.max(...t.timestamp)
  const A = Array.from({ length: nu }, () => new Array<number>(ni).fill(0))
  const B = Array.from({ length: nu }, () => new Array<number>(ni).fill(0))
  for (let r = 0; r < t.length; r++) {
    const decay = halfLifeDays ? Math.min(1, 0.5 ** ((latest - t.timestamp[r]!) / (halfLifeDays * 86_400))) : 1
    A[t.user[r]!]![t.item[r]!]! += t.rating[r]! * decay
    B[t.user[r]!]![t.item[r]!] = 1
  }
  const C = Array.from({ length: ni }, (_, i) => Array.from({ length: ni }, (_, j) => B.reduce((s, row) => s + row[i]! * row[j]!, 0)))
  const S = C.map((row, i) =>
    row.map((c, j) => {
      if (c === 0 || kind === 'cooccurrence') return c
      return kind === 'jaccard' ? c / (C[i]![i]! + C[j]![j]! - c) : c / (C[i]![i]! * C[j]![j]!)
    }),
  )
  return A.map((a) => S[0]!.map((_, i) => a.reduce((s, x, j) => s + x * S[j]![i]!, 0)))
}

describe('SAR against a dense reference', () => {
  // Items 0-5 are held by everyone (dense rows); each later item by one user (sparse rows).
  const rows: Interaction[] = []
  for (let u = 0; u < 24; u++) {
    for (let i = 0; i < 6; i++) if ((u + i) % 3 !== 0) rows.push({ user: `u${u}`, item: `i${i}`, rating: 1 + ((u * i) % 5), timestamp: 1e6 + u * 86_400 + i })
    rows.push({ user: `u${u}`, item: `t${u}`, rating: 3, timestamp: 1e6 + ((u * 7919) % 86_400) })
  }
  const mixed = tableFromInteractions(rows)
  const synthetic = generateSyntheticInteractions({ users: 60, items: 40, perUser: 8, seed: 5 })

  for (const [name, t] of [['mixed dense and sparse rows', mixed], ['synthetic', synthetic]] as const) {
    for (const kind of ['jaccard', 'lift', 'cooccurrence'] as const) {
      for (const halfLifeDays of [0, 7]) {
        it(`matches on ${name}, ${kind}, half-life ${halfLifeDays}`, () => {
          const m = fitSar(t, { similarity: kind, halfLifeDays })
          const ref = referenceScores(t, kind, halfLifeDays)
          const out = new Float64Array(t.items.length)
          for (let u = 0; u < t.users.length; u++) {
            m.scoreUser(u, out)
            for (let i = 0; i < out.length; i++) expect(out[i]).toBeCloseTo(ref[u]![i]!, 4)
          }
        })
      }
    }
  }
})
