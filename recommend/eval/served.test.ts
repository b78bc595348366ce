import { describe, expect, it } from 'vitest'
import { fitEase } from './ease.js'
import { evaluateInteractions } from './evaluate.js'
import { fitSar } from './sar.js'
import { fitServed } from './served.js'
import { generateSyntheticInteractions } from './synthetic.js'

/**
 * The served code path (model.fit.ts and model.score.ts through eval/served.ts) against the
 * reference implementations of the evaluation: with nothing cut (every item of a user, every
 * neighbour of an item) it must rank as they do, so the figures it reports are the models'.
 */

const data = generateSyntheticInteractions({ users: 300, items: 120, perUser: 15, clusters: 6, seed: 2 })
const whole = { perCustomer: 10_000, neighbours: 10_000 }

describe('the served model in the evaluation', () => {
  it('ranks as the reference SAR and EASE when nothing is cut, and loses to them when lists are cut short', () => {
    const r = evaluateInteractions(data, {
      seed: 3,
      algorithms: {
        sar: (t) => fitSar(t),
        servedSar: (t) => fitServed(t, { spec: { kind: 'sar' }, ...whole }),
        // 300 training users × 1.0 = λ 300.
        ease: (t) => fitEase(t, { lambda: 300 }),
        servedEase: (t) => fitServed(t, { spec: { kind: 'ease', lambdaPerUser: 1 }, ...whole }),
        servedEaseShort: (t) => fitServed(t, { spec: { kind: 'ease', lambdaPerUser: 1 }, perCustomer: 3, neighbours: 5 }),
      },
    })
    const a = r.algorithms
    expect(a.servedSar!.users).toBe(300)
    expect(a.servedSar!.ndcg).toBeCloseTo(a.sar!.ndcg, 3)
    expect(a.servedSar!.precision).toBeCloseTo(a.sar!.precision, 3)
    expect(a.servedEase!.ndcg).toBeCloseTo(a.ease!.ndcg, 3)
    expect(a.servedEase!.precision).toBeCloseTo(a.ease!.precision, 3)
    expect(a.servedEaseShort!.ndcg).toBeLessThan(a.servedEase!.ndcg - 0.01)
  })

  it('fits only the most engaged items past its limit, and never recommends the others', () => {
    const m = fitServed(data, { spec: { kind: 'ease' }, maxItems: 20 })
    expect(m.model.fitted).toBe(20)
    expect(m.leftOut).toBe(data.items.length - 20)
    const users = new Float64Array(data.items.length)
    const pairs = new Set<string>()
    for (let r = 0; r < data.length; r++) {
      const pair = `${data.user[r]} ${data.item[r]}`
      if (pairs.has(pair)) continue
      pairs.add(pair)
      users[data.item[r]!]!++
    }
    const cutoff = [...users].sort((x, y) => y - x)[19]!
    for (let u = 0; u < 50; u++) for (const i of m.recommend(u, 10)) expect(users[i]!).toBeGreaterThanOrEqual(cutoff)
  })
})
