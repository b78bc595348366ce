import type { Pii } from '../core/pii.js'
import { createValueScanner, type PiiKind, type ValuePolicy } from '../core/pii.scan.js'
import { findConsent, type FoundConsent } from './consent.extract.js'
import { normalizeMessage, type NormalizeOptions, type PendingEvent, type Rejection } from './normalize.js'
import type { EventType } from './segment.schema.js'
import { checkEvent, type TrackingPlan } from './tracking-plan.js'

/**
 * The CPU-bound part of one ingest request, with no I/O: every message normalized on its own
 * (schema, times, identifiers digested, the value scan), checked against the tenant's tracking
 * plan, its consent object found. It runs in the HTTP thread or in an ingest worker thread
 * (ingest.worker.ts) on the same inputs, so both give the same answer; what needs the engine
 * (the merge check, the insert) stays with the caller (ingest.service.ts).
 */

export interface Envelope {
  sentAt?: string | null | undefined
  context?: Record<string, unknown> | null | undefined
  type?: EventType
}

/** What is the same for every request of a process: from the config and the digest keys. */
export interface PrepareSettings {
  pii: Pii
  sensitiveTraits: ReadonlySet<string>
  backdateMs: number
  maxFutureMs: number
}

export interface PrepareInput {
  tenantId: number
  messages: readonly unknown[]
  envelope: Envelope
  receivedAt: number
  /** The tenant's policy for identifiers found in values, read for this request. */
  policy: ValuePolicy
  plan: TrackingPlan | undefined
  /** Whether consent objects are looked for (a consent service is wired). */
  consent: boolean
}

export type IndexedRejection = Rejection & { index: number }

/**
 * An alias event's ids for the merge check (identity.service.ts `mergingAliases`), as normalized:
 * the schema makes `10001` and `' 10001'` the customer number `10001`, and the check must look up
 * the number the identity service will be asked to alias, or a merge it refuses later (after the
 * answer said accepted) passes here.
 */
export interface AliasToCheck {
  index: number
  type: 'alias'
  previousId: string
  userId: string
}

export interface Prepared {
  count: number
  valid: PendingEvent[]
  /** The batch index of each valid event. */
  validIndex: number[]
  rejected: IndexedRejection[]
  consents: (FoundConsent & { index: number })[]
  flagged: number
  /** Identifiers the value scan found, by kind. */
  piiFound: Record<PiiKind, number>
  aliases: AliasToCheck[]
  /** The alias events that normalized, with the ids they normalized to: the ones the merge check may refuse. */
  normalizedAliases: { index: number; previousId: string; messageId: string }[]
}

export function prepareMessages(input: PrepareInput, settings: PrepareSettings): Prepared {
  const { tenantId, messages, envelope, plan } = input
  const scan = createValueScanner(input.policy, (kind, v) => settings.pii.hash(kind, v, tenantId))
  const opts: NormalizeOptions = {
    receivedAt: input.receivedAt,
    backdateMs: settings.backdateMs,
    maxFutureMs: settings.maxFutureMs,
    sensitiveTraits: settings.sensitiveTraits,
    pii: settings.pii,
    scan,
  }
  const out: Prepared = { count: messages.length, valid: [], validIndex: [], rejected: [], consents: [], flagged: 0, piiFound: scan.counts, aliases: [], normalizedAliases: [] }
  messages.forEach((raw, index) => {
    const n = normalizeMessage(raw, tenantId, envelope, opts)
    if (!n.ok) {
      out.rejected.push({ index, ...n.rejection })
      return
    }
    const e = n.event
    if (e.type === 'alias') {
      out.aliases.push({ index, type: 'alias', previousId: e.previousId!, userId: e.userId })
      out.normalizedAliases.push({ index, previousId: e.previousId!, messageId: e.messageId })
    }
    if (plan && e.type === 'track') {
      const violations = checkEvent(plan, e.event, n.properties)
      if (violations.length) {
        if (plan.mode === 'block') {
          out.rejected.push({ index, code: 'TRACKING_PLAN_VIOLATION', field: violations[0]!.startsWith('unplanned_event') ? 'event' : `properties.${violations[0]!.split(':')[1]}`, message: violations.join(', '), messageId: e.messageId })
          return
        }
        // After the paths where identifiers were found in values (normalize.ts).
        e.violations = [...e.violations, ...violations]
        out.flagged++
      }
    }
    if (input.consent) {
      // A malformed consent map rejects its event only: storing the event without the
      // customer's decision would lose what they asked for.
      const found = findConsent(raw, envelope.context)
      if (found && 'field' in found) {
        out.rejected.push({ index, code: 'CONSENT_INVALID', field: found.field, message: found.message, messageId: e.messageId })
        return
      }
      if (found) out.consents.push({ index, userId: e.userId, anonymousId: e.anonymousId, messageId: e.messageId, timestamp: e.timestamp, categories: found.categories })
    }
    out.valid.push(e)
    out.validIndex.push(index)
  })
  return out
}

/**
 * The alias events that would merge two known customers (found in the engine by the caller),
 * refused: events may link a device to a customer, never merge two. Such an event is refused
 * for that whatever else was wrong with it past normalization (its plan check or consent).
 */
export function refuseMerges(p: Prepared, merging: ReadonlySet<number>): void {
  if (!merging.size) return
  const refused: IndexedRejection[] = []
  for (const a of p.normalizedAliases) {
    if (!merging.has(a.index)) continue
    refused.push({ index: a.index, code: 'ALIAS_MERGE_FORBIDDEN', field: 'previousId', message: `${a.previousId} is a customer number: merging two customers needs POST /v1/identities/merge`, messageId: a.messageId })
  }
  if (!refused.length) return
  const gone = new Set(refused.map((r) => r.index))
  const keep = p.validIndex.map((index) => !gone.has(index))
  p.valid = p.valid.filter((_, i) => keep[i])
  p.validIndex = p.validIndex.filter((_, i) => keep[i])
  p.consents = p.consents.filter((c) => !gone.has(c.index))
  p.rejected = [...p.rejected.filter((r) => !gone.has(r.index)), ...refused].sort((a, b) => a.index - b.index)
}
