import fs from 'node:fs'
import path from 'node:path'
import { Argument, Command, InvalidArgumentError, Option } from 'commander'
import { recordLocal } from '../audit/audit.local.js'
import { ConfigError, loadConfig, type Config } from '../core/config.js'
import { isAppError } from '../core/errors.js'
import { projectPath } from '../core/paths.js'
import { generateDemo } from '../demo/demo.generator.js'
import { readKeyFile, runImport, type ImportCliOptions } from '../ingest/import/import.cli.js'
import { IMPORT_FORMATS, IMPORT_KINDS, type ImportKind } from '../ingest/import/import.schemas.js'
import { createRuntime, type Runtime } from '../server/runtime.js'
import { apiProcessChannel, installApiProcessHandlers, isApiProcess, startCluster } from '../server/cluster.js'
import { clusterMetricsExposition } from '../server/cluster.metrics.js'
import { describeRows, installSignalHandlers, printCredentials, startServer, toCredentials } from '../server/start.js'
import { LEGACY_SCOPES, ROLES, type LegacyScope } from '../tenants/permissions.js'
import { localTenantAdmin, remoteTenantAdmin, type TenantAdmin } from './tenant-admin.js'
import { registerTagCommands } from './tags.cli.js'
import { registerRecommendCommands } from './recommend.cli.js'
import { registerDigestCommands } from './digests.cli.js'
import { seedDemoTags } from '../demo/demo.tags.js'

/** The `qianmian` command: a thin composition root over the capabilities. */

const VERSION = (JSON.parse(fs.readFileSync(projectPath('package.json'), 'utf8')) as { version: string }).version
const out = (line: string) => process.stdout.write(line + '\n')
// `qianmian tenants list | head` closes the pipe early; that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0)
  throw e
})

function config(): Config {
  return loadConfig(process.env)
}

/** Opens the data directory (or server), applies migrations, runs `fn`, and closes. */
async function withRuntime<T>(fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = await createRuntime(config(), {})
  try {
    await rt.migrator.migrate()
    return await fn(rt)
  } finally {
    await rt.close()
  }
}

