import { describe, expect, it } from 'vitest'
import { contiguous, overfullTags, widenBuckets } from './tag.bitmaps.js'

describe('outer buckets widened to the changed values past them', () => {
  const los = [10, 20, 30]
  const his = [20, 30, 30]

  it('values inside the edges change nothing', () => {
    expect(widenBuckets(los, his, { lo: 10, hi: 30 })).toEqual({ edges: { los, his }, widened: [] })
    expect(widenBuckets(los, his, undefined)).toEqual({ edges: { los, his }, widened: [] })
  })

  it('a new maximum turns the exact last bucket [max, max] into [max, next integer)', () => {
    expect(widenBuckets(los, his, { lo: 12, hi: 41 })).toEqual({ edges: { los, his: [20, 30, 42] }, widened: [2] })
  })

  it('a new minimum lowers the first edge', () => {
    expect(widenBuckets(los, his, { lo: -5, hi: 30 })).toEqual({ edges: { los: [-5, 20, 30], his }, widened: [0] })
  })

  it('a fraction past a ranged last bucket gets the next double above it as the edge', () => {
    const r = widenBuckets([0, 50], [50, 98.4], { lo: 1, hi: 98.4 })
    expect(r.widened).toEqual([1])
    expect(r.edges.his[1]).toBeGreaterThan(98.4)
    expect(r.edges.his[1]! - 98.4).toBeLessThan(1e-13)
    expect(widenBuckets([-3.5], [-3.5], { lo: -3.5, hi: -0.25 }).edges.his[0]).toBeGreaterThan(-0.25)
  })

  it('one exact bucket widened both ways holds both extremes', () => {
    expect(widenBuckets([7], [7], { lo: 1, hi: 9 })).toEqual({ edges: { los: [1], his: [10] }, widened: [0] })
  })

  it('values equal to the edges of a ranged last bucket widen it, since hi is outside [lo, hi)', () => {
    expect(widenBuckets([0, 5], [5, 9], { lo: 0, hi: 9 }).edges.his).toEqual([5, 10])
  })
})

describe('buckets meeting edge to edge', () => {
  it('holds for quantile buckets with the maximum alone, and after widening', () => {
    expect(contiguous([1, 5, 9], [5, 9, 9])).toBe(true)
    expect(contiguous([1, 5, 9], [5, 9, 12])).toBe(true)
    expect(contiguous([4], [4])).toBe(true)
  })

  it('fails on a gap, an exact bucket before the last, or edges out of order', () => {
    expect(contiguous([1, 6, 9], [5, 9, 9])).toBe(false)
    expect(contiguous([1, 1, 9], [1, 9, 9])).toBe(false)
    expect(contiguous([5, 1], [1, 5])).toBe(false)
  })
})

describe('a widened bucket weighed against its share', () => {
  const rows = (cards: [value: string, lo: number, n: number][]) => cards.map(([value, lo, cardinality]) => ({ tag: 't', value, lo, cardinality }))
  const grown = (widened: number[], before: number[]) => [{ tag: 't', cards: before, edges: { los: [0, 10, 20, 30] }, widened }]

  it('is rebuilt past twice its share, when it grew', () => {
    // 40 customers over 4 buckets: a share of 10.
    expect(overfullTags(grown([3], [10, 10, 10, 1]), rows([['*', 0, 40], ['[0,10)', 0, 5], ['[10,20)', 10, 5], ['[20,30)', 20, 9], ['[30,41)', 30, 21]]))).toEqual(['t'])
    expect(overfullTags(grown([3], [10, 10, 10, 21]), rows([['*', 0, 40], ['[0,10)', 0, 5], ['[10,20)', 10, 5], ['[20,30)', 20, 9], ['[30,41)', 30, 21]]))).toEqual([])
    expect(overfullTags(grown([3], [10, 10, 10, 1]), rows([['*', 0, 40], ['[0,10)', 0, 10], ['[10,20)', 10, 10], ['[20,30)', 20, 10], ['[30,41)', 30, 10]]))).toEqual([])
  })

  it('a first bucket widened down to 0 is weighed by its own customers, not by the * row (whose lo is 0 too)', () => {
    expect(overfullTags(grown([0], [4, 12, 12, 12]), rows([['*', 0, 40], ['[0,10)', 0, 5], ['[10,20)', 10, 12], ['[20,30)', 20, 12], ['[30,30)', 30, 11]]))).toEqual([])
  })
})
