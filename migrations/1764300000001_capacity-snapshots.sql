-- Up Migration
-- Periodic snapshots of each agent-reported node's capacity and load, for history and dashboards.
CREATE TABLE capacity_snapshots (
  node_id                   text NOT NULL,
  taken_at                  timestamptz NOT NULL,
  state                     text NOT NULL CHECK (state IN ('fresh', 'stale', 'unhealthy')),
  declared_tokens_per_second double precision,
  learned_tokens_per_second  double precision,
  observations              integer NOT NULL,
  running_requests          double precision,
  waiting_requests          double precision,
  kv_cache_usage            double precision,
  PRIMARY KEY (node_id, taken_at)
);
CREATE INDEX capacity_snapshots_taken ON capacity_snapshots (taken_at);

-- Down Migration
DROP TABLE capacity_snapshots;
