import crypto from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { chDateTime, chEpoch } from '../core/time.js'
import { CHANGE_SELECT, changeRow, changeView as view, recordChanges, type ChangeRow, type IdentityChange } from './identity.changes.js'
import { createMergeRoutes } from './identity.merges.js'
import type { KeyAllocator } from './key-allocator.js'

export { identityChange, type IdentityChange } from './identity.changes.js'

/**
 * Identity resolution. The customer number (Segment `userId`) owns a dense customer key; an
 * anonymous app id is linked to a key by `identify` (or `alias`); `alias` between two customer
 * numbers merges one key into the other. Events keep the key known when they arrived (0 for an
 * anonymous sender not yet linked); readers resolve through `identities` and `customer_merges`
 * (see core/identity.sql.ts), so a link or merge applies to earlier events at once and undoing it
 * needs no rewrite of the events table. Every change is recorded in `identity_changes`
 * (identity.changes.ts); merges along chains are routed by identity.merges.ts.
 *
 * Several processes may write at once (API processes in cluster mode, ingest workers, an import
 * beside them), each with its own cache. What is about to be changed is read from the engine: the
 * previous key of a link written (what an undo restores) and the link an undo expects. Cached
 * links of anonymous ids are brought up to date with the links changed anywhere at most every
 * `linkRefreshMs` (one read of the links changed lately, per tenant in use), which bounds how long
 * another process's relink or undo goes unseen here: stamped on new events, or taken for the
 * link an event asks for (which is then written at the device's next event after that).
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
  /**
   * Merges customer number `from` into `into` (both known), by an administrator with a reason;
   * recorded as asked, routed to the end of `into`'s chain, and every merge into `from` with it
   * (identity.merges.ts). Undefined when they are one customer; CONFLICT when `from` is merged
   * already or `into` is merged into `from`.
   */
  merge(tenantId: number, from: string, into: string, actor: Actor): Promise<IdentityChange | undefined>
  /**
   * Indexes of the alias messages that would merge two customers, so the ingest answer can refuse
   * them one by one; their ids read as the message schema reads them (a number, spaces around).
   * `type` is the route's type for single calls.
   */
  mergingAliases(tenantId: number, messages: readonly unknown[], type?: string): Promise<Set<number>>
  /**
   * Undoes a link that is still the device's current one, or a merge (the merges routed through it
   * go back to the customers asked for). CONFLICT when undone already, for a link replaced since,
   * and for a row that only follows another change.
   */
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

/** How often cached links are brought up to date with links changed by other processes. */
const LINK_REFRESH_MS = 1_000
/** Writers stamp links with their own clocks: the refresh reads this far behind its last one. */
const CLOCK_SKEW_MS = 5_000

