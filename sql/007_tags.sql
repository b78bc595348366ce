-- Tags: definitions, values, bitmaps, history, and the pipeline bookkeeping that computes them.

-- Events move to one partition per day. The tag pipeline rebuilds per-day aggregate states and
-- must read one day's events without reading the month around it: with monthly partitions and
-- rows ordered by customer, every granule holds every day. A customer's history stays one
-- ordered range inside each day.
CREATE TABLE IF NOT EXISTS events_by_day AS events
ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (tenant_id, customer_key, timestamp)
SETTINGS index_granularity = 8192;

-- Emptied first so that a retry after a failure half-way copies the rows once.
TRUNCATE TABLE events_by_day;

INSERT INTO events_by_day SELECT * FROM events;

EXCHANGE TABLES events AND events_by_day;

DROP TABLE IF EXISTS events_by_day;

-- When each tenant's event time ranges last received rows (insert time, engine clock), by
-- quarter hour of event time: the tag pipeline's change feed. A local day any of whose quarter
-- hours received events after the last run's watermark is rebuilt; late and backdated events
-- mark their own day, whatever the tenant's time zone.
CREATE TABLE IF NOT EXISTS event_changes
(
    tenant_id    UInt16,
    bucket       DateTime('UTC') COMMENT 'start of the quarter hour of event time',
    changed_at   SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    rows         SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant_id, bucket);

-- The feed is fed from the dedup index, not from events: events keep a single view, so an insert
-- killed half-way has no more room between storing events and recording their message ids than
-- before. (Events received more than three days before they are stored, which the dedup index
-- skips, need a full run to be counted.)
ALTER TABLE ingest_dedup ADD COLUMN IF NOT EXISTS timestamp DateTime64(3, 'UTC') COMMENT 'event time';

DROP VIEW IF EXISTS ingest_dedup_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_dedup_mv TO ingest_dedup AS
SELECT tenant_id, message_id, received_at, timestamp FROM events
WHERE received_at >= now64(3) - INTERVAL 3 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS event_changes_mv TO event_changes AS
SELECT tenant_id, toStartOfFifteenMinutes(timestamp) AS bucket, max(now64(3)) AS changed_at, count() AS rows
FROM ingest_dedup GROUP BY tenant_id, bucket;

INSERT INTO event_changes
SELECT tenant_id, toStartOfFifteenMinutes(timestamp) AS bucket, now64(3), count() FROM events GROUP BY tenant_id, bucket;

-- When each tenant's stock tables last received rows (insert time, engine clock): a rule tag over
-- profile and stock data is recomputed only when a table it reads changed, or the date moved for
-- a date-dependent feature. Imports may carry the bank's own updated_at, so that column cannot say.
CREATE TABLE IF NOT EXISTS stock_changes
(
    tenant_id    UInt16,
    source       LowCardinality(String),
    changed_at   SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant_id, source);

CREATE MATERIALIZED VIEW IF NOT EXISTS stock_changes_customers_mv TO stock_changes AS
SELECT tenant_id, 'customers' AS source, max(now64(3)) AS changed_at FROM customers GROUP BY tenant_id;
CREATE MATERIALIZED VIEW IF NOT EXISTS stock_changes_accounts_mv TO stock_changes AS
SELECT tenant_id, 'accounts' AS source, max(now64(3)) AS changed_at FROM accounts GROUP BY tenant_id;
CREATE MATERIALIZED VIEW IF NOT EXISTS stock_changes_loans_mv TO stock_changes AS
SELECT tenant_id, 'loans' AS source, max(now64(3)) AS changed_at FROM loans GROUP BY tenant_id;
CREATE MATERIALIZED VIEW IF NOT EXISTS stock_changes_loan_schedules_mv TO stock_changes AS
SELECT tenant_id, 'loan_schedules' AS source, max(now64(3)) AS changed_at FROM loan_schedules GROUP BY tenant_id;
CREATE MATERIALIZED VIEW IF NOT EXISTS stock_changes_bills_mv TO stock_changes AS
SELECT tenant_id, 'bills' AS source, max(now64(3)) AS changed_at FROM bills GROUP BY tenant_id;
CREATE MATERIALIZED VIEW IF NOT EXISTS stock_changes_consents_mv TO stock_changes AS
SELECT tenant_id, 'consents' AS source, max(now64(3)) AS changed_at FROM consents GROUP BY tenant_id;

