import fs from 'node:fs'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { openPromise } from 'yauzl'
import { createMetrics } from '../../core/metrics.js'
import { createPii } from '../../core/pii.js'
import { EVENT_PAGE_ROWS } from '../../privacy/export.archive.js'
import { createExportService } from '../../privacy/export.service.js'
import { createPrivacyTombstones } from '../../privacy/privacy.module.js'
import { EXPORT_PAGE_KEYS, exportSegment } from '../../segments/segment.members.js'
import type { BenchContext, BenchResult, BenchScenario } from '../harness.js'
import { codeVersion } from '../support.js'

/**
 * Part `customer` (`--set part=customer`, `events=N`): one customer's export archive (ZIP) with N
 * events among other customers' events, written to a file as a client would, against the JSON
 * form's largest page (10,000 events) and against one query reading all N event lines at once.
 * Peak RSS growth is sampled every 10 ms and at each chunk. The archive runs first, in a fresh
 * process, so no freed memory of another run hides its growth; the one-query read runs last.
 *
 * Part `segment`: a segment's CSV and Arrow exports on the embedded engine (`npm run bench export -- --set customers=N`):
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

/** Time, first byte and peak RSS growth of a piece of work that reports its bytes as it goes. */
async function measured(work: (chunk: (bytes: number) => void) => Promise<void>) {
  // RSS holds the engine's memory too; the JS heap and buffers are this process's side alone.
  const js = () => {
    const m = process.memoryUsage()
    return m.heapUsed + m.arrayBuffers
  }
  const rss0 = process.memoryUsage().rss
  const js0 = js()
  let peak = rss0
  let peakJs = js0
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss)
    peakJs = Math.max(peakJs, js())
  }
  const timer = setInterval(sample, 10)
  const t = performance.now()
  let bytes = 0
  let firstByteMs = 0
  try {
    await work((n) => {
      if (!bytes) firstByteMs = performance.now() - t
      bytes += n
      sample()
    })
  } finally {
    clearInterval(timer)
  }
  const mb = (b: number) => b / 2 ** 20
  return { seconds: (performance.now() - t) / 1000, firstByteMs, mb: mb(bytes), rssStartMb: mb(rss0), peakGrowthMb: mb(peak - rss0), jsPeakGrowthMb: mb(peakJs - js0) }
}

const PROPS = `concat('{"product_id":"wm-', toString(number % 97), '","amount":', toString(number % 100000 / 10), ',"screen":"home","position":', toString(number % 12), ',"ref":"', lower(hex(MD5(toString(number)))), '"}')`
const CONTEXT = `'{"app":{"version":"5.2.1","build":"5210"},"os":{"name":"Android","version":"13"},"device":{"model":"V2121A"},"locale":"zh-CN","timezone":"Asia/Shanghai"}'`

