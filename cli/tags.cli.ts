import { type Command, Option } from 'commander'
import { localActor, recordLocal } from '../audit/audit.local.js'
import { AppError } from '../core/errors.js'
import { apiClient } from './api-client.js'
import type { RunRecord } from '../pipelines/pipeline.runs.js'
import { PIPELINES, type PipelineName } from '../pipelines/pipeline.runner.js'
import type { Runtime } from '../server/runtime.js'
import type { CatalogEntry } from '../tags/tag.catalog.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles, type ApplyResult } from '../tags/tag.pack.js'
import type { TagDefinition } from '../tags/tag.schema.js'

/**
 * `qianmian tags ...` and `qianmian pipelines ...`: on the data directory directly, or beside a
 * running server through its HTTP API with a tenant admin key (the embedded engine lets one
 * process hold the data directory).
 */

interface TagsAdmin {
  list(): Promise<CatalogEntry[]>
  show(name: string): Promise<unknown>
  apply(defs: TagDefinition[]): Promise<ApplyResult[]>
  run(o: { pipeline: PipelineName; tags?: string[] | undefined; mode: 'full' | 'incremental'; recompute?: boolean; backfill?: { from: string; to: string } | undefined }): Promise<RunRecord>
  runs(limit: number): Promise<RunRecord[]>
}

export interface CliHelpers {
  out(line: string): void
  withRuntime<T>(fn: (rt: Runtime) => Promise<T>): Promise<T>
  readKeyFile(path: string | undefined): string
}

/** On the data directory: changes and runs go into the tenant's audit trail, as the routes' do. */
function local(rt: Runtime, tenantId: number): TagsAdmin {
  return {
    list: () => rt.tags.catalog.list(tenantId, true),
    show: (name) => rt.tags.catalog.get(tenantId, name, true),
    apply: (defs) =>
      recordLocal(rt.audit.log, tenantId, { action: 'tag.apply', objectKind: 'tag', objectId: '', detail: { route: 'cli' } }, () => applyDefinitions(rt.tags.repo, tenantId, defs, localActor().holder), (applied) => ({
        detail: { route: 'cli', changed: applied.filter((a) => a.changed).map((a) => a.name) },
      })),
    run: (o) =>
      recordLocal(rt.audit.log, tenantId, { action: 'pipeline.run', objectKind: 'pipeline', objectId: o.pipeline ?? 'tags', detail: { route: 'cli' } }, () =>
        rt.tags.runner.run({ tenantId, pipeline: o.pipeline, tags: o.tags, mode: o.mode, recompute: o.recompute, backfill: o.backfill, trigger: 'cli' }),
      ),
    runs: (limit) => rt.tags.runner.runs(tenantId, { limit }),
  }
}

function remote(server: string, key: string): TagsAdmin {
  const call = apiClient(server, key)
  return {
    list: async () => (await call<{ tags: CatalogEntry[] }>('GET', '/v1/tags')).tags,
    show: (name) => call('GET', `/v1/tags/${encodeURIComponent(name)}`),
    apply: async (defs) => (await call<{ applied: ApplyResult[] }>('POST', '/v1/tags/apply', { definitions: defs })).applied,
    run: (o) => call('POST', '/v1/pipelines/runs', { ...o, wait: true }),
    runs: async (limit) => (await call<{ runs: RunRecord[] }>('GET', `/v1/pipelines/runs?limit=${limit}`)).runs,
  }
}

interface TargetOptions {
  tenant?: string
  server?: string
  keyFile?: string
}

const remoteOptions = (c: Command) =>
  c
    .option('--server <url>', 'act through a running server instead of opening the data directory')
    .option('--key-file <path>', 'with --server: a file holding an admin API key of the tenant')

