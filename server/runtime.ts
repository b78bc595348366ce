import fs from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { createAuditModule, type AuditModule } from '../audit/audit.module.js'
import { createClickHouse, type ClickHouseHandle } from '../core/clickhouse.js'
import type { Config } from '../core/config.js'
import { createLaneDb, type Db } from '../core/db.js'
import { reniceAllowed } from '../core/lanes.js'
import { AppError } from '../core/errors.js'
import { createLogger, type Logger } from '../core/log.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { createPii, resolvePiiSecret, type Pii } from '../core/pii.js'
import { createIngestModule, type IngestModule } from '../ingest/ingest.module.js'
import { createConsentModule, type ConsentModule } from '../consent/consent.module.js'
import type { Kafka } from 'kafkajs'
import { createKafka, createKafkaSink, ensureTopics, type KafkaSink } from '../kafka/kafka.ingest.js'
import { createMigrator, type Migrator } from '../sql/migrate.js'
import { createKeyService, type KeyService } from '../tenants/keys.service.js'
import type { Auth } from '../tenants/auth.js'
import { createTenantService, type TenantService } from '../tenants/tenants.service.js'
import { createTagsModule, type TagsModule } from '../tags/tags.module.js'
import { createBitmapStore } from '../segments/bitmap.store.js'
import { loadRoaring } from '../segments/roaring.js'
import { createSegmentsModule, type SegmentsModule } from '../segments/segments.module.js'
import { createRecommendModule, type RecommendModule } from '../recommend/recommend.module.js'
import { createPushModule, type PushModule } from '../push/push.module.js'
import { wirePush } from '../push/push.wiring.js'
import { createLocalLocks, createRemoteLocks, type Locks, type ProcessChannel } from '../core/cluster-locks.js'
import { createBroadcast } from '../core/cluster-broadcast.js'
import type { ConsentNotice } from '../consent/consent.schema.js'
import { createPrivacyModule, createPrivacyTombstones, type PrivacyModule } from '../privacy/privacy.module.js'

/**
 * The process's shared pieces, wired once from the frozen config. Both the server and the CLI
 * build one of these; nothing is created at import time.
 */
export interface Runtime {
  config: Config
  log: Logger
  metrics: Metrics
  ch: ClickHouseHandle
  db: Db
  migrator: Migrator
  tenants: TenantService
  keys: KeyService
  pii: Pii
  ingest: IngestModule
  /** Tags, their catalogue and the pipeline runner. */
  tags: TagsModule
  /** Saved segments, previews. */
  segments: SegmentsModule
  /** Home-screen layouts (the runtime does not start without the roaring package). */
  recommend: RecommendModule | undefined
  /** Campaigns, targeting and delivery to the notification service. */
  push: PushModule
  /** Consent recorded live (ingest, the consent API) and the personalization switch. */
  consent: ConsentModule
  /** The audit trail (append-only, per tenant). */
  audit: AuditModule
  /** Erasure (with its tombstones) and export of one customer. */
  privacy: PrivacyModule
  /** The Kafka client, when KAFKA_BROKERS is set and the process was asked to use it. */
  kafka: Kafka | undefined
  /** The locks its services take; the engine process grants them to the API processes too (server/cluster.ts). */
  locks: Locks
  close(): Promise<void>
}

/** The route modules of the API, in the order the server registers them (the OpenAPI document lists them too). */
export function apiModules(rt: Runtime): ((app: FastifyInstance, auth: Auth) => void)[] {
  return [rt.ingest.routes, rt.tags.routes, rt.segments.routes, ...(rt.recommend ? [rt.recommend.routes] : []), rt.push.routes, rt.consent.routes, rt.privacy.routes]
}

/**
 * `clusterChannel`: this is one of several API processes (server/cluster.ts). Push leases and the
 * services' locks are the engine process's, reached over it.
 */
