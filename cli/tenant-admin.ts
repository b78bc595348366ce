import { recordLocal } from '../audit/audit.local.js'
import { OPERATOR_TENANT } from '../audit/audit.service.js'
import { AppError, issuesFromZod } from '../core/errors.js'
import { apiClient } from './api-client.js'
import type { KeyView } from '../tenants/keys.service.js'
import { issueInput, issueKeyBody, type IssueKeyBody } from '../tenants/tenants.routes.js'
import type { CreateTenantInput, Tenant } from '../tenants/tenants.service.js'
import type { Runtime } from '../server/runtime.js'

/**
 * What the `tenants` and `keys` commands need, done either on the data directory directly or
 * through a running server's operator API: the embedded engine lets only one process hold the
 * data directory, so beside a running server the CLI must go through HTTP.
 */
export interface TenantAdmin {
  list(): Promise<Tenant[]>
  create(input: CreateTenantInput): Promise<Tenant>
  setStatus(tenant: string, status: Tenant['status']): Promise<Tenant>
  issueKey(tenant: string, body: IssueKeyBody): Promise<{ key: string; info: KeyView }>
  listKeys(tenant: string): Promise<KeyView[]>
  revokeKey(tenant: string, keyId: string): Promise<KeyView>
}

/** On the data directory: the changes go into the operator's audit trail, as the operator routes' do. */
export function localTenantAdmin(rt: Runtime): TenantAdmin {
  const audited = <T>(action: string, objectKind: string, objectId: string, fn: () => Promise<T>) =>
    recordLocal(rt.audit.log, OPERATOR_TENANT, { action, objectKind, objectId, detail: { route: 'cli' } }, fn)
  return {
    list: () => rt.tenants.list(),
    create: (input) => audited('tenant.create', 'tenant', input.slug, () => rt.tenants.create(input)),
    setStatus: (t, s) => audited(s === 'active' ? 'tenant.enable' : 'tenant.disable', 'tenant', t, () => rt.tenants.setStatus(t, s)),
    issueKey: (t, body) =>
      audited('key.issue', 'tenant', t, async () => {
        const tenant = await rt.tenants.get(t)
        const parsed = issueKeyBody.safeParse(body)
        if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The key is invalid.', { issues: issuesFromZod(parsed.error.issues) })
        const { key, view } = await rt.keys.issue(tenant.id, issueInput(parsed.data))
        return { key, info: view }
      }),
    async listKeys(t) {
      return rt.keys.list((await rt.tenants.get(t)).id)
    },
    revokeKey: (t, keyId) => audited('key.revoke', 'key', keyId, async () => rt.keys.revoke((await rt.tenants.get(t)).id, keyId)),
  }
}

export function remoteTenantAdmin(server: string, token: string | undefined, fetchImpl: typeof fetch = fetch): TenantAdmin {
  if (!token) {
    throw new AppError('OPERATOR_ONLY', 'Set QIANMIAN_OPERATOR_TOKEN (the server must have the same) to manage tenants through --server.')
  }
  const call = apiClient(server, token, fetchImpl)
  const seg = encodeURIComponent
  return {
    list: async () => (await call<{ tenants: Tenant[] }>('GET', '/v1/operator/tenants')).tenants,
    create: (input) => call('POST', '/v1/operator/tenants', input),
    setStatus: (t, s) => call('POST', `/v1/operator/tenants/${seg(t)}/${s === 'active' ? 'enable' : 'disable'}`),
    issueKey: (t, body) => call('POST', `/v1/operator/tenants/${seg(t)}/keys`, body),
    listKeys: async (t) => (await call<{ keys: KeyView[] }>('GET', `/v1/operator/tenants/${seg(t)}/keys`)).keys,
    revokeKey: (t, keyId) => call('DELETE', `/v1/operator/tenants/${seg(t)}/keys/${seg(keyId)}`),
  }
}
