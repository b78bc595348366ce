-- Approvals and test sends of push campaigns.
--
-- A marketing campaign runs only once a second holder approved its current version: the
-- request and the approval are rows here (and entries in the audit trail), and a new version
-- of the campaign is not approved until someone approves that version.
CREATE TABLE IF NOT EXISTS push_campaign_approvals
(
    tenant_id         UInt16,
    campaign_id       String,
    campaign_version  UInt32 COMMENT 'the version asked about or approved',
    kind              Enum8('requested' = 1, 'approved' = 2),
    holder            String COMMENT 'the key holder who asked or approved',
    key_id            String,
    at                DateTime64(3, 'UTC'),
    note              String
)
ENGINE = MergeTree
ORDER BY (tenant_id, campaign_id, campaign_version, at);

-- Test lists: the bank's own test customers (staff phones) a campaign's message is sent to before
-- it goes out. One row per (list, customer); a member taken off the list is a row with removed = 1.
-- Rows name the customer by key, so an erasure finds them.
CREATE TABLE IF NOT EXISTS push_test_lists
(
    tenant_id     UInt16,
    list_id       String,
    name          String,
    customer_key  UInt32,
    customer_no   String COMMENT 'C1',
    label         String COMMENT 'whose phone, in the bank''s words',
    removed       UInt8,
    changed_by    String,
    changed_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(changed_at)
ORDER BY (tenant_id, list_id, customer_key);

-- Each test send: which campaign version went to which list, by whom, how many were queued.
-- Pulls read it to know which test targets may be handed out.
CREATE TABLE IF NOT EXISTS push_test_sends
(
    tenant_id         UInt16,
    send_id           String,
    campaign_id       String,
    campaign_version  UInt32,
    list_id           String,
    holder            String,
    at                DateTime64(3, 'UTC'),
    queued            UInt32,
    left_out          UInt32
)
ENGINE = MergeTree
ORDER BY (tenant_id, at, send_id)
TTL toDateTime(at) + INTERVAL 400 DAY;

-- A test target is a row of push_targets with status 'test', under the campaign id followed by
-- '~test' (not a valid campaign id): it is pulled like any other, but counts in no campaign's
-- statistics and spends no frequency cap (caps count status 'queued' only).
ALTER TABLE push_targets MODIFY COLUMN status Enum8('queued' = 1, 'suppressed' = 2, 'test' = 3);
