import { describe, expect, it } from 'vitest'
import { buildUserItemMatrix, topK } from './matrix.js'
import { tableFromInteractions } from './table.js'

describe('buildUserItemMatrix', () => {
  it('sorts each user’s items and adds up repeated pairs', () => {
    const t = tableFromInteractions([
      { user: 'a', item: 'z', rating: 1 },
      { user: 'b', item: 'y', rating: 2 },
      { user: 'a', item: 'y', rating: 3 },
      { user: 'a', item: 'z', rating: 4 },
    ])
    // Users a=0, b=1; items z=0, y=1.
    const m = buildUserItemMatrix(t, (r) => t.rating[r]!)
    expect([...m.rowPtr]).toEqual([0, 2, 3])
    expect([...m.cols]).toEqual([0, 1, 1])
    expect([...m.vals]).toEqual([5, 3, 2])
  })

  it('gives users without rows an empty range', () => {
    const t = tableFromInteractions([{ user: 'a', item: 'x' }, { user: 'b', item: 'x' }])
    const m = buildUserItemMatrix({ ...t, user: t.user.subarray(1), item: t.item.subarray(1), length: 1 })
    expect([...m.rowPtr]).toEqual([0, 0, 1])
  })
})

describe('topK', () => {
  it('returns the highest scores first, ties to the lower index', () => {
    expect([...topK([0.1, 0.5, 0.3, 0.5, 0.9], 3)]).toEqual([4, 1, 3])
    expect([...topK([1, 1, 1, 1], 2)]).toEqual([0, 1])
  })

  it('skips excluded entries and returns fewer when too few remain', () => {
    expect([...topK([-Infinity, 2, -Infinity, 0], 5)]).toEqual([1, 3])
    expect([...topK([3, 2], 0)]).toEqual([])
  })

  it('agrees with a full sort on random scores', () => {
    const scores = Array.from({ length: 500 }, (_, i) => Math.round(Math.abs(Math.sin(i * 12.9898)) * 50))
    const sorted = scores.map((s, i) => [s, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1])
    expect([...topK(scores, 25)]).toEqual(sorted.slice(0, 25).map(([, i]) => i))
  })
})
