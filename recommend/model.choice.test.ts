import { describe, expect, it } from 'vitest'
import { chooseModel, DEFAULT_MODEL, evaluateCandidates, gramFromRows, MIN_TEST_CUSTOMERS, type ChoiceCase } from './model.choice.js'
import { modelName } from './model.fit.js'

/** The per-bank choice on hand-made co-occurrence and test customers, every figure known. */

// Items a..d: a and b always together (5 customers), c and d together (3), d alone once more.
const items = ['a', 'b', 'c', 'd']
const gram = gramFromRows(items, [
  { item: 'a', others: ['a', 'b'], co: [5, 5], users: 9 },
  { item: 'b', others: ['a', 'b'], co: [5, 5] },
  { item: 'c', others: ['c', 'd'], co: [3, 3] },
  { item: 'd', others: ['c', 'd'], co: [3, 4] },
])
const one = (item: number, relevant: number): ChoiceCase => ({ items: Int32Array.of(item), affinity: Float32Array.of(1), seen: Int32Array.of(item), relevant: Int32Array.of(relevant) })

describe('the model choice', () => {
  it('reads G from per-item rows, with the customers counted', () => {
    expect(gram.users).toBe(9)
    expect([...gram.co]).toEqual([5, 5, 0, 0, 5, 5, 0, 0, 0, 0, 3, 3, 0, 0, 3, 4])
  })

  it('scores every candidate and popularity through the serving code: the item used together comes first', () => {
    // A customer of a who then used b, and one of c who then used d.
    const ndcg = evaluateCandidates(gram, [one(0, 1), one(2, 3)])
    expect(Object.keys(ndcg)).toEqual(['ease_0.3', 'ease_0.1', 'ease_1', 'ease_3', 'sar', 'popularity'])
    for (const name of ['ease_0.3', 'ease_0.1', 'ease_1', 'ease_3', 'sar']) expect(ndcg[name], name).toBe(1)
    // Popularity ranks a and b (5 customers), d (4), c (3): b comes first for the customer of a,
    // d third for the customer of c (nDCG ln 2 / ln 4 = 0.5).
    expect(ndcg.popularity).toBeCloseTo((1 + Math.log(2) / Math.log(4)) / 2, 10)
  })

  it('chooses the best nDCG, the earlier candidate on a tie, and the default on too few customers', () => {
    expect(chooseModel({ 'ease_0.3': 0.2, 'ease_0.1': 0.21, ease_1: 0.1, sar: 0.3, popularity: 0.5 }, 100)).toMatchObject({ model: 'sar', chosenBy: 'evaluation', testCustomers: 100 })
    expect(chooseModel({ 'ease_0.3': 0.3, 'ease_0.1': 0.3, ease_1: 0.1, sar: 0.3 }, 100).model).toBe('ease_0.3')
    expect(chooseModel({ 'ease_0.3': 0.1, sar: 0.9 }, MIN_TEST_CUSTOMERS - 1)).toMatchObject({ model: modelName(DEFAULT_MODEL), chosenBy: 'too_few_test_customers' })
  })
})
