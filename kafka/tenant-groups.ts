import { errText, isAppError } from '../core/errors.js'
import type { EventWriter, SubmitOptions, WriteResult } from '../ingest/event-writer.js'
import type { PendingEvent } from '../ingest/normalize.js'

/**
 * One tenant's events of a Kafka batch, written. A partition carries every tenant's events, so
 * what one tenant's events do must not hold the others back:
 *
 * - events the writer refused on their own come back as dead letters, with field and reason;
 * - a failure of the whole group that will not pass by waiting (the writer failed on these
 *   events while the engine answered) sends the events again one by one: those that fail alone
 *   come back as dead letters with the reason, the others are stored;
 * - a failure of the moment (the engine down, the writer's queue or the tenant's share of it
 *   full, shutting down) throws: the batch is kept and delivered again later.
 */

export interface GroupWrite {
  stored: number
  duplicates: number
  /** Events to dead-letter: their index in the group, and why. */
  dead: { index: number; reason: string }[]
}

/** A failure that waiting mends: the writer's 503s and 429s. */
export function isTransient(e: unknown): boolean {
  return isAppError(e) && (e.status === 503 || e.status === 429)
}

/** Lone submissions in flight at once: they share one insert, and stay well within a tenant's share of the queue. */
const WAVE = 64
/** The longest reason kept: a dead letter's headers count toward the broker's size limit. */
const MAX_REASON = 500

const cut = (s: string) => (s.length > MAX_REASON ? `${s.slice(0, MAX_REASON - 1)}…` : s)
const refusedReason = (r: { field: string; message: string }) => cut(`unstorable ${r.field}: ${r.message}`)
function failedReason(e: unknown): string {
  const code = isAppError(e) ? e.code : e instanceof Error ? e.name : 'Error'
  const cause = e instanceof Error && e.cause !== undefined ? e.cause : e
  return cut(`failed (${code}): ${errText(cause).split('\n')[0] ?? ''}`)
}

export async function writeTenantGroup(writer: Pick<EventWriter, 'submit'>, tenant: number, events: PendingEvent[], actor: string, opts: SubmitOptions): Promise<GroupWrite> {
  const out: GroupWrite = { stored: 0, duplicates: 0, dead: [] }
  const take = (r: WriteResult, index: (position: number) => number) => {
    out.stored += r.stored
    out.duplicates += r.duplicates
    for (const x of r.refused ?? []) out.dead.push({ index: index(x.position), reason: refusedReason(x) })
  }
  try {
    take(await writer.submit(tenant, events, actor, opts), (p) => p)
    return out
  } catch (e) {
    if (isTransient(e)) throw e
  }
  // One by one, a wave at a time (the writer answers each alone, so one event's failure is its own).
  // An event refused for the moment beside others taken goes in the next wave; a wave with no
  // event taken or failed for good means the failure is of the moment for all: the batch waits.
  let todo = events.map((_, i) => i)
  while (todo.length) {
    const wave = todo.slice(0, WAVE)
    const answers = await Promise.allSettled(wave.map((i) => writer.submit(tenant, [events[i]!], actor, opts)))
    const again: number[] = []
    let transient: unknown
    answers.forEach((a, k) => {
      const i = wave[k]!
      if (a.status === 'fulfilled') take(a.value, () => i)
      else if (isTransient(a.reason)) {
        again.push(i)
        transient = a.reason
      } else out.dead.push({ index: i, reason: failedReason(a.reason) })
    })
    if (again.length === wave.length) throw transient
    todo = [...again, ...todo.slice(WAVE)]
  }
  out.dead.sort((a, b) => a.index - b.index)
  return out
}
