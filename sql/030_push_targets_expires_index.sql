-- A target is deliverable while expires_at is in the future, whatever its occurrence date
-- (local_date, in the sort key): a once campaign targeted late, or an event trigger fed a late
-- event, makes targets that go out now under a date long past. The lease refill (and the caps'
-- budget at targeting) therefore find live targets by expires_at instead of by a bound on
-- local_date. The sort key cannot serve that condition: without an index, a refill reads the
-- expiry of every target in each part that holds a live one (a month or more of every campaign).
-- Within a campaign targets are sorted by date, so their expiries rise from granule to granule
-- and a minmax index skips all but the granules that hold live targets.
ALTER TABLE push_targets ADD INDEX IF NOT EXISTS push_targets_expires expires_at TYPE minmax GRANULARITY 1;
ALTER TABLE push_targets MATERIALIZE INDEX push_targets_expires;
