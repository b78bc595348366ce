-- Consent recorded live (the app through ingest, the consent API) with its history, and the
-- personalization switch (PIPL art. 24; algorithmic recommendation provisions art. 17) kept as
-- one more purpose of the same records, on the channel 'all'.
--
-- Adding enum values is a metadata change: existing parts are not rewritten.
ALTER TABLE consents MODIFY COLUMN purpose Enum8('security' = 1, 'service' = 2, 'marketing' = 3, 'personalization' = 4);
ALTER TABLE consents MODIFY COLUMN channel Enum8('push' = 1, 'sms' = 2, 'in_app' = 3, 'all' = 4);

-- A target closed without delivery because its customer withdrew consent after targeting.
ALTER TABLE push_outcomes MODIFY COLUMN status Enum8('delivered' = 1, 'failed' = 2, 'withdrawn' = 3);

-- Every consent change as received, the older (out-of-order) ones too: `consents` holds the
-- current state (the newest by the customer's own time), this table how it came to be.
-- change_id is a digest of the change (an event's messageId, or the request's content), so a
-- replayed event or request collapses to one row.
CREATE TABLE IF NOT EXISTS consent_history
(
    tenant_id       UInt16,
    customer_key    UInt32,
    customer_no     String COMMENT 'C1: the bank''s customer number',
    purpose         Enum8('security' = 1, 'service' = 2, 'marketing' = 3, 'personalization' = 4),
    channel         Enum8('push' = 1, 'sms' = 2, 'in_app' = 3, 'all' = 4),
    granted         UInt8,
    customer_at     DateTime64(3, 'UTC') COMMENT 'when the customer decided (device time corrected for skew, or as stated by the desk)',
    received_at     DateTime64(3, 'UTC'),
    source          Enum8('app' = 1, 'counter' = 2, 'call_centre' = 3, 'import' = 4, 'ingest' = 5),
    notice_version  String COMMENT 'the version of the privacy notice the customer saw',
    key_id          String COMMENT 'the API key that recorded it',
    holder          String COMMENT 'C1: the key holder, a person or a system',
    change_id       String,
    message_id      String COMMENT 'the event that carried it, for consent received through ingest',
    category        String COMMENT 'the Segment consent category it came from, if any'
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, customer_key, purpose, channel, customer_at, change_id);

-- Per tenant: which Segment consent categories mean which (purpose, channel) pairs; versioned.
CREATE TABLE IF NOT EXISTS consent_categories
(
    tenant_id     UInt16,
    version       UInt32,
    mapping       String COMMENT 'JSON: category -> [{purpose, channel}]',
    created_by    String,
    created_at    DateTime64(3, 'UTC'),
    change_note   String
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, version);
