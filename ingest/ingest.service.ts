import type { Config } from '../core/config.js'
import { AppError } from '../core/errors.js'
import type { Metrics } from '../core/metrics.js'
import type { Pii } from '../core/pii.js'
import { PII_KINDS, type ValuePolicy } from '../core/pii.scan.js'
import type { ConsentCallback } from './consent.extract.js'
import type { DropCheck, WriteResult } from './event-writer.js'
import type { IdentityService } from './identity.service.js'
import type { IngestPool } from './ingest.pool.js'
import { prepareMessages, refuseMerges, type Envelope, type Prepared, type PrepareSettings } from './ingest.prepare.js'
import type { PendingEvent } from './normalize.js'
import type { IngestLimits } from './rate-limit.js'
import type { EventType, IngestResponse } from './segment.schema.js'
import type { TrackingPlan, TrackingPlans } from './tracking-plan.js'

/**
 * One ingest request, start to end: every message validated on its own, checked against the
 * tenant's tracking plan (ingest.prepare.ts, in this thread or a worker's), and the valid ones
 * handed to the writer. The answer lists each rejected message by index with the field and
 * reason; the valid ones are stored whatever the others did.
 */
/** Where accepted events go: the ClickHouse writer, or a durable queue (Kafka) in front of it. */
export interface EventSink {
  submit(tenantId: number, events: PendingEvent[], actor: string): Promise<WriteResult & { queued?: boolean }>
  /** A request's events are on their way (event-writer.ts `announce`); the returned function says they were submitted or will not be. */
  announce?(): () => void
}

/** What `ingestBody` answers for a body that is JSON but not of the route's shape: the route validates it again to answer as its schema does. */
export const INVALID_BODY = Symbol('invalid ingest body')

export interface IngestService {
  /** Whether bodies are handed to worker threads as bytes (`ingestBody`). */
  readonly pooled: boolean
  ingest(input: { tenantId: number; actor: string; messages: unknown[]; envelope: Envelope; single: boolean }): Promise<IngestResponse>
  /**
   * A request's body bytes, parsed, validated and normalized in a worker thread; then merged,
   * inserted and answered here, as `ingest` does. `type`: the message type of a single-message
   * endpoint (unset for a batch).
   */
  ingestBody(input: { tenantId: number; actor: string; body: Uint8Array; type: EventType | undefined }): Promise<IngestResponse | typeof INVALID_BODY>
}

