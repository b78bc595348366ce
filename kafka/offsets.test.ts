import { describe, expect, it } from 'vitest'
import { committableOffset, PartitionOffsets } from './offsets.js'

describe('committableOffset', () => {
  it('commits nothing until the first received offset is done', () => {
    expect(committableOffset([], [])).toBeUndefined()
    expect(committableOffset(['5', '6', '7'], ['6', '7'])).toBeUndefined()
  })
  it('commits up to the first gap, as next-offset-to-read', () => {
    expect(committableOffset(['5', '6', '7', '8'], ['5', '6', '8'])).toBe('7')
    expect(committableOffset(['5', '6', '7'], ['7', '5', '6'])).toBe('8')
  })
  it('follows the offsets received, not integers (compaction and transaction markers leave holes)', () => {
    expect(committableOffset(['10', '12', '15'], ['10', '12', '15'])).toBe('16')
    expect(committableOffset(['10', '12', '15'], ['10', '15'])).toBe('11')
  })
  it('ignores completions of offsets never received', () => {
    expect(committableOffset(['3', '4'], ['1', '2', '4'])).toBeUndefined()
  })
  it('handles offsets past 2^53', () => {
    const big = 2n ** 60n
    expect(committableOffset([big.toString(), (big + 1n).toString()], [big.toString()])).toBe((big + 1n).toString())
  })
})

describe('PartitionOffsets', () => {
  it('moves on as batches complete out of order, and forgets what it committed', () => {
    const p = new PartitionOffsets()
    p.received(['0', '1', '2'])
    p.received(['3', '4'])
    p.completed(['3', '4'])
    expect(p.takeCommittable()).toBeUndefined()
    p.completed(['0', '1', '2'])
    expect(p.takeCommittable()).toBe('5')
    expect(p.outstanding).toBe(0)
    expect(p.takeCommittable()).toBeUndefined()
  })
  it('refuses offsets that go backwards', () => {
    const p = new PartitionOffsets()
    p.received(['7'])
    expect(() => p.received(['7'])).toThrow(/ascend/)
  })
  it('agrees with a brute-force model on random schedules', () => {
    let seed = 7
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    for (let run = 0; run < 200; run++) {
      const received: bigint[] = []
      let o = BigInt(Math.floor(rnd() * 100))
      for (let i = 0; i < 1 + Math.floor(rnd() * 30); i++) received.push((o += 1n + BigInt(Math.floor(rnd() * 3))))
      const done = received.filter(() => rnd() < 0.7)
      let expected: string | undefined
      for (const r of received) {
        if (!done.includes(r)) break
        expected = (r + 1n).toString()
      }
      expect(committableOffset(received, done)).toBe(expected)
    }
  })
})
