-- Each bank's browser origins: the web pages (the H5 pages inside the app, the bank's own site)
-- whose browsers may send events with the bank's write key. One row per change, the newest wins;
-- a bank without a row lists none, so browsers are refused and server SDKs are unaffected (they
-- send no Origin).
CREATE TABLE IF NOT EXISTS tenant_cors_origins
(
    tenant_id   UInt16,
    origins     Array(String) COMMENT 'C1: exact origins (scheme://host[:port]) whose pages may send events',
    updated_at  DateTime64(3, 'UTC'),
    updated_by  String COMMENT 'C1: the key holder who changed them'
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY tenant_id;
