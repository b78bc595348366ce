import type { TenantDb } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import type { PendingEvent } from './normalize.js'
import { insertIsolating } from './row-isolation.js'
import { storableText, wellFormed } from './well-formed.js'

/**
 * Fault isolation for the writer's per-tenant stage (erasure check, identities, traits), as
 * row-isolation.ts is for the shared events insert, and the traits insert it isolates. A tenant's stage covers every request of that
 * tenant in the flush: without this, one event it cannot write fails them all, on every retry,
 * and on the Kafka path holds back a partition shared with every other tenant.
 */

/** One request's (submission's) failure in the stage, and whether it is the engine's state or the events'. */
export interface StageFailure {
  sub: number
  cause: unknown
  /** The engine did not answer: retry later. Otherwise the failure lies in the events, and comes again with them. */
  transient: boolean
}

/**
 * Runs `stage` over one tenant's items (each tagged with its request, in order). When it throws
 * and the engine does not answer, every request fails as transient (503, retry). When the engine
 * answers, the failure lies in these events: each request is staged on its own, so the others
 * go on, and a request that fails alone while the engine answers is not transient (retrying it
 * would fail the same way: a Kafka worker dead-letters it rather than redeliver it forever).
 */
export async function stageByRequest<X extends { sub: number }, T>(
  items: readonly X[],
  stage: (items: X[]) => Promise<T>,
  engineAnswers: () => Promise<boolean>,
): Promise<{ done: T[]; failed: StageFailure[] }> {
  try {
    return { done: [await stage([...items])], failed: [] }
  } catch (first) {
    const subs = new Map<number, X[]>()
    for (const x of items) {
      let list = subs.get(x.sub)
      if (!list) subs.set(x.sub, (list = []))
      list.push(x)
    }
    if (!(await engineAnswers())) return { done: [], failed: [...subs.keys()].map((sub) => ({ sub, cause: first, transient: true })) }
    const done: T[] = []
    const failed: StageFailure[] = []
    for (const [sub, list] of subs) {
      try {
        done.push(await stage(list))
      } catch (e) {
        failed.push({ sub, cause: e, transient: !(await engineAnswers()) })
      }
    }
    return { done, failed }
  }
}

/** Characters kept of a plain trait value. */
const MAX_TRAIT_CHARS = 1000

type TraitRow = { customer_key: number; trait: string; value: string; hashed: 0 | 1; updated_at: string }

/**
 * Writes the traits of the identify events (`keys[i]`: event i's customer). When the engine
 * refuses a value, splits the insert until the refused rows stand alone (row-isolation.ts) and
 * answers, by event index, the first trait refused and why; the other rows are stored.
 * customer_traits keeps one row per customer and trait (ReplacingMergeTree), so a row a failed
 * insert had written already is not doubled.
 */
export async function writeTraits(
  tdb: Pick<TenantDb, 'insert'>,
  events: readonly PendingEvent[],
  keys: readonly number[],
  probe: () => Promise<void>,
): Promise<Map<number, { field: string; message: string }>> {
  const rows: TraitRow[] = []
  const eventOf: number[] = []
  events.forEach((e, i) => {
    if (e.type !== 'identify' || !e.traits || !keys[i]) return
    const at = chDateTime(e.timestamp)
    // Cut between characters and repaired (well-formed.ts): an event queued by an edge that did
    // not repair its text yet is stored as the edge now would store it.
    for (const [trait, value] of Object.entries(e.traits.plain)) rows.push({ customer_key: keys[i], trait: wellFormed(trait), value: storableText(value, MAX_TRAIT_CHARS), hashed: 0, updated_at: at })
    for (const [trait, value] of Object.entries(e.traits.hashed)) rows.push({ customer_key: keys[i], trait: wellFormed(trait), value, hashed: 1, updated_at: at })
    while (eventOf.length < rows.length) eventOf.push(i)
  })
  const byEvent = new Map<number, { field: string; message: string }>()
  if (!rows.length) return byEvent
  const { refused } = await insertIsolating(rows.length, {
    insert: (idx) => tdb.insert('customer_traits', idx.length === rows.length ? rows : idx.map((i) => rows[i]!)),
    alreadyStored: async () => new Set<number>(),
    probe,
  })
  for (const [row, no] of [...refused].sort((a, b) => a[0] - b[0])) {
    const event = eventOf[row]!
    if (!byEvent.has(event)) byEvent.set(event, { field: `traits.${rows[row]!.trait}`, message: no.message })
  }
  return byEvent
}
