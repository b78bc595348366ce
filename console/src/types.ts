/** The shapes of the API answers the console reads (see the route schemas under the capability folders). */

/** A problem the API reports: the field path (`rule.all.1.value`) and what is wrong. */
export interface Issue {
  field?: string
  message: string
}

export type Purpose = 'marketing' | 'service' | 'risk' | 'security'
export type Scalar = string | number | boolean

export interface Tenant {
  id: number
  slug: string
  name: string
  kind: string
  timeZone: string
}

export interface TagState {
  version: number
  covered: number
  changed: number
  runId: string
  computedAt: string
  asOf: string
}

export interface Tag {
  name: string
  type: 'boolean' | 'enum' | 'number' | 'date' | 'string_list'
  values?: string[]
  description: { zh: string; en: string }
  owner: string
  purpose: Purpose[]
  sensitivity: 'low' | 'medium' | 'high'
  schedule: string
  rule: Record<string, unknown>
  version: number
  createdBy: string
  createdAt: string
  state: TagState | null
  coverage: number | null
}

export interface Bucket {
  value: string
  lo?: number
  hi?: number
  customers: number
}

export interface TagDetail extends Tag {
  distribution: Bucket[]
}

export interface PlanNode {
  path: string
  node: string
  strategy: string
  detail: string
  children?: PlanNode[]
}

export interface Preview {
  count: number
  total: number
  share: number
  breakdown: Record<string, { value: string; customers: number }[]>
  sample: string[]
  plan: { root: PlanNode; eventScans: number; bitmapLeaves: number; eventLeaves: number }
  executor: 'memory' | 'clickhouse'
  ms: number
}

export interface SavedSegment {
  id: string
  version: number
  name: string
  description: string
  purpose: Purpose
  rule: unknown
  schedule: string
  retired: boolean
  archived: boolean
  createdBy: string
  createdAt: string
  changeNote: string
}

export interface SegmentRun {
  build: string
  version: number
  size: number
  entered: number
  exited: number
  finishedAt: string
  trigger: string
}

export type Schedule =
  | { kind: 'once'; at: string }
  | { kind: 'cron'; cron: string }
  | { kind: 'active_hour'; fallbackHour?: number; lookbackDays?: number }
  | { kind: 'event'; steps: unknown[]; withinMinutes: number }

export interface Texts {
  zh: string
  en: string
}

export interface Message {
  title?: Texts
  body: Texts
  elder?: { title?: Texts; body: Texts }
}

export interface Campaign {
  id: string
  version: number
  status: 'active' | 'paused' | 'retired' | 'archived'
  name: string
  description: string
  purpose: 'security' | 'service' | 'marketing'
  channel: string
  priority: string
  audience: { segment?: string; rule?: unknown; all?: true }
  dateTrigger?: { on: string; daysBefore?: number }
  schedule: Schedule
  message: Message
  validFrom?: string
  validUntil?: string
  ttlMinutes: number
  controlPerMille: number
  conversion?: { event: { names?: string[] }; withinHours: number }
  createdBy: string
  createdAt: string
  changeNote: string
}

export interface Group {
  customers: number
  converted: number
  rate: number | null
}

export interface CampaignStats {
  campaignId: string
  targeted: number
  queued: number
  suppressed: Record<string, number>
  sent: number
  failed: number
  delivered: number
  opened: number
  clicked: number
  conversion: {
    event: string[]
    withinHours: number
    groups: { treated: Group; holdout: Group; control: Group }
    upliftVsHoldout: number | null
    upliftVsControl: number | null
  } | null
}

export interface Target {
  targetId: string
  customerNo: string
  localDate: string
  status: string
  reason: string
  dueAt: string
  language: string
  variant: string
  title: string
  body: string
}

export interface CustomerView {
  profile: {
    customerId: string
    nameMasked: string
    gender: string
    ageBand: string | null
    regionCode: string
    occupation: string
    language: string
    elderMode: boolean
  } | null
  tags: { name: string; type: string; value: string | number | boolean | string[] }[]
}

export interface Reason {
  kind: string
  /** A stable name of the explanation (added with `text`; older servers send neither). */
  code?: string
  detail: string
  /** What the customer reads, in the layout's language. */
  text?: string
  [k: string]: unknown
}

export interface Layout {
  customerId: string | null
  known: boolean
  elder: boolean
  largeElements: boolean
  holdout: boolean
  experiment: { id: string; variant: string } | null
  personalized: boolean
  personalizedReason: 'personalization_off' | 'holdout' | 'unknown_customer' | null
  modules: { id: string; title: string; reason: Reason; items: { id: string; type: string; title: string; deeplink: string; category: string; reason: Reason; score: number }[] }[]
}

/** An entry of the audit trail (GET /v1/audit). */
export interface AuditEntry {
  entryId: string
  at: string
  keyId: string
  holder: string
  roles: string[]
  clientIp: string
  requestId: string
  action: string
  objectKind: string
  objectId: string
  customerNo: string
  customers: number
  outcome: string
  status: number
  detail: Record<string, unknown>
}

export interface PipelineRun {
  runId: string
  pipeline: string
  mode: string
  trigger: string
  status: 'running' | 'succeeded' | 'partial' | 'failed' | 'skipped'
  attempt: number
  startedAt: string
  finishedAt: string | null
  rows: number
  error: string
}

export interface PipelineStatus {
  pipeline: string
  running: boolean
  lastRun: PipelineRun | null
  lastSuccess: PipelineRun | null
  schedules: { pipeline: string; cron: string; timeZone: string; tags: string[]; next: string | null }[]
}
