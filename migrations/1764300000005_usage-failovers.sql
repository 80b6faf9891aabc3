-- Up Migration
-- How many times a request's stream was continued on another node after its node failed
-- mid-generation (0: served by one node).
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS failovers smallint NOT NULL DEFAULT 0;

-- Down Migration
ALTER TABLE usage_records DROP COLUMN IF EXISTS failovers;
