-- The measures each day build's arrays follow, as `role:id` in their order (tags/tag.measures.ts
-- layoutOf). A day before the bank's events retention cannot be aggregated again: its raw
-- events are gone. When the tenant's measures change (a tag with a new measure is added, one is
-- retired), a full run carries such a day's build into the new layout position by position
-- instead, a measure the old build lacks starting at nothing (tags/event-daily.ts carryDays).
-- Builds recorded before this have no list (empty) and are aggregated again, as before.
ALTER TABLE tag_event_days
    ADD COLUMN IF NOT EXISTS measures Array(String) COMMENT 'role:id of each measure, in the arrays'' order; empty: not recorded';
