-- The home-screen layout: each tenant's catalogue (one row per version, audited), the model the
-- recommend pipeline builds from events and tags (one build per run; the serving processes load
-- the newest complete one into memory), and the layouts served (exposures, for caps, fatigue and
-- the experiments' analysis).

CREATE TABLE IF NOT EXISTS layout_catalogs
(
    tenant_id     UInt16,
    version       UInt32,
    document      String COMMENT 'JSON: the validated catalogue',
    created_by    String COMMENT 'API key id or CLI user',
    created_at    DateTime64(3, 'UTC'),
    change_note   String
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, version);

-- One row per model build; complete = 1 once every table below holds the build.
CREATE TABLE IF NOT EXISTS rec_models
(
    tenant_id        UInt16,
    build            UInt64,
    catalog_version  UInt32,
    built_at         DateTime64(3, 'UTC'),
    as_of            DateTime64(3, 'UTC'),
    customers        UInt64,
    items            UInt32,
    complete         UInt8,
    stats            String COMMENT 'JSON: step timings and sizes'
)
ENGINE = ReplacingMergeTree(complete)
ORDER BY (tenant_id, build);

-- Per item: customers who engaged in the window, overall, per saved segment and per region (the
-- default for an anonymous visitor of that region); its nearest
-- items by co-occurrence (Jaccard over customers), the strongest first.
CREATE TABLE IF NOT EXISTS rec_items
(
    tenant_id     UInt16,
    build         UInt64,
    item          String,
    engaged       UInt64,
    clicks        UInt64,
    exposures     UInt64,
    segment_ids   Array(String),
    segment_engaged Array(UInt64),
    region_codes  Array(String),
    region_engaged Array(UInt64),
    neighbours    Array(String),
    similarity    Array(Float32)
)
ENGINE = MergeTree
PARTITION BY build
ORDER BY (tenant_id, build, item);

-- Per engaged customer: the items they engaged with (time-decayed affinity, strongest first)
-- and, per item shown to them in the last 7 days, exposures today and in 7 days, and clicks.
CREATE TABLE IF NOT EXISTS rec_customers
(
    tenant_id     UInt16,
    build         UInt64,
    customer_key  UInt32,
    items         Array(String),
    affinity      Array(Float32),
    shown_items   Array(String),
    shown_today   Array(UInt16),
    shown_week    Array(UInt16),
    clicked_week  Array(UInt16)
)
ENGINE = MergeTree
PARTITION BY build
ORDER BY (tenant_id, build, customer_key);

-- Every layout served: who, which variant, which items in which modules, in the order shown.
CREATE TABLE IF NOT EXISTS layout_exposures
(
    tenant_id     UInt16,
    customer_key  UInt32,
    served_at     DateTime64(3, 'UTC'),
    screen        LowCardinality(String),
    experiment    LowCardinality(String),
    variant       LowCardinality(String),
    holdout       UInt8,
    elder         UInt8,
    model_build   UInt64,
    modules       Array(String),
    items         Array(String) COMMENT 'parallel to modules: the item shown in that module, in order'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(served_at)
ORDER BY (tenant_id, customer_key, served_at)
TTL toDateTime(served_at) + INTERVAL 400 DAY;
