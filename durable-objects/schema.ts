/**
 * SQLite schema of one account object. Migrations are append-only and applied in order on
 * start; `_schema` records the highest applied version (PRAGMA user_version is refused by the
 * runtime).
 *
 * Row budget (what the runtime bills): every command writes one `events` row; reservations,
 * charges and operation keys are WITHOUT ROWID tables so a keyed row is one b-tree entry, and
 * the only secondary index is the partial index of open holds by expiry.
 */
import type { LedgerEvent } from "../src/domain/events";
import { eventKeyString } from "../src/domain/keys";
import { WEBHOOK_STATE_MIGRATION } from "./outbox";

/**
 * Keys at a bounded cost (docs/archive.md, "What the object keeps"). An ended reservation keeps
 * only its key record and the terms its events do not say (columns; state NULL): its state is
 * rebuilt from its FundsReserved event and the event that ended it (src/domain/state.ts
 * `endedReservation`), read from the tail or its segment. A charge is its columns; the CHECK
 * keeps its refunds within what it charged. Both tables are rebuilt once, from their JSON, in the
 * start-up transaction (bounded by the keys the account holds).
 */
export const ENDED_ROWS_AS_RECORDS = `
  CREATE TABLE reservations_v2 (
    reservation_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    amount INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    on_expiry TEXT NOT NULL,
    reserve_seq INTEGER NOT NULL,
    end_seq INTEGER,
    state TEXT,
    CHECK ((status = 'open') = (end_seq IS NULL) AND (status = 'open') = (state IS NOT NULL))
  ) WITHOUT ROWID;
  INSERT INTO reservations_v2
    SELECT reservation_id, status, amount, expires_at_ms, json_extract(state, '$.ttl_seconds'),
      json_extract(state, '$.on_expiry'), json_extract(state, '$.reserve_seq'), json_extract(state, '$.end_seq'),
      CASE WHEN status = 'open' THEN state END
    FROM reservations;
  DROP TABLE reservations;
  ALTER TABLE reservations_v2 RENAME TO reservations;
  CREATE INDEX reservations_open_by_expiry ON reservations (expires_at_ms) WHERE status = 'open';
  CREATE TABLE charges_v2 (
    charge_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('direct', 'capture')),
    amount INTEGER NOT NULL,
    refunded INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    CHECK (refunded >= 0 AND refunded <= amount)
  ) WITHOUT ROWID;
  INSERT INTO charges_v2
    SELECT charge_id, json_extract(state, '$.kind'), json_extract(state, '$.amount'),
      json_extract(state, '$.refunded'), json_extract(state, '$.seq')
    FROM charges;
  DROP TABLE charges;
  ALTER TABLE charges_v2 RENAME TO charges;
  `;

/** Issue 28: the spend limits' windows a charge counted in (JSON; NULL: none). */
export const CHARGE_LIMITS_COLUMN = "ALTER TABLE charges ADD COLUMN limits TEXT;";

/** Issue 27: what paid for a charge and where its refunds went (JSON; NULL: before lots). */
export const CHARGE_FUNDING_COLUMNS = `
  ALTER TABLE charges ADD COLUMN funded_by TEXT;
  ALTER TABLE charges ADD COLUMN returned TEXT;
`;

