-- The customers as a tag run read them, one row per customer: the hash of its key, opening date
-- and deletion flag that the customers print (tag_state.base) sums. An incremental run whose
-- event tags were computed from another print compares the two sets row by row and recomputes
-- the event tags of the customers that were added, re-dated or deleted since; without the rows
-- of the old print it recomputes every customer (a full run). A run writes the rows of its
-- print only when no rows of it are kept, and keeps only the prints tag_state still names. So
-- incremental runs now record their own print with the event tags they compute, instead of
-- carrying the old one over as 026_tag_state_base.sql says.
CREATE TABLE IF NOT EXISTS tag_customer_prints
(
    tenant_id     UInt16,
    print         LowCardinality(String),
    customer_key  UInt32,
    h             UInt64
)
ENGINE = MergeTree
ORDER BY (tenant_id, print, customer_key);

-- The customers a run put in its scope because their row changed (not for their activity): a
-- rule over other tags is recomputed for them and for those whose inputs changed, not for everyone.
ALTER TABLE tag_scope
    ADD COLUMN IF NOT EXISTS customers UInt8 DEFAULT 0 COMMENT 'in scope because the customer row changed (see 027_tag_customer_prints.sql)';
