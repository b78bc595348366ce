import fs from 'node:fs'
import path from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import { AppError } from '../core/errors.js'
import { projectPath } from '../core/paths.js'

/**
 * The marketer console (console/), served as static files at /console. The files are built by
 * `npm run build` and never committed; a checkout that was not built answers 503 with what to
 * run rather than a bare 404, so the cause is plain to whoever opens the page.
 *
 * The console calls the same /v1 API as any client, with the admin key a marketer types in, so
 * these routes need no auth of their own: the files hold no data.
 */

export const CONSOLE_DIST = projectPath('console', 'dist')

// The console keeps an API key in sessionStorage: scripts from elsewhere must not run beside it.
// Styles may be inline because ECharts sets them on the elements it creates.
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
}

export function registerConsoleRoutes(app: FastifyInstance, opts: { dir?: string } = {}): void {
  const dir = opts.dir ?? CONSOLE_DIST
  // Checked once at start: a build made while the server runs is served after a restart, as the
  // message says. Checking per request would cost a stat on every asset for no gain in production.
  if (!fs.existsSync(path.join(dir, 'index.html'))) {
    const notBuilt = async () => {
      throw new AppError('NOT_READY', 'The console is not built: run `npm run build` (it writes console/dist), then restart the server.')
    }
    app.get('/console', { schema: { hide: true } }, notBuilt)
    app.get('/console/*', { schema: { hide: true } }, notBuilt)
    return
  }
  void app.register(fastifyStatic, {
    root: dir,
    prefix: '/console',
    // /console redirects to /console/ so the page's relative asset paths resolve.
    redirect: true,
    decorateReply: false,
    schemaHide: true,
    // Cache-Control is ours (below): send's default would override it with max-age=0 everywhere.
    cacheControl: false,
    setHeaders(res, file) {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v)
      // Vite names assets by content hash, so they never change; the page itself must be fresh
      // so a new build is picked up at the next load.
      const immutable = file.includes(`${path.sep}assets${path.sep}`)
      res.setHeader('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
    },
  })
}
