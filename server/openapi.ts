import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../core/config.js'
import { createLogger } from '../core/log.js'
import { buildApp } from './app.js'
import { apiModules, createRuntime } from './runtime.js'

/**
 * The API's OpenAPI document (what `/docs` serves), from the app built in this process on an
 * empty embedded engine in a temporary directory: the routes, their zod schemas and permissions,
 * with no server running and nothing migrated. The console's types are generated from it
 * (`npm run gen:api-types`).
 */
export async function openApiDocument(): Promise<Record<string, unknown>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'qianmian-openapi-'))
  const log = createLogger({ level: 'silent' })
  const runtime = await createRuntime(loadConfig({ QIANMIAN_DATA_DIR: dir }), { log })
  try {
    const app = await buildApp({
      db: runtime.db,
      log,
      metrics: runtime.metrics,
      tenants: runtime.tenants,
      keys: runtime.keys,
      readiness: { phase: 'ready' },
      operatorToken: undefined,
      // The document's version is left fixed so the generated types change only with the routes.
      version: 'api',
      modules: apiModules(runtime),
      audit: runtime.audit,
      pii: runtime.pii,
    })
    try {
      return app.swagger() as unknown as Record<string, unknown>
    } finally {
      await app.close()
    }
  } finally {
    await runtime.close()
    await fs.rm(dir, { recursive: true, force: true })
  }
}
