-- The audit trail: append-only (nothing in the product updates or deletes a row), per tenant
-- (tenant_id 0 holds the platform operator's actions outside tenants). Every change of a
-- definition, key or consent, every identity merge, import and erasure, and every read of personal
-- data, with who did it (the key's holder), from where and in which request.
CREATE TABLE IF NOT EXISTS audit_log
(
    tenant_id     UInt16,
    at            DateTime64(3, 'UTC'),
    entry_id      UUID,
    key_id        String,
    holder        String COMMENT 'C1: the key holder, a person or a system',
    roles         Array(LowCardinality(String)),
    client_ip     String COMMENT 'C1: the caller address (a system, not a customer device)',
    request_id    String,
    action        LowCardinality(String),
    object_kind   LowCardinality(String),
    object_id     String,
    customer_no   String COMMENT 'C1: the customer concerned, when one is',
    customers     UInt64 COMMENT 'how many customers the action read or changed',
    outcome       LowCardinality(String),
    status        UInt16,
    detail        String COMMENT 'JSON; never personal data in clear'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (tenant_id, at, entry_id);
