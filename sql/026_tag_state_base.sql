-- What an event tag's values were computed from beside the day builds: the customers the window
-- staging starts from (their count and a sum of a hash of each one's key, opening date and
-- deletion flag), as of the full run that last recomputed the tag for everyone. A later full run
-- keeps the tag's values when these customers, the day builds of its window and the date are
-- what they were then. Empty: not recorded (states written before this, and incremental runs,
-- which carry the value over).
ALTER TABLE tag_state
    ADD COLUMN IF NOT EXISTS base String DEFAULT '' COMMENT 'event tags: the customers print of the full run that computed them for everyone';