async function customerArchive(ctx: BenchContext): Promise<BenchResult> {
  const events = Number(ctx.args.events ?? 1_000_000)
  const others = Number(ctx.args.other_events ?? 1_000_000)
  const tenant = 2
  const sys = ctx.db.system
  const say = (s: string) => console.log(`  ${s}`)
  const p = { t: tenant, e: events, o: others }
  // Customer key 1 holds the history (400 days of it); keys 2.. hold the neighbours' events. The
  // views fed by events partition by day, hence the partition limit of the inserts.
  await sys.command(
    `INSERT INTO customers (tenant_id, customer_key, customer_no, opened_at, updated_at, deleted)
     SELECT {t:UInt16}, toUInt32(number + 1), concat('C', leftPad(toString(number + 1), 12, '0')), now64(3), now64(3), 0 FROM numbers(10001)`,
    p,
  )
  await sys.command(`INSERT INTO identities (tenant_id, id_kind, id_value, customer_key, source, created_at) VALUES ({t:UInt16}, 'customer_no', 'C000000000001', 1, 'bench', now64(3))`, p)
  for (const [key, n] of [['1', '{e:UInt64}'], ['number % 10000 + 2', '{o:UInt64}']] as const) {
    await sys.command(
      `INSERT INTO events (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id, properties, context, sent_at, received_at)
       SELECT {t:UInt16}, ${key}, now64(3) - toIntervalMillisecond(intDiv(number * 34560000000, ${n}) + number % 1000), 'track', 'product_viewed',
              concat(toString(${key}), '-', toString(number)), '', '', '', ${PROPS}, ${CONTEXT}, now64(3), now64(3)
       FROM numbers(${n}) SETTINGS max_partitions_per_insert_block = 1000`,
      p,
    )
  }
  // A home screen shown for every tenth event.
  await sys.command(
    `INSERT INTO layout_exposures (tenant_id, customer_key, served_at, screen, experiment, variant, holdout, elder, model_build, modules, items)
     SELECT {t:UInt16}, 1, now64(3) - toIntervalMillisecond(intDiv(number * 34560000000, intDiv({e:UInt64}, 10) + 1)), 'home', '', '', 0, 0, 1,
            ['hero', 'loans', 'wealth'], [concat('p', toString(number % 50)), 'l1', 'w2']
     FROM numbers(intDiv({e:UInt64}, 10)) SETTINGS max_partitions_per_insert_block = 1000`,
    p,
  )
  say(`seeded ${events.toLocaleString('en-US')} events and ${(events / 10).toLocaleString('en-US')} home screens shown of one customer, and ${others.toLocaleString('en-US')} events of 10,000 others`)
  const metrics = createMetrics({ collectDefault: false })
  const tombstones = createPrivacyTombstones({ db: ctx.db, pii: createPii('bench-secret-bench-secret-bench-secret'), metrics })
  const exports = createExportService({ db: ctx.db, tombstones })
  const file = path.join(ctx.dataDir, 'archive.zip')

  const zip = await measured(async (chunk) => {
    const s = await exports.archive(tenant, 'C000000000001')
    s.on('data', (c: Buffer) => chunk(c.length))
    await pipeline(s, fs.createWriteStream(file))
  })
  // The archive's own count of what it holds, read back with another ZIP reader.
  const reader = await openPromise(file)
  let manifest: { events: { files: number; records: number }; files: { file: string; records: number }[] } | undefined
  for await (const entry of reader.eachEntry()) {
    if (entry.fileName !== 'manifest.json') continue
    const chunks: Buffer[] = []
    for await (const c of (await reader.openReadStreamPromise(entry)) as Readable) chunks.push(c as Buffer)
    manifest = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof manifest
  }
  reader.close()
  if (manifest?.events.records !== events) throw new Error(`the archive holds ${manifest?.events.records} events, not ${events}`)
  const shown = manifest.files.find((f) => f.file === 'layouts.json')?.records
  if (shown !== Math.floor(events / 10)) throw new Error(`the archive holds ${shown} home screens shown, not ${Math.floor(events / 10)}`)
  say(`archive: ${zip.seconds.toFixed(1)} s, ${zip.mb.toFixed(0)} MB, peak RSS +${zip.peakGrowthMb.toFixed(0)} MB, ${manifest.events.files} event files`)

  const page = await measured(async (chunk) => {
    const x = await exports.export(tenant, 'C000000000001', { limit: 10_000 })
    chunk(Buffer.byteLength(JSON.stringify(x)))
  })
  say(`JSON page of 10,000: ${page.seconds.toFixed(2)} s, peak RSS +${page.peakGrowthMb.toFixed(0)} MB`)
  const whole = await measured(async (chunk) => {
    const s = await ctx.db
      .forTenant(tenant)
      .stream(`SELECT concat(toString(timestamp), message_id, properties, context) FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key = 1 ORDER BY timestamp, message_id FORMAT TabSeparatedRaw`)
    for await (const c of s) chunk((c as Buffer).length)
  })
  say(`all events in one query: ${whole.seconds.toFixed(1)} s, peak RSS +${whole.peakGrowthMb.toFixed(0)} MB`)
  return {
    params: { part: 'customer', events, other_events: others, page_rows: EVENT_PAGE_ROWS, code: codeVersion() },
    figures: {
      archive_s: zip.seconds,
      archive_first_byte_ms: zip.firstByteMs,
      archive_mb: zip.mb,
      archive_event_files: manifest.events.files,
      archive_rss_at_start_mb: zip.rssStartMb,
      archive_peak_rss_growth_mb: zip.peakGrowthMb,
      archive_js_peak_growth_mb: zip.jsPeakGrowthMb,
      archive_events_per_s: events / zip.seconds,
      json_page_10k_s: page.seconds,
      json_page_10k_mb: page.mb,
      json_page_10k_peak_rss_growth_mb: page.peakGrowthMb,
      json_page_10k_js_peak_growth_mb: page.jsPeakGrowthMb,
      one_query_all_events_s: whole.seconds,
      one_query_all_events_mb: whole.mb,
      one_query_all_events_peak_rss_growth_mb: whole.peakGrowthMb,
      one_query_all_events_js_peak_growth_mb: whole.jsPeakGrowthMb,
    },
    ratios: {
      archive_time_over_json_page: zip.seconds / page.seconds,
      archive_time_per_event_over_json_page: zip.seconds / events / (page.seconds / 10_000),
      archive_memory_over_json_page: zip.peakGrowthMb / page.peakGrowthMb,
      archive_memory_over_one_query: zip.peakGrowthMb / whole.peakGrowthMb,
    },
    notes: [
      `One customer with ${events.toLocaleString('en-US')} events and ${(events / 10).toLocaleString('en-US')} home screens shown over 400 days (about ${(((zip.mb * 2 ** 20) / events) | 0).toLocaleString('en-US')} compressed bytes each), among ${others.toLocaleString('en-US')} events of 10,000 other customers.`,
      `The archive, written to a file: ${zip.seconds.toFixed(1)} s, first byte after ${zip.firstByteMs.toFixed(0)} ms, ${zip.mb.toFixed(0)} MB in ${manifest.events.files} event files, peak RSS +${zip.peakGrowthMb.toFixed(0)} MB; read back, its manifest counts every event and every home screen shown.`,
      `RSS growth is counted from ${zip.rssStartMb.toFixed(0)} MB at the archive's start, after the seeding, whose freed memory the engine may reuse: it can understate the archive's own need, but the later runs started from no less and grew by far more. The JS heap and buffers (js_peak_growth) are this process's side alone.`,
      `The JSON form's largest page (10,000 events): ${page.seconds.toFixed(2)} s, peak RSS +${page.peakGrowthMb.toFixed(0)} MB. All ${events.toLocaleString('en-US')} event lines in one query (what an unpaged read would hold): ${whole.seconds.toFixed(1)} s, ${whole.mb.toFixed(0)} MB, peak RSS +${whole.peakGrowthMb.toFixed(0)} MB.`,
    ],
  }
}

