/**
 * D1 statements of the projection. Every write is idempotent and guarded:
 * events by their primary key (account_id, seq), reservations by `updated_seq`, accounts by
 * `last_seq`, so a batch applied twice, late, or out of order never moves a row backwards.
 * Each statement binds one row, far below D1's 100 bound parameters, except the rollups: one
 * statement binds a JSON array of rows and unpacks it with json_each, guarded by `seq`.
 */
import type { LedgerEvent } from "../domain/events";
import type { AccountState } from "../domain/state";
import { ROLLUP_DIMENSIONS, ROLLUP_SUM_MAX, ROLLUP_SUMS, type Rollup } from "./rollups";
import {
  accountRow,
  type Cell,
  LEDGER_EVENT_COLUMNS,
  ledgerEventRow,
  type ReservationChange,
  reservationChange,
} from "./rows";

const placeholders = (n: number) => Array.from({ length: n }, () => "?").join(", ");

const INSERT_EVENT = `INSERT OR IGNORE INTO ledger_events (${LEDGER_EVENT_COLUMNS.join(", ")}) VALUES (${placeholders(
  LEDGER_EVENT_COLUMNS.length,
)})`;

export function eventStatements(db: D1Database, accountId: string, event: LedgerEvent): D1PreparedStatement[] {
  const row = ledgerEventRow(accountId, event);
  const statements = [db.prepare(INSERT_EVENT).bind(...LEDGER_EVENT_COLUMNS.map((c) => row[c]))];
  const change = reservationChange(accountId, event);
  if (change !== null) statements.push(reservationStatement(db, accountId, change));
  return statements;
}

function reservationStatement(db: D1Database, accountId: string, change: ReservationChange): D1PreparedStatement {
  if (change.kind === "insert") {
    const columns = Object.keys(change.row);
    return db
      .prepare(`INSERT OR IGNORE INTO reservations (${columns.join(", ")}) VALUES (${placeholders(columns.length)})`)
      .bind(...columns.map((c) => change.row[c] as Cell));
  }
  const columns = Object.keys(change.set);
  return db
    .prepare(
      `UPDATE reservations SET ${columns.map((c) => `${c} = ?`).join(", ")} WHERE account_id = ? AND reservation_id = ? AND updated_seq < ?`,
    )
    .bind(...columns.map((c) => change.set[c] as Cell), accountId, change.reservation_id, change.seq);
}

export function accountStatement(db: D1Database, account: AccountState, projectedAtMs: number): D1PreparedStatement {
  const row = accountRow(account, projectedAtMs);
  const columns = Object.keys(row);
  const updates = columns.filter((c) => c !== "account_id").map((c) => `${c} = excluded.${c}`);
  return db
    .prepare(
      `INSERT INTO accounts (${columns.join(", ")}) VALUES (${placeholders(columns.length)})
       ON CONFLICT (account_id) DO UPDATE SET ${updates.join(", ")} WHERE excluded.last_seq > accounts.last_seq`,
    )
    .bind(...columns.map((c) => row[c] as Cell));
}

/** Rollup rows per statement: one JSON parameter of about 500 bytes a row stays far below 100 KB. */
export const ROLLUP_ROWS_PER_STATEMENT_MAX = 100;

/** Column order of `rollups` (migrations/0004_rollups.sql). */
export const ROLLUP_COLUMNS = [
  "account_id",
  "grain",
  "bucket",
  ...ROLLUP_DIMENSIONS,
  "seq",
  "balance_after",
  "reserved_after",
  ...ROLLUP_SUMS,
] as const;
const ROLLUP_KEY_COLUMNS = ["account_id", "grain", "bucket", ...ROLLUP_DIMENSIONS];

// Sums travel as decimal strings (a bucket may pass 2^53) and CAST makes them exact 64-bit
// integers. `WHERE true` lets SQLite parse the upsert after a SELECT. A row replaces the stored
// one only if its seq is newer: absolute values, so re-applying or reordering changes nothing.
const UPSERT_ROLLUPS = `INSERT INTO rollups (${ROLLUP_COLUMNS.join(", ")})
  SELECT ${ROLLUP_COLUMNS.map((_, i) =>
    i < ROLLUP_KEY_COLUMNS.length
      ? `json_extract(value, '$[${i}]')`
      : `CAST(json_extract(value, '$[${i}]') AS INTEGER)`,
  ).join(", ")}
  FROM json_each(?) WHERE true
  ON CONFLICT (${ROLLUP_KEY_COLUMNS.join(", ")}) DO UPDATE SET ${ROLLUP_COLUMNS.filter(
    (c) => !ROLLUP_KEY_COLUMNS.includes(c),
  )
    .map((c) => `${c} = excluded.${c}`)
    .join(", ")}
  WHERE excluded.seq > rollups.seq`;

/** One row of `rollups` as a JSON array in column order (sums as decimal strings). */
export function rollupCells(accountId: string, row: Rollup): (string | number)[] {
  for (const s of ROLLUP_SUMS) {
    // An SQLite integer holds 2^63 - 1; beyond, CAST would silently saturate.
    if (row.sums[s] > ROLLUP_SUM_MAX || row.sums[s] < -ROLLUP_SUM_MAX) throw new Error(`rollup ${s} exceeds 64 bits`);
  }
  return [
    accountId,
    row.grain,
    row.bucket,
    ...ROLLUP_DIMENSIONS.map((d) => row[d]),
    row.seq,
    row.balance_after,
    row.reserved_after,
    ...ROLLUP_SUMS.map((s) => row.sums[s].toString()),
  ];
}

/** Upserts of the rollup rows a flush touched, guarded by seq; a few rows per statement. */
export function rollupStatements(db: D1Database, accountId: string, rows: readonly Rollup[]): D1PreparedStatement[] {
  return rollupCellStatements(
    db,
    rows.map((row) => rollupCells(accountId, row)),
  );
}

/** The same upserts for rows already in column order (`rollupCells`), of any accounts. */
export function rollupCellStatements(db: D1Database, cells: readonly (string | number)[][]): D1PreparedStatement[] {
  const statements: D1PreparedStatement[] = [];
  for (let i = 0; i < cells.length; i += ROLLUP_ROWS_PER_STATEMENT_MAX) {
    statements.push(db.prepare(UPSERT_ROLLUPS).bind(JSON.stringify(cells.slice(i, i + ROLLUP_ROWS_PER_STATEMENT_MAX))));
  }
  return statements;
}

/** Removes an account's rows; the first statements of a reprojection, in its first batch. */
export function deleteAccountStatements(db: D1Database, accountId: string): D1PreparedStatement[] {
  return ["ledger_events", "reservations", "rollups", "accounts"].map((table) =>
    db.prepare(`DELETE FROM ${table} WHERE account_id = ?`).bind(accountId),
  );
}
