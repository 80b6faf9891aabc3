-- Up Migration
-- A tenant's share weight in the admission queue's fair share (tokens served in proportion).
ALTER TABLE tenants ADD COLUMN weight double precision NOT NULL DEFAULT 1 CHECK (weight > 0 AND weight <= 1000);

-- Down Migration
ALTER TABLE tenants DROP COLUMN weight;
