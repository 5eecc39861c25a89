/**
 * The reports over all of time, read from the rollups (migrations/0004_rollups.sql), never from
 * the window of raw events: usage, the trial balance and an account's statement. A time range
 * is covered by daily rows (kept forever) and, at its edges, hourly rows (kept for the hourly
 * retention): ./periods.ts. Bounds are whole UTC hours; an edge older than the hourly retention
 * must be a whole day.
 *
 * Sums across accounts are exact decimal strings (./exact.ts), as before the rollups; D1 reads
 * and aggregates rollup rows, a few per account and bucket, never events. Across shards each
 * shard aggregates its own accounts and the Worker adds the shards' sums of each group exactly.
 */

import { LOT_KINDS, type LotKind } from "../domain/lots";
import { LedgerError } from "../errors";
import { NO_DIMENSION, rollupsOver } from "../projection/rollups";
import type { Shard } from "../read-side/shards";
import { addExactSums, decimal, exactSum, exactSumColumns } from "./exact";
import { coverCondition, coverPeriod, prunedHours, type Segment } from "./periods";
import { type AsOf, after, asOf, Filter, mergeAsOf, type Page, pageAcross, shardsToRead } from "./queries";

type Row = Record<string, unknown>;

/** A period the rollups cannot answer (its hourly rows are pruned, or a total is too large). */
export class ReportRangeError extends LedgerError {
  override name = "ReportRangeError";
  readonly code = "invalid_request";
  readonly publicDetail = "The rollups cannot answer this period; see `errors`.";
  override readonly fieldErrors: { field: string; message: string }[];
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.fieldErrors = [{ field: `query.${field}`, message }];
  }
}

/** Throws unless every hourly row the segments read is still kept. */
function requireHourly(segments: readonly Segment[], hourlyKeptFrom: string, field: string): void {
  if (prunedHours(segments, hourlyKeptFrom).length > 0) {
    throw new ReportRangeError(
      field,
      `hourly rollups are kept from ${hourlyKeptFrom}: before that, use whole UTC days (T00:00:00Z)`,
    );
  }
}

/** Charges of every kind (direct, capture, capture by expiry), and what they cost. */
const CHARGES = "(direct_charges + captures + expiry_captures)";
const COST = "(direct_charge_amount + capture_amount + expiry_capture_amount)";

export const USAGE_GROUPS = {
  day: "substr(bucket, 1, 10)",
  account: "account_id",
  service_id: "service_id",
  provider: "provider",
  model: "model",
  alias: "alias",
  api_key_id: "api_key_id",
  project_id: "project_id",
} as const;
export type UsageGroup = keyof typeof USAGE_GROUPS;

/** The usage report's sums (decimal strings, exact at any size) and their rollup expressions. */
export const USAGE_SUMS = {
  cost: COST,
  input_tokens: "input_tokens",
  output_tokens: "output_tokens",
  cached_tokens: "cached_tokens",
} as const;

export interface UsageQuery {
  group_by: UsageGroup[];
  account_id?: string;
  /** Whole UTC hours. */
  from?: string;
  to?: string;
  limit: number;
  cursor?: string;
}

