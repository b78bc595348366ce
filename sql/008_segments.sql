-- Saved segments: definitions (one row per version, audited), materialized membership, the
-- enter/exit history that answers "why was customer X in S on date D", and size per run.

CREATE TABLE IF NOT EXISTS segment_definitions
(
    tenant_id     UInt16,
    segment_id    String,
    version       UInt32,
    name          String,
    description   String,
    purpose       LowCardinality(String),
    definition    String COMMENT 'JSON: the validated rule',
    schedule      String COMMENT 'cron, tenant time zone; empty: after each tag run only',
    retired       UInt8 DEFAULT 0,
    created_by    String COMMENT 'API key id or CLI user',
    created_at    DateTime64(3, 'UTC'),
    change_note   String
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, segment_id, version);

-- Membership per materialization (build); the current build is the newest of a segment.
CREATE TABLE IF NOT EXISTS segment_members
(
    tenant_id     UInt16,
    segment_id    String,
    build         UInt64,
    version       UInt32,
    size          UInt64,
    keys          AggregateFunction(groupBitmap, UInt32),
    built_at      DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (tenant_id, segment_id, build);

-- Every entry into and exit from a segment, with the segment version that decided it.
CREATE TABLE IF NOT EXISTS segment_events
(
    tenant_id     UInt16,
    segment_id    String,
    customer_key  UInt32,
    at            DateTime64(3, 'UTC'),
    kind          Enum8('enter' = 1, 'exit' = 2),
    version       UInt32,
    build         UInt64
)
ENGINE = MergeTree
ORDER BY (tenant_id, segment_id, customer_key, at);

-- Size per materialization, for charts.
CREATE TABLE IF NOT EXISTS segment_runs
(
    tenant_id     UInt16,
    segment_id    String,
    build         UInt64,
    version       UInt32,
    size          UInt64,
    entered       UInt64,
    exited        UInt64,
    started_at    DateTime64(3, 'UTC'),
    finished_at   DateTime64(3, 'UTC'),
    trigger       LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (tenant_id, segment_id, build);

-- The values of bucketed numeric and date tags per bitmap build, ordered by value: a segment's
-- range that cuts a bucket checks only that bucket's customers, by a range read, instead of
-- scanning every value of the tag. Written with the build, before tag_state points at it.
CREATE TABLE IF NOT EXISTS tag_numeric
(
    tenant_id     UInt16,
    tag           LowCardinality(String),
    build         UInt64,
    num           Float64,
    customer_key  UInt32
)
ENGINE = MergeTree
ORDER BY (tenant_id, tag, build, num);
