import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { moduleApp, openTestApp, tenantWithKeys, type TestApp } from '../../test/app.js'
import { registerImportRoutes } from './import.routes.js'

/**
 * The HTTP body of an import is spooled to a temporary file, in clear (phones, identity numbers)
 * until the import ends. A process that died during an import left its file behind: a later
 * import removes such files, as it drops the staging tables a crash left (after 24 hours).
 */

let t: TestApp
let app: FastifyInstance
let tmp: string
beforeAll(async () => {
  t = await openTestApp({ INGEST_WORKERS: '0' })
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-spool-test-'))
  app = await moduleApp({ db: t.engine.db, log: t.engine.log, metrics: t.metrics, tenants: t.tenants, keys: t.keys }, [
    (a, auth) => registerImportRoutes(a, auth, { importer: t.ingest.importer, tmpDir: tmp }),
  ])
})
afterAll(async () => {
  await app?.close()
  await t?.close()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

/** A spool directory as a process leaves it, last modified `hoursAgo`. */
const leftBehind = (name: string, hoursAgo: number) => {
  const dir = path.join(tmp, name)
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, 'upload'), 'customer_no,phone,national_id,opened_at\nS1,13800138000,11010519491231002X,2020-01-01\n', { mode: 0o600 })
  const at = new Date(Date.now() - hoursAgo * 3_600_000)
  fs.utimesSync(path.join(dir, 'upload'), at, at)
  fs.utimesSync(dir, at, at)
}

describe('spooled import bodies left by a crash', () => {
  it('are removed by a later import once older than a day; recent ones and other files stay', async () => {
    const bank = await tenantWithKeys(t, 'spool-bank')
    leftBehind('qianmian-import-x1Y2z3', 30)
    leftBehind('qianmian-import-r4S5t6', 1)
    leftBehind('someone-else', 30)
    const res = await app.inject({ method: 'POST', url: '/v1/import/customers', headers: { authorization: `Bearer ${bank.admin}`, 'content-type': 'text/csv' }, payload: 'customer_no,opened_at\nS2,2020-01-01\n' })
    expect(res.statusCode, res.body).toBe(200)
    expect(fs.readdirSync(tmp).sort()).toEqual(['qianmian-import-r4S5t6', 'someone-else'])
  })
})
