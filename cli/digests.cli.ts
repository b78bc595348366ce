import { Option, type Command } from 'commander'
import { recordLocal } from '../audit/audit.local.js'
import { AppError } from '../core/errors.js'
import { createDigestMigration, type DigestStatus, type RekeyReport } from '../tenants/digest.migration.js'
import { apiClient } from './api-client.js'
import type { CliHelpers } from './tags.cli.js'

/**
 * `qianmian digests status|rekey`: a bank's stored digests still under the shared key, and the
 * re-keying job, on the data directory (audited as the route is) or through a running server with
 * an admin key of the bank (`--server --key-file`: the server holds the embedded data directory).
 */

interface Target {
  tenant?: string
  server?: string
  keyFile?: string
}

const line = (s: DigestStatus) =>
  `shared key: ${s.sharedKey.customersPhone} phone, ${s.sharedKey.traits} traits; bank key: ${s.bankKey.customersPhone} phone, ${s.bankKey.traits} traits; neither: ${s.unrecognized.customersPhone} phone, ${s.unrecognized.traits} traits`

export function registerDigestCommands(program: Command, h: CliHelpers) {
  const digests = program.command('digests').description("a bank's stored digests: under the shared key (before per-bank keys) or its own")
  const target = (c: Command) =>
    c
      .option('--tenant <slug>', 'the bank (on the data directory)')
      .addOption(new Option('--server <url>', 'a running server (with --key-file: an admin key of the bank)'))
      .option('--key-file <file>', 'a file holding an admin key of the bank')

  async function run<T>(opts: Target, remote: (call: ReturnType<typeof apiClient>) => Promise<T>, local: (tenantId: number, rt: Parameters<Parameters<CliHelpers['withRuntime']>[0]>[0]) => Promise<T>): Promise<T> {
    if (opts.server) return remote(apiClient(opts.server, h.readKeyFile(opts.keyFile)))
    if (!opts.tenant) throw new AppError('VALIDATION_FAILED', 'Give --tenant <slug> (or --server with --key-file).', { issues: [{ field: '--tenant', message: 'required' }] })
    const slug = opts.tenant
    return h.withRuntime(async (rt) => local((await rt.tenants.get(slug)).id, rt))
  }

  target(digests.command('status').description('count the digests under the shared key, under the bank key, and of neither form')).action(async (opts: Target) => {
    const s = await run(
      opts,
      (call) => call<DigestStatus>('GET', '/v1/tenant/digests'),
      (tenantId, rt) => createDigestMigration({ db: rt.db, pii: rt.pii }).status(tenantId),
    )
    h.out(line(s))
  })

  target(digests.command('rekey').description("convert the digests under the shared key to the bank's own (resumable: run it again after an interruption)")).action(async (opts: Target) => {
    const r = await run(
      opts,
      (call) => call<RekeyReport>('POST', '/v1/tenant/digests/rekey'),
      (tenantId, rt) =>
        recordLocal(
          rt.audit.log,
          tenantId,
          { action: 'tenant.digests.rekey', objectKind: 'tenant', objectId: String(tenantId), detail: { route: 'cli' } },
          () => createDigestMigration({ db: rt.db, pii: rt.pii, onPage: (p) => void process.stderr.write(`  ${p.table}: ${p.rows} rows\n`) }).rekey(tenantId),
          (out) => ({ detail: { route: 'cli', converted: out.converted, left: out.after.sharedKey } }),
        ),
    )
    h.out(`before: ${line(r.before)}`)
    h.out(`after:  ${line(r.after)}`)
    h.out(`converted ${r.converted.customersPhone} phone digests and ${r.converted.traits} traits in ${r.pages} pages`)
  })
}