-- Tag definitions, one row per version; the newest version of a name is the definition, and a
-- retired tag is a version with retired = 1.
CREATE TABLE IF NOT EXISTS tag_definitions
(
    tenant_id    UInt16,
    name         String,
    version      UInt32,
    definition   String COMMENT 'JSON: the validated definition',
    retired      UInt8 DEFAULT 0,
    created_by   String,
    created_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, name, version);

-- Per-customer, per-local-day partial aggregates of every event measure the tenant's tags use,
-- as arrays in the order of the layout (the measures sorted by id). A
-- window tag over N days merges N days of these instead of rescanning raw events, and a run
-- rebuilds only the days that changed.
CREATE TABLE IF NOT EXISTS tag_event_daily
(
    tenant_id     UInt16,
    day           Date,
    customer_key  UInt32,
    build         UInt64 COMMENT 'the run that built this day; readers take the day''s current build (tag_event_days)',
    cnt           Array(UInt32) COMMENT 'events per measure',
    total         Array(Float64) COMMENT 'sums of the sum measures',
    first_at      Array(DateTime64(3, 'UTC')) COMMENT 'first event of the time measures',
    last_at       Array(DateTime64(3, 'UTC')) COMMENT 'last event of the time measures',
    keys          Array(Array(String)) COMMENT 'distinct keys of the distinct measures'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, customer_key)
TTL day + INTERVAL 401 DAY;

