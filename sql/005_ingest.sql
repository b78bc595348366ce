-- Ingest bookkeeping: deduplication, customer-key allocation, identity changes, tracking plans.

-- Every stored event's messageId, kept three days (the dedup window promised is 24 h). Written by
-- a materialized view in the same insert as the event itself, so it never claims an event that
-- was not stored, and a restart loses nothing of it. Events received long ago (bulk loads of
-- history) are not worth the index.
CREATE TABLE IF NOT EXISTS ingest_dedup
(
    tenant_id    UInt16,
    message_id   String,
    received_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, message_id)
TTL toDateTime(received_at) + INTERVAL 3 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_dedup_mv TO ingest_dedup AS
SELECT tenant_id, message_id, received_at FROM events
WHERE received_at >= now64(3) - INTERVAL 3 DAY;

-- Blocks of dense customer keys claimed by a writer before it hands any key out. A claim wins
-- when it is the earliest (server time) for its block; a loser claims the next block.
CREATE TABLE IF NOT EXISTS key_blocks
(
    tenant_id    UInt16,
    block_start  UInt32,
    block_size   UInt32,
    owner        String,
    claimed_at   DateTime64(9, 'UTC') DEFAULT now64(9)
)
ENGINE = MergeTree
ORDER BY (tenant_id, block_start, claimed_at);

-- Who linked or merged which identities, when and why; and the undo of each.
CREATE TABLE IF NOT EXISTS identity_changes
(
    tenant_id    UInt16,
    change_id    UUID,
    action       Enum8('link' = 1, 'merge' = 2),
    id_kind      Enum8('customer_no' = 1, 'anonymous_id' = 2, 'device_id' = 3, 'user_id' = 4),
    id_value     String COMMENT 'the identifier linked (link) or the customer number merged away (merge)',
    from_key     UInt32 COMMENT 'the key the identifier resolved to before (0: none)',
    into_key     UInt32,
    actor        String COMMENT 'API key id or CLI user that caused the change',
    reason       String COMMENT 'identify, alias, import, manual ...',
    message_id   String,
    created_at   DateTime64(3, 'UTC'),
    undone_at    Nullable(DateTime64(3, 'UTC')),
    undone_by    String DEFAULT '',
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, change_id);

-- A merged customer key resolves to the key it was merged into, until the merge is undone.
CREATE TABLE IF NOT EXISTS customer_merges
(
    tenant_id    UInt16,
    from_key     UInt32,
    into_key     UInt32,
    change_id    UUID,
    active       UInt8,
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, from_key);

-- Per-tenant tracking plans: allowed events and their property schemas, in block or flag mode.
CREATE TABLE IF NOT EXISTS tracking_plans
(
    tenant_id    UInt16,
    version      UInt32,
    mode         Enum8('flag' = 1, 'block' = 2),
    plan         String COMMENT 'JSON: the validated plan',
    created_by   String,
    created_at   DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (tenant_id, version);

-- Events that broke the tracking plan in flag mode are stored with what they broke.
ALTER TABLE events ADD COLUMN IF NOT EXISTS violations Array(LowCardinality(String)) AFTER received_at;

-- Traits sent by the app (identify), one row per trait: the bank's stock data stays in customers,
-- and a partial identify never has to read-modify-write a whole profile row. Sensitive traits
-- (phone, national id, name, card number ...) arrive here only as keyed HMAC digests.
CREATE TABLE IF NOT EXISTS customer_traits
(
    tenant_id     UInt16,
    customer_key  UInt32,
    trait         LowCardinality(String),
    value         String,
    hashed        UInt8 COMMENT '1: value is an HMAC-SHA256 digest of a sensitive trait (C2)',
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, customer_key, trait);
