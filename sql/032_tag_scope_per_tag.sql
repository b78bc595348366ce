-- An incremental run restages an event tag only for the customers whose value of it can have
-- moved: those with activity of its measure on a day that entered or left its window, or on a
-- day rebuilt since. A row with `narrowed` = 1 names those tags in `event_tags`; a row with 0
-- (every row written before, and the customers whose row changed or whose tenure crossed a
-- lifecycle's edge) stands for every event tag of the customer.
ALTER TABLE tag_scope
    ADD COLUMN IF NOT EXISTS narrowed UInt8 DEFAULT 0 COMMENT 'only the event tags in event_tags (see 032_tag_scope_per_tag.sql)',
    ADD COLUMN IF NOT EXISTS event_tags Array(String) DEFAULT [] COMMENT 'with narrowed = 1: the event tags whose measure was active on the days that put the customer in scope';
