/**
 * The reports: read-only queries over the D1 read side, each with keyset pagination and the
 * projection position it reflects ("as of"). Every filter is a bound parameter.
 */
import type { LedgerEventType } from "../domain/events";
import { BadCursor, type CursorKey, decodeCursor, encodeCursor } from "./cursor";
import { decimal, exactSum, exactSumColumns } from "./exact";

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
}

export async function asOf(db: D1Database, accountId?: string): Promise<AsOf> {
  const where = accountId === undefined ? "" : "WHERE account_id = ?";
  const row = await db
    .prepare(
      `SELECT COUNT(*) AS accounts, MAX(updated_at) AS newest_event_at, MAX(projected_at) AS last_projected_at,
              MAX(projection_lag_ms) AS worst_projection_lag_ms, MAX(last_seq) AS last_seq FROM accounts ${where}`,
    )
    .bind(...(accountId === undefined ? [] : [accountId]))
    .first<AsOf & { last_seq: number | null }>();
  const result: AsOf = {
    accounts: row?.accounts ?? 0,
    newest_event_at: row?.newest_event_at ?? null,
    last_projected_at: row?.last_projected_at ?? null,
    worst_projection_lag_ms: row?.worst_projection_lag_ms ?? null,
  };
  if (accountId !== undefined) result.last_seq = row?.last_seq ?? null;
  return result;
}

/** Builds `(a, b) > (?, ?)` for a cursor, or nothing on the first page. */
function after(columns: string[], cursor: string | undefined, descending = false): { sql: string; binds: CursorKey } {
  if (cursor === undefined) return { sql: "", binds: [] };
  const key = decodeCursor(cursor, columns.length);
  if (key === null) throw new BadCursor("cursor");
  return {
    sql: `(${columns.join(", ")}) ${descending ? "<" : ">"} (${columns.map(() => "?").join(", ")})`,
    binds: key,
  };
}

async function page<T extends Row>(
  db: D1Database,
  sql: string,
  binds: unknown[],
  limit: number,
  keyOf: (row: T) => CursorKey,
  accountId?: string,
): Promise<Page<T>> {
  const [result, freshness] = await Promise.all([
    db
      .prepare(`${sql} LIMIT ?`)
      .bind(...binds, limit + 1)
      .all<T>(),
    asOf(db, accountId),
  ]);
  const rows = result.results;
  const more = rows.length > limit;
  const data = more ? rows.slice(0, limit) : rows;
  const last = data.at(-1);
  return { data, next_cursor: more && last !== undefined ? encodeCursor(keyOf(last)) : null, as_of: freshness };
}

