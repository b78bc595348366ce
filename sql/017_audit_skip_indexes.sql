-- The trail is sorted by (tenant, time, entry): a query by customer, key, holder or object would
-- read every row of its time range. Bloom-filter skip indexes let it skip the granules that hold
-- none of the value asked for (a customer appears in few granules of a busy bank's trail).
ALTER TABLE audit_log ADD INDEX IF NOT EXISTS audit_customer_no customer_no TYPE bloom_filter(0.01) GRANULARITY 1;
ALTER TABLE audit_log ADD INDEX IF NOT EXISTS audit_key_id key_id TYPE bloom_filter(0.01) GRANULARITY 1;
ALTER TABLE audit_log ADD INDEX IF NOT EXISTS audit_holder holder TYPE bloom_filter(0.01) GRANULARITY 1;
ALTER TABLE audit_log ADD INDEX IF NOT EXISTS audit_object_id object_id TYPE bloom_filter(0.01) GRANULARITY 1;
ALTER TABLE audit_log MATERIALIZE INDEX audit_customer_no;
ALTER TABLE audit_log MATERIALIZE INDEX audit_key_id;
ALTER TABLE audit_log MATERIALIZE INDEX audit_holder;
ALTER TABLE audit_log MATERIALIZE INDEX audit_object_id;
