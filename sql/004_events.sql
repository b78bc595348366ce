-- App behaviour events (Segment spec). Ordered by (tenant, customer, time): a customer's history is
-- one contiguous range, and per-customer aggregates stream in key order.
CREATE TABLE IF NOT EXISTS events
(
    tenant_id     UInt16,
    customer_key  UInt32 COMMENT '0 while the sender is anonymous and not yet linked',
    timestamp     DateTime64(3, 'UTC') COMMENT 'event time, corrected for client clock skew',
    type          Enum8('track' = 1, 'identify' = 2, 'page' = 3, 'screen' = 4, 'group' = 5, 'alias' = 6),
    event         LowCardinality(String) COMMENT 'track event name, or the page/screen name',
    message_id    String,
    anonymous_id  String,
    user_id       String COMMENT 'C1: the bank customer number when signed in',
    session_id    String,
    properties    String COMMENT 'JSON object; sensitive traits are removed before storage' CODEC(ZSTD(3)),
    context       String COMMENT 'JSON object: app, device, os, locale (no IP)' CODEC(ZSTD(3)),
    sent_at       DateTime64(3, 'UTC'),
    received_at   DateTime64(3, 'UTC'),
    -- Promoted from properties at insert time, engine side, for the tag and ranking scans.
    product_id    LowCardinality(String) MATERIALIZED JSONExtractString(properties, 'product_id'),
    amount        Float64 MATERIALIZED JSONExtractFloat(properties, 'amount')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant_id, customer_key, timestamp)
SETTINGS index_granularity = 8192;
