import { describe, expect, it } from 'vitest'
import { fitPopularity } from './popularity.js'
import { selectRows, tableFromInteractions } from './table.js'

// Items by training count: y 3, x 2, z 2, w 1 (x before z on the tie: lower index).
const all = tableFromInteractions([
  { user: 'a', item: 'x' }, { user: 'b', item: 'x' },
  { user: 'a', item: 'y' }, { user: 'b', item: 'y' }, { user: 'c', item: 'y' },
  { user: 'c', item: 'z' }, { user: 'd', item: 'z' },
  { user: 'd', item: 'w' },
  { user: 'e', item: 'v' }, // only in the dictionary: left out of train below
])
const train = selectRows(all, [0, 1, 2, 3, 4, 5, 6, 7])
const id = (name: string) => all.items.indexOf(name)

describe('popularity baseline', () => {
  it('ranks items by training interactions, ties to the lower index', () => {
    const m = fitPopularity(train)
    expect([...m.ranking.slice(0, 4)].map((i) => all.items[i])).toEqual(['y', 'x', 'z', 'w'])
    expect(m.counts[id('y')]).toBe(3)
  })

  it('removes what the user had in training', () => {
    const m = fitPopularity(train)
    expect([...m.recommend(all.users.indexOf('a'), 2)].map((i) => all.items[i])).toEqual(['z', 'w'])
    expect([...m.recommend(all.users.indexOf('d'), 10)].map((i) => all.items[i])).toEqual(['y', 'x'])
  })

  it('serves a cold user the overall top k, never an item unseen in training', () => {
    const m = fitPopularity(train)
    expect([...m.recommend(all.users.indexOf('e'), 10)].map((i) => all.items[i])).toEqual(['y', 'x', 'z', 'w'])
    expect([...m.recommend(-1, 1)]).toEqual([id('y')])
  })

  it('counts repeated events each time', () => {
    const t = tableFromInteractions([{ user: 'a', item: 'p' }, { user: 'a', item: 'p' }, { user: 'b', item: 'q' }])
    expect([...fitPopularity(t).counts]).toEqual([2, 1])
  })
})