export function createIdentityService(deps: { db: Db; allocator: KeyAllocator; now?: () => Date; cacheSize?: number; linkRefreshMs?: number }): IdentityService {
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
  // (tenant, kind, value) -> key, cached only after the mapping is persisted. A customer number
  // keeps its key for good (an erasure drops it through `forget`). An anonymous id's link changes
  // with the customer on the device, possibly in another process: dropped when the refresh sees
  // it changed; 0 (not linked) is never cached, so a link written elsewhere is seen next time.
  // The two share the size one cache had.
  const max = Math.ceil((deps.cacheSize ?? 500_000) / 2)
  const numbers = new LRUCache<string, number>({ max })
  const links = new LRUCache<string, number>({ max })
  const cacheOf = (kind: string) => (kind === 'anonymous_id' ? links : numbers)
  const ck = (t: number, kind: string, v: string) => `${t}\u0000${kind}\u0000${v}`

  // Per tenant: from which write time the next refresh reads, and when the last one ran. A
  // tenant's first use reads nothing: its links are cached only from reads made after it.
  const refreshMs = deps.linkRefreshMs ?? LINK_REFRESH_MS
  const freshness = new Map<number, { since: number; checkedAt: number; inflight: Promise<void> | undefined }>()
  async function refreshLinks(tenantId: number): Promise<void> {
    const t = clock().getTime()
    const f = freshness.get(tenantId)
    if (!f) {
      freshness.set(tenantId, { since: t - CLOCK_SKEW_MS, checkedAt: t, inflight: undefined })
      return
    }
    if (t - f.checkedAt < refreshMs) return
    // Concurrent callers share one read. It brings the current link of each id changed lately,
    // so an entry already up to date stays: reading behind by the clock skew, every change is
    // seen by several refreshes.
    f.inflight ??= (async () => {
      const rows = await db.forTenant(tenantId).query(
        `SELECT id_kind, id_value, argMax(customer_key, updated_at) AS customer_key FROM identities
         WHERE tenant_id = {tenant:UInt16} AND id_kind = 'anonymous_id' AND id_value IN (
           SELECT id_value FROM identities
           WHERE tenant_id = {tenant:UInt16} AND id_kind = 'anonymous_id' AND updated_at >= {since:DateTime64(3, 'UTC')})
         GROUP BY id_kind, id_value`,
        { since: chEpoch(f.since) },
        idRow,
      )
      for (const r of rows) {
        const k = ck(tenantId, 'anonymous_id', r.id_value)
        const had = links.peek(k)
        if (had !== undefined && had !== r.customer_key) links.delete(k)
      }
      f.since = t - CLOCK_SKEW_MS
      f.checkedAt = t
    })().finally(() => (f.inflight = undefined))
    await f.inflight
  }

  /** Keys from the engine, bypassing the cache (which they renew). */
  async function current(tenantId: number, kind: 'customer_no' | 'anonymous_id', values: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    if (!values.length) return out
    // Before the read: a tenant's refreshes must cover every link cached from reads.
    if (kind === 'anonymous_id') await refreshLinks(tenantId)
    const rows = await db.forTenant(tenantId).query(
      `SELECT id_kind, id_value, argMax(customer_key, updated_at) AS customer_key FROM identities
       WHERE tenant_id = {tenant:UInt16} AND id_kind = {kind:String} AND id_value IN (SELECT arrayJoin({values:Array(String)}))
       GROUP BY id_kind, id_value`,
      { kind, values },
      idRow,
    )
    const cache = cacheOf(kind)
    for (const r of rows) {
      if (r.customer_key === 0) continue // an undone link
      out.set(r.id_value, r.customer_key)
      cache.set(ck(tenantId, kind, r.id_value), r.customer_key)
    }
    for (const v of values) if (!out.has(v)) cache.delete(ck(tenantId, kind, v))
    return out
  }

  async function lookup(tenantId: number, kind: 'customer_no' | 'anonymous_id', values: string[]): Promise<Map<string, number>> {
    if (kind === 'anonymous_id') await refreshLinks(tenantId)
    const cache = cacheOf(kind)
    const out = new Map<string, number>()
    const missing: string[] = []
    for (const v of values) {
      const k = cache.get(ck(tenantId, kind, v))
      if (k !== undefined) out.set(v, k)
      else missing.push(v)
    }
    for (const [v, k] of await current(tenantId, kind, missing)) out.set(v, k)
    return out
  }

  async function writeIdentities(tenantId: number, kind: 'customer_no' | 'anonymous_id', pairs: [string, number][], source: string) {
    if (!pairs.length) return
    if (kind === 'anonymous_id') await refreshLinks(tenantId)
    const at = chEpoch(now().getTime())
    await db
      .forTenant(tenantId)
      .insertTsv('identities', ['id_kind', 'id_value', 'customer_key', 'source', 'created_at', 'updated_at'], pairs.map(([value, key]) => [kind, value, key, source, at, at]))
    const cache = cacheOf(kind)
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

  const merges = createMergeRoutes({ db, now })

  /** Links many (anonymousId, userId) pairs at once; the last pair for an anonymous id wins. */
  async function linkMany(tenantId: number, pairs: readonly [string, string][], actor: Actor): Promise<IdentityChange[]> {
    if (!pairs.length) return []
    const last = new Map<string, string>()
    for (const [anon, user] of pairs) last.set(anon, user)
    const anons = [...last.keys()]
    const users = anons.map((a) => last.get(a)!)
    const keys = await keysFor(tenantId, users, actor.reason)
    // Most events carry a customer and a device already linked: the cache (up to date within
    // linkRefreshMs) says so without a read; reading every pair from the engine tripled a flush's
    // identity time in the ingest bench. The others are read from the engine before a link is
    // written: another process may have relinked the device, and the previous key recorded is
    // what an undo restores.
    await refreshLinks(tenantId)
    const linked = anons.map((a, i) => links.get(ck(tenantId, 'anonymous_id', a)) === keys[i])
    const before = await current(tenantId, 'anonymous_id', anons.filter((_, i) => !linked[i]))
    const at = chDateTime(now())
    const changed: IdentityChange[] = []
    const rows: ChangeRow[] = []
    anons.forEach((anon, i) => {
      if (linked[i]) return
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
    await recordChanges(db, tenantId, rows, now())
    return changed
  }

  async function link(tenantId: number, anonymousId: string, userId: string, actor: Actor) {
    return (await linkMany(tenantId, [[anonymousId, userId]], actor))[0]
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
    const change = await merges.merge(tenantId, { no: from, key: known.get(from)! }, { no: into, key: known.get(into)! }, actor)
    return change && view(change)
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
      for (const i of ids) cacheOf(i.kind).delete(ck(tenantId, i.kind, i.value))
    },
    forgetKeys(tenantId, keys) {
      if (!keys.size) return
      const prefix = `${tenantId}\u0000`
      for (const cache of [numbers, links]) {
        const gone: string[] = []
        for (const [k, v] of cache.entries()) if (keys.has(v) && k.startsWith(prefix)) gone.push(k)
        for (const k of gone) cache.delete(k)
      }
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
      if (c.action === 'merge') {
        const undone: ChangeRow = { ...c, undone_at: chDateTime(now()), undone_by: actor }
        await merges.undo(tenantId, c, undone)
        return view(undone)
      }
      // Only undo a link that is still the current one (read from the engine: another process
      // may have linked the device since); a later link has replaced it otherwise.
      const linked = (await current(tenantId, 'anonymous_id', [c.id_value])).get(c.id_value) ?? 0
      if (linked !== c.into_key) {
        throw new AppError('CONFLICT', `${c.id_value} was linked again after this change; undo the later change first.`)
      }
      await writeIdentities(tenantId, 'anonymous_id', [[c.id_value, c.from_key]], 'undo')
      const undone: ChangeRow = { ...c, undone_at: chDateTime(now()), undone_by: actor }
      await recordChanges(db, tenantId, [undone], now())
      return view(undone)
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
