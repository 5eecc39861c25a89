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
  -- the projector then rebuilds the read side once (src/projection/projector.ts).
  ALTER TABLE projection ADD COLUMN rollups TEXT;
  `,
  `
  -- Issue 12: projection messages (src/projection/message.ts) and rebuild generations. The read
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
  // Issue 14 fix: when the webhook run is next due and the retry time after a failed run, kept
  // across eviction (one row; durable-objects/outbox.ts).
  WEBHOOK_STATE_MIGRATION,
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
