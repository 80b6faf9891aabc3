-- Up Migration
-- Responses API: finished responses whose conversations went idle, moved here from Redis (or the
-- gateway's memory) by the worker's sweep, and read back on demand. `data` is the whole record.
CREATE TABLE responses (
  id              text PRIMARY KEY,
  conversation_id text NOT NULL,
  status          text NOT NULL,
  data            jsonb NOT NULL,
  created_at      timestamptz NOT NULL,
  archived_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX responses_conversation ON responses (conversation_id);

-- Down Migration
DROP TABLE responses;