export async function usageReport(shards: readonly Shard[], q: UsageQuery, hourlyKeptFrom: string): Promise<Page> {
  const segments = coverPeriod(q.from ?? null, q.to ?? null);
  requireHourly(segments, hourlyKeptFrom, "from");
  const f = new Filter();
  if (q.account_id !== undefined) f.add("account_id = ?", q.account_id);
  const cover = coverCondition(segments);
  f.add(cover.sql, ...cover.binds);
  // Rows of credits, refunds or holds alone are not usage.
  f.add(`${CHARGES} > 0`);
  const keys = q.group_by.map((g, i) => `${USAGE_GROUPS[g]} AS k${i}`);
  const keyNames = q.group_by.map((_, i) => `k${i}`);
  const totals = [
    `COALESCE(SUM(${CHARGES}), 0) AS charges`,
    ...Object.entries(USAGE_SUMS).map(([name, expression]) => exactSumColumns(expression, name)),
  ].join(", ");
  const source = rollupsOver(q.from ?? null, q.to ?? null);
  const inner = `SELECT ${[...keys, totals].join(", ")} FROM ${source.sql} ${f.where()}${
    keyNames.length > 0 ? ` GROUP BY ${keyNames.join(", ")}` : ""
  }`;
  const keyset = keyNames.length > 0 ? after(keyNames, q.cursor) : { sql: "", binds: [] };
  const sql = `SELECT * FROM (${inner}) ${keyset.sql === "" ? "" : `WHERE ${keyset.sql}`}${
    keyNames.length > 0 ? ` ORDER BY ${keyNames.join(", ")}` : ""
  }`;
  // A group (a model, a day) spans shards: each shard answers its part of the first limit + 1
  // groups after the cursor, and the parts of one group are added before the page is cut.
  const result = await pageAcross(
    shardsToRead(shards, q.account_id),
    sql,
    [...source.binds, ...f.binds, ...keyset.binds],
    q.limit,
    { keyOf: (row) => keyNames.map((k) => row[k] as string), combine: addUsage },
    { accountId: q.account_id },
  );
  return { ...result, data: result.data.map((row) => usageRow(row, q.group_by)) };
}

/** One usage group's totals from two shards, added (counts as integers, sums exactly). */
function addUsage(a: Row, b: Row): Row {
  const out: Row = { ...a, charges: (a.charges as number) + (b.charges as number) };
  for (const name of Object.keys(USAGE_SUMS)) Object.assign(out, addExactSums(a, b, name));
  return out;
}

function usageRow(row: Row, groups: readonly UsageGroup[]): Row {
  const out: Row = {};
  groups.forEach((g, i) => {
    const value = row[`k${i}`];
    out[g] = value === NO_DIMENSION ? null : value;
  });
  out.charges = row.charges;
  for (const name of Object.keys(USAGE_SUMS)) out[name] = decimal(exactSum(row, name));
  return out;
}

