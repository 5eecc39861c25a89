-- Issue 28: the usage report groups by the caller's API key and project. A rollup bucket is now
-- keyed by them too (src/projection/rollups.ts, ROLLUP_DIMENSIONS): a new primary key, so the closed
-- rows move to a rebuilt table ('' for rows from before: they were counted under no key or project),
-- and the views gain the two columns. On the wire and in accounts.open_rollups they stand last in a
-- row's cells, so the cells of open buckets from before keep their places and read as ''.
DROP VIEW rollups;
DROP VIEW open_rollups;

CREATE TABLE rollup_rows_v2 (
  account_id TEXT NOT NULL,
  grain TEXT NOT NULL CHECK (grain IN ('hour', 'day')),
  bucket TEXT NOT NULL,
  service_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  alias TEXT NOT NULL,
  seq INTEGER NOT NULL,
  balance_after INTEGER NOT NULL,
  reserved_after INTEGER NOT NULL,
  events INTEGER NOT NULL DEFAULT 0,
  credits INTEGER NOT NULL DEFAULT 0,
  credit_amount INTEGER NOT NULL DEFAULT 0,
  direct_charges INTEGER NOT NULL DEFAULT 0,
  direct_charge_amount INTEGER NOT NULL DEFAULT 0,
  captures INTEGER NOT NULL DEFAULT 0,
  capture_amount INTEGER NOT NULL DEFAULT 0,
  expiry_captures INTEGER NOT NULL DEFAULT 0,
  expiry_capture_amount INTEGER NOT NULL DEFAULT 0,
  refunds INTEGER NOT NULL DEFAULT 0,
  refund_amount INTEGER NOT NULL DEFAULT 0,
  adjustments INTEGER NOT NULL DEFAULT 0,
  adjustment_up_amount INTEGER NOT NULL DEFAULT 0,
  adjustment_down_amount INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  cached_tokens INTEGER NOT NULL DEFAULT 0,
  credit_l INTEGER NOT NULL DEFAULT 0,
  credit_r INTEGER NOT NULL DEFAULT 0,
  charge_l INTEGER NOT NULL DEFAULT 0,
  charge_r INTEGER NOT NULL DEFAULT 0,
  refund_l INTEGER NOT NULL DEFAULT 0,
  refund_r INTEGER NOT NULL DEFAULT 0,
  adjustment_up_l INTEGER NOT NULL DEFAULT 0,
  adjustment_up_r INTEGER NOT NULL DEFAULT 0,
  adjustment_down_l INTEGER NOT NULL DEFAULT 0,
  adjustment_down_r INTEGER NOT NULL DEFAULT 0,
  lot_expired_amount INTEGER NOT NULL DEFAULT 0,
  lot_expiry_l INTEGER NOT NULL DEFAULT 0,
  lot_expiry_r INTEGER NOT NULL DEFAULT 0,
  paid_granted INTEGER NOT NULL DEFAULT 0,
  paid_consumed INTEGER NOT NULL DEFAULT 0,
  paid_refunded INTEGER NOT NULL DEFAULT 0,
  paid_expired INTEGER NOT NULL DEFAULT 0,
  promotional_granted INTEGER NOT NULL DEFAULT 0,
  promotional_consumed INTEGER NOT NULL DEFAULT 0,
  promotional_refunded INTEGER NOT NULL DEFAULT 0,
  promotional_expired INTEGER NOT NULL DEFAULT 0,
  api_key_id TEXT NOT NULL DEFAULT '',
  project_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (account_id, grain, bucket, service_id, provider, model, alias, api_key_id, project_id)
) WITHOUT ROWID;
INSERT INTO rollup_rows_v2 (account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r, lot_expired_amount, lot_expiry_l, lot_expiry_r, paid_granted, paid_consumed, paid_refunded, paid_expired, promotional_granted, promotional_consumed, promotional_refunded, promotional_expired)
  SELECT account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r, lot_expired_amount, lot_expiry_l, lot_expiry_r, paid_granted, paid_consumed, paid_refunded, paid_expired, promotional_granted, promotional_consumed, promotional_refunded, promotional_expired FROM rollup_rows;