export const scenario: BenchScenario = {
  name: 'export',
  description:
    "Exports on the embedded engine. customer: one customer's export archive against the JSON form's page and one query of all the events; segment: a segment's CSV and Arrow exports in pages of key ranges against one query. Time, first byte and peak RSS growth",
  async run(ctx) {
    const part = ctx.args.part ?? 'all'
    if (part === 'customer') return customerArchive(ctx)
    if (part === 'segment') return segmentExports(ctx)
    if (part !== 'all') throw new Error(`part: all, customer or segment, not ${part}`)
    // The customer part first: its RSS growth starts from a process no other run has grown.
    const a = await customerArchive(ctx)
    const b = await segmentExports(ctx)
    return {
      params: { ...a.params, ...b.params, part: 'all' },
      figures: { ...a.figures, ...b.figures },
      ratios: { ...a.ratios, ...b.ratios },
      notes: [...(a.notes ?? []), ...(b.notes ?? []), 'The segment part ran after the customer part: its RSS growth starts from the high-water mark that part left.'],
    }
  },
}

async function segmentExports(ctx: BenchContext): Promise<BenchResult> {
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
  // The run row marks the build complete: exports read complete builds only.
  await sys.command(
    `INSERT INTO segment_runs (tenant_id, segment_id, build, version, size, entered, exited, started_at, finished_at, trigger)
     VALUES ({t:UInt16}, 'everyone', 1, 1, {n:UInt32}, {n:UInt32}, 0, now64(3), now64(3), 'bench')`,
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
  return { params: { part: 'segment', customers: n, page_keys: pageKeys, code: codeVersion() }, figures, ratios, notes }
}
