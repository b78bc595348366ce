/**
 * Consent objects on incoming events, by the Segment Consent Management convention: any event
 * may carry `context.consent.categoryPreferences` (`{"marketing": true, "push_marketing": false}`),
 * and the `Segment Consent Preference Updated` track event exists to carry one. Ingest only finds
 * and checks them; what they mean for the tenant (its categories, purposes, channels) is decided
 * by whoever the composition root hands them to, so ingest depends on no other capability.
 */

export const CONSENT_EVENT = 'Segment Consent Preference Updated'
const FIELD = 'context.consent.categoryPreferences'
const MAX_CATEGORIES = 100
const CATEGORY = /^[A-Za-z0-9_.:-]{1,64}$/

/** A consent object found on an accepted event. */
export interface FoundConsent {
  userId: string
  anonymousId: string
  messageId: string
  /** Event time, epoch ms, corrected for the device's clock skew. */
  timestamp: number
  categories: Record<string, boolean>
}

/** Called once per request with the consent objects of the events it stored; must not throw. */
export type ConsentCallback = (tenantId: number, found: FoundConsent[], actor: string) => Promise<unknown>

type Found = { categories: Record<string, boolean> } | { field: string; message: string } | undefined

const obj = (v: unknown): Record<string, unknown> | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined)

/**
 * The category map of a raw message (its own context first, then the batch's), a rejection
 * naming the field when it is malformed, or undefined when the event carries none.
 */
export function findConsent(raw: unknown, envelopeContext: unknown): Found {
  const m = obj(raw)
  const ctx = obj(m?.context) ?? obj(envelopeContext)
  const consent = ctx && 'consent' in ctx ? ctx.consent : undefined
  const isConsentEvent = m?.type === 'track' && m.event === CONSENT_EVENT
  if (consent === undefined || consent === null) {
    return isConsentEvent ? { field: FIELD, message: `a ${CONSENT_EVENT} event carries the customer's category preferences` } : undefined
  }
  const c = obj(consent)
  if (!c) return { field: 'context.consent', message: 'an object holding categoryPreferences' }
  if (!('categoryPreferences' in c)) return isConsentEvent ? { field: FIELD, message: 'required on this event' } : undefined
  const prefs = obj(c.categoryPreferences)
  if (!prefs) return { field: FIELD, message: 'a map of consent categories to true or false' }
  const entries = Object.entries(prefs)
  if (entries.length > MAX_CATEGORIES) return { field: FIELD, message: `at most ${MAX_CATEGORIES} categories` }
  for (const [k, v] of entries) {
    if (!CATEGORY.test(k)) return { field: `${FIELD}.${k.slice(0, 64)}`, message: 'a category name: letters, digits, _ . : - (at most 64)' }
    if (typeof v !== 'boolean') return { field: `${FIELD}.${k}`, message: 'true (granted) or false (withdrawn)' }
  }
  return { categories: prefs as Record<string, boolean> }
}
