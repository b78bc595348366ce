-- Erasure (PIPL art. 47): one job per request, holding the customers it erases and its progress,
-- so that a restart resumes it; and tombstones that keep late or replayed events of an erased
-- customer number or device out until the bank re-registers the number.

-- A job's row is rewritten (a new version) after every step. While it runs, `subject` holds what
-- it must find (customer numbers, keys, linked app and device ids); once done, the subject is
-- reduced to keys and keyed digests and the older versions are deleted.
CREATE TABLE IF NOT EXISTS erasure_jobs
(
    tenant_id     UInt16,
    job_id        UUID,
    status        Enum8('running' = 1, 'done' = 2, 'failed' = 3),
    digests       Array(String) COMMENT 'keyed HMAC digests of the customer numbers (the conflict check)',
    customers     UInt32,
    subject       String COMMENT 'C1 while running: JSON of numbers, keys, linked ids; digests only once done',
    reason        String,
    requested_by  String COMMENT 'C1: the key holder who asked',
    key_id        String,
    steps         String COMMENT 'JSON: per place, rows before and after and whether done',
    proof         String COMMENT 'JSON: the final re-read of every place; empty while running',
    error         String,
    created_at    DateTime64(3, 'UTC'),
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, job_id);

-- Identifiers of erased customers, as keyed digests only (never in clear). `active = 0`: the
-- bank re-registered the number; its events are accepted again.
CREATE TABLE IF NOT EXISTS erasure_tombstones
(
    tenant_id     UInt16,
    id_kind       Enum8('customer_no' = 1, 'anonymous_id' = 2, 'device_id' = 3, 'user_id' = 4),
    id_digest     String,
    job_id        UUID,
    active        UInt8,
    changed_by    String COMMENT 'C1: who erased or re-registered',
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, id_kind, id_digest);
