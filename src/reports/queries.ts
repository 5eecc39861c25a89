/**
 * The reports: read-only queries over the D1 read side, each with keyset pagination and the
 * projection position it reflects ("as of"). Every filter is a bound parameter.
 *
 * The reports here read current rows (balances, reservations) or the window of raw events
 * (transactions, refunds), and say which range that window covers (`as_of.window`). Totals over
 * all time (usage, trial balance, the statement) read the rollups: ./rollups.ts.
 *
 * The read side is sharded by account (src/read-side/shards.ts): a report of one account reads
 * its shard; a report across accounts asks every shard for the same page and merges the answers
 * (`pageAcross`), so its rows, order and cursors are those of one database holding every shard.
 */
import type { LedgerEventType } from "../domain/events";
import { RAW_EVENTS_COMPLETE_FROM_KEY } from "../projection/consumer/retention";
import { BadCursor, type CursorKey, decodeCursor, encodeCursor } from "../read-side/cursor";
import { type Shard, shardFor } from "../read-side/shards";

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

/**
 * The `as_of` of several shards read for one report: accounts summed, positions and the worst
 * lag the maximum. Each shard prunes its own window, so the window that every shard holds
 * completely starts at the latest of their starts (null only while no shard has pruned).
 */
export function mergeAsOf(parts: readonly AsOf[]): AsOf {
  const [first] = parts;
  if (first === undefined) throw new Error("as_of of no shard");
  if (parts.length === 1) return first;
  const result: AsOf = {
    accounts: parts.reduce((total, p) => total + p.accounts, 0),
    newest_event_at: maxSql(parts.map((p) => p.newest_event_at)),
    last_projected_at: maxSql(parts.map((p) => p.last_projected_at)),
    worst_projection_lag_ms: maxSql(parts.map((p) => p.worst_projection_lag_ms)),
  };
  if (parts.some((p) => p.last_seq !== undefined)) result.last_seq = maxSql(parts.map((p) => p.last_seq ?? null));
  if (parts.some((p) => p.window !== undefined)) {
    result.window = { from: maxSql(parts.map((p) => p.window?.from ?? null)), to: result.newest_event_at };
  }
  return result;
}

/** SQLite's MAX() over values: NULLs are skipped, null if every value is. */
function maxSql<V extends string | number>(values: readonly (V | null)[]): V | null {
  let best: V | null = null;
  for (const value of values) if (value !== null && (best === null || compareSql(value, best) > 0)) best = value;
  return best;
}

/**
 * The shards a report reads: one account's report reads only the shard that holds the account
 * (src/read-side/shards.ts); a report across accounts reads every shard.
 */
export function shardsToRead(shards: readonly Shard[], accountId: string | undefined): readonly Shard[] {
  return accountId === undefined ? shards : [shardFor(shards, accountId)];
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

/**
 * Compares two values as SQLite's ORDER BY does with the BINARY collation: NULL first, then
 * numbers (integers and reals numerically), then text (by its UTF-8 bytes, which is code point
 * order), then blobs (by bytes).
 */
export function compareSql(a: unknown, b: unknown): number {
  const rankA = sqlRank(a);
  const rankB = sqlRank(b);
  if (rankA !== rankB) return rankA - rankB;
  switch (rankA) {
    case 0:
      return 0;
    case 1:
      return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
    case 2:
      return compareCodePoints(a as string, b as string);
    default:
      return compareBytes(bytesOf(a), bytesOf(b));
  }
}

function sqlRank(value: unknown): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === "number" || typeof value === "bigint") return 1;
  if (typeof value === "string") return 2;
  return 3;
}

/**
 * Code point order, which is UTF-8 byte order (SQLite's memcmp), not JavaScript's UTF-16 code
 * unit order: they differ where a character past U+FFFF (a surrogate pair) meets one in
 * U+E000..U+FFFF. At the first differing code unit, surrogates move above that range.
 */
function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(unit: number): number {
  if (unit >= 0xe000) return unit - 0x800;
  if (unit >= 0xd800) return unit + 0x2000;
  return unit;
}

