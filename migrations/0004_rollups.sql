-- Issue 12: a read side that stays bounded. D1 keeps per-account rollups (hourly for a retention
-- window, daily forever) and raw events only for a window (src/projection/retention.ts).

-- Usage and money movements per account, per UTC hour and per UTC day, by dimension ('' when the
-- events have none: SQLite keys treat NULLs as distinct, so an upsert keyed on NULL would never
-- meet its row). ABSOLUTE values as of `seq` (the bucket's last event folded in), computed by the
-- account object from its own ordered log; a write applies only if its seq is newer
-- (src/projection/d1.ts), so redelivered, late or reordered batches never double count.
CREATE TABLE rollups (
  account_id TEXT NOT NULL,
  grain TEXT NOT NULL CHECK (grain IN ('hour', 'day')),
  -- Start of the bucket: 'YYYY-MM-DDTHH:00:00.000Z'.
  bucket TEXT NOT NULL,
  service_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  alias TEXT NOT NULL,
  seq INTEGER NOT NULL,
  -- The account's balances after event `seq`: the newest row before a time is the balance then.
  balance_after INTEGER NOT NULL,
  reserved_after INTEGER NOT NULL,
  events INTEGER NOT NULL,
  credits INTEGER NOT NULL,
  credit_amount INTEGER NOT NULL,
  direct_charges INTEGER NOT NULL,
  direct_charge_amount INTEGER NOT NULL,
  captures INTEGER NOT NULL,
  capture_amount INTEGER NOT NULL,
  expiry_captures INTEGER NOT NULL,
  expiry_capture_amount INTEGER NOT NULL,
  refunds INTEGER NOT NULL,
  refund_amount INTEGER NOT NULL,
  adjustments INTEGER NOT NULL,
  adjustment_up_amount INTEGER NOT NULL,
  adjustment_down_amount INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  -- The journal's L (customer_balances) and R (overage_receivable) per counter account, as in
  -- journal_entries; adjustments split by sign so that each sum is a gross debit or credit.
  credit_l INTEGER NOT NULL,
  credit_r INTEGER NOT NULL,
  charge_l INTEGER NOT NULL,
  charge_r INTEGER NOT NULL,
  refund_l INTEGER NOT NULL,
  refund_r INTEGER NOT NULL,
  adjustment_up_l INTEGER NOT NULL,
  adjustment_up_r INTEGER NOT NULL,
  adjustment_down_l INTEGER NOT NULL,
  adjustment_down_r INTEGER NOT NULL,
  PRIMARY KEY (account_id, grain, bucket, service_id, provider, model, alias)
) WITHOUT ROWID;
-- Rows by time, for the retention prune of hourly rows and for sizing the raw-event window. An
-- entry is written when a bucket's row is first inserted, never when the row is updated (the
-- flushes that follow), so it costs one row written per account, bucket and dimensions.
CREATE INDEX rollups_by_bucket ON rollups (grain, bucket);

-- The window of raw events: a charge's refunded total is the running total recorded by its newest
-- refund (always newer than the charge, so in the window whenever the charge is), not a sum over
-- refunds that the prune may have removed.
DROP VIEW charges;
CREATE VIEW charges AS
SELECT
  e.account_id,
  e.charge_id,
  CASE e.type WHEN 'AccountCharged' THEN 'direct' WHEN 'ReservationCaptured' THEN 'capture' ELSE 'expiry' END AS kind,
  -e.balance_delta AS amount,
  COALESCE((
    SELECT MAX(r.charge_refunded_total) FROM ledger_events r
    WHERE r.type = 'ChargeRefunded' AND r.account_id = e.account_id AND r.charge_id = e.charge_id
  ), 0) AS refunded,
  e.seq,
  e.created_at
FROM ledger_events e
WHERE e.charge_id IS NOT NULL AND e.type IN ('AccountCharged', 'ReservationCaptured', 'ReservationExpired');
