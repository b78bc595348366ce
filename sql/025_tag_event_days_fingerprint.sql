-- What each day build read, so a full run can reuse a build whose day has not changed since:
-- the day's events (count, and a sum of a hash of each event's message id and customer key,
-- which an insert, a deletion or a rekey changes), the time zone the local day was cut in, and
-- the engine clock before the build read anything (identity links and merges made after it
-- make the build stale). Builds recorded before this have no fingerprint (time_zone '') and
-- are rebuilt by the next full run.
ALTER TABLE tag_event_days
    ADD COLUMN IF NOT EXISTS events UInt64 DEFAULT 0 COMMENT 'events of the local day when the build read it',
    ADD COLUMN IF NOT EXISTS fingerprint UInt64 DEFAULT 0 COMMENT 'sum of cityHash64(message_id, customer_key) over those events',
    ADD COLUMN IF NOT EXISTS time_zone LowCardinality(String) DEFAULT '' COMMENT 'the time zone of the local day; empty: not recorded',
    ADD COLUMN IF NOT EXISTS read_from DateTime64(3, 'UTC') DEFAULT toDateTime64(0, 3, 'UTC') COMMENT 'engine clock before the build read events';
