import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createVitest } from 'vitest/node'
import { openTestEngine } from './engine.js'
import { DURABILITY_FILES, KAFKA_FILES, LANES, UNIT_FILES, parallelWorkers } from './test-lanes.js'

/**
 * The lanes drop no test file and run none twice: every *.test.ts of the checkout (tracked or
 * new, not ignored) is in exactly one vitest project, as vitest itself resolves vitest.config.ts.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

function testFilesOfCheckout(): string[] {
  const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', '*.test.ts'], { cwd: root, encoding: 'utf8' })
  // A file deleted in the working tree but still in the index is not a test file any more.
  return out.split('\n').filter((f) => f && fs.existsSync(path.join(root, f))).sort()
}

async function projectsByFile(): Promise<Map<string, string[]>> {
  const vitest = await createVitest('test', { root, watch: false, reporters: [] })
  try {
    const byFile = new Map<string, string[]>()
    for (const spec of await vitest.globTestSpecifications()) {
      const file = path.relative(root, spec.moduleId)
      byFile.set(file, [...(byFile.get(file) ?? []), spec.project.name])
    }
    return byFile
  } finally {
    await vitest.close()
  }
}

const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8')
// This file names every marker below without using any of them.
const SELF = 'test/test-lanes.test.ts'

describe('test lanes', () => {
  it('every test file of the checkout runs in exactly one lane, and the lanes run nothing else', async () => {
    const files = testFilesOfCheckout()
    expect(files.length).toBeGreaterThan(100)
    const byFile = await projectsByFile()
    const wrong = files.filter((f) => byFile.get(f)?.length !== 1).map((f) => `${f}: ${JSON.stringify(byFile.get(f) ?? [])}`)
    expect(wrong, 'files in no lane or in several').toEqual([])
    expect([...byFile.keys()].filter((f) => !files.includes(f)), 'files the lanes run that are not test files of the checkout').toEqual([])
    expect(new Set([...byFile.values()].flat())).toEqual(new Set(LANES))
  })

  it('CI runs every lane, each through its npm script', () => {
    const ci = /for lane in ([a-z ]+); do/.exec(read('.ci/run'))
    expect(ci?.[1]?.split(' '), '.ci/run').toEqual([...LANES])
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts
    for (const lane of LANES) expect(scripts[`test:${lane}`]).toBe(`vitest run --project ${lane}`)
  })

  it('the lanes name only files that exist', () => {
    const paths = [...UNIT_FILES, ...KAFKA_FILES, ...DURABILITY_FILES].filter((f) => !f.includes('*'))
    const missing = paths.filter((f) => !fs.existsSync(path.join(root, f)))
    expect(missing, 'entries of test/test-lanes.ts whose file was moved or removed').toEqual([])
  })

  it('what a file uses decides its lane: a broker is the kafka lane, chromium the browser lane, no engine in the unit lane', async () => {
    const byFile = await projectsByFile()
    const laneOf = (f: string) => byFile.get(f)?.[0]
    const misplaced: string[] = []
    for (const f of testFilesOfCheckout().filter((f) => f !== SELF)) {
      const src = read(f)
      if (/KAFKA_BROKERS/.test(src) && laneOf(f) !== 'kafka') misplaced.push(`${f} reads KAFKA_BROKERS but runs in ${laneOf(f)}`)
      if (/playwright-core/.test(src) && laneOf(f) !== 'browser') misplaced.push(`${f} drives a browser but runs in ${laneOf(f)}`)
    }
    // Fixtures that open an engine are caught when they run (openTestEngine refuses in this lane);
    // these are the ways a test file opens one itself.
    const opensEngine = /\b(openTestEngine|openTestApp|createClickHouse|createChdbConnection|startServerProcess)\(/
    for (const f of [...byFile].filter(([, lanes]) => lanes[0] === 'unit').map(([f]) => f)) {
      if (f !== SELF && opensEngine.test(read(f))) misplaced.push(`${f} opens an engine but runs in unit`)
    }
    expect(misplaced).toEqual([])
  })

  it('in the unit lane (where this file runs) an engine refuses to open, naming the lane to move the file to', async () => {
    expect(process.env.QIANMIAN_TEST_LANE).toBe('unit')
    await expect(openTestEngine()).rejects.toThrow(/unit lane.*engine lane/)
  })

  it('the parallel lanes use every core unless TEST_WORKERS says otherwise, and refuse a bad count', () => {
    expect(parallelWorkers({}, 2)).toBe(2)
    expect(parallelWorkers({ TEST_WORKERS: '' }, 8)).toBe(8)
    expect(parallelWorkers({ TEST_WORKERS: '3' }, 2)).toBe(3)
    for (const bad of ['0', '-1', '1.5', 'two']) expect(() => parallelWorkers({ TEST_WORKERS: bad }, 2)).toThrow(`TEST_WORKERS: expected a positive integer (got "${bad}")`)
  })
})
