-- Issue 27: credit in lots. The rollups gain breakage (LotExpired: lot_expired_amount and its
-- journal group's L and R) and the credit report's sums per kind of lot (src/projection/rollups.ts,
-- ROLLUP_SUMS, appended in this order). Rows and open buckets written before this have none: 0.
ALTER TABLE rollup_rows ADD COLUMN lot_expired_amount INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN lot_expiry_l INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN lot_expiry_r INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN paid_granted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN paid_consumed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN paid_refunded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN paid_expired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN promotional_granted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN promotional_consumed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN promotional_refunded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_rows ADD COLUMN promotional_expired INTEGER NOT NULL DEFAULT 0;

DROP VIEW rollups;
DROP VIEW open_rollups;

CREATE VIEW open_rollups AS
SELECT a.account_id AS account_id, a.open_day AS open_day,
  json_extract(r.value, '$[0]') AS grain,
  json_extract(r.value, '$[1]') AS bucket,
  json_extract(r.value, '$[2]') AS service_id,
  json_extract(r.value, '$[3]') AS provider,
  json_extract(r.value, '$[4]') AS model,
  json_extract(r.value, '$[5]') AS alias,
  json_extract(r.value, '$[6]') AS seq,
  json_extract(r.value, '$[7]') AS balance_after,
  json_extract(r.value, '$[8]') AS reserved_after,
  CAST(json_extract(r.value, '$[9]') AS INTEGER) AS events,
  CAST(json_extract(r.value, '$[10]') AS INTEGER) AS credits,
  CAST(json_extract(r.value, '$[11]') AS INTEGER) AS credit_amount,
  CAST(json_extract(r.value, '$[12]') AS INTEGER) AS direct_charges,
  CAST(json_extract(r.value, '$[13]') AS INTEGER) AS direct_charge_amount,
  CAST(json_extract(r.value, '$[14]') AS INTEGER) AS captures,
  CAST(json_extract(r.value, '$[15]') AS INTEGER) AS capture_amount,
  CAST(json_extract(r.value, '$[16]') AS INTEGER) AS expiry_captures,
  CAST(json_extract(r.value, '$[17]') AS INTEGER) AS expiry_capture_amount,
  CAST(json_extract(r.value, '$[18]') AS INTEGER) AS refunds,
  CAST(json_extract(r.value, '$[19]') AS INTEGER) AS refund_amount,
  CAST(json_extract(r.value, '$[20]') AS INTEGER) AS adjustments,
  CAST(json_extract(r.value, '$[21]') AS INTEGER) AS adjustment_up_amount,
  CAST(json_extract(r.value, '$[22]') AS INTEGER) AS adjustment_down_amount,
  CAST(json_extract(r.value, '$[23]') AS INTEGER) AS input_tokens,
  CAST(json_extract(r.value, '$[24]') AS INTEGER) AS output_tokens,
  CAST(json_extract(r.value, '$[25]') AS INTEGER) AS cached_tokens,
  CAST(json_extract(r.value, '$[26]') AS INTEGER) AS credit_l,
  CAST(json_extract(r.value, '$[27]') AS INTEGER) AS credit_r,
  CAST(json_extract(r.value, '$[28]') AS INTEGER) AS charge_l,
  CAST(json_extract(r.value, '$[29]') AS INTEGER) AS charge_r,
  CAST(json_extract(r.value, '$[30]') AS INTEGER) AS refund_l,
  CAST(json_extract(r.value, '$[31]') AS INTEGER) AS refund_r,
  CAST(json_extract(r.value, '$[32]') AS INTEGER) AS adjustment_up_l,
  CAST(json_extract(r.value, '$[33]') AS INTEGER) AS adjustment_up_r,
  CAST(json_extract(r.value, '$[34]') AS INTEGER) AS adjustment_down_l,
  CAST(json_extract(r.value, '$[35]') AS INTEGER) AS adjustment_down_r,
  COALESCE(CAST(json_extract(r.value, '$[36]') AS INTEGER), 0) AS lot_expired_amount,
  COALESCE(CAST(json_extract(r.value, '$[37]') AS INTEGER), 0) AS lot_expiry_l,
  COALESCE(CAST(json_extract(r.value, '$[38]') AS INTEGER), 0) AS lot_expiry_r,
  COALESCE(CAST(json_extract(r.value, '$[39]') AS INTEGER), 0) AS paid_granted,
  COALESCE(CAST(json_extract(r.value, '$[40]') AS INTEGER), 0) AS paid_consumed,
  COALESCE(CAST(json_extract(r.value, '$[41]') AS INTEGER), 0) AS paid_refunded,
  COALESCE(CAST(json_extract(r.value, '$[42]') AS INTEGER), 0) AS paid_expired,
  COALESCE(CAST(json_extract(r.value, '$[43]') AS INTEGER), 0) AS promotional_granted,
  COALESCE(CAST(json_extract(r.value, '$[44]') AS INTEGER), 0) AS promotional_consumed,
  COALESCE(CAST(json_extract(r.value, '$[45]') AS INTEGER), 0) AS promotional_refunded,
  COALESCE(CAST(json_extract(r.value, '$[46]') AS INTEGER), 0) AS promotional_expired
FROM accounts a, json_each(a.open_rollups) r;

CREATE VIEW rollups AS
SELECT account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r, lot_expired_amount, lot_expiry_l, lot_expiry_r, paid_granted, paid_consumed, paid_refunded, paid_expired, promotional_granted, promotional_consumed, promotional_refunded, promotional_expired
FROM rollup_rows
UNION ALL
SELECT account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r, lot_expired_amount, lot_expiry_l, lot_expiry_r, paid_granted, paid_consumed, paid_refunded, paid_expired, promotional_granted, promotional_consumed, promotional_refunded, promotional_expired
FROM open_rollups;

-- The journal books a lot's expiry (breakage: credit sold or given that will never be used)
-- against its own counter account, as the rollups' trial balance does.
DROP VIEW journal_entries;
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
      WHEN 'LotExpired' THEN 'breakage'
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
