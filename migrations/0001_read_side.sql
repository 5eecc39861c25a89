-- The read side of the ledger, projected from the account Durable Objects (the source of
-- truth). Every write is idempotent by (account_id, seq) and guarded so that no row moves
-- backwards; everything here can be rebuilt from the logs (POST /v1/admin/accounts/{id}/reproject).
--
-- Only three tables are written per event (accounts, ledger_events, reservations); charges,
-- refunds, usage_log and journal_entries are views over ledger_events, so a money movement
-- costs one event row plus its index entries, never a copy per report.

-- One row per account: the snapshot as of the newest projected event. Overwritten only by a
-- higher last_seq.
CREATE TABLE accounts (
  account_id TEXT PRIMARY KEY,
  currency TEXT NOT NULL,
  balance INTEGER NOT NULL,
  reserved INTEGER NOT NULL,
  available INTEGER NOT NULL,
  credit_limit INTEGER NOT NULL,
  status TEXT NOT NULL,
  open_reservations INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  -- Time of the newest projected event.
  updated_at TEXT NOT NULL,
  -- Wall time the projection wrote this row, and how long after its newest event that was.
  projected_at TEXT NOT NULL,
  projection_lag_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX accounts_by_available ON accounts (available, account_id);
CREATE INDEX accounts_by_updated_at ON accounts (updated_at, account_id);

-- Every event, flattened for queries. Columns that an event type does not have are NULL.
CREATE TABLE ledger_events (
  account_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  type TEXT NOT NULL,
  created_at TEXT NOT NULL,
  -- The event's own amount (signed for adjustments), and its effect on balance and reserved.
  amount INTEGER,
  balance_delta INTEGER NOT NULL,
  reserved_delta INTEGER NOT NULL,
  balance_after INTEGER NOT NULL,
  reserved_after INTEGER NOT NULL,
  credit_id TEXT,
  reservation_id TEXT,
  -- The charge an event creates or refunds (a capture's charge_id is its reservation_id).
  charge_id TEXT,
  refund_id TEXT,
  adjustment_id TEXT,
  extension_id TEXT,
  reason TEXT,
  currency TEXT,
  credit_limit INTEGER,
  status TEXT,
  on_expiry TEXT,
  ttl_seconds INTEGER,
  expires_at TEXT,
  reserved_amount INTEGER,
  released_amount INTEGER,
  overage INTEGER,
  charge_amount INTEGER,
  charge_refunded_total INTEGER,
  request_id TEXT,
  user_id TEXT,
  service_id TEXT,
  alias TEXT,
  provider TEXT,
  model TEXT,
  input_tokens INTEGER,
  output_tokens INTEGER,
  cached_tokens INTEGER,
  latency_ms INTEGER,
  usage_status TEXT,
  error_code TEXT,
  metadata TEXT,
  PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;
CREATE INDEX ledger_events_by_time ON ledger_events (created_at);
CREATE INDEX ledger_events_refunds_by_charge ON ledger_events (account_id, charge_id) WHERE type = 'ChargeRefunded';

-- Each reservation's current state; updated_seq guards against moving backwards.
CREATE TABLE reservations (
  account_id TEXT NOT NULL,
  reservation_id TEXT NOT NULL,
  status TEXT NOT NULL,
  amount INTEGER NOT NULL,
  captured_amount INTEGER,
  released_amount INTEGER,
  overage INTEGER NOT NULL,
  on_expiry TEXT NOT NULL,
  ttl_seconds INTEGER NOT NULL,
  expires_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  settled_at TEXT,
  request_id TEXT,
  service_id TEXT,
  provider TEXT,
  model TEXT,
  reserve_seq INTEGER NOT NULL,
  updated_seq INTEGER NOT NULL,
  PRIMARY KEY (account_id, reservation_id)
) WITHOUT ROWID;
CREATE INDEX reservations_open_by_expiry ON reservations (expires_at) WHERE status = 'open';

-- Charges: direct charges, captures, and expiries settled by the capture rule, with the
-- refunded total (summed through the partial index of refunds by charge).
CREATE VIEW charges AS
SELECT
  e.account_id,
  e.charge_id,
  CASE e.type WHEN 'AccountCharged' THEN 'direct' WHEN 'ReservationCaptured' THEN 'capture' ELSE 'expiry' END AS kind,
  -e.balance_delta AS amount,
  COALESCE((
    SELECT SUM(r.amount) FROM ledger_events r
    WHERE r.type = 'ChargeRefunded' AND r.account_id = e.account_id AND r.charge_id = e.charge_id
  ), 0) AS refunded,
  e.seq,
  e.created_at
FROM ledger_events e
WHERE e.charge_id IS NOT NULL AND e.type IN ('AccountCharged', 'ReservationCaptured', 'ReservationExpired');

CREATE VIEW refunds AS
SELECT account_id, refund_id, charge_id, amount, reason, charge_amount, charge_refunded_total, seq, created_at
FROM ledger_events WHERE type = 'ChargeRefunded';

-- One row per captured or direct charge with the platform's logging fields (no metadata).
CREATE VIEW usage_log AS
SELECT
  account_id, seq, created_at, type, charge_id, reservation_id,
  -balance_delta AS cost,
  request_id, user_id, service_id, alias, provider, model,
  input_tokens, output_tokens, cached_tokens, usage_status AS status, latency_ms, error_code
FROM ledger_events
WHERE charge_id IS NOT NULL AND type IN ('AccountCharged', 'ReservationCaptured', 'ReservationExpired');

-- Double entry. Each money movement (balance_delta != 0) moves the customer's position between
-- the balance liability (what we owe while the balance is positive) and the overage receivable
-- (what the customer owes while it is negative), against one counter account per kind:
-- cash for top-ups, revenue for charges, refunds (contra-revenue), adjustments. With
-- b1 = balance_after, b0 = b1 - delta, L = max(b1,0) - max(b0,0), R = max(-b1,0) - max(-b0,0):
-- the counter account is debited delta, the liability credited L and the receivable debited R;
-- delta - L + R = 0, so every entry balances.
CREATE VIEW journal_entries AS
WITH m AS (
  SELECT
    account_id, seq, created_at, type, balance_delta AS delta,
    MAX(balance_after, 0) - MAX(balance_after - balance_delta, 0) AS l,
    MAX(-balance_after, 0) - MAX(balance_delta - balance_after, 0) AS r,
    CASE type
      WHEN 'FundsCredited' THEN 'cash'
      WHEN 'ChargeRefunded' THEN 'refunds'
      WHEN 'BalanceAdjusted' THEN 'adjustments'
      ELSE 'revenue'
    END AS counter_account
  FROM ledger_events WHERE balance_delta != 0
)
SELECT account_id, seq, created_at, type, counter_account AS ledger_account,
  MAX(delta, 0) AS debit, MAX(-delta, 0) AS credit FROM m
UNION ALL
SELECT account_id, seq, created_at, type, 'customer_balances' AS ledger_account,
  MAX(-l, 0) AS debit, MAX(l, 0) AS credit FROM m WHERE l != 0
UNION ALL
SELECT account_id, seq, created_at, type, 'overage_receivable' AS ledger_account,
  MAX(r, 0) AS debit, MAX(-r, 0) AS credit FROM m WHERE r != 0;

-- The scheduled sweep's position in its round-robin over accounts.
CREATE TABLE sweep_state (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
