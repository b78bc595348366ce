import { z } from 'zod'

/**
 * The Segment HTTP Tracking API message shapes (track, identify, page, screen, group, alias), as
 * sent by the official SDKs. Ids may arrive as numbers from some SDKs; they are kept as strings.
 */

export const EVENT_TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias'] as const
export type EventType = (typeof EVENT_TYPES)[number]

/** Spec limits: 32 KB per event, 500 KB per batch request. */
export const MAX_EVENT_BYTES = 32 * 1024
export const MAX_BATCH_BYTES = 500 * 1024
/** Deeper objects are refused: nothing in app analytics needs them, and they cost the parser. */
export const MAX_DEPTH = 8
/**
 * The deepest a whole message may nest (the message, then properties, traits or context, then
 * MAX_DEPTH levels inside them), checked without recursion before anything recursive
 * (JSON.stringify, the scrub walk) touches it.
 */
export const MAX_MESSAGE_DEPTH = MAX_DEPTH + 1
/**
 * The instants the events table's DateTime64(3) columns hold (1900-01-01 to 2299-12-31): a device
 * clock outside them is refused here rather than by the engine, where it would fail the whole
 * coalesced insert.
 */
export const MIN_STORABLE_MS = Date.UTC(1900, 0, 1)
export const MAX_STORABLE_MS = Date.UTC(2300, 0, 1) - 1
export const MAX_KEYS = 1000

const id = z
  .union([z.string(), z.number().finite()])
  .transform((v) => String(v))
  .pipe(z.string().trim().min(1, { message: 'must not be empty' }).max(200, { message: 'at most 200 characters' }))

const isoTime = z.string().max(64).refine((s) => !Number.isNaN(Date.parse(s)), { message: 'expected an ISO 8601 date-time' })

const obj = z.record(z.string(), z.unknown())

const common = {
  messageId: id.optional(),
  userId: id.optional().nullable(),
  anonymousId: id.optional().nullable(),
  timestamp: isoTime.optional().nullable(),
  // RudderStack-style SDKs send the device time as originalTimestamp.
  originalTimestamp: isoTime.optional().nullable(),
  sentAt: isoTime.optional().nullable(),
  context: obj.optional().nullable(),
  integrations: obj.optional().nullable(),
  receivedAt: z.unknown().optional(),
  version: z.unknown().optional(),
  _metadata: z.unknown().optional(),
  writeKey: z.unknown().optional(),
}

const hasIdentity = (m: { userId?: string | null; anonymousId?: string | null }) => Boolean(m.userId || m.anonymousId)
const identityRequired = { message: 'userId or anonymousId is required', path: ['userId'] }

const name = z.string().trim().min(1, { message: 'must not be empty' }).max(200, { message: 'at most 200 characters' })

export const trackMessage = z
  .object({ ...common, type: z.literal('track'), event: name, properties: obj.optional().nullable() })
  .refine(hasIdentity, identityRequired)
export const identifyMessage = z
  .object({ ...common, type: z.literal('identify'), traits: obj.optional().nullable() })
  .refine(hasIdentity, identityRequired)
export const pageMessage = z
  .object({ ...common, type: z.literal('page'), name: name.optional().nullable(), category: z.string().max(200).optional().nullable(), properties: obj.optional().nullable() })
  .refine(hasIdentity, identityRequired)
export const screenMessage = z
  .object({ ...common, type: z.literal('screen'), name: name.optional().nullable(), category: z.string().max(200).optional().nullable(), properties: obj.optional().nullable() })
  .refine(hasIdentity, identityRequired)
export const groupMessage = z
  .object({ ...common, type: z.literal('group'), groupId: id, traits: obj.optional().nullable() })
  .refine(hasIdentity, identityRequired)
export const aliasMessage = z.object({ ...common, type: z.literal('alias'), previousId: id, userId: id })

export const MESSAGE_SCHEMAS = {
  track: trackMessage,
  identify: identifyMessage,
  page: pageMessage,
  screen: screenMessage,
  group: groupMessage,
  alias: aliasMessage,
} as const

export type SegmentMessage =
  | z.infer<typeof trackMessage>
  | z.infer<typeof identifyMessage>
  | z.infer<typeof pageMessage>
  | z.infer<typeof screenMessage>
  | z.infer<typeof groupMessage>
  | z.infer<typeof aliasMessage>

/** The batch envelope; each item is validated on its own so one bad event spoils nothing else. */
export const batchEnvelope = z.object({
  batch: z.array(z.unknown()).min(1, { message: 'the batch is empty' }).max(10_000),
  sentAt: isoTime.optional().nullable(),
  context: obj.optional().nullable(),
  integrations: obj.optional().nullable(),
  writeKey: z.unknown().optional(),
  _metadata: z.unknown().optional(),
})

/** The body of a single-message endpoint (`/v1/track` ...): one message, checked on its own like a batch's. */
export const singleMessage = z.record(z.string(), z.unknown()).describe('one Segment message; see the Segment HTTP Tracking API')

/** What the API answers for a request that stored something (OpenAPI and tests use it). */
export const ingestResponse = z.object({
  success: z.boolean(),
  accepted: z.number().int().describe('events stored now'),
  duplicates: z.number().int().describe('events already stored earlier (same messageId), not stored again'),
  flagged: z.number().int().describe('events stored with tracking-plan violations (flag mode)'),
  queued: z
    .boolean()
    .describe('true when the events were durably queued (Kafka) rather than written; duplicates are then dropped by the writer'),
  rejected: z
    .array(
      z.object({
        index: z.number().int(),
        messageId: z.string().optional(),
        code: z.string(),
        field: z.string(),
        message: z.string(),
      }),
    )
    .describe('events not stored, by their index in the batch, with the field and reason'),
})
export type IngestResponse = z.infer<typeof ingestResponse>
