/**
 * The audit trail's shape, shared by every capability that records into it. The trail itself
 * (storage, the hook that records routes, `GET /v1/audit`) lives in `audit/`; capabilities depend
 * on this interface only, so the core depends on none of them.
 *
 * Entries are append-only: nothing in the product updates or deletes one.
 */

/** Who acted: the key's holder (a person or a system), never only a key id. */
export interface AuditActor {
  /** The API key id, or `operator` for the platform operator, or `system` for a scheduled job. */
  keyId: string
  holder: string
  roles: readonly string[]
  clientIp: string
  requestId: string
}

export interface AuditEntry {
  /** What was done, `<object>.<verb>`: `tag.save`, `consent.record`, `segment.members.read` … */
  action: string
  /** The kind of object acted on: `tag`, `segment`, `campaign`, `customer`, `key` … */
  objectKind: string
  /** Which one (a tag name, a segment id, a key id); empty when the action has no single object. */
  objectId: string
  /** The customer number, when the entry concerns one customer. */
  customerNo?: string
  /** How many customers' personal data the action read or changed (member lists, exports, pulls). */
  customers?: number
  /** `ok`, or why it did not happen (`refused`, `failed`). */
  outcome?: 'ok' | 'refused' | 'failed'
  /** Small structured facts (a reason, a version, a count); never personal data in clear. */
  detail?: Record<string, unknown>
}

export interface AuditSink {
  record(tenantId: number, actor: AuditActor, entries: readonly AuditEntry[]): Promise<void>
}

/** How a route is audited, declared on the route: `config: { audit: { action, objectKind } }`. */
export interface RouteAudit {
  action: string
  objectKind: string
  /** The route parameter naming the object (`id`, `name` …), if any. */
  objectParam?: string
  /** The route parameter holding the customer number the route reads, if any. */
  customerParam?: string
  /** The route reads or changes personal data: recorded for every answer, refusals included. */
  personal?: boolean
}

/** What a handler adds to its route's entry once it knows it (how many customers, which object). */
export type AuditNote = Partial<Pick<AuditEntry, 'objectId' | 'customerNo' | 'customers' | 'detail'>>

declare module 'fastify' {
  interface FastifyContextConfig {
    audit?: RouteAudit
  }
  interface FastifyRequest {
    /** Set by a handler to complete its route's audit entry. */
    auditNote: AuditNote | undefined
  }
}
