-- Issue 12, second part: a read side that costs about one D1 row per account flush.
--
-- Raw events are stored in pages of 16 (src/projection/message.ts, PROJECTION_PAGE_EVENTS): a
-- sealed page is one row of `event_pages`; the events of an account's current, unsealed page
-- (its "tail") and its open rollup buckets ride in its `accounts` row, which a flush rewrites
-- anyway. `ledger_events` and `rollups` become views over those, with the same columns as the
-- tables they replace, so reports read them as before.
--
-- The raw events are dropped: every account object rebuilds its rows from its own log on its next
-- flush (its schema migration marks the cursor for a rebuild, in a new generation whose first
-- message deletes the account's old rows). The accounts rows stay until then, so that the
-- scheduled sweep, which visits every account in D1 in turn, wakes every object.

-- The views over ledger_events (charges, refunds, usage_log, journal_entries) stay: they read the
-- view of the same name created below, before any ALTER TABLE re-checks the schema.
DROP TABLE ledger_events;
DELETE FROM reservations WHERE status != 'open';
DELETE FROM sweep_state WHERE key = 'raw_events_complete_from';

-- Every flush rewrites the account row, and each index whose column changed costs one more row
-- written: `available` keeps its index (the console lists accounts lowest first); `updated_at`
-- loses its own (balances sorted by updated_at scan the shard's accounts, one row each).
DROP INDEX accounts_by_updated_at;

-- The seq the row was at before its last update: the consumer measures lag from the first event
-- an update made visible (RETURNING previous_seq).
ALTER TABLE accounts ADD COLUMN previous_seq INTEGER NOT NULL DEFAULT 0;

-- Rebuilds bump the generation; a message of an older generation is dropped (src/projection/apply.ts).
ALTER TABLE accounts ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
-- The current page: its first seq and its events (JSON arrays of cells, PAGE_EVENT_COLUMNS).
ALTER TABLE accounts ADD COLUMN tail_first_seq INTEGER NOT NULL DEFAULT 1;
ALTER TABLE accounts ADD COLUMN tail TEXT NOT NULL DEFAULT '[]';
-- The rollup buckets still open (the current hour and day per dimension set), as rollup cells,
-- and the UTC day they lie in (the day of the account's newest event). The index lets a report
-- over a period read only the accounts whose open buckets can fall in it; `open_day` changes once
-- a day per active account, so the index costs one row written per account and day, not per flush.
ALTER TABLE accounts ADD COLUMN open_rollups TEXT NOT NULL DEFAULT '[]';
ALTER TABLE accounts ADD COLUMN open_day TEXT NOT NULL DEFAULT '';
CREATE INDEX accounts_by_open_day ON accounts (open_day);

-- Sealed pages: final (the same in every message and every rebuild), so INSERT OR IGNORE.
-- Keyed by account for one account's reports; by time for the prune and cross-account reports.
-- A rowid table, not WITHOUT ROWID: a page (about 5 KB) then fills its leaf cell and one overflow
-- page; as WITHOUT ROWID it would keep under 1 KB in the cell and spill into two overflow pages
-- (measured: 555 bytes per event instead of about 350).
CREATE TABLE event_pages (
  account_id TEXT NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  first_at TEXT NOT NULL,
  last_at TEXT NOT NULL,
  events TEXT NOT NULL,
  UNIQUE (account_id, first_seq)
);
CREATE INDEX event_pages_by_time ON event_pages (first_at);

-- Every stored raw event as (account_id, cells): the sealed pages' and the accounts' tails.
CREATE VIEW event_cells AS
SELECT p.account_id AS account_id, e.value AS cells FROM event_pages p, json_each(p.events) e
UNION ALL
SELECT a.account_id AS account_id, e.value AS cells FROM accounts a, json_each(a.tail) e;

CREATE VIEW ledger_events AS
SELECT c.account_id AS account_id,
  json_extract(c.cells, '$[0]') AS seq,
  json_extract(c.cells, '$[1]') AS event_id,
  json_extract(c.cells, '$[2]') AS type,
  json_extract(c.cells, '$[3]') AS created_at,
  json_extract(c.cells, '$[4]') AS amount,
  json_extract(c.cells, '$[5]') AS balance_delta,
  json_extract(c.cells, '$[6]') AS reserved_delta,
  json_extract(c.cells, '$[7]') AS balance_after,
  json_extract(c.cells, '$[8]') AS reserved_after,
  json_extract(c.cells, '$[9]') AS credit_id,
  json_extract(c.cells, '$[10]') AS reservation_id,
  json_extract(c.cells, '$[11]') AS charge_id,
  json_extract(c.cells, '$[12]') AS refund_id,
  json_extract(c.cells, '$[13]') AS adjustment_id,
  json_extract(c.cells, '$[14]') AS extension_id,
  json_extract(c.cells, '$[15]') AS reason,
  json_extract(c.cells, '$[16]') AS currency,
  json_extract(c.cells, '$[17]') AS credit_limit,
  json_extract(c.cells, '$[18]') AS status,
  json_extract(c.cells, '$[19]') AS on_expiry,
  json_extract(c.cells, '$[20]') AS ttl_seconds,
  json_extract(c.cells, '$[21]') AS expires_at,
  json_extract(c.cells, '$[22]') AS reserved_amount,
  json_extract(c.cells, '$[23]') AS released_amount,
  json_extract(c.cells, '$[24]') AS overage,
  json_extract(c.cells, '$[25]') AS charge_amount,
  json_extract(c.cells, '$[26]') AS charge_refunded_total,
  json_extract(c.cells, '$[27]') AS request_id,
  json_extract(c.cells, '$[28]') AS user_id,
  json_extract(c.cells, '$[29]') AS service_id,
  json_extract(c.cells, '$[30]') AS alias,
  json_extract(c.cells, '$[31]') AS provider,
  json_extract(c.cells, '$[32]') AS model,
  json_extract(c.cells, '$[33]') AS input_tokens,
  json_extract(c.cells, '$[34]') AS output_tokens,
  json_extract(c.cells, '$[35]') AS cached_tokens,
  json_extract(c.cells, '$[36]') AS latency_ms,
  json_extract(c.cells, '$[37]') AS usage_status,
  json_extract(c.cells, '$[38]') AS error_code,
  json_extract(c.cells, '$[39]') AS metadata
FROM event_cells c;

-- Closed rollup buckets (final rows); the open ones live in accounts.open_rollups.
ALTER TABLE rollups RENAME TO rollup_rows;

-- The open buckets with the day they lie in: reports over a period filter on open_day (indexed).
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
  CAST(json_extract(r.value, '$[35]') AS INTEGER) AS adjustment_down_r
FROM accounts a, json_each(a.open_rollups) r;

CREATE VIEW rollups AS
SELECT account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r
FROM rollup_rows
UNION ALL
SELECT account_id, grain, bucket, service_id, provider, model, alias, seq, balance_after, reserved_after, events, credits, credit_amount, direct_charges, direct_charge_amount, captures, capture_amount, expiry_captures, expiry_capture_amount, refunds, refund_amount, adjustments, adjustment_up_amount, adjustment_down_amount, input_tokens, output_tokens, cached_tokens, credit_l, credit_r, charge_l, charge_r, refund_l, refund_r, adjustment_up_l, adjustment_up_r, adjustment_down_l, adjustment_down_r
FROM open_rollups;

-- Only open holds are rows (a hold opened and settled within one flush writes nothing); settled
-- reservations are read from their settlement event in the window, joined to the hold's
-- FundsReserved and newest ReservationExtended events when those are still in the window.
ALTER TABLE reservations RENAME TO open_holds;
-- Every open hold is open now: the sweep's scan of a shard's holds past expiry reads this small
-- table whole, and a hold no longer costs an index entry when it opens and another when it closes.
DROP INDEX reservations_open_by_expiry;
CREATE VIEW reservations AS
SELECT account_id, reservation_id, status, amount, captured_amount, released_amount, overage, on_expiry,
  ttl_seconds, expires_at, created_at, settled_at, request_id, service_id, provider, model, reserve_seq, updated_seq
FROM open_holds
UNION ALL
SELECT
  s.account_id,
  s.reservation_id,
  CASE s.type WHEN 'ReservationCaptured' THEN 'captured' WHEN 'ReservationReleased' THEN 'released' ELSE 'expired' END,
  s.reserved_amount,
  CASE WHEN s.type = 'ReservationCaptured' OR (s.type = 'ReservationExpired' AND s.on_expiry = 'capture') THEN s.amount END,
  s.released_amount,
  COALESCE(s.overage, 0),
  COALESCE(s.on_expiry, x.on_expiry),
  x.ttl_seconds,
  x.expires_at,
  r.created_at,
  s.created_at,
  COALESCE(s.request_id, r.request_id),
  COALESCE(s.service_id, r.service_id),
  COALESCE(s.provider, r.provider),
  COALESCE(s.model, r.model),
  r.seq,
  s.seq
FROM ledger_events s
LEFT JOIN ledger_events r
  ON r.account_id = s.account_id AND r.type = 'FundsReserved' AND r.reservation_id = s.reservation_id
LEFT JOIN ledger_events x
  ON x.account_id = s.account_id AND x.reservation_id = s.reservation_id
  AND x.seq = (
    SELECT MAX(y.seq) FROM ledger_events y
    WHERE y.account_id = s.account_id AND y.reservation_id = s.reservation_id
      AND y.type IN ('FundsReserved', 'ReservationExtended')
  )
WHERE s.type IN ('ReservationCaptured', 'ReservationReleased', 'ReservationExpired');

-- The projection's dead letters (shard 0 only): batches the consumer gave up on, kept until an
-- operator replays or drops them (GET and POST /v1/admin/projection/dead-letters).
CREATE TABLE projection_dead_letters (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  from_seq INTEGER NOT NULL,
  to_seq INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  received_at TEXT NOT NULL,
  body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX projection_dead_letters_by_account ON projection_dead_letters (account_id, generation, from_seq);
