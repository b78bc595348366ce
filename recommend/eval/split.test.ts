import { describe, expect, it } from 'vitest'
import { AppError } from '../../core/errors.js'
import { stratifiedSplit, timeSplit } from './split.js'
import { tableFromInteractions, tableRows, type Interaction, type InteractionTable } from './table.js'

/** User `u<n>` with n rows, for n in `sizes`. */
function usersWithCounts(sizes: number[]): InteractionTable {
  const rows: Interaction[] = []
  for (const n of sizes) for (let i = 0; i < n; i++) rows.push({ user: `u${n}`, item: `i${i}`, timestamp: i })
  return tableFromInteractions(rows)
}

function countByUser(t: InteractionTable): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of tableRows(t)) out[r.user] = (out[r.user] ?? 0) + 1
  return out
}

const key = (r: { user: string; item: string }) => `${r.user}/${r.item}`

describe('stratifiedSplit', () => {
  it('puts floor(n × ratio) of each user’s rows in train, as rank / count <= ratio does', () => {
    const { train, test } = stratifiedSplit(usersWithCounts([1, 2, 3, 4, 5, 10, 20]))
    expect(countByUser(train)).toEqual({ u2: 1, u3: 2, u4: 3, u5: 3, u10: 7, u20: 15 })
    expect(countByUser(test)).toEqual({ u1: 1, u2: 1, u3: 1, u4: 1, u5: 2, u10: 3, u20: 5 })
  })

  it('partitions the rows: disjoint, complete, and sharing the parent’s indices', () => {
    const table = usersWithCounts([7, 9, 12])
    const { train, test } = stratifiedSplit(table, { seed: 3 })
    const a = tableRows(train).map(key)
    const b = tableRows(test).map(key)
    expect(new Set([...a, ...b]).size).toBe(table.length)
    expect(a.length + b.length).toBe(table.length)
    expect(train.items).toBe(table.items)
    expect(test.users).toBe(table.users)
  })

  it('is deterministic for a seed and changes with it', () => {
    const table = usersWithCounts([40, 40, 40])
    const a = tableRows(stratifiedSplit(table, { seed: 1 }).test).map(key)
    expect(tableRows(stratifiedSplit(table, { seed: 1 }).test).map(key)).toEqual(a)
    expect(tableRows(stratifiedSplit(table, { seed: 2 }).test).map(key)).not.toEqual(a)
  })

  it('draws each user’s test rows at random rather than by position', () => {
    const { test } = stratifiedSplit(usersWithCounts([400]), { seed: 11 })
    const positions = tableRows(test).map((r) => Number(r.item.slice(1)))
    const mean = positions.reduce((s, x) => s + x, 0) / positions.length
    expect(positions.length).toBe(100)
    expect(mean).toBeGreaterThan(150)
    expect(mean).toBeLessThan(250)
  })

  it('honours another ratio', () => {
    const { train } = stratifiedSplit(usersWithCounts([10, 3]), { ratio: 0.5 })
    expect(countByUser(train)).toEqual({ u10: 5, u3: 1 })
  })

  it('drops groups below minRating, and can stratify by item instead', () => {
    const { train, test } = stratifiedSplit(usersWithCounts([2, 5]), { minRating: 3 })
    expect(train.length + test.length).toBe(5)
    expect(Object.keys(countByUser(train))).toEqual(['u5'])

    const byItem = stratifiedSplit(usersWithCounts([4, 4, 4, 4]), { filterBy: 'item' })
    const trainPerItem: Record<string, number> = {}
    for (const r of tableRows(byItem.train)) trainPerItem[r.item] = (trainPerItem[r.item] ?? 0) + 1
    expect(trainPerItem).toEqual({ i0: 3, i1: 3, i2: 3, i3: 3 })
  })

  it('refuses a ratio outside (0, 1) and a bad minRating', () => {
    const t = usersWithCounts([3])
    expect(() => stratifiedSplit(t, { ratio: 1 })).toThrow(AppError)
    expect(() => stratifiedSplit(t, { ratio: 0 })).toThrow(/ratio/)
    expect(() => stratifiedSplit(t, { minRating: 0 })).toThrow(/minRating/)
  })
})

describe('timeSplit', () => {
  const table = tableFromInteractions([
    { user: 'a', item: 'x', timestamp: 100 },
    { user: 'a', item: 'y', timestamp: 200 },
    { user: 'b', item: 'x', timestamp: 199 },
    { user: 'b', item: 'z', timestamp: 300 },
  ])

  it('sends rows before the cut to train and rows at or after it to test', () => {
    const { train, test } = timeSplit(table, { cut: 200 })
    expect(tableRows(train).map(key)).toEqual(['a/x', 'b/x'])
    expect(tableRows(test).map(key)).toEqual(['a/y', 'b/z'])
  })

  it('takes a Date as the cut', () => {
    const { train } = timeSplit(table, { cut: new Date(250_000) })
    expect(train.length).toBe(3)
  })

  it('refuses a cut that is not an instant', () => {
    expect(() => timeSplit(table, { cut: Number.NaN })).toThrow(AppError)
  })
})
