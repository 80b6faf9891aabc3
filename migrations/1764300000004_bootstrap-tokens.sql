-- Up Migration
-- Bootstrap tokens: an agent that presents one registers its own node (Kubernetes Deployments,
-- DaemonSets). Only the token's hash is kept; the secret is shown once, at creation. A token is
-- bound to one region and cluster; `uses` counts the nodes that joined with it.
CREATE TABLE bootstrap_tokens (
  id          text PRIMARY KEY,
  token_hash  text NOT NULL UNIQUE,
  region      text NOT NULL,
  cluster     text NOT NULL,
  description text NOT NULL DEFAULT '',
  expires_at  timestamptz,
  max_uses    integer CHECK (max_uses > 0),
  uses        integer NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

-- A node that registered itself names the bootstrap token it joined with (NULL: registered by an
-- operator); agent_seen_at is when a scheduler last had its agent connected (ghost cleanup).
ALTER TABLE nodes ADD COLUMN bootstrap_token_id text;
ALTER TABLE nodes ADD COLUMN agent_seen_at timestamptz;
CREATE INDEX nodes_self_registered ON nodes (agent_seen_at) WHERE bootstrap_token_id IS NOT NULL;

-- Down Migration
DROP INDEX nodes_self_registered;
ALTER TABLE nodes DROP COLUMN agent_seen_at;
ALTER TABLE nodes DROP COLUMN bootstrap_token_id;
DROP TABLE bootstrap_tokens;
