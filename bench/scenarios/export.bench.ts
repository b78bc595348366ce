import { EXPORT_PAGE_KEYS, exportSegment } from '../../segments/segment.members.js'
import type { BenchScenario } from '../harness.js'
import { codeVersion } from '../support.js'

/**
 * A segment's CSV and Arrow exports on the embedded engine (`npm run bench export -- --set customers=N`):
 * N customers, a materialized segment holding all of them; the export read to the end in pages
 * of key ranges (what the route does), then as one query (the baseline), in this process. The
 * embedded engine hands a query's whole result over at once, so the peak RSS growth of each is
 * what an export holds in memory. The paged run goes first: the one-query run may reuse memory
 * the paged run freed, which can only understate its growth.
 */

async function run(tdb: Parameters<typeof exportSegment>[0], format: 'csv' | 'arrow', pageKeys: number) {
  const rss0 = process.memoryUsage().rss
  let peak = rss0
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10)
  const t = performance.now()
  let bytes = 0
  let first = true
  let firstByteMs = 0
  try {
    for await (const chunk of await exportSegment(tdb, 'everyone', format, { pageKeys })) {
      if (first) firstByteMs = performance.now() - t
      first = false
      bytes += (chunk as Buffer).length
      peak = Math.max(peak, process.memoryUsage().rss)
    }
  } finally {
    clearInterval(timer)
  }
  return { seconds: (performance.now() - t) / 1000, firstByteMs, mb: bytes / 2 ** 20, peakGrowthMb: (peak - rss0) / 2 ** 20 }
}

export const scenario: BenchScenario = {
  name: 'export',
  description: "A segment's CSV and Arrow exports on the embedded engine: in pages of key ranges against one query; time, first byte and peak RSS growth",
  async run(ctx) {
    const n = Number(ctx.args.customers ?? 3_000_000)
    const pageKeys = Number(ctx.args.page_keys ?? EXPORT_PAGE_KEYS)
    const sys = ctx.db.system
    const tenant = 1
    await sys.command(
      `INSERT INTO customers (tenant_id, customer_key, customer_no, opened_at, updated_at, deleted)
       SELECT {t:UInt16}, toUInt32(number + 1), concat('C', leftPad(toString(number + 1), 12, '0')), now64(3), now64(3), 0 FROM numbers({n:UInt32})`,
      { t: tenant, n },
    )
    await sys.command(
      `INSERT INTO segment_members (tenant_id, segment_id, build, version, size, keys, built_at)
       SELECT {t:UInt16}, 'everyone', 1, 1, {n:UInt32}, groupBitmapState(toUInt32(number + 1)), now64(3) FROM numbers({n:UInt32})`,
      { t: tenant, n },
    )
    const tdb = ctx.db.forTenant(tenant)
    const figures: Record<string, number> = {}
    const ratios: Record<string, number> = {}
    const notes: string[] = []
    for (const format of ['csv', 'arrow'] as const) {
      const paged = await run(tdb, format, pageKeys)
      const whole = await run(tdb, format, 2 ** 32)
      if (Math.abs(paged.mb - whole.mb) > 1 && format === 'csv') throw new Error(`the paged export wrote ${paged.mb} MB, the single query ${whole.mb} MB`)
      Object.assign(figures, {
        [`${format}_mb`]: paged.mb,
        [`${format}_paged_s`]: paged.seconds,
        [`${format}_paged_first_byte_ms`]: paged.firstByteMs,
        [`${format}_paged_peak_rss_growth_mb`]: paged.peakGrowthMb,
        [`${format}_single_query_s`]: whole.seconds,
        [`${format}_single_query_first_byte_ms`]: whole.firstByteMs,
        [`${format}_single_query_peak_rss_growth_mb`]: whole.peakGrowthMb,
      })
      ratios[`${format}_paged_time_over_single`] = paged.seconds / whole.seconds
      ratios[`${format}_paged_memory_over_single`] = paged.peakGrowthMb / whole.peakGrowthMb
      notes.push(
        `${format}: ${n.toLocaleString('en-US')} members, ${paged.mb.toFixed(1)} MB. In pages of ${pageKeys.toLocaleString('en-US')} keys: ${paged.seconds.toFixed(2)} s, first byte after ${paged.firstByteMs.toFixed(0)} ms, peak RSS +${paged.peakGrowthMb.toFixed(0)} MB. As one query: ${whole.seconds.toFixed(2)} s, first byte after ${whole.firstByteMs.toFixed(0)} ms, peak RSS +${whole.peakGrowthMb.toFixed(0)} MB.`,
      )
    }
    notes.push('Each format ran paged first, then as one query: the one-query run may have reused memory the paged run freed. Arrow ran after CSV in the same process, so its RSS growth starts from the high-water mark the CSV runs left and understates both of its runs. CSV wrote the same bytes both ways (checked); Arrow differs only in batch framing.')
    return { params: { customers: n, page_keys: pageKeys, code: codeVersion() }, figures, ratios, notes }
  },
}
