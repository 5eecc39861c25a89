/**
 * D1 statements of the projection. Every write is idempotent and guarded:
 * events by their primary key (account_id, seq), reservations by `updated_seq`, accounts by
 * `last_seq`, so a batch applied twice, late, or out of order never moves a row backwards.
 * Each statement binds one row, far below D1's 100 bound parameters.
 */
import type { LedgerEvent } from "../domain/events";
import type { AccountState } from "../domain/state";
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

/** Removes an account's rows; the first statements of a reprojection, in its first batch. */
export function deleteAccountStatements(db: D1Database, accountId: string): D1PreparedStatement[] {
  return ["ledger_events", "reservations", "accounts"].map((table) =>
    db.prepare(`DELETE FROM ${table} WHERE account_id = ?`).bind(accountId),
  );
}
