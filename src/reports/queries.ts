/**
 * The reports: read-only queries over the D1 read side, each with keyset pagination and the
 * projection position it reflects ("as of"). Every filter is a bound parameter.
 *
 * The reports here read current rows (balances, reservations) or the window of raw events
 * (transactions, refunds), and say which range that window covers (`as_of.window`). Totals over
 * all time (usage, trial balance, the statement) read the rollups: ./rollups.ts.
 */
import type { LedgerEventType } from "../domain/events";
import { RAW_EVENTS_COMPLETE_FROM_KEY } from "../projection/retention";
import { BadCursor, type CursorKey, decodeCursor, encodeCursor } from "./cursor";

type Row = Record<string, unknown>;
export interface Page<T = Row> {
  data: T[];
  next_cursor: string | null;
  as_of: AsOf;
}

/** How fresh a report is: the newest event the projection has written, and its worst lag. */
export interface AsOf {
  accounts: number;
  newest_event_at: string | null;
  last_projected_at: string | null;
  worst_projection_lag_ms: number | null;
  /** For a one-account report: the account's projected position. */
  last_seq?: number | null;
  /**
   * For reports over raw events: the range D1 holds completely, from the window's start (null:
   * since the first event; older events were pruned) to the newest projected event. Older
   * history comes from the account's own log (`GET /v1/accounts/{id}/events`, the audit export).
   */
  window?: { from: string | null; to: string | null };
}

export async function asOf(db: D1Database, accountId?: string, withWindow = false): Promise<AsOf> {
  const where = accountId === undefined ? "" : "WHERE account_id = ?";
  const row = await db
    .prepare(
      `SELECT COUNT(*) AS accounts, MAX(updated_at) AS newest_event_at, MAX(projected_at) AS last_projected_at,
              MAX(projection_lag_ms) AS worst_projection_lag_ms, MAX(last_seq) AS last_seq,
              (SELECT value FROM sweep_state WHERE key = ?) AS window_from FROM accounts ${where}`,
    )
    .bind(RAW_EVENTS_COMPLETE_FROM_KEY, ...(accountId === undefined ? [] : [accountId]))
    .first<AsOf & { last_seq: number | null; window_from: string | null }>();
  const result: AsOf = {
    accounts: row?.accounts ?? 0,
    newest_event_at: row?.newest_event_at ?? null,
    last_projected_at: row?.last_projected_at ?? null,
    worst_projection_lag_ms: row?.worst_projection_lag_ms ?? null,
  };
  if (accountId !== undefined) result.last_seq = row?.last_seq ?? null;
  if (withWindow) result.window = { from: row?.window_from ?? null, to: result.newest_event_at };
  return result;
}

/** Builds `(a, b) > (?, ?)` for a cursor, or nothing on the first page. */
export function after(
  columns: string[],
  cursor: string | undefined,
  descending = false,
): { sql: string; binds: CursorKey } {
  if (cursor === undefined) return { sql: "", binds: [] };
  const key = decodeCursor(cursor, columns.length);
  if (key === null) throw new BadCursor("cursor");
  return {
    sql: `(${columns.join(", ")}) ${descending ? "<" : ">"} (${columns.map(() => "?").join(", ")})`,
    binds: key,
  };
}

export async function page<T extends Row>(
  db: D1Database,
  sql: string,
  binds: unknown[],
  limit: number,
  keyOf: (row: T) => CursorKey,
  accountId?: string,
  withWindow = false,
): Promise<Page<T>> {
  const [result, freshness] = await Promise.all([
    db
      .prepare(`${sql} LIMIT ?`)
      .bind(...binds, limit + 1)
      .all<T>(),
    asOf(db, accountId, withWindow),
  ]);
  const rows = result.results;
  const more = rows.length > limit;
  const data = more ? rows.slice(0, limit) : rows;
  const last = data.at(-1);
  return { data, next_cursor: more && last !== undefined ? encodeCursor(keyOf(last)) : null, as_of: freshness };
}

/** The WHERE clause of a report and its bound values, in order. */
export class Filter {
  private readonly conditions: string[] = [];
  readonly binds: unknown[] = [];

  add(condition: string, ...values: unknown[]): void {
    if (condition === "") return;
    this.conditions.push(condition);
    this.binds.push(...values);
  }

  where(): string {
    return this.conditions.length === 0 ? "" : `WHERE ${this.conditions.join(" AND ")}`;
  }
}

export interface BalancesQuery {
  status?: "active" | "frozen";
  min_available?: number;
  max_available?: number;
  sort: "available" | "updated_at";
  order: "asc" | "desc";
  limit: number;
  cursor?: string;
}