DROP TABLE rollup_rows;
ALTER TABLE rollup_rows_v2 RENAME TO rollup_rows;
CREATE INDEX rollups_by_bucket ON rollup_rows (grain, bucket);

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
  COALESCE(CAST(json_extract(r.value, '$[9]') AS INTEGER), 0) AS events,
  COALESCE(CAST(json_extract(r.value, '$[10]') AS INTEGER), 0) AS credits,
  COALESCE(CAST(json_extract(r.value, '$[11]') AS INTEGER), 0) AS credit_amount,
  COALESCE(CAST(json_extract(r.value, '$[12]') AS INTEGER), 0) AS direct_charges,
  COALESCE(CAST(json_extract(r.value, '$[13]') AS INTEGER), 0) AS direct_charge_amount,
  COALESCE(CAST(json_extract(r.value, '$[14]') AS INTEGER), 0) AS captures,
  COALESCE(CAST(json_extract(r.value, '$[15]') AS INTEGER), 0) AS capture_amount,
  COALESCE(CAST(json_extract(r.value, '$[16]') AS INTEGER), 0) AS expiry_captures,
  COALESCE(CAST(json_extract(r.value, '$[17]') AS INTEGER), 0) AS expiry_capture_amount,
  COALESCE(CAST(json_extract(r.value, '$[18]') AS INTEGER), 0) AS refunds,
  COALESCE(CAST(json_extract(r.value, '$[19]') AS INTEGER), 0) AS refund_amount,
  COALESCE(CAST(json_extract(r.value, '$[20]') AS INTEGER), 0) AS adjustments,
  COALESCE(CAST(json_extract(r.value, '$[21]') AS INTEGER), 0) AS adjustment_up_amount,
  COALESCE(CAST(json_extract(r.value, '$[22]') AS INTEGER), 0) AS adjustment_down_amount,
  COALESCE(CAST(json_extract(r.value, '$[23]') AS INTEGER), 0) AS input_tokens,
  COALESCE(CAST(json_extract(r.value, '$[24]') AS INTEGER), 0) AS output_tokens,
  COALESCE(CAST(json_extract(r.value, '$[25]') AS INTEGER), 0) AS cached_tokens,
  COALESCE(CAST(json_extract(r.value, '$[26]') AS INTEGER), 0) AS credit_l,
  COALESCE(CAST(json_extract(r.value, '$[27]') AS INTEGER), 0) AS credit_r,
  COALESCE(CAST(json_extract(r.value, '$[28]') AS INTEGER), 0) AS charge_l,
  COALESCE(CAST(json_extract(r.value, '$[29]') AS INTEGER), 0) AS charge_r,
  COALESCE(CAST(json_extract(r.value, '$[30]') AS INTEGER), 0) AS refund_l,
  COALESCE(CAST(json_extract(r.value, '$[31]') AS INTEGER), 0) AS refund_r,
  COALESCE(CAST(json_extract(r.value, '$[32]') AS INTEGER), 0) AS adjustment_up_l,
  COALESCE(CAST(json_extract(r.value, '$[33]') AS INTEGER), 0) AS adjustment_up_r,
  COALESCE(CAST(json_extract(r.value, '$[34]') AS INTEGER), 0) AS adjustment_down_l,
  COALESCE(CAST(json_extract(r.value, '$[35]') AS INTEGER), 0) AS adjustment_down_r,
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
  COALESCE(CAST(json_extract(r.value, '$[46]') AS INTEGER), 0) AS promotional_expired,
  COALESCE(json_extract(r.value, '$[47]'), '') AS api_key_id,
  COALESCE(json_extract(r.value, '$[48]'), '') AS project_id
FROM accounts a, json_each(a.open_rollups) r;

CREATE VIEW rollups AS
SELECT account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r, lot_expired_amount, lot_expiry_l, lot_expiry_r, paid_granted, paid_consumed, paid_refunded, paid_expired, promotional_granted, promotional_consumed, promotional_refunded, promotional_expired, api_key_id, project_id
FROM rollup_rows
UNION ALL
SELECT account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r, lot_expired_amount, lot_expiry_l, lot_expiry_r, paid_granted, paid_consumed, paid_refunded, paid_expired, promotional_granted, promotional_consumed, promotional_refunded, promotional_expired, api_key_id, project_id
FROM open_rollups;
