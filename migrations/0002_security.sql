-- Issued API keys. Only a SHA-256 of the secret is stored (keys are 32 random bytes, so a slow
-- hash adds nothing); the prefix is the non-secret part that names a key in lists and logs.
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  prefix TEXT NOT NULL UNIQUE,
  secret_hash TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  account_id TEXT,
  created_at TEXT NOT NULL,
  last_used_at TEXT,
  revoked_at TEXT
) WITHOUT ROWID;

-- Security counters per minute, for the monitoring work to alert on spikes. They hold counts
-- and key prefixes only, never a presented secret.
CREATE TABLE security_counters (
  minute TEXT NOT NULL,
  counter TEXT NOT NULL,
  subject TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (minute, counter, subject)
) WITHOUT ROWID;
