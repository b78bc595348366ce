import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { mainThreadProfile, summarizeProfile } from './cpu-profile.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-profile-'))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, url, scriptId: '0', lineNumber: 0, columnNumber: 0 }, children })

/**
 * root ─ (idle)
 *      ─ handler (app/route.js) ─ rankModules (recommend/layout.rank.js) ─ hash (node:crypto)
 *                               ─ writev
 */
function writeProfile(name: string, samples: number[], deltas: number[]) {
  const nodes = [frame(1, '(root)', '', [2, 3]), frame(2, '(idle)', ''), frame(3, 'handler', 'file:///srv/app/route.js', [4, 6]), frame(4, 'rankModules', 'file:///srv/recommend/layout.rank.js', [5]), frame(5, 'hash', 'node:crypto'), frame(6, 'writev', '')]
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify({ nodes, startTime: 1_000_000, endTime: 2_000_000, samples, timeDeltas: deltas }))
  return file
}

const groups = [
  { name: 'sending', match: (fn: string) => fn === 'writev' },
  { name: 'ranking', match: (_fn: string, file: string) => file.includes('layout.rank') },
]

describe('summarizeProfile', () => {
  it('gives each sample to the innermost group on its stack, and what none matches to other', () => {
    // Samples at 1.0001 s (idle), then hash, writev, handler, hash: each lasts until the next.
    const file = writeProfile('CPU.1.2.777.0.001.cpuprofile', [2, 5, 6, 3, 5], [100, 1000, 2000, 4000, 8000, 0])
    const s = summarizeProfile(file, [[0, 3_000_000]], groups)
    expect(s.idleMs).toBe(1)
    // hash under rankModules counts as ranking: 2 ms + the last sample's 0.
    expect(s.groups).toEqual({ ranking: 2, sending: 4, other: 8 })
    expect(s.totalMs).toBe(15)
  })

  it('counts only samples inside the stretches', () => {
    const file = writeProfile('CPU.1.2.778.0.001.cpuprofile', [2, 5, 6, 3, 5], [100, 1000, 2000, 4000, 8000, 0])
    // The samples fall at 1_000_100, 1_001_100, 1_003_100, 1_007_100 and 1_015_100 µs.
    const s = summarizeProfile(file, [[1_001_000, 1_004_000]], groups)
    expect(s).toEqual({ totalMs: 6, idleMs: 0, groups: { ranking: 2, sending: 4, other: 0 } })
  })

  it('finds the main thread’s profile of a process, not a worker’s or another process’s', () => {
    writeProfile('CPU.1.2.779.1.002.cpuprofile', [2], [0])
    expect(mainThreadProfile(dir, 779)).toBeUndefined()
    expect(mainThreadProfile(dir, 777)).toBe(path.join(dir, 'CPU.1.2.777.0.001.cpuprofile'))
  })
})
