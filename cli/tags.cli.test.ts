import { describe, expect, it } from 'vitest'
import type { RunRecord } from '../pipelines/pipeline.runs.js'
import { describeRun } from './tags.cli.js'

/** The line `qianmian pipelines run` and `status` print per run. */
const record = (over: Partial<RunRecord>): RunRecord => ({
  runId: '1796417866170116',
  pipeline: 'tags',
  mode: 'full',
  trigger: 'cli',
  status: 'succeeded',
  attempt: 1,
  startedAt: '2026-12-04 20:57:46.170',
  finishedAt: '2026-12-04 20:57:46.870',
  rows: 0,
  asOf: '2026-12-04 20:57:46.170',
  watermark: '2026-12-04 20:57:46.170',
  error: '',
  details: {},
  ...over,
})

describe('describeRun', () => {
  it('says how many tags a tag run kept, not counting those skipped for a failed input', () => {
    const details = {
      tags: {
        logins_7d: { changed: 0, skipped: true, customers: 20 },
        frequent: { changed: 0, skipped: true, customers: 3 },
        aum_tier: { changed: 0, customers: 20 },
        rfm: { changed: 0, skipped: true, reason: 'reads tag rfm_r, which failed' },
      },
    }
    expect(describeRun(record({ details }))).toBe(
      '1796417866170116  tags  full         succeeded  started 2026-12-04 20:57:46.170  0.7 s  0 values changed  2 tags kept (unchanged inputs)',
    )
    // Nothing kept, or not a tag run: no mention.
    expect(describeRun(record({ details: { tags: { aum_tier: { changed: 3 } } }, rows: 3 }))).toMatch(/3 values changed$/)
    expect(describeRun(record({ pipeline: 'segments', details: { tags: details.tags } }))).not.toContain('kept')
  })
})
