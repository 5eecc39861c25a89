-- Effective-dated price rules, append-only: a new rule for the same (service_id, provider,
-- model, unit) supersedes the old one from its effective_from; nothing is edited or deleted.
CREATE TABLE price_rules (
  rule_id TEXT PRIMARY KEY,
  service_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  unit TEXT NOT NULL,
  price_minor INTEGER NOT NULL,
  per_units INTEGER NOT NULL,
  effective_from TEXT NOT NULL,
  created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX price_rules_in_effect ON price_rules (service_id, provider, model, unit, effective_from);