export async function createRuntime(config: Config, opts: { log?: Logger; withKafka?: boolean; clusterChannel?: ProcessChannel } = {}): Promise<Runtime> {
  const log = opts.log ?? createLogger({ level: config.logLevel })
  const metrics = createMetrics({ collectDefault: config.collectDefaultMetrics })
  const roaring = await loadRoaring()
  // Layouts and in-memory previews need the native bitmaps: a process without them must not start
  // (checked before the engine opens) and quietly serve no layouts.
  if (!roaring) {
    throw new AppError(
      'DEPENDENCY_MISSING',
      'The native package "roaring" is not installed (layouts and in-memory segment previews need it). It builds at install where no prebuilt binary is reachable: ' +
        'install a C++ toolchain (Debian: apt-get install -y g++ make python3), then run `npm rebuild roaring` (or `npm ci` again).',
    )
  }
  fs.mkdirSync(config.dataDir, { recursive: true })
  const ch = await createClickHouse(config)
  // Without CAP_SYS_NICE the engine ignores the lanes' nice values, and a pipeline query competes
  // with the request path for the cores as an equal: say so once, at start.
  const niced = Object.entries(config.lanes).filter(([, l]) => l.nice !== 0).map(([lane]) => lane)
  if (ch.mode === 'embedded' && niced.length > 0 && fs.existsSync('/proc/self/status') && !reniceAllowed(fs.readFileSync('/proc/self/status', 'utf8')))
    log.warn({ lanes: niced }, 'the engine cannot renice the lanes (no CAP_SYS_NICE): pipelines compete with requests for the cores; grant CAP_SYS_NICE or set LANE_*_NICE=0')
  // The request lane's Db; modules move their runs, builds and jobs to the other lanes (core/lanes.ts).
  const db = createLaneDb(ch)
  const migrator = createMigrator({ system: db.system, log: log.child({ component: 'migrate' }) })
  const locks = opts.clusterChannel ? createRemoteLocks(opts.clusterChannel) : createLocalLocks()
  // On one of several API processes, a change of keys or tenants, or of a customer's
  // personalization switch, is applied by the others before it is answered (core/cluster-broadcast.ts).
  // The appliers run on messages, after this runtime is built.
  const broadcast =
    opts.clusterChannel &&
    createBroadcast(
      opts.clusterChannel,
      {
        registry: () => keys.refresh(),
        consent: (p) => {
          const { tenantId, notices } = p as { tenantId: number; notices: ConsentNotice[] }
          recommend?.layouts.consentChanged(tenantId, notices)
        },
      },
      { onError: (topic, err) => log.warn({ topic, err }, 'a change another process made was not applied here; the next refresh applies it') },
    )
  const changed = () => broadcast?.announce('registry') ?? Promise.resolve()
  const tenants = createTenantService({ system: db.system, defaultTimeZone: config.defaultTimeZone, maxAgeMs: Math.max(1000, config.keyCacheTtlMs), lock: locks.lock('tenants'), changed })
  const keys = createKeyService({ system: db.system, tenants, cacheTtlMs: config.keyCacheTtlMs, lock: locks.lock('keys'), changed })
  const pii = createPii(resolvePiiSecret(config.piiSecret, config.dataDir))
  // With Kafka configured, the edge's accepted events go to the topic; the writer then serves
  // the ingest worker (this process's, or another's).
  let kafka: Kafka | undefined
  let sink: KafkaSink | undefined
  if (opts.withKafka && config.kafka) {
    kafka = createKafka(config.kafka, log)
    await ensureTopics(kafka, config.kafka)
    if (config.roles.has('api')) sink = await createKafkaSink({ kafka, cfg: config.kafka, log, metrics })
  }
  // Consent objects on events go to the consent service, which resolves senders as ingest does.
  const consent = createConsentModule({
    db,
    log,
    metrics,
    resolveKeys: (t, refs) => ingest.identities.resolve(t, refs),
    // Changes through ingest are audited by the service, as the app key's holder.
    audit: { record: (t, actor, entries) => audit.log.record(t, actor, entries) },
    holderOf: async (t, keyId) => (await keys.list(t)).find((k) => k.keyId === keyId)?.holder,
  })
  // Events of erased customers are dropped by the writer, whichever path (HTTP, Kafka replay) brought them.
  const tombstones = createPrivacyTombstones({ db: db.lane('ingest'), pii, metrics })
  // Inserts, identity upkeep and bulk imports: the ingest lane.
  const ingest = createIngestModule({
    db: db.lane('ingest'),
    log,
    metrics,
    pii,
    config: config.ingest,
    ...(sink ? { sink: () => sink } : {}),
    consent: consent.service.fromIngest,
    dropped: (t, evs, opts) => tombstones.dropped(t, evs, opts),
    // ... and bulk imports skip their rows, until the bank re-registers the number.
    erased: { among: (t, kind, values) => tombstones.erasedAmong(t, values, kind) },
    valuePolicy: async (t) => (await tenants.privacy(t)).valuePolicy,
    ...(opts.clusterChannel ? { clusterChannel: opts.clusterChannel } : {}),
  })
  const tags = createTagsModule({ db, tenants, log, metrics, runner: config.pipelines })
  // Layouts evaluate their catalogue's conditions on the same bitmaps, whatever the preview budget.
  const bitmaps = roaring && createBitmapStore({ roaring, maxBytes: Math.max(config.segmentCacheBytes, 256 * 1024 ** 2), log })
  const segments = createSegmentsModule({ db, tenants, tags: tags.repo, runner: tags.runner, ...(bitmaps && config.segmentCacheBytes > 0 ? { bitmaps } : {}) })
  const recommend = bitmaps && createRecommendModule({ db, tenants, tags: tags.repo, bitmaps, runner: tags.runner, log, metrics, exposureFlushMs: config.layouts.exposureFlushMs, ...(opts.clusterChannel ? { clusterChannel: opts.clusterChannel } : {}) })
  const push = createPushModule({
    db,
    tenants,
    log,
    metrics,
    lock: locks.lock('push'),
    ...(opts.clusterChannel ? { leaseChannel: opts.clusterChannel } : {}),
    tags: tags.repo,
    segments: segments.repo,
    // The global holdout the layouts use: the tenant's catalogue decides it for both.
    ...(recommend ? { holdoutPerMille: async (t: number) => (await recommend.catalogs.effective(await tenants.get(t))).catalog.holdoutPerMille ?? 0 } : {}),
  })
  wirePush({ push, runner: tags.runner, writer: ingest.writer })
  // A decision recorded here reaches this process's pulls and layouts at once, and, on one of
  // several API processes, the others' before it is answered; other processes (another host) read
  // it within their refresh.
  consent.service.onChange((t, notices) => {
    push.consentChanged(t, notices)
    recommend?.layouts.consentChanged(t, notices)
    return broadcast?.announce('consent', { tenantId: t, notices })
  })
  const audit = createAuditModule({ db, log, metrics, tenants })
  // What this process holds in memory drops an erased customer at once, not at the next build.
  const privacy = createPrivacyModule({
    db,
    lock: locks.lock('erasure'),
    tenants,
    log,
    tombstones,
    forget: [
      (t) => bitmaps?.forgetCustomers(t),
      (t, k) => recommend?.layouts.forgetCustomers(t, k),
      (t, k) => push.leases.forgetCustomers(t, k),
      (t, k, ids) => (ids.length ? ingest.identities.forget(t, ids) : ingest.identities.forgetKeys(t, k)),
    ],
    // ... and so does every other process, within this interval of the job (erasure.watch.ts).
    watchMs: 5000,
  })
  return {
    config,
    log,
    metrics,
    ch,
    db,
    migrator,
    tenants,
    keys,
    pii,
    ingest,
    tags,
    segments,
    recommend,
    push,
    consent,
    audit,
    privacy,
    kafka,
    locks,
    async close() {
      await privacy.erasure.idle()
      await privacy.close()
      await tags.runner.stop()
      await recommend?.close()
      await push.close()
      // The producer's goodbye is not worth failing a shutdown over; the flush is.
      await sink?.close().catch((err: unknown) => log.warn({ err }, 'kafka producer did not close cleanly'))
      await ingest.close(Math.max(100, config.shutdownTimeoutMs - 1000))
      await ch.close()
    },
  }
}
