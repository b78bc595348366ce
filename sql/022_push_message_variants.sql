-- Message variants (A/B) of push campaigns.
--
-- Each target records the variant its customer was assigned (a capital letter; empty for a
-- campaign with one message), so the funnel can be broken down per variant from the same rows.
-- The column `variant` already says standard or elder text, which is a different thing.
ALTER TABLE push_targets ADD COLUMN IF NOT EXISTS message_variant LowCardinality(String) DEFAULT '' COMMENT 'the A/B variant of the message; empty without variants' AFTER variant;

-- A test send may send every variant of a campaign to each test customer: those targets are
-- stored under the campaign id, the test suffix and ':' and the variant, one id per variant, so
-- no two of them share a row key. The variants a send queued are listed here for the pulls.
ALTER TABLE push_test_sends ADD COLUMN IF NOT EXISTS variants Array(String) DEFAULT [] COMMENT 'the variants sent; empty: the campaign had none';
