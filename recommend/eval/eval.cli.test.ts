import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runEvalCli } from './eval.cli.js'
import { generateSyntheticInteractions } from './synthetic.js'
import { tableRows } from './table.js'

describe('eval CLI', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qm-eval-cli-'))
  })
  afterAll(async () => rm(dir, { recursive: true, force: true }))

  it('evaluates a u.data-style file and prints the report as JSON', async () => {
    const t = generateSyntheticInteractions({ users: 120, items: 80, perUser: 12, seed: 8 })
    const path = join(dir, 'u.data')
    await writeFile(path, tableRows(t).map((r) => `${r.user}\t${r.item}\t${r.rating}\t${r.timestamp}`).join('\n') + '\n')
    const lines: string[] = []
    const report = await runEvalCli([path, '--k', '5', '--half-life', '30'], (l) => lines.push(l))
    expect(lines[0]).toContain(`read ${t.length} rows, 120 users, 80 items`)
    expect(Object.keys(report.algorithms)).toEqual(['sar', 'sar_decay30d', 'popularity'])
    const printed = JSON.parse(lines[1]!) as typeof report
    expect(printed.k).toBe(5)
    expect(printed.algorithms.sar!.ndcg).toBeCloseTo(report.algorithms.sar!.ndcg, 4)
  })

  it('generates synthetic data on request and leaves decay out with a half-life of 0', async () => {
    const report = await runEvalCli(['--synthetic', '100x50', '--per-user', '10', '--half-life', '0'], () => {})
    expect(Object.keys(report.algorithms)).toEqual(['sar', 'popularity'])
    expect(report.split.testUsers).toBe(100)
  })

  it('explains its usage on bad arguments', async () => {
    await expect(runEvalCli([], () => {})).rejects.toThrow(/usage/)
    await expect(runEvalCli(['--synthetic', 'big'], () => {})).rejects.toThrow(/USERSxITEMS/)
    await expect(runEvalCli(['x', '--k', 'ten'], () => {})).rejects.toThrow(/--k must be a number/)
  })
})
