import type { FastifyInstance } from 'fastify'
import type { Config } from '../core/config.js'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { Pii } from '../core/pii.js'
import type { ValuePolicy } from '../core/pii.scan.js'
import type { Auth } from '../tenants/auth.js'
import type { ConsentCallback } from './consent.extract.js'
import { createEventWriter, type DropCheck, type EventWriter } from './event-writer.js'
import { createIdentityService, type IdentityService } from './identity.service.js'
import { createIngestPool, type IngestPool } from './ingest.pool.js'
import { createIngestService, type EventSink, type IngestService } from './ingest.service.js'
import { registerIngestRoutes, SHORT_PATHS } from './ingest.routes.js'
import { createImportService, type ErasedCheck, type ImportService } from './import/import.service.js'
import { registerImportRoutes } from './import/import.routes.js'
import { createKeyAllocator, type KeyAllocator } from './key-allocator.js'
import { createIngestLimits, registerIngestLimitHooks } from './rate-limit.js'
import { EVENT_TYPES } from './segment.schema.js'
import { createTrackingPlans, type TrackingPlans } from './tracking-plan.js'
import { shareIngestLimits } from './rate-limit.share.js'
import type { ProcessChannel } from '../core/cluster-locks.js'

/** The Segment event endpoints, counted against the per-tenant request rate. */
const EVENT_PATHS: ReadonlySet<string> = new Set(['/v1/batch', '/v1/b', ...EVENT_TYPES.flatMap((t) => [`/v1/${t}`, `/v1/${SHORT_PATHS[t]}`])])

/** The ingest capability wired from its dependencies; the composition roots build one. */
export interface IngestModule {
  allocator: KeyAllocator
  identities: IdentityService
  plans: TrackingPlans
  writer: EventWriter
  service: IngestService
  /** The worker threads of the edge, when configured (INGEST_WORKERS). */
  pool: IngestPool | undefined
  /** Bulk import of stock data (ingest/import/). */
  importer: ImportService
  routes(app: FastifyInstance, auth: Auth): void
  close(deadlineMs: number): Promise<void>
}

export function createIngestModule(deps: {
  db: Db
  log: Logger
  metrics: Metrics
  pii: Pii
  config: Config['ingest']
  /** A durable queue in front of the writer (Kafka); by default the edge writes itself. */
  sink?: (writer: EventWriter) => EventSink
  /** Consent objects found on accepted events go here (see consent.extract.ts). */
  consent?: ConsentCallback
  /** Drops events of erased customers before they are stored (the privacy capability's tombstones). */
  dropped?: DropCheck
  /** Skips rows of erased customers in bulk imports (the same tombstones, one lookup per file). */
  erased?: ErasedCheck
  /** The bank's policy for identifiers found in event values (tenant settings); digested when not given. */
  valuePolicy?: (tenantId: number) => Promise<ValuePolicy>
  /** One of several API processes (server/cluster.ts): the tenants' rates are shared with the others over it. */
  clusterChannel?: ProcessChannel
}): IngestModule {
  const allocator = createKeyAllocator({ system: deps.db.system })
  const identities = createIdentityService({ db: deps.db, allocator })
  const plans = createTrackingPlans({ db: deps.db })
  const writer = createEventWriter({
    db: deps.db,
    identities,
    log: deps.log.child({ component: 'ingest' }),
    metrics: deps.metrics,
    options: { flushRows: deps.config.flushRows, flushMs: deps.config.flushMs, flushGapMs: deps.config.flushGapMs, maxQueueEvents: deps.config.maxQueueEvents, tenantQueueShare: deps.config.tenantQueuePercent / 100 },
    dropped: deps.dropped,
  })
  const sink = deps.sink ? deps.sink(writer) : writer
  const limits = createIngestLimits(deps.config.rate, deps.metrics)
  const unshare = deps.clusterChannel ? shareIngestLimits(limits, deps.clusterChannel) : undefined
  // Parsing, validation and normalization on the other cores (ingest.pool.ts); the workers digest
  // with the same keys, so without their seed (a stand-in Pii) the work stays in this thread.
  const seed = deps.config.workers > 0 ? deps.pii.threadSeed?.() : undefined
  const pool = seed ? createIngestPool({ size: deps.config.workers, seed, config: deps.config }) : undefined
  const service = createIngestService({ sink, plans, pii: deps.pii, metrics: deps.metrics, config: deps.config, limits, consent: deps.consent, aliases: identities, valuePolicy: deps.valuePolicy, pool, dropped: deps.dropped })
  // A bulk import is a large insert and scan: the pipeline lane, so live events keep flowing.
  const importer = createImportService({ db: deps.db.lane('pipeline'), identities, pii: deps.pii, log: deps.log.child({ component: 'import' }), metrics: deps.metrics, erased: deps.erased })
  return {
    allocator,
    identities,
    plans,
    writer,
    service,
    importer,
    routes: (app, auth) => {
      // Before the routes: a route's hooks are fixed when it is registered.
      registerIngestLimitHooks(app, limits, EVENT_PATHS)
      registerIngestRoutes(app, auth, { ingest: service, identities, plans })
      registerImportRoutes(app, auth, { importer })
    },
    pool,
    async close(deadlineMs) {
      unshare?.()
      try {
        await writer.close(deadlineMs)
      } finally {
        await pool?.close()
      }
    },
  }
}
