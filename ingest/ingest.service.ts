import type { Config } from '../core/config.js'
import { AppError } from '../core/errors.js'
import type { Metrics } from '../core/metrics.js'
import type { Pii } from '../core/pii.js'
import { createValueScanner, PII_KINDS, type ValuePolicy } from '../core/pii.scan.js'
import { findConsent, type ConsentCallback, type FoundConsent } from './consent.extract.js'
import type { WriteResult } from './event-writer.js'
import type { IngestLimits } from './rate-limit.js'
import type { IdentityService } from './identity.service.js'
import { normalizeMessage, type NormalizeOptions, type PendingEvent, type Rejection } from './normalize.js'
import type { EventType, IngestResponse } from './segment.schema.js'
import { checkEvent, type TrackingPlans } from './tracking-plan.js'

/**
 * One ingest request, start to end: every message validated on its own, checked against the
 * tenant's tracking plan, and the valid ones handed to the writer. The answer lists each
 * rejected message by index with the field and reason; the valid ones are stored whatever the
 * others did.
 */
/** Where accepted events go: the ClickHouse writer, or a durable queue (Kafka) in front of it. */
export interface EventSink {
  submit(tenantId: number, events: PendingEvent[], actor: string): Promise<WriteResult & { queued?: boolean }>
}

export interface IngestService {
  ingest(input: {
    tenantId: number
    actor: string
    messages: unknown[]
    envelope: { sentAt?: string | null | undefined; context?: Record<string, unknown> | null | undefined; type?: EventType }
    single: boolean
  }): Promise<IngestResponse>
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
}): IngestService {
  const now = deps.now ?? Date.now
  const sensitive = new Set(deps.config.sensitiveTraits)
  const rejectedTotal = deps.metrics.counter('qianmian_ingest_rejected_total', 'Events rejected, by code', ['code'])
  const flaggedTotal = deps.metrics.counter('qianmian_ingest_flagged_total', 'Events stored with tracking-plan violations')
  const piiFound = deps.metrics.counter('qianmian_ingest_pii_found_total', 'Identifiers found by value in event properties, traits and context (then digested or masked), by tenant and kind', ['tenant', 'kind'])

  return {
    async ingest({ tenantId, actor, messages, envelope, single }) {
      deps.limits?.events(tenantId, messages.length)
      const policy = deps.valuePolicy ? await deps.valuePolicy(tenantId) : 'digest'
      const scan = createValueScanner(policy, (kind, v) => deps.pii.hash(kind, v, tenantId))
      const opts: NormalizeOptions = {
        receivedAt: now(),
        backdateMs: deps.config.backdateDays * 86_400_000,
        maxFutureMs: deps.config.maxFutureMinutes * 60_000,
        sensitiveTraits: sensitive,
        pii: deps.pii,
        scan,
      }
      const plan = await deps.plans.current(tenantId)
      const merging = deps.aliases ? await deps.aliases.mergingAliases(tenantId, messages, envelope.type) : undefined
      const valid: PendingEvent[] = []
      const validIndex: number[] = []
      const rejected: (Rejection & { index: number })[] = []
      const consents: (FoundConsent & { position: number })[] = []
      let flagged = 0
      messages.forEach((raw, index) => {
        const n = normalizeMessage(raw, tenantId, envelope, opts)
        if (!n.ok) {
          rejected.push({ index, ...n.rejection })
          return
        }
        const e = n.event
        if (merging?.has(index)) {
          rejected.push({ index, code: 'ALIAS_MERGE_FORBIDDEN', field: 'previousId', message: `${e.previousId} is a customer number: merging two customers needs POST /v1/identities/merge`, messageId: e.messageId })
          return
        }
        if (plan && e.type === 'track') {
          const violations = checkEvent(plan, e.event, n.properties)
          if (violations.length) {
            if (plan.mode === 'block') {
              rejected.push({ index, code: 'TRACKING_PLAN_VIOLATION', field: violations[0]!.startsWith('unplanned_event') ? 'event' : `properties.${violations[0]!.split(':')[1]}`, message: violations.join(', '), messageId: e.messageId })
              return
            }
            // After the paths where identifiers were found in values (normalize.ts).
            e.violations = [...e.violations, ...violations]
            flagged++
          }
        }
        if (deps.consent) {
          // A malformed consent map rejects its event only: storing the event without the
          // customer's decision would lose what they asked for.
          const found = findConsent(raw, envelope.context)
          if (found && 'field' in found) {
            rejected.push({ index, code: 'CONSENT_INVALID', field: found.field, message: found.message, messageId: e.messageId })
            return
          }
          if (found) consents.push({ position: valid.length, userId: e.userId, anonymousId: e.anonymousId, messageId: e.messageId, timestamp: e.timestamp, categories: found.categories })
        }
        valid.push(e)
        validIndex.push(index)
      })
      for (const r of rejected) rejectedTotal.inc({ code: r.code })
      for (const kind of PII_KINDS) if (scan.counts[kind]) piiFound.inc({ tenant: String(tenantId), kind }, scan.counts[kind])
      if (flagged) flaggedTotal.inc(flagged)

      const refuseAll = (): never => {
        const first = rejected[0]!
        const issues = rejected.map((r) => ({ field: single ? r.field : `batch.${r.index}.${r.field}`, message: r.message, code: r.code, index: r.index }))
        if (single) throw new AppError(first.code, `${first.field}: ${first.message}`, { issues })
        throw new AppError('BATCH_REJECTED', `All ${rejected.length} events were rejected.`, { issues })
      }
      if (!valid.length) refuseAll()
      const result = await deps.sink.submit(tenantId, valid, actor)
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
      const kept = consents.filter((c) => !refused.has(c.position)).map(({ position: _p, ...c }) => c)
      if (kept.length) await deps.consent!(tenantId, kept, actor)
      return { success: true, accepted: result.stored, duplicates: result.duplicates, flagged, rejected, queued: result.queued === true }
    },
  }
}
