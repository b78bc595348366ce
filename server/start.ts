import fs from 'node:fs'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { Registry } from 'prom-client'
import type { Config } from '../core/config.js'
import { AppError, errText } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { generateDemo, type DemoSummary } from '../demo/demo.generator.js'
import { seedDemoTags } from '../demo/demo.tags.js'
import { startKafkaWorker, type KafkaWorker } from '../kafka/kafka.ingest.js'
import { createRetentionJob } from '../tenants/retention.job.js'
import { buildApp } from './app.js'
import type { Readiness } from './health.routes.js'
import { apiModules, createRuntime, type Runtime } from './runtime.js'
import type { ProcessChannel } from '../core/cluster-locks.js'

/**
 * `qianmian start`: listen first (so /health answers and /ready says what is happening), then
 * migrate, seed the demo bank on a first embedded start, and only then report ready.
 */

const credentialsFile = (dataDir: string) => path.join(dataDir, 'demo-credentials.json')
// Demo data directories made before keys had roles hold `scope` keys; they keep working (the key
// service maps their scope to roles), so their credentials still print, with the scope as role.
const credentials = z.array(
  z.object({
    slug: z.string(),
    name: z.string(),
    keys: z.array(
      z.union([
        z.object({ role: z.string(), holder: z.string(), key: z.string() }),
        z.object({ scope: z.string(), key: z.string() }).transform((k) => ({ role: k.scope, holder: `demo ${k.scope} key`, key: k.key })),
      ]),
    ),
  }),
)
type Credentials = z.infer<typeof credentials>

export interface Started {
  runtime: Runtime
  app: FastifyInstance
  url: string
  readiness: Readiness
  /** Resolves when start-up work (migrations, seeding) finished; rejects if it failed. */
  startup: Promise<void>
  stop(reason?: string): Promise<void>
}

/**
 * `engine`: the process holding the engine while other processes serve the API (server/cluster.ts);
 * it listens for its own health and metrics only, and says so.
 */
export async function startServer(
  config: Config,
  opts: { print?: (line: string) => void; version: string; engine?: boolean; metricsExposition?: (registry: Registry) => () => Promise<string>; clusterChannel?: ProcessChannel },
): Promise<Started> {
  const print = opts.print ?? ((l: string) => process.stdout.write(l + '\n'))
  const runtime = await createRuntime(config, { withKafka: true, ...(opts.clusterChannel ? { clusterChannel: opts.clusterChannel } : {}) })
  const { log } = runtime
  const readiness: Readiness = { phase: 'starting' }
  const app = await buildApp({
    db: runtime.db,
    log,
    metrics: runtime.metrics,
    metricsExposition: opts.metricsExposition?.(runtime.metrics.registry),
    tenants: runtime.tenants,
    keys: runtime.keys,
    readiness,
    operatorToken: config.operatorToken,
    version: opts.version,
    // A process without the api role still answers /health, /ready and /metrics.
    modules: config.roles.has('api') ? apiModules(runtime) : [],
    tenantRoutes: config.roles.has('api'),
    audit: runtime.audit,
    pii: runtime.pii,
    tagWindows: runtime.tags.windows,
  })
  const address = await app.listen({ port: config.port, host: config.host })
  const url = address.replace('[::1]', 'localhost').replace('127.0.0.1', 'localhost')
  print(
    `Qianmian ${opts.version} ${opts.engine ? 'engine process, health and metrics on' : 'listening on'} ${url} (roles: ${[...config.roles].join(', ')}; ClickHouse: ${runtime.ch.mode}` +
      `${runtime.ch.dataDir ? `, data in ${runtime.ch.dataDir}` : ''}${config.kafka ? `; Kafka: ${config.kafka.brokers.join(',')}` : ''})`,
  )

  let worker: KafkaWorker | undefined
  let retention: { stop(): void } | undefined
  const startup = (async () => {
    readiness.phase = 'migrating'
    const { applied } = await runtime.migrator.migrate()
    if (applied.length) print(`Applied migrations: ${applied.join(', ')}`)
    await runtime.tenants.reload()
    readiness.phase = 'seeding'
    const creds = await seedDemoIfWanted(runtime, print)
    if (creds) printCredentials(creds, print)
    if (runtime.kafka && config.kafka && config.roles.has('ingest-worker')) {
      worker = await startKafkaWorker({ kafka: runtime.kafka, cfg: config.kafka, writer: runtime.ingest.writer, log, metrics: runtime.metrics })
      print(`Ingest worker consuming ${config.kafka.topic} from ${config.kafka.brokers.join(',')} (group ${config.kafka.groupId})`)
    } else if (config.roles.has('ingest-worker') && !config.kafka && !config.roles.has('api')) {
      print('The ingest-worker role has nothing to do without KAFKA_BROKERS: the api role writes events itself.')
    }
    if (config.roles.has('scheduler')) {
      await runtime.tags.runner.startScheduler()
      print('Scheduler: tag pipelines run on their definitions\' cron schedules (GET /v1/pipelines/status)')
      // Each bank's retention (GET /v1/tenant), applied daily at 03:17 UTC.
      retention = createRetentionJob({ db: runtime.db.lane('pipeline'), tenants: runtime.tenants, log: log.child({ component: 'retention' }) }).start('17 3 * * *')
      // Erasures a stopped process left running go on from their next step (in the background).
      void runtime.privacy.erasure.resume().then(
        (n) => n && print(`Erasures resumed: ${n}`),
        (err: unknown) => log.error({ err }, 'erasures could not be resumed; they resume at the next start'),
      )
    }
    readiness.phase = 'ready'
    print(opts.engine ? 'Engine process ready' : `Ready: ${url}/ready  API docs: ${url}/docs  metrics: ${url}/metrics`)
  })()
  startup.catch((e: unknown) => {
    readiness.phase = 'failed'
    readiness.detail = e instanceof AppError ? e.code : 'error'
    log.error({ err: e }, 'start-up failed')
    print(`Start-up failed: ${errText(e)}`)
  })

  let stopping: Promise<void> | undefined
  const stop = (reason = 'stop') =>
    (stopping ??= (async () => {
      readiness.phase = 'stopping'
      log.info({ reason }, 'shutting down')
      const deadline = setTimeout(() => {
        log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown deadline passed; exiting')
        process.exit(1)
      }, config.shutdownTimeoutMs)
      deadline.unref()
      // Order matters: stop taking requests, stop consuming, then flush what was accepted and
      // close the engine. A step that fails is logged and the next still runs; only a failure to
      // flush accepted events makes the exit code non-zero.
      const step = async (name: string, fn: () => Promise<unknown>, fatal = false) => {
        try {
          await fn()
        } catch (err) {
          log.error({ err, step: name }, 'shutdown step failed')
          if (fatal) throw err
        }
      }
      try {
        await step('http', () => app.close())
        await startup.catch(() => undefined)
        await step('kafka worker', async () => worker?.stop())
        retention?.stop()
        await step('runtime', () => runtime.close(), true)
      } finally {
        clearTimeout(deadline)
      }
    })())
  return { runtime, app, url, readiness, startup, stop }
}

