-- A layout's exposure names what it showed by position instead of by id. A serving process
-- writes, once per snapshot it serves from, the snapshot's modules and items in their order
-- (one row per list, its id a digest of that content, so every process and restart writes the
-- same row); each exposure then carries the list's id and one number per item shown:
-- module position × (items in the list) + item position, both from 0. The id arrays were most
-- of an exposure row's bytes and of what parsing, sorting and merging its inserts cost on the
-- serving path. Rows written before this migration keep their ids in `modules` and `items` and
-- list 0; readers name both kinds the same way (core/exposures.sql.ts).
CREATE TABLE IF NOT EXISTS layout_exposure_lists
(
    tenant_id     UInt16,
    list          UInt64,
    modules       Array(String),
    items         Array(String),
    written_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, list);

ALTER TABLE layout_exposures
    ADD COLUMN IF NOT EXISTS list UInt64 DEFAULT 0 COMMENT 'layout_exposure_lists.list; 0: ids in modules and items',
    ADD COLUMN IF NOT EXISTS slots Array(UInt32) COMMENT 'per item shown: module position × length(list items) + item position';
