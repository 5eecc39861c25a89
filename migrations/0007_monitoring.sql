-- Issue 14: webhook endpoints and their delivery records, in the control database (shard 0).

-- Endpoints, managed by admins. The URL and the signing secret are stored encrypted (enc:v1,
-- src/security/secrets.ts, bound to the endpoint's id); `events` is a JSON array of event types.
-- Bounded by WEBHOOK_ENDPOINTS_MAX (src/webhooks/store.ts): creation past it is refused.
CREATE TABLE webhook_endpoints (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  secret TEXT NOT NULL,
  events TEXT NOT NULL,
  account_id TEXT,
  created_at TEXT NOT NULL
) WITHOUT ROWID;

-- One row per (endpoint, event): attempts, last status and the next attempt. Never deleted
-- while pending; delivered and failed rows older than WEBHOOK_DELIVERIES_RETENTION_DAYS are
-- pruned by the cron (src/webhooks/store.ts). account_id is NULL for alert events.
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  endpoint_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  account_id TEXT,
  body TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL,
  last_status INTEGER,
  last_error TEXT,
  next_attempt_at_ms INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (endpoint_id, event_id)
) WITHOUT ROWID;
-- The due pending deliveries of one owner (an account, or the alerts with account_id NULL).
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (account_id, next_attempt_at_ms) WHERE state = 'pending';
-- Listing, newest first, and the retention prune.
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at);
