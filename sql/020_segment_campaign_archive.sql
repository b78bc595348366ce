-- Archiving: a segment or campaign put away without being retired. An archived one leaves the
-- default lists and can be restored; an archived campaign never runs (targeting, triggers and
-- pulls only take active ones), and a segment still used by a campaign or another segment
-- cannot be archived. Each archive and restore is a new version, so the history says who.
ALTER TABLE segment_definitions ADD COLUMN IF NOT EXISTS archived UInt8 DEFAULT 0 COMMENT 'C1: 1 while the segment is archived' AFTER retired;

ALTER TABLE push_campaigns MODIFY COLUMN status Enum8('active' = 1, 'paused' = 2, 'retired' = 3, 'archived' = 4);
