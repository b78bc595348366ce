import { describe, expect, it } from 'vitest'
import { nextInsert, type FlushPolicy, type WriterQueue } from './flush-policy.js'

/** Every case of when the writer's next insert starts, decided without an engine or a clock. */

const policy: FlushPolicy = { flushRows: 1000, flushMs: 200, gapMs: 50 }
/** Now is 1,000 ms; the last insert started at 900 (the gap passed at 950); the oldest event came at 990. */
const NOW = 1000
const base: WriterQueue = { closed: false, waiting: 10, oldestAt: 990, lastStart: 900, incoming: 0 }

describe('nextInsert', () => {
  it.each<[string, Partial<WriterQueue>, ReturnType<typeof nextInsert>]>([
    ['a lone request to an idle writer starts at once', { lastStart: -Infinity }, { start: 'idle' }],
    ['nothing more on its way, the gap passed: at once', {}, { start: 'idle' }],
    ['nothing more on its way, inside the gap: when the gap passes', { lastStart: 980 }, { at: 1030 }],
    ['requests on their way, inside flushMs: wait for them, at most until flushMs', { incoming: 2 }, { at: 1190 }],
    ['requests on their way, but a tenth of flushRows waits and the gap passed: at once', { incoming: 2, waiting: 100 }, { start: 'batch' }],
    ['a tenth of flushRows inside the gap, more on their way: the gap holds it', { incoming: 2, waiting: 100, lastStart: 980 }, { at: 1190 }],
    ['flushRows waiting: at once, even inside the gap and with more on their way', { incoming: 2, waiting: 1000, lastStart: 999 }, { start: 'rows' }],
    ['the oldest event waited flushMs: at once, whatever else', { incoming: 5, lastStart: 999, oldestAt: 800 }, { start: 'waited' }],
    ['flushMs comes before the gap ends: flushMs decides', { lastStart: 999, oldestAt: 850 }, { at: 1049 }],
    ['closing: at once', { closed: true, incoming: 3, lastStart: 999 }, { start: 'closing' }],
  ])('%s', (_name, over, expected) => {
    expect(nextInsert(policy, { ...base, ...over }, NOW)).toEqual(expected)
  })

  it('with a gap of 0, inserts follow each other as soon as nothing more is on its way', () => {
    expect(nextInsert({ ...policy, gapMs: 0 }, { ...base, lastStart: NOW }, NOW)).toEqual({ start: 'idle' })
    expect(nextInsert({ ...policy, gapMs: 0 }, { ...base, lastStart: NOW, incoming: 1 }, NOW)).toEqual({ at: 1190 })
  })
})
