/**
 * Least privilege. A key holds one or more roles; a role grants permissions; a route requires
 * one permission. Roles follow the systems a bank connects, so each key can do what its holder
 * needs and nothing more:
 *
 * | role       | who holds it                         | what it may do                                   |
 * | ---------- | ------------------------------------ | ------------------------------------------------ |
 * | `ingest`   | the app (the key ships inside it)    | send events; link a device to a customer         |
 * | `layout`   | the app gateway                      | fetch home-screen layouts                        |
 * | `push`     | the notification service             | pull and acknowledge push targets                |
 * | `consent`  | the app back end, counters, call centre | record and read a customer's consents         |
 * | `analyst`  | a person analysing                   | read tags, segments, previews, stats; no member lists, exports or personal fields |
 * | `marketer` | a person running campaigns           | analyst, plus save segments and campaigns        |
 * | `admin`    | the bank's administrator             | everything in the tenant                         |
 *
 * Keys issued before roles existed carry a scope; they keep working through `LEGACY_SCOPE_ROLES`
 * (`write` → ingest; `read` → layout, push and analyst; `admin` → admin).
 */

export const PERMISSIONS = [
  'events:write',
  'layout:read',
  'push:deliver',
  'consent:read',
  'consent:write',
  'catalog:read',
  'segments:write',
  'campaigns:write',
  'personal:read',
  'identity:merge',
  'audit:read',
  'tenant:admin',
] as const
export type Permission = (typeof PERMISSIONS)[number]

export const ROLES = ['ingest', 'layout', 'push', 'consent', 'analyst', 'marketer', 'admin'] as const
export type Role = (typeof ROLES)[number]

const ANALYST: readonly Permission[] = ['catalog:read']

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = Object.freeze({
  ingest: ['events:write'],
  layout: ['layout:read'],
  push: ['push:deliver'],
  consent: ['consent:read', 'consent:write'],
  analyst: ANALYST,
  marketer: [...ANALYST, 'segments:write', 'campaigns:write'],
  admin: PERMISSIONS,
})

/** The scopes of keys issued before roles, and the roles they map to. */
export const LEGACY_SCOPES = ['write', 'read', 'admin'] as const
export type LegacyScope = (typeof LEGACY_SCOPES)[number]
export const LEGACY_SCOPE_ROLES: Readonly<Record<LegacyScope, readonly Role[]>> = Object.freeze({
  write: ['ingest'],
  read: ['layout', 'push', 'analyst'],
  admin: ['admin'],
})

export function permissionsOf(roles: readonly Role[]): ReadonlySet<Permission> {
  const out = new Set<Permission>()
  for (const r of roles) for (const p of ROLE_PERMISSIONS[r]) out.add(p)
  return out
}

/**
 * The letter in a key's visible prefix (`qm_<letter>_…`), so a leaked key found in a log or a
 * repository tells at a glance what it can do. A key of several roles is `x`.
 */
const ROLE_LETTER: Readonly<Record<Role, string>> = Object.freeze({
  ingest: 'i',
  layout: 'l',
  push: 'p',
  consent: 'c',
  analyst: 'n',
  marketer: 'm',
  admin: 'a',
})
const LEGACY_LETTER: Readonly<Record<LegacyScope, string>> = Object.freeze({ write: 'w', read: 'r', admin: 'a' })

export function keyLetter(roles: readonly Role[], legacy?: LegacyScope): string {
  if (legacy) return LEGACY_LETTER[legacy]
  return roles.length === 1 ? ROLE_LETTER[roles[0]!] : 'x'
}

/** Roles sorted in catalogue order, without repeats: the stored form. */
export function normalizeRoles(roles: readonly Role[]): Role[] {
  return ROLES.filter((r) => roles.includes(r))
}