function bytesOf(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (Array.isArray(value)) return Uint8Array.from(value as number[]);
  throw new Error(`not an SQL value: ${typeof value}`);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return a.length - b.length;
}

/** Compares two ORDER BY keys column by column (every column in the same direction). */
export function compareKeys(a: readonly unknown[], b: readonly unknown[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = compareSql(a[i], b[i]);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** A report's ORDER BY, as the values of a row. */
export interface Order<T> {
  /** The values of the ORDER BY columns of a row, in order; the cursor of a page that ends at the row. */
  keyOf: (row: T) => CursorKey;
  /** Every column descending (`order=desc`), else every column ascending. */
  descending?: boolean;
  /**
   * For grouped rows (usage): joins two rows of one key from different shards into one. Without
   * it, keys are unique across shards (they name the account, which lives in one shard).
   */
  combine?: (a: T, b: T) => T;
}

/**
 * Merges rows that each shard answered in the report's order into that order, keeping at most
 * `count` keys (rows of one key are combined first, so the last key kept is complete). Ties
 * between shards (only without `combine`) go to the lower shard.
 */
export function mergeRuns<T>(runs: readonly (readonly T[])[], order: Order<T>, count: number): T[] {
  const keyed = runs.map((run) => run.map((row) => ({ row, key: order.keyOf(row) })));
  const heads = keyed.map(() => 0);
  const sign = order.descending === true ? -1 : 1;
  const out: { row: T; key: CursorKey }[] = [];
  for (;;) {
    // The smallest head (the largest, descending); k is at most READ_SHARDS_MAX, so a scan.
    let best: number | null = null;
    let next: { row: T; key: CursorKey } | undefined;
    for (let r = 0; r < keyed.length; r++) {
      const head = keyed[r]?.[heads[r] ?? 0];
      if (head !== undefined && (next === undefined || sign * compareKeys(head.key, next.key) < 0)) {
        best = r;
        next = head;
      }
    }
    if (best === null || next === undefined) break;
    heads[best] = (heads[best] ?? 0) + 1;
    const last = out.at(-1);
    if (order.combine !== undefined && last !== undefined && compareKeys(next.key, last.key) === 0) {
      last.row = order.combine(last.row, next.row);
    } else if (out.length === count) {
      break;
    } else {
      out.push({ ...next });
    }
  }
  return out.map((entry) => entry.row);
}

/** What a page's `as_of` covers: one account's position, and the window for reports over raw events. */
export interface Freshness {
  accountId?: string;
  withWindow?: boolean;
}

/**
 * One page of a report over shards (issue 12). Each shard answers the same query (the same
 * filter and keyset, so the rows after the cursor) with `limit + 1` rows in the report's order;
 * the rows are merged in that order, compared as SQLite compares them, and the first `limit`
 * answered. Every row of the merged page is among its shard's first `limit + 1` (fewer rows than
 * that precede it in the merged order), so nothing is skipped; `next_cursor` is the last row's
 * key as with one database, so the next page starts after it on every shard.
 */
export async function pageAcross<T extends Row>(
  shards: readonly Shard[],
  sql: string,
  binds: unknown[],
  limit: number,
  order: Order<T>,
  freshness: Freshness = {},
): Promise<Page<T>> {
  if (shards.length === 0) throw new Error("a report over no shard");
  const answers = await Promise.all(
    shards.map(({ db }) =>
      Promise.all([
        db
          .prepare(`${sql} LIMIT ?`)
          .bind(...binds, limit + 1)
          .all<T>(),
        asOf(db, freshness.accountId, freshness.withWindow),
      ]),
    ),
  );
  const rows = mergeRuns(
    answers.map(([result]) => result.results),
    order,
    limit + 1,
  );
  const more = rows.length > limit;
  const data = more ? rows.slice(0, limit) : rows;
  const last = data.at(-1);
  return {
    data,
    next_cursor: more && last !== undefined ? encodeCursor(order.keyOf(last)) : null,
    as_of: mergeAsOf(answers.map(([, position]) => position)),
  };
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

export async function balancesReport(shards: readonly Shard[], q: BalancesQuery): Promise<Page> {
  const f = new Filter();
  if (q.status !== undefined) f.add("status = ?", q.status);
  if (q.min_available !== undefined) f.add("available >= ?", q.min_available);
  if (q.max_available !== undefined) f.add("available <= ?", q.max_available);
  const keyset = after([q.sort, "account_id"], q.cursor, q.order === "desc");
  if (keyset.sql !== "") f.add(keyset.sql, ...keyset.binds);
  const direction = q.order === "desc" ? "DESC" : "ASC";
  return pageAcross(
    shards,
    `SELECT account_id, currency, balance, reserved, available, credit_limit, status, open_reservations, last_seq,
            created_at, updated_at, projected_at, projection_lag_ms
     FROM accounts ${f.where()} ORDER BY ${q.sort} ${direction}, account_id ${direction}`,
    f.binds,
    q.limit,
    { keyOf: (row) => [row[q.sort] as string | number, row.account_id as string], descending: q.order === "desc" },
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

export async function transactionsReport(shards: readonly Shard[], q: TransactionsQuery): Promise<Page> {
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
  const result = await pageAcross(
    shardsToRead(shards, q.account_id),
    `SELECT * FROM ledger_events ${f.where()} ORDER BY ${order.join(", ")}`,
    f.binds,
    q.limit,
    { keyOf: (row) => order.map((c) => row[c] as string | number) },
    { accountId: q.account_id, withWindow: true },
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

export async function reservationsReport(shards: readonly Shard[], q: ReservationsQuery): Promise<Page> {
  const f = new Filter();
  if (q.status !== undefined) f.add("status = ?", q.status);
  if (q.expired_before !== undefined) f.add("expires_at < ?", q.expired_before);
  if (q.account_id !== undefined) f.add("account_id = ?", q.account_id);
  const order = ["expires_at", "account_id", "reservation_id"];
  const keyset = after(order, q.cursor);
  if (keyset.sql !== "") f.add(keyset.sql, ...keyset.binds);
  return pageAcross(
    shardsToRead(shards, q.account_id),
    `SELECT * FROM reservations ${f.where()} ORDER BY ${order.join(", ")}`,
    f.binds,
    q.limit,
    { keyOf: (row) => order.map((c) => row[c] as string) },
    // Settled reservations leave with their settlement event (src/projection/consumer/retention.ts).
    { accountId: q.account_id, withWindow: true },
  );
}

export interface RefundsQuery {
  account_id?: string;
  from?: string;
  to?: string;
  limit: number;
  cursor?: string;
}

export async function refundsReport(shards: readonly Shard[], q: RefundsQuery): Promise<Page> {
  const f = new Filter();
  if (q.account_id !== undefined) f.add("r.account_id = ?", q.account_id);
  if (q.from !== undefined) f.add("r.created_at >= ?", q.from);
  if (q.to !== undefined) f.add("r.created_at < ?", q.to);
  const order = ["r.created_at", "r.account_id", "r.seq"];
  const keyset = after(order, q.cursor);
  if (keyset.sql !== "") f.add(keyset.sql, ...keyset.binds);
  // The charge's current refunded total is the running total of its newest refund, which is newer
  // than r and so still in the window whenever r is (a sum would miss refunds already pruned).
  return pageAcross(
    shardsToRead(shards, q.account_id),
    `SELECT r.account_id, r.refund_id, r.charge_id, r.amount, r.reason, r.seq, r.created_at,
            r.charge_amount, r.charge_refunded_total AS charge_refunded_after,
            (SELECT MAX(x.charge_refunded_total) FROM ledger_events x
              WHERE x.type = 'ChargeRefunded' AND x.account_id = r.account_id AND x.charge_id = r.charge_id)
              AS charge_refunded_total
     FROM refunds r ${f.where()} ORDER BY ${order.join(", ")}`,
    f.binds,
    q.limit,
    { keyOf: (row) => [row.created_at as string, row.account_id as string, row.seq as number] },
    { accountId: q.account_id, withWindow: true },
  );
}
