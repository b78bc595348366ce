-- Each bank's privacy settings: how long each kind of behavioural record is kept, below which
-- legal minimum no retention may be set, and what happens to personal data found by its value
-- in events (digested or masked). Read with the tenant registry; one row per change, the newest
-- wins. A bank without a row has the defaults (tenants/retention.ts).
CREATE TABLE IF NOT EXISTS tenant_privacy
(
    tenant_id           UInt16,
    events_days         UInt16 COMMENT 'C1: days raw events are kept',
    exposures_days      UInt16 COMMENT 'C1: days home-screen exposures are kept',
    push_outcomes_days  UInt16 COMMENT 'C1: days push delivery outcomes are kept',
    tag_history_days    UInt16 COMMENT 'C1: days superseded tag values are kept (the value in effect is always kept)',
    legal_minimum_days  UInt16 COMMENT 'C1: the bank''s legal minimum: no retention may be set below it',
    value_policy        Enum8('digest' = 1, 'mask' = 2) COMMENT 'C1: identifiers found in event values are digested or masked',
    updated_at          DateTime64(3, 'UTC'),
    updated_by          String COMMENT 'C1: the key holder who changed the settings'
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY tenant_id;