/** The WHERE clause of a report and its bound values, in order. */
class Filter {
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

export const USAGE_GROUPS = {
  day: "substr(created_at, 1, 10)",
  account: "account_id",
  service_id: "COALESCE(service_id, '')",
  provider: "COALESCE(provider, '')",
  model: "COALESCE(model, '')",
  alias: "COALESCE(alias, '')",
} as const;
export type UsageGroup = keyof typeof USAGE_GROUPS;

/** The usage report's sums: decimal strings, exact at any size (docs/api.md#reports). */
export const USAGE_SUMS = ["cost", "input_tokens", "output_tokens", "cached_tokens"] as const;

export interface UsageQuery {
  group_by: UsageGroup[];
  account_id?: string;
  from?: string;
  to?: string;
  limit: number;
  cursor?: string;
}

export async function usageReport(db: D1Database, q: UsageQuery): Promise<Page> {
  const f = new Filter();
  if (q.account_id !== undefined) f.add("account_id = ?", q.account_id);
  if (q.from !== undefined) f.add("created_at >= ?", q.from);
  if (q.to !== undefined) f.add("created_at < ?", q.to);
  const keys = q.group_by.map((g, i) => `${USAGE_GROUPS[g]} AS k${i}`);
  const keyNames = q.group_by.map((_, i) => `k${i}`);
  // The sums are over every charge of the group (across accounts and over all time), so they are
  // unbounded: each is summed exactly in two parts (./exact.ts) and answered as a decimal string.
  const totals = ["COUNT(*) AS charges", ...USAGE_SUMS.map((t) => exactSumColumns(t, t))].join(", ");
  const inner = `SELECT ${[...keys, totals].join(", ")} FROM usage_log ${f.where()}${
    keyNames.length > 0 ? ` GROUP BY ${keyNames.join(", ")}` : ""
  }`;
  const keyset = keyNames.length > 0 ? after(keyNames, q.cursor) : { sql: "", binds: [] };
  const sql = `SELECT * FROM (${inner}) ${keyset.sql === "" ? "" : `WHERE ${keyset.sql}`}${
    keyNames.length > 0 ? ` ORDER BY ${keyNames.join(", ")}` : ""
  }`;
  const result = await page(
    db,
    sql,
    [...f.binds, ...keyset.binds],
    q.limit,
    (row) => keyNames.map((k) => row[k] as string),
    q.account_id,
  );
  return {
    ...result,
    data: result.data.map((row) => {
      const out: Row = {};
      q.group_by.forEach((g, i) => {
        const value = row[`k${i}`];
        out[g] = value === "" ? null : value;
      });
      out.charges = row.charges;
      for (const t of USAGE_SUMS) out[t] = decimal(exactSum(row, t));
      return out;
    }),
  };
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
  return page(
    db,
    `SELECT r.account_id, r.refund_id, r.charge_id, r.amount, r.reason, r.seq, r.created_at,
            r.charge_amount, r.charge_refunded_total AS charge_refunded_after,
            (SELECT COALESCE(SUM(x.amount), 0) FROM ledger_events x
              WHERE x.type = 'ChargeRefunded' AND x.account_id = r.account_id AND x.charge_id = r.charge_id)
              AS charge_refunded_total
     FROM refunds r ${f.where()} ORDER BY ${order.join(", ")}`,
    f.binds,
    q.limit,
    (row) => [row.created_at as string, row.account_id as string, row.seq as number],
    q.account_id,
  );
}

export interface TrialBalanceLine {
  ledger_account: string;
  /** Decimal strings: sums over every account and every event up to `at`, exact at any size. */
  debit: string;
  credit: string;
  net_debit: string;
}

export interface TrialBalanceReport {
  at: string;
  data: TrialBalanceLine[];
  total_debit: string;
  total_credit: string;
  /** Exact: BigInt equality of the two totals. */
  balanced: boolean;
  as_of: AsOf;
}

/**
 * Debits and credits per ledger account from the journal up to `at`. Every amount is a sum across
 * accounts, unbounded: summed exactly in SQL in two parts (./exact.ts), finished in BigInt, and
 * answered as decimal strings. D1 returns one row per ledger account (five at most).
 */
export async function trialBalanceReport(db: D1Database, at: string): Promise<TrialBalanceReport> {
  const [lines, freshness] = await Promise.all([
    db
      .prepare(
        `SELECT ledger_account, ${exactSumColumns("debit", "debit")}, ${exactSumColumns("credit", "credit")}
         FROM journal_entries WHERE created_at <= ? GROUP BY ledger_account ORDER BY ledger_account`,
      )
      .bind(at)
      .all<Row & { ledger_account: string }>(),
    asOf(db),
  ]);
  let totalDebit = 0n;
  let totalCredit = 0n;
  const data = lines.results.map((l) => {
    const debit = exactSum(l, "debit");
    const credit = exactSum(l, "credit");
    totalDebit += debit;
    totalCredit += credit;
    return {
      ledger_account: l.ledger_account,
      debit: decimal(debit),
      credit: decimal(credit),
      net_debit: decimal(debit - credit),
    };
  });
  return {
    at,
    data,
    total_debit: decimal(totalDebit),
    total_credit: decimal(totalCredit),
    balanced: totalDebit === totalCredit,
    as_of: freshness,
  };
}
