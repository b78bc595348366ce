import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServerProcess, type ServerProcess } from '../test/server-process.js'
import type { Browser, Page } from 'playwright-core'

/** What the console's browser tests share: the build, a demo server and its keys. */

const here = path.dirname(fileURLToPath(import.meta.url))
export const CHROMIUM = '/usr/bin/chromium'
export const SHOTS = path.join(here, 'screenshots')
const DIST = path.join(here, 'dist', 'index.html')

/** Builds the console when there is no build or the sources are newer than it. */
export function ensureBuilt() {
  const newest = (p: string): number =>
    fs.statSync(p).isDirectory() ? Math.max(0, ...fs.readdirSync(p).map((f) => newest(path.join(p, f)))) : fs.statSync(p).mtimeMs
  const sources = Math.max(newest(path.join(here, 'src')), newest(path.join(here, 'index.html')), newest(path.join(here, 'vite.config.ts')))
  if (fs.existsSync(DIST) && fs.statSync(DIST).mtimeMs >= sources) return
  const vite = path.join(here, '..', 'node_modules', 'vite', 'bin', 'vite.js')
  const r = spawnSync(process.execPath, [vite, 'build', '--config', path.join(here, 'vite.config.ts'), '--logLevel', 'warn'], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`vite build failed:\n${r.stdout}\n${r.stderr}`)
}

export async function waitReady(url: string, ms: number) {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await fetch(`${url}/ready`).then((r) => r.ok, () => false)) return
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`the server at ${url} was not ready within ${ms} ms`)
}

export interface DemoConsole {
  server: ServerProcess
  dataDir: string
  adminKey: string
  groupKey: string
  close(): Promise<void>
}

/** A built console served by a real server on a fresh data directory with a 3,000-customer demo bank. */
export async function startDemoConsole(): Promise<DemoConsole> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}; the console's browser test needs it: apt-get update && apt-get install -y chromium`)
  }
  ensureBuilt()
  fs.mkdirSync(SHOTS, { recursive: true })
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-console-'))
  const server = await startServerProcess({ QIANMIAN_DATA_DIR: dataDir, QIANMIAN_DEMO: 'true', QIANMIAN_DEMO_CUSTOMERS: '3000' }, 60_000)
  // Seeding the demo bank takes well over a minute on a loaded shared machine.
  await waitReady(server.url, 300_000)
  // Demo keys name their role (older data directories: their scope).
  const creds = JSON.parse(fs.readFileSync(path.join(dataDir, 'demo-credentials.json'), 'utf8')) as { slug: string; keys: { role?: string; scope?: string; key: string }[] }[]
  const admin = (slug: string) => creds.find((t) => t.slug === slug)!.keys.find((k) => (k.role ?? k.scope) === 'admin')!.key
  return {
    server,
    dataDir,
    adminKey: admin('demo-qingshan'),
    groupKey: admin('demo-group'),
    async close() {
      await server.kill('SIGTERM')
      fs.rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

const seconds = new Map<string, string>()
/**
 * Approves the current version of a marketing campaign as a second holder (a marketer key issued
 * once per server), as a colleague would before it may run: the author signed in cannot.
 */
export async function approveBySecondHolder(url: string, adminKey: string, campaignId: string): Promise<void> {
  const call = async <T>(method: string, path: string, key: string, body?: unknown): Promise<T> => {
    const r = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`)
    return (await r.json()) as T
  }
  let key = seconds.get(url)
  if (!key) seconds.set(url, (key = (await call<{ key: string }>('POST', '/v1/keys', adminKey, { roles: ['marketer'], holder: '审批同事' })).key))
  const { version } = await call<{ version: number }>('GET', `/v1/push/campaigns/${campaignId}`, adminKey)
  await call('POST', `/v1/push/campaigns/${campaignId}/approval`, key, { version })
}

/**
 * A page of the console at one viewport size, signed in with `key`; its page errors and console
 * errors (other than a 4xx answer the screen handles) are collected into `problems`.
 */
export async function signedInPage(
  browser: Browser,
  url: string,
  key: string,
  size: { name: string; width: number; height: number },
  problems: string[],
): Promise<Page> {
  const p = await browser.newPage({ viewport: { width: size.width, height: size.height }, deviceScaleFactor: 1 })
  p.on('pageerror', (e) => problems.push(`${size.name} page error: ${e.message}`))
  p.on('console', (m) => m.type() === 'error' && !/status of 4\d\d/.test(m.text()) && problems.push(`${size.name} console: ${m.text()}`))
  await p.goto(`${url}/console`)
  await p.evaluate(() => sessionStorage.clear())
  await p.reload()
  await p.getByTestId('api-key').fill(key)
  await p.getByTestId('signin').click()
  // Not expect.poll: it belongs inside a test.
  await p.waitForFunction(() => document.querySelector('[data-testid="tenant-name"]')?.textContent, undefined, { timeout: 15_000 })
  return p
}

/** The two viewports every screen is checked at: a desktop and a phone. */
export const SIZES = [
  { name: 'desktop', width: 1440, height: 900 },
  { name: 'phone', width: 390, height: 844 },
] as const
export type SizeName = (typeof SIZES)[number]['name']

/** A whole-page screenshot under console/screenshots/, for a person to look at. */
export const shot = (p: Page, name: string) => p.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true })

/**
 * Calls the demo server's API with the bank admin's key (or `key`), answering status and JSON.
 * `demo` is read per call: the server starts in beforeAll, after the caller is made.
 */
export function apiCaller(demo: () => DemoConsole) {
  return async <T>(method: string, url: string, body?: unknown, key?: string): Promise<{ status: number; json: T }> => {
    const d = demo()
    const r = await fetch(`${d.server.url}${url}`, {
      method,
      headers: { authorization: `Bearer ${key ?? d.adminKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    return { status: r.status, json: (await r.json().catch(() => null)) as T }
  }
}
