import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { z } from 'zod'
import { childProcesses, startServerProcess, type ServerProcess } from './server-process.js'

/**
 * For tests of the API on several processes (`QIANMIAN_API_PROCESSES`, server/cluster.ts): a
 * server started and ready with its API processes, and requests each on a connection of its own,
 * which the primary hands to the API processes in turn.
 */

/** Starts `qianmian start` with `env`, waits until it is ready (a demo seeds first) and its `processes` API processes run; their pids. */
export async function startClusterProcess(env: Record<string, string>, processes = 2): Promise<{ server: ServerProcess; api: number[] }> {
  const server = await startServerProcess(env, 120_000)
  for (let i = 0; i < 240; i++) {
    if ((await fetch(`${server.url}/ready`).then((r) => r.status, () => 0)) === 200) break
    await new Promise((r) => setTimeout(r, 1000))
  }
  const primary = server.child.pid!
  for (let i = 0; i < 100 && childProcesses(primary).length < processes; i++) await new Promise((r) => setTimeout(r, 100))
  return { server, api: childProcesses(primary) }
}

/** One request on a new connection, with `key` as Bearer and `body` as JSON; the status and the parsed body (undefined when empty). */
export function onNewConnection(url: string, method: string, route: string, key: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }
    const req = http.request(`${url}${route}`, { method, agent: false, headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? (JSON.parse(text) as unknown) : undefined }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

/** A data directory of its own and the environment of a server on two API processes, with `extra` (a demo's settings, limits). */
export function clusterEnv(name: string, extra: Record<string, string> = {}): { dataDir: string; operator: string; env: Record<string, string> } {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `qianmian-${name}-`))
  const operator = crypto.randomBytes(24).toString('hex')
  return { dataDir, operator, env: { QIANMIAN_DATA_DIR: dataDir, QIANMIAN_OPERATOR_TOKEN: operator, QIANMIAN_API_PROCESSES: '2', ...extra } }
}

/** Kills what is left of the server and removes its data directory (an afterAll). */
export async function removeCluster(server: ServerProcess | undefined, dataDir: string): Promise<void> {
  if (server && server.child.exitCode === null) await server.kill('SIGKILL')
  fs.rmSync(dataDir, { recursive: true, force: true })
}

const credentials = z.array(z.object({ slug: z.string(), keys: z.array(z.object({ role: z.string(), key: z.string() })) }))

/** The demo's keys, per member bank (written by the engine process when it seeded the demo). */
export const demoCredentials = (dataDir: string) => credentials.parse(JSON.parse(fs.readFileSync(path.join(dataDir, 'demo-credentials.json'), 'utf8')))