async function withTenantAdmin(opts: { server?: string }, fn: (admin: TenantAdmin) => Promise<void>) {
  if (opts.server) return fn(remoteTenantAdmin(opts.server, config().operatorToken))
  return withRuntime((rt) => fn(localTenantAdmin(rt)))
}

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer.`)
  return n
}

const program = new Command('qianmian')
  .description('Qianmian: customer data platform for tagging and personalization on ClickHouse')
  .version(VERSION)
  .showHelpAfterError()

program
  .command('start')
  .description('serve the HTTP API (migrates, and seeds the demo bank on a first embedded start)')
  .action(async () => {
    const cfg = config()
    if (isApiProcess()) {
      // One of several API processes (server/cluster.ts): the first one says where it listens.
      const quiet = process.env.QIANMIAN_API_PROCESS !== '1'
      const started = await startServer(cfg, { version: VERSION, metricsExposition: clusterMetricsExposition, clusterChannel: apiProcessChannel(), ...(quiet ? { print: () => undefined } : {}) })
      installApiProcessHandlers(started, started.runtime.log)
      started.startup.catch(() => started.stop('start-up failed').finally(() => process.exit(1)))
      return
    }
    if (cfg.apiProcesses > 1) {
      const c = await startCluster(cfg, { version: VERSION })
      installSignalHandlers(c, c.log)
      c.startup.catch(() => c.stop('start-up failed').finally(() => process.exit(1)))
      return
    }
    const started = await startServer(cfg, { version: VERSION })
    installSignalHandlers(started, started.runtime.log)
    // A server that could not migrate or seed must not linger half-alive: exit so a supervisor
    // sees it (the reason is already printed and logged).
    started.startup.catch(() => started.stop('start-up failed').finally(() => process.exit(1)))
  })

program
  .command('migrate')
  .description('apply pending migrations from sql/ (or show their state)')
  .option('--status', 'only list each migration and its state')
  .action(async (opts: { status?: boolean }) => {
    const rt = await createRuntime(config())
    try {
      if (opts.status) {
        for (const s of await rt.migrator.status()) out(`${String(s.version).padStart(3, '0')}_${s.name}  ${s.state}${s.appliedAt ? `  ${s.appliedAt}` : ''}`)
        return
      }
      const { applied } = await rt.migrator.migrate()
      out(applied.length ? `Applied: ${applied.join(', ')}` : 'Schema is up to date.')
    } finally {
      await rt.close()
    }
  })

program
  .command('demo')
  .description('generate a deterministic demo bank (group, member banks, customers, stock data, events)')
  .option('--customers <n>', 'number of customers across the member banks', positiveInt('--customers'), 20_000)
  .option('--days <n>', 'days of app events before now', positiveInt('--days'), 30)
  .option('--seed <n>', 'random seed (same seed, same data)', (v) => Number(v), 42)
  .option('--no-progress', 'no progress bar')
  .action(async (opts: { customers: number; days: number; seed: number; progress: boolean }) => {
    await withRuntime(async (rt) => {
      const summary = await generateDemo(
        { db: rt.db.lane('pipeline'), tenants: rt.tenants, keys: rt.keys, pii: rt.pii, log: rt.log.child({ component: 'demo' }) },
        { customers: opts.customers, days: opts.days, seed: opts.seed, progress: opts.progress && process.stderr.isTTY === true },
      )
      const total = Object.values(summary.rows).reduce((a, b) => a + b, 0)
      out(`Generated in ${summary.seconds.toFixed(1)} s (${Math.round(total / summary.seconds).toLocaleString('en-US')} rows/s): ${describeRows(summary)}`)
      const tags = await seedDemoTags({ tenants: rt.tenants, tags: rt.tags, recommend: rt.recommend !== undefined })
      out(`Banking tag pack (${tags.tags} tags) computed for ${tags.tenants} member banks in ${tags.seconds.toFixed(1)} s: ${tags.values.toLocaleString('en-US')} values`)
      printCredentials(toCredentials(summary), out)
    })
  })

program
  .command('import')
  .description('bulk import stock data from CSV, NDJSON, Parquet or Arrow: every row or none, upserted by natural key')
  .addArgument(new Argument('<kind>', 'what the file holds').choices(IMPORT_KINDS))
  .argument('<file>', 'the file to import')
  .requiredOption('--tenant <tenant>', 'tenant slug or id')
  .addOption(new Option('--format <format>', 'file format (default: from the file name, or the bytes for Parquet/Arrow)').choices(IMPORT_FORMATS))
  .option('--skip-invalid', 'import the valid rows and list the invalid ones (default: any invalid row rejects the whole file)')
  .option('--no-progress', 'no progress bar')
  .option('--server <url>', 'send the file to a running server (POST /v1/import/:kind) instead of opening the data directory')
  .option('--key-file <path>', 'with --server: a file holding an admin API key of the tenant')
  .action(async (kind: ImportKind, file: string, opts: ImportCliOptions) => {
    if (opts.server) {
      await runImport(kind, file, opts, { server: opts.server, key: readKeyFile(opts.keyFile), tenant: opts.tenant }, out)
      return
    }
    await withRuntime(async (rt) => {
      const tenant = await rt.tenants.get(opts.tenant)
      await recordLocal(rt.audit.log, tenant.id, { action: 'import.run', objectKind: 'import', objectId: kind, detail: { route: 'cli', file: path.basename(file) } }, () =>
        runImport(kind, file, opts, { importer: rt.ingest.importer, tenantId: tenant.id }, out),
        (report) => ({ objectId: report.importId, customers: report.rows.inserted, detail: { route: 'cli', kind, status: report.status, rows: report.rows } }),
      )
    })
  })

const serverOption = new Option('--server <url>', 'send the command to a running server (operator API, needs QIANMIAN_OPERATOR_TOKEN)')

const tenants = program.command('tenants').description('manage tenants (the group and its member banks)')
tenants
  .command('list')
  .addOption(serverOption)
  .action(async (opts: { server?: string }) =>
    withTenantAdmin(opts, async (a) => {
      for (const t of await a.list()) {
        out(`${String(t.id).padStart(4)}  ${t.slug.padEnd(20)} ${t.kind.padEnd(6)} ${t.status.padEnd(8)} ${t.timeZone.padEnd(16)} ${t.name}`)
      }
    }),
  )
tenants
  .command('create <slug>')
  .requiredOption('--name <name>', 'display name')
  .addOption(new Option('--kind <kind>', 'group or member bank').choices(['group', 'member']).default('member'))
  .option('--parent <slug>', 'the group a member bank belongs to')
  .option('--time-zone <tz>', 'IANA time zone (default QIANMIAN_DEFAULT_TIMEZONE)')
  .addOption(serverOption)
  .action(async (slug: string, opts: { name: string; kind: 'group' | 'member'; parent?: string; timeZone?: string; server?: string }) =>
    withTenantAdmin(opts, async (a) => {
      const t = await a.create({ slug, name: opts.name, kind: opts.kind, parent: opts.parent, timeZone: opts.timeZone })
      out(`Created tenant ${t.id} ${t.slug} (${t.kind}).`)
    }),
  )
for (const [cmd, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
  tenants
    .command(`${cmd} <tenant>`)
    .description(`${cmd} a tenant (its keys stop or start working)`)
    .addOption(serverOption)
    .action(async (tenant: string, opts: { server?: string }) =>
      withTenantAdmin(opts, async (a) => {
        const t = await a.setStatus(tenant, status)
        out(`Tenant ${t.slug} is ${t.status}.`)
      }),
    )
}

const keys = tenants.command('keys').description("manage a tenant's API keys")
keys
  .command('issue <tenant>')
  .option('--role <roles>', `comma-separated roles: ${ROLES.join(', ')}`)
  .addOption(new Option('--scope <scope>', 'deprecated: write = ingest, read = layout,push,analyst, admin = admin').choices(LEGACY_SCOPES))
  .requiredOption('--holder <name>', 'the person or system that holds the key (shown in histories and the audit trail)')
  .option('--expires <time>', 'ISO time when the key stops working, e.g. 2027-06-30T00:00:00+08:00')
  .option('--label <text>', 'what the key is for', '')
  .addOption(serverOption)
  .action(async (tenant: string, opts: { role?: string; scope?: LegacyScope; holder: string; expires?: string; label: string; server?: string }) =>
    withTenantAdmin(opts, async (a) => {
      const roles = opts.role?.split(',').map((r) => r.trim()).filter(Boolean)
      const body = { roles, scope: opts.scope, holder: opts.holder, label: opts.label, expiresAt: opts.expires }
      const { key, info } = await a.issueKey(tenant, body as Parameters<typeof a.issueKey>[1])
      out(`${info.roles.join(',')}  ${key}`)
      process.stderr.write(`Key ${info.keyId} issued. It is shown only now: store it in your secret manager.\n`)
    }),
  )
keys
  .command('list <tenant>')
  .addOption(serverOption)
  .action(async (tenant: string, opts: { server?: string }) =>
    withTenantAdmin(opts, async (a) => {
      for (const k of await a.listKeys(tenant)) {
        const state = k.revokedAt ? `revoked ${k.revokedAt}` : k.expiresAt ? `expires ${k.expiresAt}` : 'active'
        out(`${k.keyId}  ${k.roles.join(',').padEnd(20)}  ${state}  ${k.holder}${k.label ? ` (${k.label})` : ''}`)
      }
    }),
  )
keys
  .command('revoke <tenant> <keyId>')
  .addOption(serverOption)
  .action(async (tenant: string, keyId: string, opts: { server?: string }) =>
    withTenantAdmin(opts, async (a) => {
      const k = await a.revokeKey(tenant, keyId)
      out(`Key ${k.keyId} revoked at ${k.revokedAt}.`)
    }),
  )

registerTagCommands(program, { out, withRuntime, readKeyFile })
registerRecommendCommands(program, { out, withRuntime, readKeyFile })
registerDigestCommands(program, { out, withRuntime, readKeyFile })

try {
  await program.parseAsync(process.argv)
} catch (e) {
  if (e instanceof ConfigError) {
    process.stderr.write(`${e.message}\n`)
    process.exit(2)
  }
  if (isAppError(e)) {
    process.stderr.write(`error ${e.code}: ${e.message}\n`)
    for (const i of e.issues ?? []) process.stderr.write(`  ${i.field ?? ''}: ${i.message}\n`)
    process.exit(e.code === 'VALIDATION_FAILED' ? 2 : 1)
  }
  throw e
}
