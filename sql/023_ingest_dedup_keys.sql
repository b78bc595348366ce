-- The dedup index as key lookups.
--
-- Every flush asks which of its message ids are already stored. Against ingest_dedup (sorted by
-- tenant and message id) that question read every granule: a flush's ids are random, so each
-- one lands in a different granule, and the cost grew with the index. With three days of a
-- bank's events (26M ids) a flush of 5,000 ids took 1,026 ms; here, where each id is one RocksDB
-- key, 158 ms (62 ms at 1M ids; `npm run bench ingest`, dedup_*).
--
-- The same rows as ingest_dedup, fed from it (events keep a single view: an insert killed
-- half-way has no more room between storing events and recording their ids than before, and the
-- writer puts the last hour's ids here again at start, which closes the room between the two).
-- Keys are `tenant_id:message_id`; a tenant id has no ':', so no two pairs share a key. The TTL
-- (3 days, in seconds, counted from the write) matches ingest_dedup's; RocksDB drops expired keys
-- when it compacts, so an id may be found a little longer, never less.
CREATE TABLE IF NOT EXISTS ingest_dedup_keys
(
    key          String COMMENT 'tenant_id, a colon, message_id',
    tenant_id    UInt16,
    message_id   String,
    received_at  DateTime64(3, 'UTC')
)
ENGINE = EmbeddedRocksDB(259200)
PRIMARY KEY key;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_dedup_keys_mv TO ingest_dedup_keys AS
SELECT concat(toString(tenant_id), ':', message_id) AS key, tenant_id, message_id, received_at FROM ingest_dedup;

INSERT INTO ingest_dedup_keys
SELECT concat(toString(tenant_id), ':', message_id), tenant_id, message_id, received_at FROM ingest_dedup
WHERE received_at >= now64(3) - INTERVAL 3 DAY;
