-- Tenants are the member banks of the group (and the group itself). Small table, read into memory.
CREATE TABLE IF NOT EXISTS tenants
(
    tenant_id   UInt16,
    slug        String COMMENT 'C1: stable short name used in URLs and the CLI',
    name        String COMMENT 'C1: display name',
    kind        Enum8('group' = 1, 'member' = 2),
    parent_id   UInt16 DEFAULT 0 COMMENT '0 for a top-level tenant; the group for a member bank',
    time_zone   LowCardinality(String) DEFAULT 'Asia/Shanghai',
    status      Enum8('active' = 1, 'disabled' = 2),
    created_at  DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY tenant_id;

-- API keys are stored hashed (SHA-256 of a 256-bit random secret); the key itself is shown once.
CREATE TABLE IF NOT EXISTS api_keys
(
    key_id      String COMMENT 'public identifier, also the visible prefix of the key',
    tenant_id   UInt16,
    scope       Enum8('write' = 1, 'read' = 2, 'admin' = 3),
    key_hash    String COMMENT 'hex SHA-256 of the whole key',
    label       String,
    created_at  DateTime64(3, 'UTC'),
    revoked_at  Nullable(DateTime64(3, 'UTC')),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY key_id;