function wantsDemo(runtime: Runtime, hasTenants: boolean): boolean {
  const mode = runtime.config.demo.mode
  if (mode === 'false') return false
  if (mode === 'true') return !hasTenants
  // auto: only the embedded default seeds itself; a ClickHouse server is never seeded unasked.
  return runtime.ch.mode === 'embedded' && !hasTenants
}

async function seedDemoIfWanted(runtime: Runtime, print: (l: string) => void): Promise<Credentials | undefined> {
  const file = credentialsFile(runtime.config.dataDir)
  const hasTenants = (await runtime.tenants.list()).length > 0
  if (!wantsDemo(runtime, hasTenants)) {
    if (!fs.existsSync(file)) return undefined
    // A damaged file only costs the reminder of the demo keys, never the start.
    try {
      const parsed = credentials.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')))
      return parsed.success ? parsed.data : undefined
    } catch {
      return undefined
    }
  }
  const { customers, days, seed } = runtime.config.demo
  print(`Seeding the demo bank: ${customers} customers, ${days} days of events (seed ${seed})...`)
  const summary = await generateDemo(
    { db: runtime.db.lane('pipeline'), tenants: runtime.tenants, keys: runtime.keys, pii: runtime.pii, log: runtime.log.child({ component: 'demo' }) },
    { customers, days, seed, progress: process.stderr.isTTY === true },
  )
  print(`Demo bank seeded in ${summary.seconds.toFixed(1)} s: ${describeRows(summary)}`)
  const tags = await seedDemoTags({ tenants: runtime.tenants, tags: runtime.tags, recommend: runtime.recommend !== undefined })
  print(`Banking tag pack (${tags.tags} tags) applied and computed for ${tags.tenants} member banks in ${tags.seconds.toFixed(1)} s: ${tags.values.toLocaleString('en-US')} values`)
  const creds = toCredentials(summary)
  // The keys are stored hashed; this file (mode 0600, beside the data it unlocks) is how a demo
  // user finds them again after a restart. Production tenants are never written here.
  fs.writeFileSync(file, JSON.stringify(creds, null, 2) + '\n', { mode: 0o600 })
  return creds
}

export function toCredentials(summary: DemoSummary): Credentials {
  return summary.tenants.map((t) => ({ slug: t.slug, name: t.name, keys: t.keys }))
}

export function describeRows(summary: DemoSummary): string {
  return Object.entries(summary.rows)
    .map(([t, n]) => `${t} ${n.toLocaleString('en-US')}`)
    .join(', ')
}

export function printCredentials(creds: Credentials, print: (l: string) => void) {
  print('Demo tenants and their API keys (role, tenant, key):')
  for (const t of creds) for (const k of t.keys) print(`  ${k.role.padEnd(8)}  ${t.slug.padEnd(16)} ${k.key}`)
}

/** Stops on SIGINT/SIGTERM with the configured deadline. */
export function installSignalHandlers(started: Pick<Started, 'stop'>, log: Logger) {
  const onSignal = (sig: NodeJS.Signals) => {
    started.stop(sig).then(
      () => process.exit(0),
      (e) => {
        log.error({ err: e }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
}
