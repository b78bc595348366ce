import { LRUCache } from 'lru-cache'
import { z } from 'zod'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import { addDays, daysBetween, localDate, zonedMidnight } from '../core/time.js'
import type { BitmapStore } from '../segments/bitmap.store.js'
import type { TagRepository } from '../tags/tag.repository.js'
import type { TenantService } from '../tenants/tenants.service.js'
import type { CatalogRepository } from './catalog.repository.js'
import { customerDigest, inHoldout } from '../core/holdout.js'
import { createExposureWriter } from './exposure.writer.js'
import { assignVariant, customerHash, dailyDraw } from './experiments.js'
import { rankModules, toLayoutModules, type LayoutModule, type RankedModule } from './layout.rank.js'
import { renderLayout, type LayoutHead } from './layout.render.js'
import { loadSnapshot, lookupCustomer, type LayoutSnapshot } from './model.snapshot.js'
import { createPersonalizationSwitch } from './personalization.js'

/**
 * Serves layouts from per-tenant snapshots held in memory. A tenant's snapshot is loaded on its
 * first request, then checked every `refreshMs` against the newest complete model build and
 * the catalogue versions (its own and its group's); a changed one is loaded in the background
 * and swapped in whole, so a request never sees half of one. Requests never query ClickHouse.
 *
 * Exposures: every layout served is appended to `layout_exposures` in batches (caps, fatigue
 * and the experiments' analysis read it); exposures of capped items are also counted in the
 * process until a model build has them, so caps hold between builds too. A build counts what
 * was written before it read, so a new build forgets only the exposures written by then: those
 * served later, or still waiting to be written, stay counted here.
 */

export interface LayoutRequest {
  tenantId: number
  customerId?: string | undefined
  screen: 'home'
  lang: 'zh' | 'en'
  mode: 'auto' | 'elder' | 'standard'
  /** The visitor's region code (used for unknown and anonymous visitors). */
  region?: string | undefined
  /** Whether reasons may name high-sensitivity tags: the key holds personal:read (RankContext says how). Absent: they may not. */
  withSensitive?: boolean | undefined
}

/** Capped items served to a customer at once: what another serving process counts too (layout.share.ts). */
export interface CappedServe {
  tenantId: number
  key: number
  /** The tenant's local day (days since 1970-01-01) and the time served (ms). */
  today: number
  nowMs: number
  items: string[]
}

/** A layout as objects: the head (who, which mode, which variant), the model, the modules. */
export interface Layout extends LayoutHead {
  model: { build: string | null; builtAt: string | null; catalogVersion: { group: number; own: number } }
  modules: LayoutModule[]
}

const DEFAULT_HOLDOUT = 0
const DEFAULT_VARIANT = Object.freeze({ name: 'default', weight: 1, popularityWeight: 1, affinityWeight: 1, exploration: true })
const NONE_SERVED = Object.freeze({ today: 0, week: 0 })

/** This process's exposures of one capped item to one customer: the local day of the latest, how many that day, and when each was served (ms, oldest first). */
interface OwnCount {
  day: number
  today: number
  at: number[]
}
/** A customer's own counts by item id (by id, so a catalogue change keeps them), none served before `cut`. */
interface OwnCounts {
  cut: number
  items: Map<string, OwnCount>
}

/** Drops the exposures served before `cut`: the latest stay, so today's count is at most what is left. */
function trimOwn(own: OwnCounts, cut: number): void {
  for (const [id, e] of own.items) {
    let n = 0
    while (n < e.at.length && e.at[n]! < cut) n++
    if (n === e.at.length) own.items.delete(id)
    else if (n > 0) {
      e.at.splice(0, n)
      e.today = Math.min(e.today, e.at.length)
    }
  }
  own.cut = cut
}

