import { z } from 'zod'
import { AppError } from '../core/errors.js'

/**
 * A bank's privacy settings: retention per kind of behavioural record and the policy for
 * personal data found by value in events. The defaults are what a bank gets until its admin
 * changes them; the maxima are what the platform keeps at most (exposures and push outcomes also
 * have an engine TTL of 400 days, sql/009 and sql/010, so they cannot be kept longer).
 */
export const RETENTION_KINDS = ['eventsDays', 'exposuresDays', 'pushOutcomesDays', 'tagHistoryDays'] as const
export type RetentionKind = (typeof RETENTION_KINDS)[number]

export const RETENTION_DEFAULTS: Readonly<Record<RetentionKind, number>> = Object.freeze({
  eventsDays: 400,
  exposuresDays: 180,
  pushOutcomesDays: 400,
  tagHistoryDays: 730,
})
export const RETENTION_MAX: Readonly<Record<RetentionKind, number>> = Object.freeze({
  eventsDays: 1825,
  exposuresDays: 400,
  pushOutcomesDays: 400,
  tagHistoryDays: 1825,
})
/** Under a week nothing can be investigated or reconciled, whatever a bank configures. */
export const RETENTION_FLOOR_DAYS = 7

export const privacyView = z.object({
  eventsDays: z.number().int().describe('days raw events are kept'),
  exposuresDays: z.number().int().describe('days home-screen exposures are kept'),
  pushOutcomesDays: z.number().int().describe('days push delivery outcomes are kept'),
  tagHistoryDays: z.number().int().describe('days superseded tag values are kept; the value in effect is always kept'),
  legalMinimumDays: z.number().int().describe("the bank's legal minimum: no retention may be set below it"),
  valuePolicy: z.enum(['digest', 'mask']).describe('identifiers found in event values (phone, identity and card numbers, e-mail) are stored as keyed digests or masked'),
  maximumDays: z.object({ eventsDays: z.number(), exposuresDays: z.number(), pushOutcomesDays: z.number(), tagHistoryDays: z.number() }),
  updatedAt: z.string().nullable(),
  updatedBy: z.string(),
})
export type PrivacySettings = z.infer<typeof privacyView>

const days = (max: number) => z.number().int().min(RETENTION_FLOOR_DAYS).max(max)

/** A change: any subset of the settings; the rest stay as they are. */
export const privacyInput = z.strictObject({
  eventsDays: days(RETENTION_MAX.eventsDays).optional(),
  exposuresDays: days(RETENTION_MAX.exposuresDays).optional(),
  pushOutcomesDays: days(RETENTION_MAX.pushOutcomesDays).optional(),
  tagHistoryDays: days(RETENTION_MAX.tagHistoryDays).optional(),
  legalMinimumDays: z.number().int().min(0).max(RETENTION_MAX.eventsDays).optional(),
  valuePolicy: z.enum(['digest', 'mask']).optional(),
})
export type PrivacyInput = z.infer<typeof privacyInput>

export function defaultPrivacy(): PrivacySettings {
  return { ...RETENTION_DEFAULTS, legalMinimumDays: 0, valuePolicy: 'digest', maximumDays: { ...RETENTION_MAX }, updatedAt: null, updatedBy: '' }
}

/** The settings after a change, or a 400 naming each retention below the legal minimum. */
export function applyPrivacy(current: PrivacySettings, change: PrivacyInput): PrivacySettings {
  const next: PrivacySettings = { ...current }
  for (const [k, v] of Object.entries(change)) if (v !== undefined) (next as Record<string, unknown>)[k] = v
  const issues = RETENTION_KINDS.filter((k) => next[k] < next.legalMinimumDays).map((k) => ({
    field: k in change ? k : 'legalMinimumDays',
    message: `${next[k]} days is below the legal minimum of ${next.legalMinimumDays} days${k in change ? '' : ` (${k} is ${next[k]})`}`,
  }))
  if (issues.length) throw new AppError('VALIDATION_FAILED', 'A retention would be below the legal minimum.', { issues })
  return next
}

/**
 * A tag whose window reads further back than the bank keeps raw events: its days before the
 * retention's edge count what was aggregated while their events were kept (every run keeps those
 * day builds), and nothing for a tag or measure added after the events went.
 */
export const retentionWarning = z.object({
  code: z.literal('WINDOW_BEYOND_EVENTS_RETENTION'),
  tag: z.string(),
  days: z.number().int().describe('local days of events the tag reads back'),
  eventsDays: z.number().int().describe('days the bank keeps raw events'),
  message: z.string(),
})
export type RetentionWarning = z.infer<typeof retentionWarning>

/** The warnings for the tags (name and days read back) whose windows reach past `eventsDays`. */
export function retentionWarnings(reach: readonly { tag: string; days: number }[], eventsDays: number): RetentionWarning[] {
  return reach
    .filter((r) => r.days > eventsDays)
    .map((r) => ({
      code: 'WINDOW_BEYOND_EVENTS_RETENTION' as const,
      tag: r.tag,
      days: r.days,
      eventsDays,
      message:
        `${r.tag} reads ${r.days} days of events and this bank keeps raw events ${eventsDays} days: the days before that count ` +
        `what was aggregated while their events were kept, and nothing for a tag or measure added after they were deleted.`,
    }))
}
