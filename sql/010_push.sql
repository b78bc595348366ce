-- Push: campaigns and the tenant's push policy (one row per version, audited), the targets a
-- targeting run or an event trigger made (suppressed ones too, with their reason), and the
-- leases and outcomes of the notification service's pulls.

CREATE TABLE IF NOT EXISTS push_campaigns
(
    tenant_id     UInt16,
    campaign_id   String,
    version       UInt32,
    name          String,
    definition    String COMMENT 'JSON: the validated campaign',
    status        Enum8('active' = 1, 'paused' = 2, 'retired' = 3),
    created_by    String COMMENT 'API key id or CLI user',
    created_at    DateTime64(3, 'UTC'),
    change_note   String
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, campaign_id, version);

-- Quiet hours, what service and security messages need by way of consent, the frequency caps.
CREATE TABLE IF NOT EXISTS push_policies
(
    tenant_id     UInt16,
    version       UInt32,
    policy        String COMMENT 'JSON: the validated policy',
    created_by    String,
    created_at    DateTime64(3, 'UTC'),
    change_note   String
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, version);

-- One row per (campaign, customer, local date of the occurrence), written once: a rerun skips
-- the keys that exist (and target_id, a digest of the key, makes a duplicate row harmless).
-- Delivery state lives in push_leases and push_outcomes, so these rows are never rewritten.
CREATE TABLE IF NOT EXISTS push_targets
(
    tenant_id         UInt16,
    campaign_id       String,
    local_date        Date COMMENT 'occurrence date, tenant time zone',
    customer_key      UInt32,
    target_id         String COMMENT 'digest of (tenant, campaign, customer, local date); the idempotency key',
    campaign_version  UInt32,
    run_id            UInt64,
    customer_no       String COMMENT 'C1',
    purpose           Enum8('security' = 1, 'service' = 2, 'marketing' = 3),
    channel           Enum8('push' = 1, 'sms' = 2, 'in_app' = 3),
    priority          Enum8('low' = 1, 'normal' = 2, 'high' = 3, 'critical' = 4),
    status            Enum8('queued' = 1, 'suppressed' = 2),
    reason            LowCardinality(String) COMMENT 'why it was suppressed; empty when queued',
    due_at            DateTime64(3, 'UTC') COMMENT 'not released before (quiet hours applied)',
    expires_at        DateTime64(3, 'UTC'),
    send_date         Date COMMENT 'local date of due_at: the day whose budget it spends',
    quiet_exempt      UInt8 COMMENT '1: a security message released inside quiet hours',
    language          LowCardinality(String),
    variant           Enum8('standard' = 1, 'elder' = 2),
    title             String COMMENT 'C2: may carry amounts and due dates',
    body              String COMMENT 'C2: may carry amounts and due dates',
    trigger           LowCardinality(String) COMMENT 'schedule, event, manual',
    created_at        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(local_date)
ORDER BY (tenant_id, campaign_id, local_date, customer_key)
TTL local_date + INTERVAL 400 DAY;

-- Every lease handed to a puller (and every early release of one), written before the pull
-- answers. The newest row of a target decides whether it is leased now.
CREATE TABLE IF NOT EXISTS push_leases
(
    tenant_id     UInt16,
    target_id     String,
    kind          Enum8('lease' = 1, 'release' = 2),
    lease_id      String,
    campaign_id   String,
    customer_key  UInt32,
    owner         String COMMENT 'the process that leased it',
    leased_at     DateTime64(3, 'UTC'),
    lease_until   DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (tenant_id, target_id, leased_at)
TTL toDateTime(lease_until) + INTERVAL 30 DAY;

-- What the notification service reported (ack); a final outcome ends the target's delivery.
CREATE TABLE IF NOT EXISTS push_outcomes
(
    tenant_id     UInt16,
    target_id     String,
    campaign_id   String,
    customer_key  UInt32,
    status        Enum8('delivered' = 1, 'failed' = 2),
    final         UInt8 COMMENT '0: failed and returned for another attempt',
    reason        String,
    lease_id      String,
    at            DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (tenant_id, target_id, at)
TTL toDateTime(at) + INTERVAL 400 DAY;
