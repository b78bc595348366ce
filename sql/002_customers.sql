-- Customer profile. customer_key is dense per tenant (1, 2, 3 ...): tag and segment bitmaps over
-- dense UInt32 keys are far cheaper than over hashed 64-bit ids. Column comments carry the
-- JR/T 0171-2020 class of each personal field (C1 general, C2 sensitive; C3 is never stored).
CREATE TABLE IF NOT EXISTS customers
(
    tenant_id        UInt16,
    customer_key     UInt32,
    customer_no      String COMMENT 'C1: the bank''s customer number',
    gender           Enum8('unknown' = 0, 'male' = 1, 'female' = 2) COMMENT 'C1',
    birth_date       Nullable(Date32) COMMENT 'C2: used for age and birthday tags only',
    region_code      LowCardinality(String) COMMENT 'C1: county-level region code',
    branch_code      LowCardinality(String) COMMENT 'C1: serving branch',
    occupation       LowCardinality(String) COMMENT 'C1',
    phone_hash       String COMMENT 'C2: HMAC-SHA256 of the mobile number, never the number',
    name_masked      String COMMENT 'C2: masked display name such as 张*',
    language         LowCardinality(String) DEFAULT 'zh' COMMENT 'C1',
    elder_mode       UInt8 DEFAULT 0 COMMENT 'C1: the customer chose the elder layout',
    opened_at        DateTime64(3, 'UTC') COMMENT 'C1: first relationship with the bank',
    updated_at       DateTime64(3, 'UTC'),
    deleted          UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, customer_key);

-- Consent per purpose and channel ("user authorization"): the push scheduler reads the latest row.
CREATE TABLE IF NOT EXISTS consents
(
    tenant_id     UInt16,
    customer_key  UInt32,
    purpose       Enum8('security' = 1, 'service' = 2, 'marketing' = 3),
    channel       Enum8('push' = 1, 'sms' = 2, 'in_app' = 3),
    granted       UInt8,
    source        LowCardinality(String) COMMENT 'where the decision was taken: app, counter, import',
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, customer_key, purpose, channel);

-- Links every known identifier (customer number, anonymous app id, device id) to a customer key.
CREATE TABLE IF NOT EXISTS identities
(
    tenant_id     UInt16,
    id_kind       Enum8('customer_no' = 1, 'anonymous_id' = 2, 'device_id' = 3, 'user_id' = 4),
    id_value      String,
    customer_key  UInt32,
    source        LowCardinality(String),
    created_at    DateTime64(3, 'UTC'),
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, id_kind, id_value);
