import type { StoredTag } from './tag.schema.js'

/** What a tag run is asked and what it reports (tag.pipeline.ts runs it). */

export type RunMode = 'full' | 'incremental' | 'backfill'

/** What a run leaves for the next incremental one. */
export interface RunState {
  today: string
  watermark: string
  measures: string
  span: number
}

export interface TagRunRequest {
  tenantId: number
  timeZone: string
  /** Every active definition of the tenant; `only` picks which to compute. */
  defs: readonly StoredTag[]
  only?: readonly string[]
  mode: RunMode
  asOf: Date
  runId: string
  /**
   * A full run that recomputes every tag for everyone instead of keeping those whose inputs it
   * finds unchanged (repairs values changed outside runs; costs the whole computation).
   */
  recompute?: boolean
  /**
   * How far before the last watermark to look for changed days (default 60 s): an insert that
   * took its change time just before a run started may commit just after the run read.
   */
  watermarkSlackMs?: number
  /**
   * Customer keys per range of the statements whose memory grows with the bank (staging, the
   * diff); 0 or unset: derived from the bank's highest key (tag.ranges.ts).
   */
  keyRange?: number
  /**
   * The first local day whose events the bank's retention keeps whole (tag.job.ts derives it
   * from `eventsDays`). A full run keeps the builds of earlier days instead of re-aggregating
   * what retention left of their events: a window longer than the retention counts those days
   * as they were built, in every run, as an incremental run (which never rebuilds them) does.
   */
  eventsKeptFrom?: string
  /** Aborted when the run's lease was lost (pipelines/pipeline.lease.ts): the run stops before its next step. */
  signal?: AbortSignal
}

export interface TagRunResult {
  mode: RunMode
  state: RunState
  changed: number
  /**
   * Per tag: values changed, customers with a value; skipped when nothing it reads moved, or
   * (with a reason) when a tag it reads failed; failed with the error; `changedInputs`: a rule
   * recomputed only for the customers whose values of those tags this run changed, and with
   * `changedCustomers` for the customers whose row changed since too.
   */
  tags: Record<string, { changed: number; customers?: number; skipped?: boolean; reason?: string; failed?: boolean; error?: string; changedInputs?: string[]; changedCustomers?: boolean }>
  /** Tags whose computation failed, with the error: the run completed the others. */
  failures: { tag: string; error: string }[]
  /** Tags not computed because a tag they read failed. */
  blocked: { tag: string; reason: string }[]
  rebuiltDays: string[]
  /** Days of the window a full run took as built, their events and identities unchanged since. */
  reusedDays?: number
  /** Days before the events retention's edge whose build a change of measures carried over (tags/event-daily.ts carryDays). */
  carriedDays?: string[]
  /** Days before the longest window (and a month more) whose builds this run dropped. */
  droppedDays?: number
  scoped?: number
  /** Customer-key ranges the ranged statements ran over. */
  keyRanges: number
  steps: { step: string; ms: number }[]
}
