/**
 * When the event writer starts its next insert: group commit without a fixed wait.
 *
 * While an insert runs, what arrives waits. When it ends, or when events reach an idle writer,
 * the next insert starts at once if what waits is worth an insert (a tenth of flushRows), or if
 * no announced request is still on its way, since waiting would gain nothing. Inserts start at
 * least gapMs apart (each makes parts the engine merges later, so a trickle of small requests is
 * gathered), and no event waits more than flushMs for its insert to start. Under load the
 * batches grow with the time an insert takes; a lone request is inserted without delay.
 *
 * The writer used to start every insert flushMs after its first event. With clients that each
 * wait for their answer (an SDK's flush, a load generator's connection), every one of them waited
 * for the same insert, so after each insert the writer sat idle through that wait: at 8
 * connections a request took 236 ms of which the insert was 34 (bench/results/ingest.md).
 */

export interface FlushPolicy {
  /** An insert starts as soon as this many events wait. */
  flushRows: number
  /** The longest an event waits for its insert to start, even while more requests are on their way. */
  flushMs: number
  /** The least time between the starts of two inserts. */
  gapMs: number
}

export interface WriterQueue {
  /** The writer stops accepting: what waits goes at once. */
  closed: boolean
  /** Events waiting, not counting an insert under way. */
  waiting: number
  /** When the oldest waiting event arrived, and when the last insert started (ms, one clock). */
  oldestAt: number
  lastStart: number
  /** Requests announced (being read, parsed, normalized) and not yet submitted. */
  incoming: number
}

export type StartReason = 'closing' | 'rows' | 'waited' | 'batch' | 'idle'

/**
 * With events waiting and no insert under way: start one now (and why), or look again at `at`
 * (or sooner, when something arrives or an announced request is given back).
 */
export function nextInsert(p: FlushPolicy, q: WriterQueue, now: number): { start: StartReason } | { at: number } {
  if (q.closed) return { start: 'closing' }
  if (q.waiting >= p.flushRows) return { start: 'rows' }
  if (now >= q.oldestAt + p.flushMs) return { start: 'waited' }
  const gapPassed = now >= q.lastStart + p.gapMs
  if (gapPassed && q.waiting >= Math.max(1, p.flushRows / 10)) return { start: 'batch' }
  if (gapPassed && q.incoming === 0) return { start: 'idle' }
  return { at: Math.min(q.oldestAt + p.flushMs, q.incoming === 0 ? q.lastStart + p.gapMs : Infinity) }
}
