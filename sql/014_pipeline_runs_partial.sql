-- A tag run that completed all but some tags (each failed one recorded with its error, the tags
-- that read it skipped with the reason) ends `partial`: segments, the layout model and push
-- still follow it. Adding an enum value is a metadata change: existing parts are not rewritten.
ALTER TABLE pipeline_runs MODIFY COLUMN status Enum8('running' = 1, 'succeeded' = 2, 'failed' = 3, 'skipped' = 4, 'partial' = 5);
