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

  it('evaluates a u.data-style file: SAR, decayed SAR, EASE and popularity, EASE above popularity', async () => {
    const t = generateSyntheticInteractions({ users: 150, items: 80, perUser: 14, seed: 8 })
    const path = join(dir, 'u.data')
    await writeFile(path, tableRows(t).map((r) => `${r.user}\t${r.item}\t${r.rating}\t${r.timestamp}`).join('\n') + '\n')
    const lines: string[] = []
    const report = await runEvaluation({ file: path }, { k: 5, halfLife: 30, ease: [300] }, (l) => lines.push(l))
    expect(lines[0]).toContain(`${t.length} interactions, 150 users, 80 items`)
    expect(Object.keys(report.algorithms)).toEqual(['sar', 'sar_decay_30d', 'ease_lambda300', 'popularity'])
    expect(report.k).toBe(5)
    expect(report.algorithms.ease_lambda300!.ndcg).toBeGreaterThan(report.algorithms.popularity!.ndcg)
    const table = formatReport(report)
    expect(table).toHaveLength(2 + 4)
    expect(table[2]).toMatch(/^sar\s+0\.\d{4}/)
  })

  it('splits in time when given a cut, and runs synthetic sets', async () => {
    const t = generateSyntheticInteractions({ users: 100, items: 50, perUser: 10, seed: 3 })
    const times = [...t.timestamp].sort((a, b) => a - b)
    const cut = new Date(times[Math.floor(times.length * 0.8)]! * 1000)
    const r = await runEvaluation({ table: t, label: 'events' }, { cut, halfLife: 0 }, () => {})
    expect(r.split.method).toBe('time')
    expect(Object.keys(r.algorithms)).toEqual(['sar', 'popularity'])
    const s = await runEvaluation({ synthetic: '100x50' }, { perUser: 10, halfLife: 0 }, () => {})
    expect(s.split.testUsers).toBe(100)
  })

  it('refuses bad options naming the option', async () => {
    await expect(runEvaluation({ synthetic: 'big' }, {}, () => {})).rejects.toThrow(/--synthetic/)
    await expect(runEvaluation({ synthetic: '10x10' }, { k: 0 }, () => {})).rejects.toThrow(/--k/)
    await expect(runEvaluation({ synthetic: '10x10' }, { similarity: 'cosine' }, () => {})).rejects.toThrow(/--similarity/)
    await expect(runEvaluation({ synthetic: '10x10' }, { ease: [-1] }, () => {})).rejects.toThrow(/--ease/)
  })
})