export async function balancesReport(db: D1Database, q: BalancesQuery): Promise<Page> {
  const f = new Filter();
  if (q.status !== undefined) f.add("status = ?", q.status);
  if (q.min_available !== undefined) f.add("available >= ?", q.min_available);
  if (q.max_available !== undefined) f.add("available <= ?", q.max_available);
  const keyset = after([q.sort, "account_id"], q.cursor, q.order === "desc");
  if (keyset.sql !== "") f.add(keyset.sql, ...keyset.binds);
  const direction = q.order === "desc" ? "DESC" : "ASC";
  return page(
    db,
    `SELECT account_id, currency, balance, reserved, available, credit_limit, status, open_reservations, last_seq,
            created_at, updated_at, projected_at, projection_lag_ms
     FROM accounts ${f.where()} ORDER BY ${q.sort} ${direction}, account_id ${direction}`,
    f.binds,
    q.limit,
    (row) => [row[q.sort] as string | number, row.account_id as string],
  );
}

export interface TransactionsQuery {
  account_id?: string;
  types?: LedgerEventType[];
  from?: string;
  to?: string;
  limit: number;
  cursor?: string;
}

export async function transactionsReport(db: D1Database, q: TransactionsQuery): Promise<Page> {
  const f = new Filter();
  if (q.account_id !== undefined) f.add("account_id = ?", q.account_id);
  if (q.types !== undefined && q.types.length > 0) {
    f.add(`type IN (${q.types.map(() => "?").join(", ")})`, ...q.types);
  }
  if (q.from !== undefined) f.add("created_at >= ?", q.from);
  if (q.to !== undefined) f.add("created_at < ?", q.to);
  // One account pages in seq order (its primary key); across accounts, in time order.
  const order = q.account_id === undefined ? ["created_at", "account_id", "seq"] : ["seq"];
  const keyset = after(order, q.cursor);
  if (keyset.sql !== "") f.add(keyset.sql, ...keyset.binds);
  const result = await page(
    db,
    `SELECT * FROM ledger_events ${f.where()} ORDER BY ${order.join(", ")}`,
    f.binds,
    q.limit,
    (row) => order.map((c) => row[c] as string | number),
    q.account_id,
    true,
  );
  return { ...result, data: result.data.map(compactEvent) };
}

/** Drops the columns an event type does not have and parses metadata. */
function compactEvent(row: Row): Row {
  const out: Row = {};
  for (const [key, value] of Object.entries(row)) {
    if (value === null) continue;
    out[key] = key === "metadata" && typeof value === "string" ? JSON.parse(value) : value;
  }
  return out;
}

export interface ReservationsQuery {
  status?: "open" | "captured" | "released" | "expired";
  expired_before?: string;
  account_id?: string;
  limit: number;
  cursor?: string;
}

export async function reservationsReport(db: D1Database, q: ReservationsQuery): Promise<Page> {
  const f = new Filter();
  if (q.status !== undefined) f.add("status = ?", q.status);
  if (q.expired_before !== undefined) f.add("expires_at < ?", q.expired_before);
  if (q.account_id !== undefined) f.add("account_id = ?", q.account_id);
  const order = ["expires_at", "account_id", "reservation_id"];
  const keyset = after(order, q.cursor);
  if (keyset.sql !== "") f.add(keyset.sql, ...keyset.binds);
  return page(
    db,
    `SELECT * FROM reservations ${f.where()} ORDER BY ${order.join(", ")}`,
    f.binds,
    q.limit,
    (row) => order.map((c) => row[c] as string),
    q.account_id,
    // Settled reservations leave with their settlement event (src/projection/retention.ts).
    true,
  );
}

export interface RefundsQuery {
  account_id?: string;
  from?: string;
  to?: string;
  limit: number;
  cursor?: string;
}

export async function refundsReport(db: D1Database, q: RefundsQuery): Promise<Page> {
  const f = new Filter();
  if (q.account_id !== undefined) f.add("r.account_id = ?", q.account_id);
  if (q.from !== undefined) f.add("r.created_at >= ?", q.from);
  if (q.to !== undefined) f.add("r.created_at < ?", q.to);
  const order = ["r.created_at", "r.account_id", "r.seq"];
  const keyset = after(order, q.cursor);
  if (keyset.sql !== "") f.add(keyset.sql, ...keyset.binds);
  // The charge's current refunded total is the running total of its newest refund, which is newer
  // than r and so still in the window whenever r is (a sum would miss refunds already pruned).
  return page(
    db,
    `SELECT r.account_id, r.refund_id, r.charge_id, r.amount, r.reason, r.seq, r.created_at,
            r.charge_amount, r.charge_refunded_total AS charge_refunded_after,
            (SELECT MAX(x.charge_refunded_total) FROM ledger_events x
              WHERE x.type = 'ChargeRefunded' AND x.account_id = r.account_id AND x.charge_id = r.charge_id)
              AS charge_refunded_total
     FROM refunds r ${f.where()} ORDER BY ${order.join(", ")}`,
    f.binds,
    q.limit,
    (row) => [row.created_at as string, row.account_id as string, row.seq as number],
    q.account_id,
    true,
  );
}