-- The current build of each day's aggregates and the layout it follows. Rebuilding a day writes a
-- new build instead of deleting the old rows first (a delete costs as much as the insert); the
-- superseded builds are dropped now and then.
CREATE TABLE IF NOT EXISTS tag_event_days
(
    tenant_id     UInt16,
    day           Date,
    build         UInt64,
    layout        String COMMENT 'hash of the measure list the arrays follow',
    built_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(build)
ORDER BY (tenant_id, day);

-- Current values: one row per (tag, customer). Runs write changes only; a value that no longer
-- holds is a deleted row. `num` is the numeric form (numbers, dates as days, booleans as 0/1).
CREATE TABLE IF NOT EXISTS tag_values
(
    tenant_id     UInt16,
    tag           LowCardinality(String),
    customer_key  UInt32,
    value         String,
    num           Float64,
    list          Array(String),
    run_id        UInt64,
    is_deleted    UInt8
)
ENGINE = ReplacingMergeTree(run_id, is_deleted)
ORDER BY (tenant_id, tag, customer_key);

-- Every change of a customer's value, with the time it took effect: "what was X's value on D".
CREATE TABLE IF NOT EXISTS tag_history
(
    tenant_id     UInt16,
    tag           LowCardinality(String),
    customer_key  UInt32,
    valid_from    DateTime64(3, 'UTC'),
    value         String,
    num           Float64,
    list          Array(String),
    removed       UInt8,
    run_id        UInt64,
    tag_version   UInt32
)
ENGINE = ReplacingMergeTree(run_id)
ORDER BY (tenant_id, tag, customer_key, valid_from);

-- Values a run computed, before they are compared with the current ones; kept a day.
CREATE TABLE IF NOT EXISTS tag_stage
(
    tenant_id     UInt16,
    run_id        UInt64,
    tag           LowCardinality(String),
    customer_key  UInt32,
    value         String,
    num           Float64,
    list          Array(String),
    created_at    DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (tenant_id, run_id, tag, customer_key)
TTL created_at + INTERVAL 1 DAY;

-- The customers an incremental run recomputes event tags for; kept a day.
CREATE TABLE IF NOT EXISTS tag_scope
(
    tenant_id     UInt16,
    run_id        UInt64,
    customer_key  UInt32,
    created_at    DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (tenant_id, run_id, customer_key)
TTL created_at + INTERVAL 1 DAY;

-- Changes computed by a run before they are applied; kept a day for inspection.
CREATE TABLE IF NOT EXISTS tag_changes
(
    tenant_id     UInt16,
    run_id        UInt64,
    tag           LowCardinality(String),
    customer_key  UInt32,
    value         String,
    num           Float64,
    list          Array(String),
    removed       UInt8,
    created_at    DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (tenant_id, run_id, tag, customer_key)
TTL created_at + INTERVAL 1 DAY;

-- One bitmap of dense customer keys per (tag, value); numeric and date tags per bucket [lo, hi),
-- so ranges are unions of whole buckets plus an exact check of the two edge buckets. Readers
-- take the rows of the tag's current build (tag_state.build).
CREATE TABLE IF NOT EXISTS tag_bitmaps
(
    tenant_id     UInt16,
    tag           LowCardinality(String),
    build         UInt64,
    value         String COMMENT 'the value, a bucket label for numbers and dates, or * for any value',
    lo            Float64,
    hi            Float64,
    cardinality   UInt64,
    keys          AggregateFunction(groupBitmap, UInt32)
)
ENGINE = MergeTree
ORDER BY (tenant_id, tag, build, value);

-- Per tag: the version computed, the current bitmap build, coverage and when it last ran.
CREATE TABLE IF NOT EXISTS tag_state
(
    tenant_id     UInt16,
    tag           String,
    version       UInt32,
    build         UInt64,
    covered       UInt64 COMMENT 'customers with a value',
    changed       UInt64 COMMENT 'values changed by the last run',
    run_id        UInt64,
    computed_at   DateTime64(3, 'UTC'),
    as_of         DateTime64(3, 'UTC'),
    -- Where the next incremental run of this tag starts from.
    today         Date32 COMMENT 'tenant local date of the run',
    watermark     DateTime64(3, 'UTC') COMMENT 'events inserted before this were folded in',
    measures      String COMMENT 'hash of the event measures of all the tenant''s tags',
    span          UInt32 COMMENT 'longest window in days',
    changed_at    DateTime64(3, 'UTC') COMMENT 'start (watermark) of the last run that changed a value of this tag'
)
ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (tenant_id, tag);

-- Pipeline runs: one row per state change of a run, newest wins.
CREATE TABLE IF NOT EXISTS pipeline_runs
(
    tenant_id     UInt16,
    run_id        UInt64,
    pipeline      LowCardinality(String),
    mode          Enum8('full' = 1, 'incremental' = 2, 'backfill' = 3),
    trigger       LowCardinality(String) COMMENT 'schedule, api, cli',
    status        Enum8('running' = 1, 'succeeded' = 2, 'failed' = 3, 'skipped' = 4),
    attempt       UInt8,
    started_at    DateTime64(3, 'UTC'),
    finished_at   Nullable(DateTime64(3, 'UTC')),
    as_of         DateTime64(3, 'UTC'),
    watermark     DateTime64(3, 'UTC') COMMENT 'events inserted before this are folded in',
    rows          UInt64 COMMENT 'values changed',
    details       String COMMENT 'JSON: per-step timings and counts',
    error         String,
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, pipeline, run_id);

-- Leases so that two processes never run the same tenant's pipeline at once: the earliest
-- unexpired claim wins; a release deletes the owner's claim.
CREATE TABLE IF NOT EXISTS pipeline_locks
(
    tenant_id     UInt16,
    pipeline      LowCardinality(String),
    owner         String,
    claimed_at    DateTime64(9, 'UTC') DEFAULT now64(9),
    expires_at    DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (tenant_id, pipeline, claimed_at)
TTL toDateTime(expires_at) + INTERVAL 1 DAY;
