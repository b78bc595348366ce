import crypto from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { chDateTime, chEpoch } from '../core/time.js'
import type { KeyAllocator } from './key-allocator.js'

/**
 * Identity resolution. The customer number (Segment `userId`) owns a dense customer key; an
 * anonymous app id is linked to a key by `identify` (or `alias`); `alias` between two customer
 * numbers merges one key into the other. Events keep the key known when they arrived (0 for an
 * anonymous sender not yet linked); readers resolve through `identities` and `customer_merges`
 * (see core/identity.sql.ts), so a link or merge applies to earlier events at once and undoing it
 * needs no rewrite of the events table. Every change is recorded in `identity_changes`.
 */

export interface IdentityRef {
  userId?: string | undefined
  anonymousId?: string | undefined
}

export interface Actor {
  /** API key id, or `cli:<user>` */
  id: string
  reason: string
  messageId?: string
}

export const identityChange = z.object({
  changeId: z.string(),
  action: z.enum(['link', 'merge']),
  idKind: z.enum(['customer_no', 'anonymous_id', 'device_id', 'user_id']),
  idValue: z.string(),
  fromKey: z.number(),
  intoKey: z.number(),
  actor: z.string(),
  reason: z.string(),
  createdAt: z.string(),
  undoneAt: z.string().nullable(),
  undoneBy: z.string(),
})
export type IdentityChange = z.infer<typeof identityChange>

const changeRow = z.object({
  change_id: z.string(),
  action: z.enum(['link', 'merge']),
  id_kind: z.enum(['customer_no', 'anonymous_id', 'device_id', 'user_id']),
  id_value: z.string(),
  from_key: z.coerce.number(),
  into_key: z.coerce.number(),
  actor: z.string(),
  reason: z.string(),
  message_id: z.string(),
  created_at: z.string(),
  undone_at: z.string().nullable(),
  undone_by: z.string(),
})
type ChangeRow = z.infer<typeof changeRow>

export interface IdentityService {
  /** Keys for a batch of senders; unknown customer numbers get fresh keys (persisted first). */
  resolve(tenantId: number, refs: readonly IdentityRef[]): Promise<number[]>
  /** Identifiers whose rows were erased: their cached keys go, so a re-registered number gets a new key. */
  forget(tenantId: number, ids: readonly { kind: 'customer_no' | 'anonymous_id' | 'device_id'; value: string }[]): void
  /**
   * The same by key, for an erasure run by another process that this one saw only once finished
   * (its identifiers in clear are gone by then): one pass over the cache.
   */
  forgetKeys(tenantId: number, keys: ReadonlySet<number>): void
  /** Links an anonymous id to the customer number's key (identify). Returns the change, if any. */
  link(tenantId: number, anonymousId: string, userId: string, actor: Actor): Promise<IdentityChange | undefined>
  linkMany(tenantId: number, pairs: readonly [string, string][], actor: Actor): Promise<IdentityChange[]>
  /**
   * `alias previousId -> userId` from an event: a link when previousId is anonymous. When it is a
   * known customer number the alias would merge two customers, which events may not do (the app
   * key ships inside the app): refused with ALIAS_MERGE_FORBIDDEN; `merge` does it.
   */
  alias(tenantId: number, previousId: string, userId: string, actor: Actor): Promise<IdentityChange | undefined>
  /** Merges customer number `from` into `into` (both known), by an administrator with a reason. */
  merge(tenantId: number, from: string, into: string, actor: Actor): Promise<IdentityChange | undefined>
  /**
   * Indexes of the alias messages that would merge two customers, so the ingest answer can refuse
   * them one by one; their ids read as the message schema reads them (a number, spaces around).
   * `type` is the route's type for single calls.
   */
  mergingAliases(tenantId: number, messages: readonly unknown[], type?: string): Promise<Set<number>>
  undo(tenantId: number, changeId: string, actor: string): Promise<IdentityChange>
  changes(tenantId: number, opts?: { key?: number; limit?: number }): Promise<IdentityChange[]>
  /** Ensures keys exist for these customer numbers (bulk import); returns them in order. */
  keysFor(tenantId: number, customerNos: readonly string[], source: string): Promise<number[]>
}

/**
 * An id as the message schema makes it (segment.schema.ts): a string or a number, trimmed. The
 * merge check looks up what the alias will be applied with, or `10001` and `' 10001'` would pass
 * it and merge customer 10001 afterwards.
 */
const asId = (v: unknown): string => (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) ? String(v).trim() : '')