export function createIngestService(deps: {
  sink: EventSink
  plans: TrackingPlans
  pii: Pii
  metrics: Metrics
  config: Config['ingest']
  now?: () => number
  /** Per-tenant limits: the service counts events (requests are counted by the HTTP hooks). */
  limits?: IngestLimits | undefined
  /** Where consent objects found on stored events go (the consent service, wired by the composition root). */
  consent?: ConsentCallback | undefined
  /** Finds the aliases that would merge two known customers: events may not (identity.service.ts). */
  aliases?: Pick<IdentityService, 'mergingAliases'> | undefined
  /** The bank's choice for identifiers found in event values (tenant settings); digested when not given. */
  valuePolicy?: ((tenantId: number) => Promise<ValuePolicy>) | undefined
  /** Worker threads for the per-event work (ingest.pool.ts); without them it runs in this thread. */
  pool?: IngestPool | undefined
  /** Events of erased customers (the tombstones): their consent is not recorded either. */
  dropped?: DropCheck | undefined
}): IngestService {
  const now = deps.now ?? Date.now
  const settings: PrepareSettings = {
    pii: deps.pii,
    sensitiveTraits: new Set(deps.config.sensitiveTraits),
    backdateMs: deps.config.backdateDays * 86_400_000,
    maxFutureMs: deps.config.maxFutureMinutes * 60_000,
  }
  const rejectedTotal = deps.metrics.counter('qianmian_ingest_rejected_total', 'Events rejected, by code', ['code'])
  const flaggedTotal = deps.metrics.counter('qianmian_ingest_flagged_total', 'Events stored with tracking-plan violations')
  const piiFound = deps.metrics.counter('qianmian_ingest_pii_found_total', 'Identifiers found by value in event properties, traits and context (then digested or masked), by tenant and kind', ['tenant', 'kind'])

  const consentOn = deps.consent !== undefined
  const planTexts = new WeakMap<object, string>()
  const planText = (plan: TrackingPlan | undefined) => {
    if (!plan) return undefined
    let t = planTexts.get(plan)
    if (t === undefined) planTexts.set(plan, (t = JSON.stringify(plan)))
    return t
  }
  // The writer waits for announced requests rather than insert without them (event-writer.ts).
  const announce = (): (() => void) => deps.sink.announce?.() ?? (() => undefined)
  const policyOf = (tenantId: number): Promise<ValuePolicy> | ValuePolicy => (deps.valuePolicy ? deps.valuePolicy(tenantId) : 'digest')

  /** From the prepared events on: what needs the engine (the merge check, the insert, consent), in this thread. */
  async function finish(tenantId: number, actor: string, p: Prepared, type: EventType | undefined, single: boolean, submitted: () => void): Promise<IngestResponse> {
    if (deps.aliases && p.aliases.length) {
      // The alias messages as sent, at their indices: what the check reads of each.
      const asSent: unknown[] = new Array(p.count)
      for (const a of p.aliases) asSent[a.index] = { type: a.type, previousId: a.previousId, userId: a.userId }
      refuseMerges(p, await deps.aliases.mergingAliases(tenantId, asSent, type))
    }
    const { valid, validIndex, rejected } = p
    for (const r of rejected) rejectedTotal.inc({ code: r.code })
    for (const kind of PII_KINDS) if (p.piiFound[kind]) piiFound.inc({ tenant: String(tenantId), kind }, p.piiFound[kind])
    if (p.flagged) flaggedTotal.inc(p.flagged)

    const refuseAll = (): never => {
      const first = rejected[0]!
      const issues = rejected.map((r) => ({ field: single ? r.field : `batch.${r.index}.${r.field}`, message: r.message, code: r.code, index: r.index }))
      if (single) throw new AppError(first.code, `${first.field}: ${first.message}`, { issues })
      throw new AppError('BATCH_REJECTED', `All ${rejected.length} events were rejected.`, { issues })
    }
    if (!valid.length) refuseAll()
    const submitting = deps.sink.submit(tenantId, valid, actor)
    submitted()
    const result = await submitting
    if (result.refused?.length) {
      // Values the engine refused on their own (validation missed them): named like the others.
      for (const r of result.refused) {
        rejected.push({ index: validIndex[r.position]!, code: 'EVENT_NOT_STORABLE', field: r.field, message: r.message, messageId: valid[r.position]!.messageId })
        rejectedTotal.inc({ code: 'EVENT_NOT_STORABLE' })
      }
      rejected.sort((x, y) => x.index - y.index)
      if (!result.stored && !result.duplicates) refuseAll()
    }
    // After the events are accepted, before the answer: a 200 means the decision is recorded.
    const refused = new Set(result.refused?.map((r) => r.position))
    const position = new Map(validIndex.map((index, i) => [index, i]))
    let kept = p.consents.filter((c) => !refused.has(position.get(c.index)!))
    // An erased customer's consent goes with their event: recording it would give the number a
    // key, a link and a history again. Asked here, not left to the writer's drop: behind Kafka
    // the edge records consent before any writer has seen the event.
    if (kept.length && deps.dropped) {
      const drop = await deps.dropped(tenantId, kept.map((c) => valid[position.get(c.index)!]!), { count: false })
      kept = kept.filter((_, i) => !drop[i])
    }
    if (kept.length) await deps.consent!(tenantId, kept.map(({ index: _i, ...c }) => c), actor)
    return { success: true, accepted: result.stored, duplicates: result.duplicates, flagged: p.flagged, rejected, queued: result.queued === true }
  }

  return {
    pooled: deps.pool !== undefined,
    async ingest({ tenantId, actor, messages, envelope, single }) {
      deps.limits?.events(tenantId, messages.length)
      const submitted = announce()
      try {
        const policy = await policyOf(tenantId)
        const plan = await deps.plans.current(tenantId)
        const p = prepareMessages({ tenantId, messages, envelope, receivedAt: now(), policy, plan, consent: consentOn }, settings)
        return await finish(tenantId, actor, p, envelope.type, single, submitted)
      } finally {
        submitted()
      }
    },
    async ingestBody({ tenantId, actor, body, type }) {
      if (!deps.pool) throw new Error('ingestBody needs the worker pool')
      const submitted = announce()
      try {
        const policy = await policyOf(tenantId)
        const plan = await deps.plans.current(tenantId)
        const r = await deps.pool.run({ single: type, tenantId, receivedAt: now(), policy, planText: planText(plan), consent: consentOn }, body)
        if (r.kind === 'refused') throw new AppError(r.code, r.message)
        if (r.kind === 'invalid') return INVALID_BODY
        deps.limits?.events(tenantId, r.prepared.count)
        return await finish(tenantId, actor, r.prepared, type, type !== undefined, submitted)
      } finally {
        submitted()
      }
    },
  }
}
