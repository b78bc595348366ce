-- A quantile score's cut points as the run that last computed it found them: the input values at
-- the buckets' edges (bucket = 1 + the cut points the input is above; NULL: an edge among
-- customers without the input, which every customer with it is above). With them the next run
-- recomputes the score only for the customers whose input changed or lies between a cut point's
-- old and new place, instead of ranking every customer again. Empty: not recorded.
ALTER TABLE tag_state
    ADD COLUMN IF NOT EXISTS cuts Array(Nullable(Float64)) COMMENT 'quantile scores: cut points (see 032_tag_state_cuts.sql)';
