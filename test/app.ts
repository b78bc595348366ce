import type { FastifyInstance } from 'fastify'
import { createAuditModule, type AuditModule } from '../audit/audit.module.js'
import { loadConfig } from '../core/config.js'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import { createIngestModule, type IngestModule } from '../ingest/ingest.module.js'
import { createConsentModule, type ConsentModule } from '../consent/consent.module.js'
import { buildApp, type AppDeps } from '../server/app.js'
import { createKeyService, type KeyService } from '../tenants/keys.service.js'
import type { Role } from '../tenants/permissions.js'
import { createTenantService, type TenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from './engine.js'
import { createTagsModule, type TagsModule } from '../tags/tags.module.js'
import { createSegmentsModule, type SegmentsModule } from '../segments/segments.module.js'
import { createBitmapStore } from '../segments/bitmap.store.js'
import { loadRoaring } from '../segments/roaring.js'
import { createRecommendModule, type RecommendModule } from '../recommend/recommend.module.js'
import { createPushModule, type PushModule } from '../push/push.module.js'
import { wirePush } from '../push/push.wiring.js'
import { createPrivacyModule, createPrivacyTombstones, type PrivacyModule } from '../privacy/privacy.module.js'

/** A full HTTP app (with ingest) on a real embedded engine, for route tests. */
export interface TestApp {
  engine: TestEngine
  app: FastifyInstance
  tenants: TenantService
  keys: KeyService
  ingest: IngestModule
  tags: TagsModule
  segments: SegmentsModule
  recommend: RecommendModule
  push: PushModule
  consent: ConsentModule
  audit: AuditModule
  privacy: PrivacyModule
  metrics: Metrics
  close(): Promise<void>
}

export async function openTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const engine = await openTestEngine({ env })
  const config = loadConfig({ QIANMIAN_DATA_DIR: engine.dataDir, INGEST_FLUSH_MS: '5', ...env })
  const metrics = createMetrics({ collectDefault: false })
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
  const keys = createKeyService({ system: engine.db.system, tenants, cacheTtlMs: 60_000 })
  const pii = createPii('test-secret-test-secret-test-secret')
  const consent = createConsentModule({
    db: engine.db,
    log: engine.log,
    metrics,
    resolveKeys: (t, refs) => ingest.identities.resolve(t, refs),
    audit: { record: (t, actor, entries) => audit.log.record(t, actor, entries) },
    holderOf: async (t, keyId) => (await keys.list(t)).find((k) => k.keyId === keyId)?.holder,
  })
  const tombstones = createPrivacyTombstones({ db: engine.db.lane('ingest'), pii, metrics })
  const ingest = createIngestModule({ db: engine.db.lane('ingest'), log: engine.log, metrics, pii, config: config.ingest, consent: consent.service.fromIngest, dropped: (t, evs) => tombstones.dropped(t, evs), erased: { among: (t, kind, values) => tombstones.erasedAmong(t, values, kind) }, valuePolicy: async (t) => (await tenants.privacy(t)).valuePolicy })
  const tags = createTagsModule({ db: engine.db, tenants, log: engine.log, metrics, runner: config.pipelines })
  const roaring = await loadRoaring()
  if (!roaring) throw new Error('the optional "roaring" package is not installed: layouts cannot be served')
  const bitmaps = createBitmapStore({ roaring, maxBytes: 64 * 1024 ** 2, freshMs: 0 })
  const segments = createSegmentsModule({ db: engine.db, tenants, tags: tags.repo, runner: tags.runner })
  const recommend = createRecommendModule({ db: engine.db, tenants, tags: tags.repo, bitmaps, runner: tags.runner, log: engine.log, metrics })
  const push = createPushModule({
    db: engine.db,
    tenants,
    log: engine.log,
    metrics,
    tags: tags.repo,
    segments: segments.repo,
    holdoutPerMille: async (t) => (await recommend.catalogs.effective(await tenants.get(t))).catalog.holdoutPerMille ?? 0,
  })
  wirePush({ push, runner: tags.runner, writer: ingest.writer })
  consent.service.onChange((t, notices) => {
    push.consentChanged(t, notices)
    recommend.layouts.consentChanged(t, notices)
  })
  const audit = createAuditModule({ db: engine.db, log: engine.log, metrics, tenants })
  const privacy = createPrivacyModule({
    db: engine.db,
    tenants,
    log: engine.log,
    tombstones,
    forget: [(t) => bitmaps.forgetCustomers(t), (t, k) => recommend.layouts.forgetCustomers(t, k), (t, k) => push.leases.forgetCustomers(t, k), (t, _k, ids) => ingest.identities.forget(t, ids)],
  })
  const app = await buildApp({
    db: engine.db,
    log: engine.log,
    metrics,
    tenants,
    keys,
    readiness: { phase: 'ready' },
    operatorToken: config.operatorToken,
    version: 'test',
    modules: [ingest.routes, tags.routes, segments.routes, recommend.routes, push.routes, consent.routes, privacy.routes],
    audit,
    pii,
    tagWindows: tags.windows,
  })
  return {
    engine,
    app,
    tenants,
    keys,
    ingest,
    tags,
    segments,
    recommend,
    push,
    consent,
    audit,
    privacy,
    metrics,
    async close() {
      await app.close()
      await privacy.erasure.idle()
      await tags.runner.stop()
      await recommend.close()
      await push.close()
      await ingest.close(5000)
      await engine.close()
    },
  }
}

/** Issues a key of these roles, held by a named test system. */
export async function issueKey(keys: KeyService, tenantId: number, ...roles: Role[]): Promise<string> {
  return (await keys.issue(tenantId, { roles, holder: `test ${roles.join('+')}` })).key
}

/**
 * A tenant with keys as the three scopes of old mapped: `write` (ingest), `read` (layout, push,
 * analyst) and `admin`.
 */
export async function tenantWithKeys(t: TestApp, slug: string) {
  const tenant = await t.tenants.create({ slug, name: slug })
  const write = await issueKey(t.keys, tenant.id, 'ingest')
  const read = await issueKey(t.keys, tenant.id, 'layout', 'push', 'analyst')
  const admin = await issueKey(t.keys, tenant.id, 'admin')
  return { tenant, write, read, admin }
}

/**
 * An app serving only these route modules over a test's services (ready, no operator token), as a
 * module's own tests build it beside the engine they opened.
 */
export function moduleApp(deps: Pick<AppDeps, 'db' | 'log' | 'metrics' | 'tenants' | 'keys'>, modules: NonNullable<AppDeps['modules']>): Promise<FastifyInstance> {
  return buildApp({ ...deps, readiness: { phase: 'ready' }, operatorToken: undefined, version: 'test', modules })
}