const idRow = z.object({ id_kind: z.enum(['customer_no', 'anonymous_id', 'device_id', 'user_id']), id_value: z.string(), customer_key: z.coerce.number() })

export function createIdentityService(deps: { db: Db; allocator: KeyAllocator; now?: () => Date; cacheSize?: number }): IdentityService {
  const { db, allocator } = deps
  const clock = deps.now ?? (() => new Date())
  // Readers and merges keep, of the versions of a link or merge, the one written last by time:
  // two writes of one in the same millisecond (a merge undone at once, a device linked twice)
  // would leave either. This service's writes are therefore a millisecond apart at least.
  let last = 0
  const now = (): Date => {
    last = Math.max(clock().getTime(), last + 1)
    return new Date(last)
  }
  // (tenant, kind, value) -> key. Cached only after the mapping is persisted. 0 is never cached
  // for anonymous ids: a link written by another process must be seen next time.
  const cache = new LRUCache<string, number>({ max: deps.cacheSize ?? 500_000 })
  const ck = (t: number, kind: string, v: string) => `${t}\u0000${kind}\u0000${v}`

  async function lookup(tenantId: number, kind: 'customer_no' | 'anonymous_id', values: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    const missing: string[] = []
    for (const v of values) {
      const k = cache.get(ck(tenantId, kind, v))
      if (k !== undefined) out.set(v, k)
      else missing.push(v)
    }
    if (missing.length) {
      const rows = await db.forTenant(tenantId).query(
        `SELECT id_kind, id_value, argMax(customer_key, updated_at) AS customer_key FROM identities
         WHERE tenant_id = {tenant:UInt16} AND id_kind = {kind:String} AND id_value IN (SELECT arrayJoin({values:Array(String)}))
         GROUP BY id_kind, id_value`,
        { kind, values: missing },
        idRow,
      )
      for (const r of rows) {
        if (r.customer_key === 0) continue // an undone link
        out.set(r.id_value, r.customer_key)
        cache.set(ck(tenantId, kind, r.id_value), r.customer_key)
      }
    }
    return out
  }

  async function writeIdentities(tenantId: number, kind: 'customer_no' | 'anonymous_id', pairs: [string, number][], source: string) {
    if (!pairs.length) return
    const at = chEpoch(now().getTime())
    await db
      .forTenant(tenantId)
      .insertTsv('identities', ['id_kind', 'id_value', 'customer_key', 'source', 'created_at', 'updated_at'], pairs.map(([value, key]) => [kind, value, key, source, at, at]))
    for (const [value, key] of pairs) {
      if (key === 0) cache.delete(ck(tenantId, kind, value))
      else cache.set(ck(tenantId, kind, value), key)
    }
  }

  async function keysFor(tenantId: number, customerNos: readonly string[], source: string): Promise<number[]> {
    const distinct = [...new Set(customerNos)]
    const known = await lookup(tenantId, 'customer_no', distinct)
    const unknown = distinct.filter((c) => !known.has(c))
    if (unknown.length) {
      const keys = await allocator.allocate(tenantId, unknown.length)
      const pairs = unknown.map((c, i) => [c, keys[i]!] as [string, number])
      await writeIdentities(tenantId, 'customer_no', pairs, source)
      for (const [c, k] of pairs) known.set(c, k)
    }
    return customerNos.map((c) => known.get(c)!)
  }

  /** Appends versions of change rows (a new change, or one marked undone); the latest wins. */
  async function recordChanges(tenantId: number, rows: readonly ChangeRow[]) {
    const updatedAt = chEpoch(now().getTime())
    await db.forTenant(tenantId).insertTsv(
      'identity_changes',
      ['change_id', 'action', 'id_kind', 'id_value', 'from_key', 'into_key', 'actor', 'reason', 'message_id', 'created_at', 'undone_at', 'undone_by', 'updated_at'],
      rows.map((r) => [r.change_id, r.action, r.id_kind, r.id_value, r.from_key, r.into_key, r.actor, r.reason, r.message_id, r.created_at, r.undone_at, r.undone_by, updatedAt]),
    )
  }

  const CHANGE_SELECT = `SELECT toString(change_id) AS change_id, action, id_kind, id_value, from_key, into_key, actor, reason, message_id,
              toString(created_at) AS created_at, if(isNull(undone_at), NULL, toString(undone_at)) AS undone_at, undone_by
       FROM identity_changes FINAL`

  const view = (r: ChangeRow): IdentityChange => ({
    changeId: r.change_id,
    action: r.action,
    idKind: r.id_kind,
    idValue: r.id_value,
    fromKey: r.from_key,
    intoKey: r.into_key,
    actor: r.actor,
    reason: r.reason,
    createdAt: r.created_at,
    undoneAt: r.undone_at,
    undoneBy: r.undone_by,
  })

  /** Links many (anonymousId, userId) pairs at once; the last pair for an anonymous id wins. */
  async function linkMany(tenantId: number, pairs: readonly [string, string][], actor: Actor): Promise<IdentityChange[]> {
    if (!pairs.length) return []
    const last = new Map<string, string>()
    for (const [anon, user] of pairs) last.set(anon, user)
    const anons = [...last.keys()]
    const users = anons.map((a) => last.get(a)!)
    const keys = await keysFor(tenantId, users, actor.reason)
    const before = await lookup(tenantId, 'anonymous_id', anons)
    const at = chDateTime(now())
    const changed: IdentityChange[] = []
    const rows: ChangeRow[] = []
    anons.forEach((anon, i) => {
      const from = before.get(anon) ?? 0
      if (from === keys[i]) return
      const row: ChangeRow = {
        change_id: crypto.randomUUID(),
        action: 'link',
        id_kind: 'anonymous_id',
        id_value: anon,
        from_key: from,
        into_key: keys[i]!,
        actor: actor.id,
        reason: actor.reason,
        message_id: actor.messageId ?? '',
        created_at: at,
        undone_at: null,
        undone_by: '',
      }
      rows.push(row)
      changed.push(view(row))
    })
    if (!rows.length) return []
    await writeIdentities(tenantId, 'anonymous_id', rows.map((r) => [r.id_value, r.into_key]), actor.reason)
    await recordChanges(tenantId, rows)
    return changed
  }

  async function link(tenantId: number, anonymousId: string, userId: string, actor: Actor) {
    return (await linkMany(tenantId, [[anonymousId, userId]], actor))[0]
  }

  async function activeMergeInto(tenantId: number, fromKey: number): Promise<number> {
    const rows = await db.forTenant(tenantId).query(
      `SELECT argMax(into_key, updated_at) AS into_key, argMax(active, updated_at) AS active FROM customer_merges
       WHERE tenant_id = {tenant:UInt16} AND from_key = {k:UInt32}`,
      { k: fromKey },
      z.object({ into_key: z.coerce.number(), active: z.coerce.number() }),
    )
    return rows[0] && rows[0].active ? rows[0].into_key : 0
  }

  async function alias(tenantId: number, previousId: string, userId: string, actor: Actor) {
    const asCustomer = (await lookup(tenantId, 'customer_no', [previousId])).get(previousId)
    if (asCustomer === undefined) return link(tenantId, previousId, userId, actor)
    throw new AppError('ALIAS_MERGE_FORBIDDEN', `${previousId} is a customer number: an alias may not merge it into ${userId}.`)
  }

  async function merge(tenantId: number, from: string, into: string, actor: Actor) {
    const known = await lookup(tenantId, 'customer_no', [from, into])
    const missing = [['from', from], ['to', into]].filter(([, no]) => !known.has(no!))
    if (missing.length) {
      throw new AppError('NOT_FOUND', `No customer ${missing.map(([, no]) => no).join(' or ')} in this tenant.`, {
        issues: missing.map(([field, no]) => ({ field: field!, message: `unknown customer number ${no}` })),
      })
    }
    return mergeKnown(tenantId, from, known.get(from)!, known.get(into)!, actor)
  }

  async function mergeKnown(tenantId: number, previousId: string, asCustomer: number, target: number, actor: Actor) {
    // Merge into the end of any chain, so readers resolve a key in one step.
    const into = (await activeMergeInto(tenantId, target)) || target
    if (asCustomer === into) return undefined
    if (into === asCustomer || (await activeMergeInto(tenantId, asCustomer)) !== 0) {
      throw new AppError('CONFLICT', `Customer ${previousId} is already merged; undo that merge first.`)
    }
    const changeId = crypto.randomUUID()
    const at = chDateTime(now())
    await db.forTenant(tenantId).insert('customer_merges', [{ from_key: asCustomer, into_key: into, change_id: changeId, active: 1, updated_at: at }])
    const row: ChangeRow = {
      change_id: changeId,
      action: 'merge',
      id_kind: 'customer_no',
      id_value: previousId,
      from_key: asCustomer,
      into_key: into,
      actor: actor.id,
      reason: actor.reason,
      message_id: actor.messageId ?? '',
      created_at: at,
      undone_at: null,
      undone_by: '',
    }
    await recordChanges(tenantId, [row])
    return view(row)
  }

  async function getChange(tenantId: number, changeId: string): Promise<ChangeRow> {
    if (!/^[0-9a-f-]{36}$/i.test(changeId)) throw new AppError('VALIDATION_FAILED', 'Not a change id.', { issues: [{ field: 'changeId', message: 'expected a UUID' }] })
    const rows = await db.forTenant(tenantId).query(
      `${CHANGE_SELECT} WHERE tenant_id = {tenant:UInt16} AND change_id = {id:String}`,
      { id: changeId },
      changeRow,
    )
    if (!rows[0]) throw new AppError('NOT_FOUND', `No identity change ${changeId} in this tenant.`)
    return rows[0]
  }

  return {
    forget(tenantId, ids) {
      for (const i of ids) cache.delete(ck(tenantId, i.kind, i.value))
    },
    forgetKeys(tenantId, keys) {
      if (!keys.size) return
      const prefix = `${tenantId}\u0000`
      const gone: string[] = []
      for (const [k, v] of cache.entries()) if (keys.has(v) && k.startsWith(prefix)) gone.push(k)
      for (const k of gone) cache.delete(k)
    },
    async resolve(tenantId, refs) {
      const userIds = [...new Set(refs.flatMap((r) => (r.userId ? [r.userId] : [])))]
      const anonIds = [...new Set(refs.flatMap((r) => (!r.userId && r.anonymousId ? [r.anonymousId] : [])))]
      const byUser = new Map<string, number>()
      if (userIds.length) {
        const keys = await keysFor(tenantId, userIds, 'ingest')
        userIds.forEach((u, i) => byUser.set(u, keys[i]!))
      }
      const byAnon = anonIds.length ? await lookup(tenantId, 'anonymous_id', anonIds) : new Map<string, number>()
      return refs.map((r) => (r.userId ? byUser.get(r.userId)! : r.anonymousId ? (byAnon.get(r.anonymousId) ?? 0) : 0))
    },
    link,
    linkMany,
    alias,
    merge,
    async mergingAliases(tenantId, messages, type) {
      const candidates = new Map<number, string>()
      messages.forEach((m, i) => {
        if (!m || typeof m !== 'object') return
        const { type: t, previousId, userId } = m as Record<string, unknown>
        const prev = asId(previousId)
        if ((t ?? type) === 'alias' && prev && asId(userId)) candidates.set(i, prev)
      })
      if (!candidates.size) return new Set()
      const known = await lookup(tenantId, 'customer_no', [...new Set(candidates.values())])
      return new Set([...candidates].filter(([, prev]) => known.has(prev)).map(([i]) => i))
    },
    keysFor,
    async undo(tenantId, changeId, actor) {
      const c = await getChange(tenantId, changeId)
      if (c.undone_at) throw new AppError('CONFLICT', `Change ${changeId} was already undone at ${c.undone_at}.`)
      if (c.action === 'link') {
        // Only undo a link that is still the current one; a later link has since replaced it.
        const current = (await lookup(tenantId, 'anonymous_id', [c.id_value])).get(c.id_value) ?? 0
        if (current !== c.into_key) {
          throw new AppError('CONFLICT', `${c.id_value} was linked again after this change; undo the later change first.`)
        }
        await writeIdentities(tenantId, 'anonymous_id', [[c.id_value, c.from_key]], 'undo')
      } else {
        await db.forTenant(tenantId).insert('customer_merges', [
          { from_key: c.from_key, into_key: c.into_key, change_id: c.change_id, active: 0, updated_at: chDateTime(now()) },
        ])
      }
      const at = chDateTime(now())
      await recordChanges(tenantId, [{ ...c, undone_at: at, undone_by: actor }])
      return view({ ...c, undone_at: at, undone_by: actor })
    },
    async changes(tenantId, opts = {}) {
      const rows = await db.forTenant(tenantId).query(
        `${CHANGE_SELECT}
         WHERE tenant_id = {tenant:UInt16} AND ({key:UInt32} = 0 OR from_key = {key:UInt32} OR into_key = {key:UInt32})
         ORDER BY created_at DESC LIMIT {limit:UInt32}`,
        { key: opts.key ?? 0, limit: opts.limit ?? 100 },
        changeRow,
      )
      return rows.map(view)
    },
  }
}