export const MIGRATIONS: readonly (string | ((sql: SqlStorage) => void))[] = [
  `
  CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    account_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    credit_limit INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    metadata TEXT NOT NULL
  );
  -- The append-only log. body is the whole event as JSON; the columns repeat what the shell
  -- reads without parsing it (the head's balances are the balance snapshot).
  CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    balance_after INTEGER NOT NULL,
    reserved_after INTEGER NOT NULL,
    body TEXT NOT NULL
  );
  -- Current state of each reservation (a projection of the log, kept in the same transaction).
  CREATE TABLE reservations (
    reservation_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    amount INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX reservations_open_by_expiry ON reservations (expires_at_ms) WHERE status = 'open';
  -- Direct charges and captures (charge_id = reservation_id) with their refunded totals.
  CREATE TABLE charges (
    charge_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
  ) WITHOUT ROWID;
  -- Idempotency keys that no entity row records: credits, refunds, adjustments, extensions.
  CREATE TABLE operations (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- The D1 projection's durable cursor (durable-objects/projector.ts).
  CREATE TABLE projection (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    projected_seq INTEGER NOT NULL,
    projected_at TEXT, -- unused since lag is read from the log; kept so old cursors load
    failures INTEGER NOT NULL,
    retry_at_ms INTEGER
  );
  `,
  `
  -- The hash chain's links as a column, so the head hash is read without parsing a body.
  ALTER TABLE events ADD COLUMN hash TEXT;
  `,
  // Idempotency keys were spelled "kind:id[:id]", which let `extend:a:b:c` name two different
  // extensions (ids may contain ":"). Respell every stored key from the event that recorded it
  // with the unambiguous encoding of src/domain/keys.ts; the rows written are bounded by the
  // keys an account holds, and the migration runs once, inside the start-up transaction.
  respellOperationKeys,
  `
  -- The rollups' current rows (src/projection/rollups.ts), kept in the cursor row so that one
  -- write per flush records both, atomically. NULL on a cursor projected before rollups existed:
  -- the projector then rebuilds the read side once (src/projection/producer/projector.ts).
  ALTER TABLE projection ADD COLUMN rollups TEXT;
  `,
  `
  -- Issue 12: projection messages (src/projection/producer/message.ts) and rebuild generations. The read
  -- side's format changed (D1 migration 0005 emptied it): NULL rollups make the projector rebuild
  -- this account's rows from its log, once, on its next flush.
  ALTER TABLE projection ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
  UPDATE projection SET rollups = NULL;
  `,
  `
  -- Issue 13: sealed segments archived to R2 (durable-objects/archive.ts, docs/archive.md). One
  -- row per segment: its manifest entry (the JSON also written to R2 next to the segment) and
  -- the columns reads use to find a seq or a time without parsing it; deleted = 1 once the
  -- segment's events are gone from the events table.
  CREATE TABLE segments (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    balance INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    object TEXT NOT NULL,
    offsets TEXT NOT NULL,
    entry TEXT NOT NULL,
    deleted INTEGER NOT NULL
  );
  CREATE INDEX segments_by_first_at ON segments (first_at);
  -- The segment being sealed (first_seq NULL: none) and the sealing's retry state.
  CREATE TABLE archive_plan (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    first_seq INTEGER,
    last_seq INTEGER,
    failures INTEGER NOT NULL,
    retry_at_ms INTEGER
  );
  `,
  `
  -- Issue 14: the low-balance threshold (NULL: off), and the webhook outbox. A command whose
  -- events cross the threshold writes its webhook event here in the same transaction; the alarm
  -- hands it to the delivery records in D1 and deletes it (durable-objects/outbox.ts). Bounded by
  -- crossings not yet handed off: at most one per command, and the alarm drains it.
  ALTER TABLE account ADD COLUMN low_balance_threshold INTEGER;
  CREATE TABLE webhook_outbox (
    event_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // Ended reservations as their records, charges as columns (the constant above).
  ENDED_ROWS_AS_RECORDS,
  // Issue 14 fix: when the webhook run is next due and the retry time after a failed run, kept
  // across eviction (one row; durable-objects/outbox.ts).
  WEBHOOK_STATE_MIGRATION,
  `
  -- Issue 27: credit in lots. The book's checkpoint (durable-objects/lot-store.ts): every lot
  -- ever granted (its credit, holds and breakage; bounded per account by the grants it takes),
  -- the debt and the seq the checkpoint includes. A charge keeps what paid for it and where its
  -- refunds went (JSON; NULL: charged before the account kept lots).
  CREATE TABLE lots (
    lot_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('paid', 'promotional')),
    priority INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    remaining INTEGER NOT NULL,
    held INTEGER NOT NULL,
    expired INTEGER NOT NULL,
    expires_at_ms INTEGER,
    created_seq INTEGER NOT NULL,
    CHECK (remaining >= 0 AND held >= 0 AND held <= remaining AND expired >= 0)
  ) WITHOUT ROWID;
  CREATE INDEX lots_with_credit ON lots (created_seq) WHERE remaining > 0;
  CREATE TABLE lot_book (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    debt INTEGER NOT NULL CHECK (debt >= 0),
    debt_paid_by_paid INTEGER NOT NULL,
    debt_paid_by_promotional INTEGER NOT NULL,
    through_seq INTEGER NOT NULL
  );
  ${CHARGE_FUNDING_COLUMNS}
  `,
  `
  -- Issue 27 review: the lots whose expiry was announced (lot.expiring), so that a restart does not
  -- announce them again (durable-objects/outbox.ts). Bounded by the lots with credit inside the lead
  -- time; a lot's row goes when its expiry has passed.
  CREATE TABLE lots_announced (
    lot_id TEXT PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- Issue 28: spend limits. Their checkpoint (durable-objects/limit-store.ts): every limit with its
  -- current window's usage, as JSON (at most LIMITS_PER_ACCOUNT_MAX), and the seq it includes. An
  -- account from before limits has none, up to its head. A charge keeps the limits' windows it
  -- counted in (JSON; NULL: none), where its refunds give back.
  CREATE TABLE limit_book (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    limits TEXT NOT NULL,
    through_seq INTEGER NOT NULL
  );
  INSERT INTO limit_book (id, limits, through_seq) VALUES (1, '[]', COALESCE((SELECT MAX(seq) FROM events), 0));
  ${CHARGE_LIMITS_COLUMN}
  `,
];

export function respellOperationKeys(sql: SqlStorage): void {
  const rows = sql.exec<{ key: string; seq: number }>("SELECT key, seq FROM operations").toArray();
  for (const row of rows) {
    const body = sql.exec<{ body: string }>("SELECT body FROM events WHERE seq = ?", row.seq).one().body;
    const key = eventKeyString(JSON.parse(body) as LedgerEvent);
    if (key === null) throw new Error(`operation row ${row.seq} records an event without a key`);
    sql.exec("UPDATE operations SET key = ? WHERE key = ?", key, row.key);
  }
}

/** Applies `migrations` (by default the account object's) that `_schema` has not recorded yet. */
export function migrate(sql: SqlStorage, migrations: typeof MIGRATIONS = MIGRATIONS): void {
  sql.exec("CREATE TABLE IF NOT EXISTS _schema (version INTEGER NOT NULL)");
  const row = sql.exec<{ version: number }>("SELECT version FROM _schema").toArray()[0];
  let version = row?.version ?? 0;
  if (row === undefined) sql.exec("INSERT INTO _schema (version) VALUES (0)");
  // A newer schema than this code knows (a rollback of the Worker): refuse to serve rather than
  // read it with older rules. An older Worker would look keys up in their old spelling, miss
  // them, and apply a retried operation twice.
  if (version > migrations.length) {
    throw new Error(`schema ${version} is newer than this code's ${migrations.length}: refusing to start`);
  }
  while (version < migrations.length) {
    const migration = migrations[version];
    if (typeof migration === "function") migration(sql);
    else sql.exec(migration as string);
    version += 1;
    sql.exec("UPDATE _schema SET version = ?", version);
  }
}
