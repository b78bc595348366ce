import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { IdentityService } from './identity.service.js'
import type { PendingEvent } from './normalize.js'
import { writeTraits } from './stage-isolation.js'

/**
 * The writer's per-tenant identity stage, run before the shared insert: the erasure check,
 * identity links and aliases, the customer keys of the events, and their traits.
 */

/**
 * Per event, whether it belongs to an erased customer and must be dropped. Injected by the
 * composition root (the privacy capability owns the tombstones; ingest does not import it).
 */
export type DropCheck = (tenantId: number, events: readonly PendingEvent[], opts?: { count?: boolean }) => Promise<boolean[]>

/** An event of a flush with the request it came in; `key` is set by the identity stage. */
export interface Owner {
  sub: number
  /** Index in the submission's event list. */
  position: number
  tenantId: number
  key: number
  e: PendingEvent
}

/** What the identity stage decided for one tenant's events. */
export interface Staged {
  keep: Owner[]
  erased: Owner[]
  /** Events whose trait the engine refused (stage-isolation.ts): not inserted. */
  refused: { x: Owner; field: string; message: string }[]
}

export function createIdentityStage(deps: { db: Db; identities: IdentityService; log: Logger; dropped?: DropCheck | undefined; probe(): Promise<void> }) {
  const { db, identities, log, probe } = deps

  async function applyIdentity(tenantId: number, events: PendingEvent[], actor: string) {
    const links: [string, string][] = []
    for (const e of events) {
      if (e.type === 'alias') {
        // Links first, so an alias later in the batch sees them.
        await identities.linkMany(tenantId, links.splice(0), { id: actor, reason: 'identify' })
        await identities.alias(tenantId, e.previousId!, e.userId, { id: actor, reason: 'alias', messageId: e.messageId }).catch((err: unknown) => {
          // A refused merge (already merged the other way) leaves the event stored and the
          // identities unchanged; it is logged rather than failing the batch.
          log.warn({ err, tenant: tenantId, messageId: e.messageId }, 'alias not applied')
        })
      } else if (e.userId && e.anonymousId) {
        links.push([e.anonymousId, e.userId])
      }
    }
    await identities.linkMany(tenantId, links, { id: actor, reason: 'identify' })
  }

  /** One tenant's erasure check, identity links, keys and traits. */
  async function identify(tenantId: number, all: Owner[], actor: string): Promise<Staged> {
    const staged: Staged = { keep: [], erased: [], refused: [] }
    let list = all
    // Before identities: an erased number must not get a key (or links) again.
    if (deps.dropped) {
      const drop = await deps.dropped(tenantId, all.map((x) => x.e))
      list = []
      all.forEach((x, i) => (drop[i] ? staged.erased : list).push(x))
      if (!list.length) return staged
    }
    await applyIdentity(tenantId, list.map((x) => x.e), actor)
    const keys = await identities.resolve(tenantId, list.map((x) => ({ userId: x.e.userId || undefined, anonymousId: x.e.anonymousId || undefined })))
    const refused = await writeTraits(db.forTenant(tenantId), list.map((x) => x.e), keys, probe)
    list.forEach((x, i) => {
      x.key = keys[i]!
      const no = refused.get(i)
      if (no) staged.refused.push({ x, ...no })
      else staged.keep.push(x)
    })
    return staged
  }

  return { identify }
}