export function createLayoutService(deps: {
  db: Db
  tenants: TenantService
  tags: TagRepository
  catalogs: CatalogRepository
  bitmaps: BitmapStore
  log: Logger
  metrics: Metrics
  refreshMs?: number
  flushMs?: number
  /** Bytes of exposures waiting that start a write before the interval ends (default 64 MB). */
  flushBytes?: number
  /** How often switches recorded by other processes are read (default 2 s). */
  switchRefreshMs?: number
}) {
  const snapshots = new Map<number, { snap: LayoutSnapshot; version: string }>()
  const loading = new Map<number, Promise<LayoutSnapshot>>()
  // Exposures of capped items this process served that the tenant's model build has not
  // counted, per customer; `cut` moves with each new build, and a customer's counts are trimmed
  // to it when next read.
  const served = new Map<number, { build: string | null; cut: number; customers: LRUCache<number, OwnCounts> }>()
  const servedOf = (tenantId: number) => served.get(tenantId)?.customers
  const exposures = createExposureWriter({ db: deps.db, log: deps.log, metrics: deps.metrics, flushMs: deps.flushMs, flushBytes: deps.flushBytes })
  // Erased customers' keys, per tenant: a snapshot loaded before the erasure still indexes them,
  // so they are served as unknown visitors from the moment of the erasure (keys are never reused).
  const erased = new Map<number, Set<number>>()
  let timer: NodeJS.Timeout | undefined
  const loadSeconds = deps.metrics.histogram('qianmian_layout_snapshot_load_seconds', 'Layout snapshot load time', ['tenant'], [0.1, 0.5, 1, 5, 15, 60, 300])
  const switches = createPersonalizationSwitch({
    db: deps.db,
    ...(deps.switchRefreshMs ? { refreshMs: deps.switchRefreshMs } : {}),
    onError: (tenant, err) => deps.log.warn({ tenant, err }, 'personalization switches not refreshed; serving the ones held'),
  })
  const servedTotal = deps.metrics.counter('qianmian_layouts_served_total', 'Layouts served', ['tenant', 'kind'])
  const cappedListeners: ((e: CappedServe) => void)[] = []

  // The tenant's local day, kept until its next local midnight: formatting a date in a time zone
  // costs more than ranking a module, and the day changes once a day.
  const days = new Map<string, { day: string; today: number; until: number }>()
  function localDay(timeZone: string, nowMs: number): { day: string; today: number } {
    const hit = days.get(timeZone)
    if (hit && nowMs < hit.until) return hit
    const day = localDate(new Date(nowMs), timeZone)
    const entry = { day, today: daysBetween('1970-01-01', day), until: zonedMidnight(addDays(day, 1), timeZone).getTime() }
    days.set(timeZone, entry)
    return entry
  }

  async function currentVersion(tenantId: number) {
    const tenant = await deps.tenants.get(tenantId)
    const [m] = await deps.db.forTenant(tenantId).query(
      `SELECT toString(build) AS build, toString(built_at) AS built_at, toUnixTimestamp64Milli(as_of) AS as_of FROM rec_models FINAL
       WHERE tenant_id = {tenant:UInt16} AND complete = 1 ORDER BY build DESC LIMIT 1`,
      {},
      z.object({ build: z.string(), built_at: z.string(), as_of: z.coerce.number() }),
    )
    const eff = await deps.catalogs.effective(tenant)
    return { tenant, eff, build: m?.build ?? null, builtAt: m?.built_at ?? null, asOfMs: m?.as_of ?? 0, version: `${m?.build ?? '-'}|${eff.groupVersion}|${eff.ownVersion}` }
  }

  async function load(tenantId: number): Promise<LayoutSnapshot> {
    const inflight = loading.get(tenantId)
    if (inflight) return inflight
    const p = (async () => {
      const end = loadSeconds.startTimer({ tenant: String(tenantId) })
      try {
        const v = await currentVersion(tenantId)
        const defs = new Map((await deps.tags.list(tenantId)).map((d) => [d.name, d]))
        // A snapshot load reads a whole build: the pipeline lane, so the request lane stays free.
        const snap = await loadSnapshot(
          { db: deps.db.lane('pipeline'), bitmaps: deps.bitmaps, log: deps.log },
          { tenant: v.tenant, catalog: v.eff.catalog, catalogVersions: { group: v.eff.groupVersion, own: v.eff.ownVersion }, build: v.build, builtAt: v.builtAt, defs, asOf: new Date() },
        )
        snapshots.set(tenantId, { snap, version: v.version })
        // A new build has what was written before it read (at its as-of time or later); the same
        // build (a catalogue change) has nothing new.
        const held = served.get(tenantId)
        if (!held) served.set(tenantId, { build: v.build, cut: 0, customers: new LRUCache({ max: 500_000 }) })
        else if (held.build !== v.build) {
          held.build = v.build
          held.cut = Math.max(held.cut, exposures.writtenBefore(v.asOfMs))
        }
        deps.log.info({ tenant: tenantId, build: v.build, items: snap.items.length, customers: snap.customers.keys.length, ms: Math.round(snap.loadedMs) }, 'layout snapshot loaded')
        return snap
      } finally {
        end()
        loading.delete(tenantId)
      }
    })()
    loading.set(tenantId, p)
    return p
  }

  async function refresh(): Promise<void> {
    for (const [tenantId, held] of snapshots) {
      try {
        const v = await currentVersion(tenantId)
        if (v.version !== held.version) await load(tenantId)
      } catch (err) {
        deps.log.warn({ tenant: tenantId, err }, 'layout snapshot refresh failed; serving the one held')
      }
    }
  }

  /** The customer's own counts, without what the tenant's build has counted since they were read. */
  function ownCounts(tenantId: number, key: number): OwnCounts | undefined {
    const held = served.get(tenantId)
    const own = held?.customers.get(key)
    if (own && own.cut < held!.cut) trimOwn(own, held!.cut)
    return own
  }

  function countServed(tenantId: number, key: number, today: number, nowMs: number, items: string[]): void {
    const held = served.get(tenantId)
    if (!held) return
    const own = ownCounts(tenantId, key) ?? { cut: held.cut, items: new Map<string, OwnCount>() }
    for (const i of items) {
      const e = own.items.get(i)
      if (!e) own.items.set(i, { day: today, today: 1, at: [nowMs] })
      else {
        e.today = e.day === today ? e.today + 1 : 1
        e.day = today
        e.at.push(nowMs)
      }
    }
    held.customers.set(key, own)
  }


  // prom-client children per tenant and kind: resolving labels per request showed in profiles,
  // and so did a string key per request to find them.
  const KINDS = ['personal', 'holdout', 'default'] as const
  const servedCounters = new Map<number, { inc(): void }[]>()
  const countLayout = (tenantId: number, kind: 0 | 1 | 2) => {
    let c = servedCounters.get(tenantId)
    if (!c) servedCounters.set(tenantId, (c = KINDS.map((k) => servedTotal.labels(String(tenantId), k))))
    c[kind]!.inc()
  }

  type Served = { snap: LayoutSnapshot; head: LayoutHead; ranked: RankedModule[]; lang: 'zh' | 'en' }

  /**
   * Ranks one request's layout and books its exposure. Once the tenant's snapshot, switches and
   * record are held (every request but a tenant's first) it answers without a promise: the
   * route then replies in the same tick, with no microtask hops per request.
   */
  function serve(req: LayoutRequest): Served | Promise<Served> {
    const snap = snapshots.get(req.tenantId)?.snap
    const tenant = deps.tenants.cached(req.tenantId)
    if (snap && tenant && !switches.ready(req.tenantId)) return serveWith(snap, tenant.timeZone, req)
    return (async () => {
      const s = snap ?? (await load(req.tenantId))
      await switches.ready(req.tenantId)
      return serveWith(s, (tenant ?? (await deps.tenants.get(req.tenantId))).timeZone, req)
    })()
  }

  function serveWith(snap: LayoutSnapshot, timeZone: string, req: LayoutRequest): Served {
    const nowMs = Date.now()
    const { day, today } = localDay(timeZone, nowMs)
    const customerNo = req.customerId
    const digest = customerNo ? customerDigest(customerNo) : undefined
    const found = digest ? (lookupCustomer(snap.index, customerHash(digest)) ?? 0) : 0
    const key = found !== 0 && erased.get(req.tenantId)?.has(found) ? 0 : found
    // Personalization off: outside every experiment, the holdout included (README), so the
    // holdout arm holds only customers who could have been personalized.
    const off = key !== 0 && switches.off(req.tenantId, key)
    const holdout = key !== 0 && !off && inHoldout(req.tenantId, digest!, snap.catalog.holdoutPerMille ?? DEFAULT_HOLDOUT)
    const assignment = key !== 0 && !holdout && !off && snap.catalog.experiment ? assignVariant(req.tenantId, digest!, snap.catalog.experiment) : undefined
    // Elder mode from the elder tag is accessibility, not marketing: the holdout keeps it (its
    // elder customers get it as those of every arm do, so the comparison stays fair). With
    // personalization off the tag is not read: elder mode only when asked for.
    const elder = req.mode === 'elder' || (req.mode === 'auto' && key !== 0 && !off && snap.elder?.has(key) === true)
    // Both get the bank's default (as an unknown visitor does) plus the service reminders they
    // need, under their own caps.
    const plain = off || holdout
    const own = key ? ownCounts(req.tenantId, key) : undefined
    const ranked = rankModules(snap, {
      customerKey: plain ? 0 : key,
      serviceKey: plain ? key : undefined,
      elder,
      lang: req.lang,
      today,
      // Known customers outside the holdout get the personal blend; the default variant when no experiment runs.
      variant: key === 0 || plain ? null : (assignment?.variant ?? DEFAULT_VARIANT),
      draw: digest ? dailyDraw(req.tenantId, digest, day) : 0,
      region: key === 0 ? req.region : undefined,
      withSensitive: req.withSensitive,
      served: own
        ? (i) => {
            const e = own.items.get(snap.items[i]!.id)
            return e ? { today: e.day === today ? e.today : 0, week: e.at.length } : NONE_SERVED
          }
        : undefined,
    })
    if (key) {
      let capped: string[] | undefined
      for (const m of ranked) {
        for (const p of m.items) {
          // Only capped items need this process's own count (fatigue reads the build's): a map per
          // customer for every item served filled the heap and its collections showed in p99.
          if (p.item.cap !== undefined) (capped ??= []).push(p.item.id)
        }
      }
      if (capped) {
        countServed(req.tenantId, key, today, nowMs, capped)
        for (const l of cappedListeners) l({ tenantId: req.tenantId, key, today, nowMs, items: capped })
      }
      exposures.append(req.tenantId, snap, { key, nowMs, screen: req.screen, experiment: assignment && { id: assignment.experiment, variant: assignment.variant }, holdout, elder }, ranked)
    }
    countLayout(req.tenantId, key === 0 || off ? 2 : holdout ? 1 : 0)
    // Keys in the order of Layout: the rendered body and JSON.stringify of the object agree.
    const head: LayoutHead = {
      tenant: req.tenantId,
      customerId: customerNo ?? null,
      known: key !== 0,
      screen: req.screen,
      elder,
      largeElements: elder,
      holdout,
      experiment: assignment ? { id: assignment.experiment, variant: assignment.variant.name } : null,
      personalized: key !== 0 && !holdout && !off,
      personalizedReason: off ? 'personalization_off' : key === 0 ? 'unknown_customer' : holdout ? 'holdout' : null,
    }
    return { snap, head, ranked, lang: req.lang }
  }

  return {
    /** The snapshot a tenant serves, loading it on first use. */
    async snapshot(tenantId: number): Promise<LayoutSnapshot> {
      return snapshots.get(tenantId)?.snap ?? load(tenantId)
    },

    /** Told of the capped items each layout served here (layout.share.ts). */
    onCapped(listener: (e: CappedServe) => void): void {
      cappedListeners.push(listener)
    },

    /**
     * Capped items another serving process served: counted as this process's own until a build
     * has them. A tenant whose snapshot this process has not loaded yet is skipped: its first
     * load reads a build, and serves of other processes after it are seen from then on.
     */
    countElsewhere(entries: readonly CappedServe[]): void {
      for (const e of entries) countServed(e.tenantId, e.key, e.today, e.nowMs, e.items)
    },

    /** Personalization switches recorded in this process: the next layout of the customer follows. */
    consentChanged: switches.apply,

    /** Erased customers: served as unknown from now on; their unwritten exposures and counts go. */
    forgetCustomers(tenantId: number, keys: ReadonlySet<number>): void {
      const set = erased.get(tenantId) ?? erased.set(tenantId, new Set()).get(tenantId)!
      for (const k of keys) {
        set.add(k)
        servedOf(tenantId)?.delete(k)
      }
      exposures.forget(tenantId, keys)
    },

    /**
     * Reloads a tenant's snapshot now (after a catalogue change or a model build in this process).
     * A load already running may have read the catalogue before the change: joining it would
     * serve the old one until the next refresh, so this waits for it and loads again. A load
     * another caller started after that one ended began after the change too: joining it is fine.
     */
    async reload(tenantId: number): Promise<LayoutSnapshot> {
      const running = loading.get(tenantId)
      if (running) await running.catch(() => undefined)
      return load(tenantId)
    },

    /** The layout as objects (tests, in-process callers). */
    async layout(req: LayoutRequest): Promise<Layout> {
      const { snap, head, ranked, lang } = await serve(req)
      return { ...head, model: { build: snap.build, builtAt: snap.builtAt, catalogVersion: snap.catalogVersions }, modules: toLayoutModules(ranked, lang, head.elder) }
    },

    /**
     * The same layout as its JSON body, from fragments cached per snapshot (the HTTP route's
     * path): the bytes themselves when the tenant's snapshot is held, a promise otherwise.
     */
    layoutJson(req: LayoutRequest): Buffer | Promise<Buffer> {
      const s = serve(req)
      if (s instanceof Promise) return s.then((r) => renderLayout(r.snap, r.head, r.ranked, r.lang))
      return renderLayout(s.snap, s.head, s.ranked, s.lang)
    },

    start(): void {
      timer = setInterval(() => void refresh(), deps.refreshMs ?? 30_000)
      timer.unref()
      exposures.start()
    },

    refresh,
    flush: exposures.flush,

    async close(): Promise<void> {
      if (timer) clearInterval(timer)
      await exposures.close()
    },
  }
}

export type LayoutService = ReturnType<typeof createLayoutService>
