-- The customers a tag's values were computed for: a print of the customers table (their count
-- and a sum of a hash of each one's key, opening date and deletion flag) read by the run before
-- it staged anything. Rules and scores are computed for every customer, so a run recomputes one
-- when the print differs; a full run keeps its event tags only when it is the same (with the
-- same day builds and date). Incremental runs record it with the rules and scores they compute
-- and carry an event tag's over (they compute event tags for customers with activity, not for
-- those imported). Empty: not recorded (states written before this).
ALTER TABLE tag_state
    ADD COLUMN IF NOT EXISTS base String DEFAULT '' COMMENT 'print of the customers the tag was computed for (see 026_tag_state_base.sql)';
