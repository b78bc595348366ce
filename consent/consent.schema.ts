import { z } from 'zod'
import type { ErrorIssue } from '../core/errors.js'
import { INSTANT_RANGE, storableInstant } from '../core/time.js'

/**
 * What a consent is: a customer's decision for one purpose on one channel, with when they took
 * it, where (the source) and which version of the notice they saw. The personalization switch
 * (PIPL art. 24; the 2022 provisions on algorithmic recommendation, art. 17) is one more purpose,
 * `personalization`, on the channel `all`: it covers the layouts and the text of marketing
 * pushes alike, and is recorded and kept in history like any other consent.
 */

export const CONSENT_PURPOSES = ['security', 'service', 'marketing', 'personalization'] as const
export type ConsentPurpose = (typeof CONSENT_PURPOSES)[number]
export const CONSENT_CHANNELS = ['push', 'sms', 'in_app', 'all'] as const
export type ConsentChannel = (typeof CONSENT_CHANNELS)[number]
/** Where a decision was taken; `import` and `ingest` are set by the system, not by a caller. */
export const CONSENT_SOURCES = ['app', 'counter', 'call_centre', 'import', 'ingest'] as const
export type ConsentSource = (typeof CONSENT_SOURCES)[number]
export const API_SOURCES = ['app', 'counter', 'call_centre'] as const

/** A (purpose, channel) pair is valid when the switch uses `all` and every other purpose does not. */
export function pairIssue(purpose: ConsentPurpose, channel: ConsentChannel, field: string): ErrorIssue | undefined {
  if (purpose === 'personalization' && channel !== 'all') return { field, message: 'the personalization switch is recorded on the channel "all"' }
  if (purpose !== 'personalization' && channel === 'all') return { field, message: `${purpose} consent names one channel: push, sms or in_app` }
  return undefined
}

const pair = z.strictObject({ purpose: z.enum(CONSENT_PURPOSES), channel: z.enum(CONSENT_CHANNELS) })
export type ConsentPair = z.infer<typeof pair>

export const CATEGORY_NAME = /^[A-Za-z0-9_.:-]{1,64}$/

/** A tenant's mapping of Segment consent categories to the (purpose, channel) pairs they decide. */
export const categoryMapping = z
  .record(z.string().regex(CATEGORY_NAME, 'a category name: letters, digits, _ . : - (at most 64)'), z.array(pair).min(1).max(12))
  .superRefine((m, ctx) => {
    const names = Object.keys(m)
    if (names.length === 0) ctx.addIssue({ code: 'custom', message: 'at least one category', path: [] })
    if (names.length > 100) ctx.addIssue({ code: 'custom', message: 'at most 100 categories', path: [] })
    for (const [name, pairs] of Object.entries(m)) {
      pairs.forEach((p, i) => {
        const issue = pairIssue(p.purpose, p.channel, `${name}.${i}.channel`)
        if (issue) ctx.addIssue({ code: 'custom', message: issue.message, path: [name, i, 'channel'] })
      })
    }
  })
export type CategoryMapping = z.infer<typeof categoryMapping>

const each = (purpose: ConsentPurpose): ConsentPair[] => (['push', 'sms', 'in_app'] as const).map((channel) => ({ purpose, channel }))

/**
 * Used until a tenant saves its own: the categories a consent manager in the app would offer.
 * `marketing` decides every marketing channel, the narrower ones one channel each, and
 * `personalization` is the switch.
 */
export const DEFAULT_CATEGORIES: CategoryMapping = Object.freeze({
  marketing: each('marketing'),
  push_marketing: [{ purpose: 'marketing', channel: 'push' }],
  sms_marketing: [{ purpose: 'marketing', channel: 'sms' }],
  in_app_marketing: [{ purpose: 'marketing', channel: 'in_app' }],
  service: each('service'),
  personalization: [{ purpose: 'personalization', channel: 'all' }],
}) as CategoryMapping

/** `PUT /v1/customers/:id/consents`: one decision. */
export const consentInput = z.strictObject({
  purpose: z.enum(CONSENT_PURPOSES),
  channel: z.enum(CONSENT_CHANNELS).optional().describe('push, sms or in_app; "all" (the default) for the personalization switch'),
  granted: z.boolean().describe('true: granted; false: withdrawn (or refused)'),
  source: z.enum(API_SOURCES).describe('where the customer decided: the app, a counter, the call centre'),
  noticeVersion: z.string().trim().min(1).max(64).describe('the version of the privacy notice the customer saw'),
  at: z
    .string()
    .max(64)
    .refine((s) => !Number.isNaN(Date.parse(s)), { message: 'expected an ISO 8601 date-time', abort: true })
    // Refused here, not by the engine: a time the columns cannot hold would fail the shared
    // insert of every decision written with it. (Not after now: the service checks that.)
    .refine((s) => storableInstant(Date.parse(s)), { message: `a time ${INSTANT_RANGE} (UTC)` })
    .optional()
    .describe('when the customer decided (default: now); the newest decision by this time wins'),
})
export type ConsentInput = z.infer<typeof consentInput>

/** One change as the service records it. */
export interface ConsentChange {
  customerKey: number
  customerNo: string
  purpose: ConsentPurpose
  channel: ConsentChannel
  granted: boolean
  /** The customer's own time of the decision, epoch ms. */
  customerAt: number
  source: ConsentSource
  noticeVersion: string
  messageId: string
  category: string
}

/** What the consent service tells the processes' in-memory indexes (pull, layouts). */
export interface ConsentNotice {
  customerKey: number
  purpose: ConsentPurpose
  channel: ConsentChannel
  granted: boolean
}

/** A consent object the ingest path found on an accepted event (see ingest/consent.extract.ts). */
export interface IngestConsent {
  userId: string
  anonymousId: string
  messageId: string
  /** Event time, epoch ms, corrected for the device's clock skew. */
  timestamp: number
  categories: Record<string, boolean>
}