export interface TrialBalanceLine {
  ledger_account: string;
  /** Decimal strings: sums over every account and every event before `at`, exact at any size. */
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
 * Each ledger account's debit and credit as rollup expressions, as the journal_entries view
 * books them: the counter account takes each movement's delta; customer_balances the L and
 * overage_receivable the R of each group (their sign is fixed within a group, so the sums are
 * gross debits and credits).
 */
const TRIAL_BALANCE_LINES: readonly [string, string, string][] = [
  ["adjustments", "adjustment_up_amount", "adjustment_down_amount"],
  ["breakage", "0", "lot_expired_amount"],
  ["cash", "credit_amount", "0"],
  ["customer_balances", "-(charge_l + adjustment_down_l + lot_expiry_l)", "credit_l + refund_l + adjustment_up_l"],
  ["overage_receivable", "charge_r + adjustment_down_r + lot_expiry_r", "-(credit_r + refund_r + adjustment_up_r)"],
  ["refunds", "refund_amount", "0"],
  ["revenue", "0", COST],
];

/**
 * Debits and credits per ledger account over every event before `at` (a whole UTC hour), or
 * over every event when `at` is null. Sums across accounts, unbounded: exact in two parts, one
 * row from each shard, added in BigInt.
 */
export async function trialBalanceReport(
  shards: readonly Shard[],
  at: string | null,
  nowMs: number,
  hourlyKeptFrom: string,
): Promise<TrialBalanceReport> {
  const segments = coverPeriod(null, at);
  requireHourly(segments, hourlyKeptFrom, "at");
  const cover = coverCondition(segments);
  const source = rollupsOver(null, at);
  const columns = TRIAL_BALANCE_LINES.flatMap(([, debit, credit], i) => [
    exactSumColumns(debit, `d${i}`),
    exactSumColumns(credit, `c${i}`),
  ]);
  const answers = await Promise.all(
    shards.map(({ db }) =>
      Promise.all([
        db
          .prepare(`SELECT ${columns.join(", ")} FROM ${source.sql} WHERE ${cover.sql}`)
          .bind(...source.binds, ...cover.binds)
          .first<Row>(),
        asOf(db),
      ]),
    ),
  );
  const across = (alias: string) => answers.reduce((total, [sums]) => total + exactSum(sums ?? {}, alias), 0n);
  let totalDebit = 0n;
  let totalCredit = 0n;
  const data: TrialBalanceLine[] = [];
  TRIAL_BALANCE_LINES.forEach(([ledger_account], i) => {
    const debit = across(`d${i}`);
    const credit = across(`c${i}`);
    // As the journal: a ledger account appears once it has an entry.
    if (debit === 0n && credit === 0n) return;
    totalDebit += debit;
    totalCredit += credit;
    data.push({ ledger_account, debit: decimal(debit), credit: decimal(credit), net_debit: decimal(debit - credit) });
  });
  return {
    at: at ?? new Date(nowMs).toISOString(),
    data,
    total_debit: decimal(totalDebit),
    total_credit: decimal(totalCredit),
    balanced: totalDebit === totalCredit,
    as_of: mergeAsOf(answers.map(([, position]) => position)),
  };
}

const LOT_MOVEMENTS = ["granted", "consumed", "refunded", "expired"] as const;

export interface CreditsQuery {
  /** Whole UTC hours: the period [from, to). */
  from: string;
  to: string;
  account_id?: string | undefined;
}

export interface CreditsLine {
  kind: LotKind;
  granted: string;
  consumed: string;
  refunded: string;
  expired: string;
  /** Credit of this kind left at `to` (deferred revenue for paid credit): every movement before `to`. */
  remaining: string;
}

/**
 * Credit by kind of lot (issue 27): what was granted, consumed (the debt grants paid included),
 * refunded back and expired in [from, to), and what remains at `to`, from the rollups' sums per
 * kind (src/projection/rollups.ts). Exact decimal strings, across every shard or one account's.
 */
export async function creditsReport(
  shards: readonly Shard[],
  q: CreditsQuery,
  hourlyKeptFrom: string,
): Promise<{ from: string; to: string; account_id: string | null; data: CreditsLine[]; as_of: AsOf }> {
  const period = coverPeriod(q.from, q.to);
  const before = coverPeriod(null, q.to);
  requireHourly(period, hourlyKeptFrom, "from");
  requireHourly(before, hourlyKeptFrom, "to");
  const columns = LOT_KINDS.flatMap((kind) =>
    LOT_MOVEMENTS.map((m) => exactSumColumns(`${kind}_${m}`, `${kind}_${m}`)),
  );
  const sums = async (segments: readonly Segment[], from: string | null) => {
    const f = new Filter();
    if (q.account_id !== undefined) f.add("account_id = ?", q.account_id);
    const cover = coverCondition(segments);
    f.add(cover.sql, ...cover.binds);
    const source = rollupsOver(from, q.to);
    const sql = `SELECT ${columns.join(", ")} FROM ${source.sql} ${f.where()}`;
    return Promise.all(
      shardsToRead(shards, q.account_id).map(({ db }) =>
        db
          .prepare(sql)
          .bind(...source.binds, ...f.binds)
          .first<Row>(),
      ),
    );
  };
  const [inPeriod, untilTo, positions] = await Promise.all([
    sums(period, q.from),
    sums(before, null),
    Promise.all(shardsToRead(shards, q.account_id).map(({ db }) => asOf(db, q.account_id))),
  ]);
  const total = (rows: (Row | null)[], alias: string) => rows.reduce((t, row) => t + exactSum(row ?? {}, alias), 0n);
  const data = LOT_KINDS.map((kind): CreditsLine => {
    const [granted, consumed, refunded, expired] = LOT_MOVEMENTS.map((m) => total(inPeriod, `${kind}_${m}`));
    const [g, c, r, e] = LOT_MOVEMENTS.map((m) => total(untilTo, `${kind}_${m}`));
    return {
      kind,
      granted: decimal(granted as bigint),
      consumed: decimal(consumed as bigint),
      refunded: decimal(refunded as bigint),
      expired: decimal(expired as bigint),
      remaining: decimal((g as bigint) - (c as bigint) + (r as bigint) - (e as bigint)),
    };
  });
  return { from: q.from, to: q.to, account_id: q.account_id ?? null, data, as_of: mergeAsOf(positions) };
}
