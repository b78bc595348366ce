import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { localTenantAdmin } from '../cli/tenant-admin.js'
import type { Runtime } from '../server/runtime.js'
import { openTestApp, type TestApp } from '../test/app.js'
import { OPERATOR_TENANT } from './audit.service.js'

/** Commands run on the data directory (no API key) are in the trail too, named by the OS user. */

let t: TestApp
beforeAll(async () => {
  t = await openTestApp()
})
afterAll(async () => t?.close())

describe('the CLI on the data directory', () => {
  it("records tenant and key changes in the operator's trail, failures included", async () => {
    const admin = localTenantAdmin({ tenants: t.tenants, keys: t.keys, audit: t.audit } as unknown as Runtime)
    await admin.create({ slug: 'cli-bank', name: 'CLI bank' })
    await expect(admin.create({ slug: 'cli-bank', name: 'again' })).rejects.toMatchObject({ code: 'CONFLICT' })
    const { info } = await admin.issueKey('cli-bank', { roles: ['analyst'], holder: 'Zhou Jie', label: '' })
    await admin.revokeKey('cli-bank', info.keyId)
    const { entries } = await t.audit.log.query(OPERATOR_TENANT, { limit: 100 })
    expect(entries.map((e) => [e.action, e.objectId, e.outcome])).toEqual([
      ['key.revoke', info.keyId, 'ok'],
      ['key.issue', 'cli-bank', 'ok'],
      ['tenant.create', 'cli-bank', 'failed'],
      ['tenant.create', 'cli-bank', 'ok'],
    ])
    expect(entries.every((e) => e.keyId === 'cli' && e.holder.startsWith('cli ') && e.clientIp === 'local')).toBe(true)
  })
})
