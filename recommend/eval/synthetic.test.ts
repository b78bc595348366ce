import { describe, expect, it } from 'vitest'
import { generateSyntheticInteractions } from './synthetic.js'
import { tableRows } from './table.js'

describe('generateSyntheticInteractions', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = generateSyntheticInteractions({ users: 30, items: 50, seed: 1 })
    const b = generateSyntheticInteractions({ users: 30, items: 50, seed: 1 })
    const c = generateSyntheticInteractions({ users: 30, items: 50, seed: 2 })
    expect(tableRows(b)).toEqual(tableRows(a))
    expect(tableRows(c)).not.toEqual(tableRows(a))
  })

  it('gives each user distinct items, between half and 1.5 times the mean count', () => {
    const t = generateSyntheticInteractions({ users: 200, items: 500, perUser: 20, seed: 3 })
    const perUser = new Map<string, Set<string>>()
    for (const r of tableRows(t)) {
      const s = perUser.get(r.user) ?? new Set()
      expect(s.has(r.item)).toBe(false)
      s.add(r.item)
      perUser.set(r.user, s)
      expect(r.rating).toBeGreaterThanOrEqual(1)
      expect(r.rating).toBeLessThanOrEqual(5)
    }
    expect(perUser.size).toBe(200)
    for (const s of perUser.values()) {
      expect(s.size).toBeGreaterThanOrEqual(10)
      expect(s.size).toBeLessThanOrEqual(30)
    }
  })

  it('draws most of a user’s items from their own group', () => {
    const t = generateSyntheticInteractions({ users: 100, items: 400, clusters: 4, focus: 0.9, seed: 4 })
    let own = 0
    for (const r of tableRows(t)) if (Number(r.item.slice(1)) % 4 === Number(r.user.slice(1)) % 4) own++
    expect(own / t.length).toBeGreaterThan(0.85)
  })

  it('stops on a catalogue too small for the wanted count', () => {
    const t = generateSyntheticInteractions({ users: 3, items: 6, perUser: 50, seed: 5 })
    expect(t.length).toBeLessThanOrEqual(9)
  })
})
