import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatReport, runEvaluation } from './evaluate.run.js'
import { generateSyntheticInteractions } from './synthetic.js'
import { tableRows } from './table.js'

describe('runEvaluation (qianmian recommend evaluate)', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qm-eval-run-'))
  })
  afterAll(async () => rm(dir, { recursive: true, force: true }))

  it('evaluates a u.data-style file: SAR, decayed SAR, EASE, the served model and popularity, EASE above popularity', async () => {
    const t = generateSyntheticInteractions({ users: 150, items: 80, perUser: 14, seed: 8 })
    const path = join(dir, 'u.data')
    await writeFile(path, tableRows(t).map((r) => `${r.user}\t${r.item}\t${r.rating}\t${r.timestamp}`).join('\n') + '\n')
    const lines: string[] = []
    const report = await runEvaluation({ file: path }, { k: 5, halfLife: 30, ease: [300] }, (l) => lines.push(l))
    expect(lines[0]).toContain(`${t.length} interactions, 150 users, 80 items`)
    expect(Object.keys(report.algorithms)).toEqual(['sar', 'sar_decay_30d', 'ease_lambda300', 'served_ease_0.3', 'popularity'])
    expect(report.k).toBe(5)
    expect(report.algorithms.ease_lambda300!.ndcg).toBeGreaterThan(report.algorithms.popularity!.ndcg)
    const table = formatReport(report)
    expect(table).toHaveLength(2 + 5)
    expect(table[2]).toMatch(/^sar\s+0\.\d{4}/)
  })

  it('splits in time when given a cut, and runs synthetic sets', async () => {
    const t = generateSyntheticInteractions({ users: 100, items: 50, perUser: 10, seed: 3 })
    const times = [...t.timestamp].sort((a, b) => a - b)
    const cut = new Date(times[Math.floor(times.length * 0.8)]! * 1000)
    const r = await runEvaluation({ table: t, label: 'events' }, { cut, halfLife: 0 }, () => {})
    expect(r.split.method).toBe('time')
    expect(Object.keys(r.algorithms)).toEqual(['sar', 'served_ease_0.3', 'popularity'])
    const s = await runEvaluation({ synthetic: '100x50' }, { perUser: 10, halfLife: 0 }, () => {})
    expect(s.split.testUsers).toBe(100)
  })

  it('refuses bad options naming the option', async () => {
    await expect(runEvaluation({ synthetic: 'big' }, {}, () => {})).rejects.toThrow(/--synthetic/)
    await expect(runEvaluation({ synthetic: '10x10' }, { k: 0 }, () => {})).rejects.toThrow(/--k/)
    await expect(runEvaluation({ synthetic: '10x10' }, { similarity: 'cosine' }, () => {})).rejects.toThrow(/--similarity/)
    await expect(runEvaluation({ synthetic: '10x10' }, { ease: [-1] }, () => {})).rejects.toThrow(/--ease/)
    await expect(runEvaluation({ synthetic: '10x10' }, { served: ['knn'] }, () => {})).rejects.toThrow(/--served/)
    await expect(runEvaluation({ synthetic: '10x10' }, { maxItems: 0 }, () => {})).rejects.toThrow(/--max-items/)
  })

  it('runs on a data set with more items than EASE can fit: the exact EASE is skipped with a line saying why, the served one is fitted on the most engaged items', async () => {
    // 8,700-odd training items (uniform within 10 taste groups), above EASE's 8,192-item limit.
    // The served fit's limit (2,048 by default, a few seconds of a quiet core) is set lower here
    // so the test stays short on a shared machine; the path is the same.
    const t = generateSyntheticInteractions({ users: 3000, items: 8800, perUser: 20, skew: 0, seed: 5 })
    const lines: string[] = []
    const report = await runEvaluation({ table: t, label: 'wide' }, { halfLife: 0, ease: [300], maxItems: 300 }, (l) => lines.push(l))
    expect(report.split.trainItems).toBeGreaterThan(8192)
    expect(Object.keys(report.algorithms)).toEqual(['sar', 'served_ease_0.3', 'popularity'])
    expect(report.skipped.ease_lambda300).toMatch(/EASE items: \d+ training items need 1\.\d GiB to fit; the limit is 8192 items/)
    const table = formatReport(report)
    expect(table.at(-1)).toMatch(/^ease_lambda300 skipped: EASE items/)
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^served_ease_0\\.3: fitted on the 300 most engaged of ${report.split.trainItems} training items \\(the limit, --max-items 300\\)`)))
    const served = report.algorithms['served_ease_0.3']!
    expect(served.users).toBe(report.algorithms.sar!.users)
    expect(served.coverage).toBeLessThanOrEqual(300 / report.split.trainItems)
    expect(served.ndcg).toBeGreaterThan(report.algorithms.popularity!.ndcg)
  }, 120_000)
})
