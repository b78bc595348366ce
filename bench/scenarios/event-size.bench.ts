import { createPii } from '../../core/pii.js'
import { jsonLargerThan } from '../../ingest/event-size.js'
import { normalizeMessage } from '../../ingest/normalize.js'
import { MAX_EVENT_BYTES } from '../../ingest/segment.schema.js'
import type { BenchScenario } from '../harness.js'
import { batchBody } from '../load.js'

/**
 * The 32 KB per-event check as it was (serialize the event, count its UTF-8 bytes) against the
 * bounds walk that replaced it (ingest/event-size.ts), on the ingest benchmark's own events
 * (~300 B), on 4 KB events (a long Chinese note) and on 20 KB ones (between the bounds: measured
 * exactly, so the walk is pure extra there). Same events, alternating rounds, best of the rounds;
 * and the whole of normalizeMessage on the plain events, for the check's share of it.
 */
export const scenario: BenchScenario = {
  name: 'event-size',
  description: 'The per-event size check: JSON.stringify + Buffer.byteLength against the bounds walk, on the same events in the same run.',
  async run(ctx) {
    const rounds = Number(ctx.args.rounds ?? 9)
    const plain = Array.from({ length: 50 }, (_, b) => (JSON.parse(batchBody(b * 100, 100)) as { batch: Record<string, unknown>[] }).batch).flat()
    const withNote = (n: number) => plain.slice(0, 1000).map((e) => ({ ...e, properties: { ...(e.properties as object), note: '客户来电咨询手机银行转账限额，已解答'.repeat(n) } }))
    const sets = { plain, kb4: withNote(75), kb20: withNote(380) }
    const sizeOf = (set: Record<string, unknown>[]) => Math.round(set.reduce((s, e) => s + Buffer.byteLength(JSON.stringify(e)), 0) / set.length)

    const stringify = (set: Record<string, unknown>[]) => {
      let over = 0
      for (const e of set) if (Buffer.byteLength(JSON.stringify(e)) > MAX_EVENT_BYTES) over++
      return over
    }
    const bounds = (set: Record<string, unknown>[]) => {
      let over = 0
      for (const e of set) if (jsonLargerThan(e, MAX_EVENT_BYTES)) over++
      return over
    }
    const nsPerEvent = (f: (s: Record<string, unknown>[]) => number, set: Record<string, unknown>[], reps: number) => {
      const t0 = process.hrtime.bigint()
      let sink = 0
      for (let r = 0; r < reps; r++) sink += f(set)
      if (sink !== 0) throw new Error('an event over the limit in the benchmark set')
      return Number(process.hrtime.bigint() - t0) / (reps * set.length)
    }
    const best: Record<string, number> = {}
    const keep = (k: string, v: number) => (best[k] = Math.min(best[k] ?? Infinity, v))
    for (let r = 0; r < rounds; r++) {
      for (const [name, set] of Object.entries(sets)) {
        const reps = name === 'plain' ? 4 : name === 'kb4' ? 20 : 4
        // Alternate which goes first, so warm caches and GC favour neither.
        if (r % 2) {
          keep(`${name}_bounds`, nsPerEvent(bounds, set, reps))
          keep(`${name}_stringify`, nsPerEvent(stringify, set, reps))
        } else {
          keep(`${name}_stringify`, nsPerEvent(stringify, set, reps))
          keep(`${name}_bounds`, nsPerEvent(bounds, set, reps))
        }
      }
    }
    // The edge's whole per-event work on the plain events (without the value scan), for the share.
    const opts = { receivedAt: Date.now(), backdateMs: 30 * 86_400_000, maxFutureMs: 86_400_000, sensitiveTraits: new Set<string>(), pii: createPii('bench-secret-bench-secret-bench-secret'), scan: false as const }
    let normNs = Infinity
    for (let r = 0; r < rounds; r++) {
      const t0 = process.hrtime.bigint()
      for (const e of plain) if (!normalizeMessage(e, 1, {}, opts).ok) throw new Error('a benchmark event was refused')
      normNs = Math.min(normNs, Number(process.hrtime.bigint() - t0) / plain.length)
    }
    return {
      params: { rounds, plain_events: plain.length, plain_event_bytes: sizeOf(sets.plain), kb4_event_bytes: sizeOf(sets.kb4), kb20_event_bytes: sizeOf(sets.kb20) },
      figures: {
        plain_ns_per_event_stringify: best.plain_stringify!,
        plain_ns_per_event_bounds: best.plain_bounds!,
        kb4_ns_per_event_stringify: best.kb4_stringify!,
        kb4_ns_per_event_bounds: best.kb4_bounds!,
        kb20_ns_per_event_stringify: best.kb20_stringify!,
        kb20_ns_per_event_bounds: best.kb20_bounds!,
        normalize_ns_per_plain_event: normNs,
      },
      ratios: {
        plain_bounds_vs_stringify: best.plain_bounds! / best.plain_stringify!,
        kb4_bounds_vs_stringify: best.kb4_bounds! / best.kb4_stringify!,
        kb20_bounds_vs_stringify: best.kb20_bounds! / best.kb20_stringify!,
        saved_share_of_normalize_plain: (best.plain_stringify! - best.plain_bounds!) / normNs,
      },
      notes: [
        '*_stringify: the check as it was, Buffer.byteLength(JSON.stringify(event)) > 32 KB; *_bounds: jsonLargerThan (ingest/event-size.ts), which gives the same answer and builds the JSON only when its bounds cannot decide.',
        'kb20: events whose bounds straddle the limit (20 KB of text, up to 6x that by the upper bound), so they are serialized after the walk: the worst case, rare in app analytics.',
        'normalize_ns_per_plain_event: normalizeMessage (with the new check, without the value scan) on the plain events; saved_share_of_normalize_plain: the time the old check took beyond the new one, as a share of it.',
        'Best of the rounds, in this process; the machine is shared (2 cores), so the ratios are what to read.',
      ],
    }
  },
}
