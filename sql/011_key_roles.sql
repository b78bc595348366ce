-- Least-privilege keys: a key holds roles (tenants/permissions.ts), names its holder (a person or a
-- system, shown in version histories and the audit trail) and may expire, so a rotation keeps two
-- keys valid for a grace period. Keys issued before roles keep their scope and an empty role list;
-- the application maps their scope to roles.
ALTER TABLE api_keys MODIFY COLUMN scope Enum8('write' = 1, 'read' = 2, 'admin' = 3, 'roles' = 4);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS roles Array(LowCardinality(String)) AFTER scope;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS holder String DEFAULT '' COMMENT 'C1: who holds the key, a person or a system' AFTER roles;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at Nullable(DateTime64(3, 'UTC')) AFTER revoked_at;