export function registerTagCommands(program: Command, h: CliHelpers) {
  async function withAdmin(opts: TargetOptions, fn: (a: TagsAdmin, tenant: string) => Promise<void>) {
    if (opts.server) return fn(remote(opts.server, h.readKeyFile(opts.keyFile)), opts.tenant ?? '(key tenant)')
    if (!opts.tenant) throw new AppError('VALIDATION_FAILED', 'Give --tenant <slug> (or --server with --key-file).', { issues: [{ field: '--tenant', message: 'required' }] })
    return h.withRuntime(async (rt) => fn(local(rt, (await rt.tenants.get(opts.tenant!)).id), opts.tenant!))
  }

  const tags = program.command('tags').description('tag definitions and their catalogue')
  remoteOptions(tags.command('list').description('the catalogue: tags, kinds, coverage, last run').option('--tenant <tenant>', 'tenant slug or id')).action(
    async (opts: TargetOptions) =>
      withAdmin(opts, async (a) => {
        for (const t of await a.list()) {
          const cov = t.coverage === null ? '-' : `${(t.coverage * 100).toFixed(1)}%`
          h.out(`${t.name.padEnd(28)} v${String(t.version).padEnd(3)} ${t.type.padEnd(11)} ${String(t.rule.kind).padEnd(9)} ${cov.padStart(7)}  ${t.state?.computedAt ?? 'never computed'}  ${t.purpose.join(',')}`)
        }
      }),
  )
  remoteOptions(tags.command('show <name>').description('one tag: definition, coverage, distribution').option('--tenant <tenant>', 'tenant slug or id')).action(
    async (name: string, opts: TargetOptions) => withAdmin(opts, async (a) => h.out(JSON.stringify(await a.show(name), null, 2))),
  )
  remoteOptions(
    tags
      .command('apply [paths...]')
      .description('create or update definitions from YAML/JSON files or directories (unchanged ones stay as they are)')
      .addOption(new Option('--pack <pack>', 'a pack shipped with Qianmian').choices(['banking']))
      .option('--tenant <tenant>', 'tenant slug or id'),
  ).action(async (paths: string[], opts: TargetOptions & { pack?: string }) => {
    const defs = [...(opts.pack ? readDefinitionFiles(BANKING_PACK) : []), ...paths.flatMap((p) => readDefinitionFiles(p))]
    if (!defs.length) throw new AppError('VALIDATION_FAILED', 'Give files, directories or --pack.', { issues: [{ field: 'paths', message: 'nothing to apply' }] })
    await withAdmin(opts, async (a, tenant) => {
      const applied = await a.apply(defs)
      for (const r of applied) h.out(`${r.name.padEnd(28)} v${r.version}  ${r.changed ? (r.version === 1 ? 'created' : 'changed') : 'unchanged'}`)
      h.out(`${applied.filter((r) => r.changed).length} of ${applied.length} definitions changed for ${tenant}.`)
    })
  })

  const pipelines = program.command('pipelines').description('run pipelines and see their history')
  remoteOptions(
    pipelines
      .command('run [name]')
      .description('run a pipeline now and wait for it: tags (incremental where possible; saved segments follow) or segments')
      .option('--tenant <tenant>', 'tenant slug or id')
      .option('--full', 'every customer: days whose events changed since their build re-aggregated from raw events, tags recomputed unless their checks find what they read unchanged')
      .option('--recompute', 'with --full: recompute every tag for every customer, even where what it reads did not change (repairs values changed outside runs)')
      .option('--tags <names>', 'only these tags, comma-separated')
      .option('--from <date>', 'backfill history from this local date (YYYY-MM-DD)')
      .option('--to <date>', 'backfill history up to this local date'),
  ).action(async (name: string | undefined, opts: TargetOptions & { full?: boolean; recompute?: boolean; tags?: string; from?: string; to?: string }) => {
    const pipeline = (name ?? 'tags') as PipelineName
    if (!PIPELINES.includes(pipeline)) throw new AppError('NOT_FOUND', `No pipeline ${name}; known: ${PIPELINES.join(', ')}.`)
    if (!!opts.from !== !!opts.to) throw new AppError('VALIDATION_FAILED', 'A backfill needs both --from and --to.', { issues: [{ field: opts.from ? '--to' : '--from', message: 'required' }] })
    await withAdmin(opts, async (a) => {
      const r = await a.run({
        pipeline,
        tags: opts.tags?.split(',').filter(Boolean),
        mode: opts.full || opts.recompute ? 'full' : 'incremental',
        ...(opts.recompute ? { recompute: true } : {}),
        backfill: opts.from && opts.to ? { from: opts.from, to: opts.to } : undefined,
      })
      h.out(describeRun(r))
      if (r.status !== 'succeeded') process.exitCode = 1
    })
  })
  remoteOptions(
    pipelines
      .command('status')
      .description('recent runs, newest first')
      .option('--tenant <tenant>', 'tenant slug or id')
      .option('--limit <n>', 'how many runs', (v) => Number(v), 20),
  ).action(async (opts: TargetOptions & { limit: number }) =>
    withAdmin(opts, async (a) => {
      const runs = await a.runs(opts.limit)
      if (!runs.length) h.out('No runs yet.')
      for (const r of runs) h.out(describeRun(r))
    }),
  )
}

/** Tags a tag run kept as they were, what they read unchanged (`skipped` without a reason in its details). */
function keptTags(r: RunRecord): number {
  const tags = r.pipeline === 'tags' ? r.details.tags : undefined
  if (!tags || typeof tags !== 'object') return 0
  return Object.values(tags as Record<string, { skipped?: boolean; reason?: string }>).filter((t) => t.skipped === true && !t.reason).length
}

export function describeRun(r: RunRecord): string {
  const ms = r.finishedAt ? Date.parse(`${r.finishedAt.replace(' ', 'T')}Z`) - Date.parse(`${r.startedAt.replace(' ', 'T')}Z`) : undefined
  const kept = keptTags(r)
  return [
    r.runId,
    r.pipeline,
    r.mode.padEnd(11),
    r.status.padEnd(9),
    `started ${r.startedAt}`,
    ms === undefined ? 'running' : `${(ms / 1000).toFixed(1)} s`,
    `${r.rows.toLocaleString('en-US')} values changed`,
    kept ? `${kept} tags kept (unchanged inputs)` : '',
    r.attempt > 1 ? `attempt ${r.attempt}` : '',
    r.error ? `error: ${r.error}` : '',
  ]
    .filter(Boolean)
    .join('  ')
}
