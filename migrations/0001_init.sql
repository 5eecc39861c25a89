-- D1 read side of the ledger. The account Durable Objects are the source of truth; the
-- reporting work projects their events into tables created by later migrations.
-- This first migration records the read side's schema version for operators.
CREATE TABLE IF NOT EXISTS ledger_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT OR IGNORE INTO ledger_meta (key, value) VALUES ('schema', 'openedge-ledger');
