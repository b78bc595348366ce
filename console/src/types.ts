import type { paths } from './api.gen.js'

/** The shapes the console reads: API answers from the generated types, and the console's own. */

/** A problem the API reports: the field path (`rule.all.1.value`) and what is wrong. */
export interface Issue {
  field?: string
  message: string
}

export type Purpose = 'marketing' | 'service' | 'risk' | 'security'
export type Scalar = string | number | boolean

/**
 * API answers: the types generated from the API's OpenAPI document (api.gen.ts, `npm run
 * gen:api-types`). Where a route's schema is looser than what the console relies on (a tag's
 * type is a string there, a campaign's schedule unknown), the narrower shape is stated here.
 */
type Ok<R> = R extends { responses: { 200: { content: { 'application/json': infer T } } } } ? T : never
type Get<P extends keyof paths> = paths[P] extends { get: infer O } ? Ok<O> : never
type Post<P extends keyof paths> = paths[P] extends { post: infer O } ? Ok<O> : never
type PostBody<P extends keyof paths> = paths[P] extends { post: { requestBody: { content: { 'application/json': infer B } } } } ? B : never

export type Tenant = Get<'/v1/tenant'>

type ApiTag = Get<'/v1/tags'>['tags'][number]
export type TagState = NonNullable<ApiTag['state']>
export type Tag = Omit<ApiTag, 'type' | 'purpose' | 'sensitivity' | 'rule'> & {
  type: 'boolean' | 'enum' | 'number' | 'date' | 'string_list'
  purpose: Purpose[]
  sensitivity: 'low' | 'medium' | 'high'
  rule: Record<string, unknown>
}
export type Bucket = Get<'/v1/tags/{name}'>['distribution'][number]
export type TagDetail = Tag & { distribution: Bucket[] }

/** The plan's tree is recursive: the API document leaves it untyped (see api-types.ts). */
export interface PlanNode {
  path: string
  node: string
  strategy: string
  detail: string
  children?: PlanNode[]
}
type ApiPreview = Post<'/v1/segments/preview'>
export type Preview = Omit<ApiPreview, 'plan'> & { plan: Omit<ApiPreview['plan'], 'root'> & { root: PlanNode } }

export type SavedSegment = Omit<Get<'/v1/segments'>['segments'][number], 'purpose'> & { purpose: Purpose }
export type SegmentRun = Get<'/v1/segments/{id}/runs'>['runs'][number]

/** A campaign's schedule: the campaign routes answer it untyped (`schedule: unknown`). */
export type Schedule =
  | { kind: 'once'; at: string }
  | { kind: 'cron'; cron: string }
  | { kind: 'active_hour'; fallbackHour?: number; lookbackDays?: number }
  | { kind: 'event'; steps: unknown[]; withinMinutes: number }

/** A campaign's message, as the template preview takes it (the campaign's own message schema). */
export type Message = PostBody<'/v1/push/templates/preview'>['message']
export type Texts = Message['body']

type ApiCampaign = Get<'/v1/push/campaigns'>['campaigns'][number]
export type Campaign = Omit<ApiCampaign, 'audience' | 'dateTrigger' | 'schedule' | 'message' | 'variants' | 'conversion'> & {
  audience: { segment?: string; rule?: unknown; all?: true }
  dateTrigger?: { on: string; daysBefore?: number }
  schedule: Schedule
  /** One message, or variants (A/B) each with its share of the customers. */
  message?: Message
  variants?: { id: string; weight: number; message: Message }[]
  conversion?: { event: { names?: string[] }; withinHours: number }
}

export type CampaignStats = Get<'/v1/push/campaigns/{id}/stats'>
export type VariantStats = CampaignStats['variants'][number]
export type Group = NonNullable<CampaignStats['conversion']>['groups']['treated']
export type Target = Get<'/v1/push/campaigns/{id}/targets'>['targets'][number]
export type CustomerView = Get<'/v1/customers/{id}'>

/** The next runs of a cron, as the scheduler makes them (POST /v1/push/schedules/preview). */
export type SchedulePreview = Post<'/v1/push/schedules/preview'>
/** A message filled for a customer by the server, as targeting fills it (POST /v1/push/templates/preview). */
export type TemplatePreview = Post<'/v1/push/templates/preview'>
export type TemplatePreviewRequest = PostBody<'/v1/push/templates/preview'>

type ApiLayout = Get<'/v1/layout'>
export type Reason = ApiLayout['modules'][number]['reason']
export type Layout = ApiLayout

/** An entry of the audit trail (GET /v1/audit). */
export type AuditEntry = Get<'/v1/audit'>['entries'][number]

export type PipelineRun = Get<'/v1/pipelines/runs'>['runs'][number]

export type PipelineStatus = Get<'/v1/pipelines/status'>['pipelines'][number]
