import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** A real `qianmian start` in a child process, for tests that kill and restart the server. */
export interface ServerProcess {
  url: string
  child: ChildProcess
  output(): string
  kill(signal: NodeJS.Signals): Promise<number | null>
}

/**
 * `compiled` runs what `npm start` runs (dist/, from `npm run build:server`) instead of the
 * sources through tsx.
 */
export async function startServerProcess(env: Record<string, string>, timeoutMs = 60_000, nodeArgs: string[] = [], opts: { compiled?: boolean } = {}): Promise<ServerProcess> {
  const entry = opts.compiled ? [path.join(root, 'dist/cli/main.js')] : ['--import', 'tsx', path.join(root, 'cli/main.ts')]
  const child = spawn(process.execPath, [...nodeArgs, ...entry, 'start'], {
    cwd: root,
    // Only what the test asks for: a KAFKA_BROKERS exported for the Kafka suites must not turn
    // every spawned server into a Kafka edge.
    env: { ...withoutKafka(process.env), PORT: '0', LOG_LEVEL: 'warn', QIANMIAN_DEMO: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), timeoutMs)
    const check = () => {
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    }
    child.stdout!.on('data', check)
    void exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`server exited:\n${out}`))
    })
  })
  // Wait for readiness (migrations applied).
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(`${url}/ready`).then((r) => r.ok, () => false)
    if (ok) break
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    url,
    child,
    output: () => out,
    async kill(signal) {
      child.kill(signal)
      return exited
    },
  }
}

function withoutKafka(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('KAFKA_')))
}

/** Creates a tenant through a running server's operator API and returns a new write key for it. */
export async function tenantWriteKey(url: string, operatorToken: string, slug: string): Promise<string> {
  const headers = { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' }
  const created = await fetch(`${url}/v1/operator/tenants`, { method: 'POST', headers, body: JSON.stringify({ slug, name: slug }) })
  if (created.status !== 201) throw new Error(`creating tenant ${slug}: HTTP ${created.status} ${await created.text()}`)
  const issued = await fetch(`${url}/v1/operator/tenants/${slug}/keys`, { method: 'POST', headers, body: JSON.stringify({ roles: ['ingest'], holder: `${slug} load generator` }) })
  if (issued.status !== 201) throw new Error(`issuing a key for ${slug}: HTTP ${issued.status} ${await issued.text()}`)
  return ((await issued.json()) as { key: string }).key
}

/** A process's child processes (the API processes of a primary started with QIANMIAN_API_PROCESSES). */
export function childProcesses(pid: number): number[] {
  const text = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()
  return text ? text.split(/\s+/).map(Number) : []
}

/** Main-thread CPU ticks of a process (user and system, from /proc). */
export function mainThreadTicks(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return Number(f[11]) + Number(f[12])
}
