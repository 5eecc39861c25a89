/**
 * An account's statement for a period [from, to) (issue 12): opening balance, movements by
 * kind, closing balance. Built from the rollups alone, never from events, so any period since
 * the account opened is answered, whatever the raw-event window holds:
 * - the opening (closing) balance is `balance_after` of the account's newest rollup row before
 *   `from` (`to`): every row records the balance after its last event, so no event is read;
 * - the movements are the sums of the rows that cover the period (./periods.ts).
 * The three reads run in one D1 batch, so they see one projection position, and
 * closing = opening + credits - charges + refunds + adjustments - expired holds (tested against
 * the log; `expired` is credit that lots lost at their expiry, issue 27).
 */
import { type Shard, shardFor } from "../read-side/shards";
import { exactSum, exactSumColumns } from "./exact";
import { coverCondition, coverPeriod, prunedHours, type Segment } from "./periods";
import { type AsOf, asOf } from "./queries";
import { ReportRangeError } from "./rollups";

type Row = Record<string, unknown>;

export interface Movement {
  count: number;
  amount: number;
}

export interface Statement {
  account_id: string;
  currency: string;
  from: string;
  to: string;
  opening_balance: number;
  closing_balance: number;
  movements: {
    credits: Movement;
    charges: Movement & { direct: Movement; capture: Movement; expiry: Movement };
    refunds: Movement;
    /** `amount` is signed (increases minus decreases). */
    adjustments: Movement & { increase_amount: number; decrease_amount: number };
    /** Credit that expired unused (LotExpired). */
    expired: { amount: number };
  };
  lots: Record<"paid" | "promotional", { granted: number; consumed: number; refunded: number; expired: number }>;
  as_of: AsOf;
}

/** Each summed quantity of the statement: its name and rollup expression. */
const SUMS = {
  credits: "credits",
  credit_amount: "credit_amount",
  direct: "direct_charges",
  direct_amount: "direct_charge_amount",
  capture: "captures",
  capture_amount: "capture_amount",
  expiry: "expiry_captures",
  expiry_amount: "expiry_capture_amount",
  refunds: "refunds",
  refund_amount: "refund_amount",
  adjustments: "adjustments",
  increase_amount: "adjustment_up_amount",
  decrease_amount: "adjustment_down_amount",
  expired_amount: "lot_expired_amount",
  paid_granted: "paid_granted",
  paid_consumed: "paid_consumed",
  paid_refunded: "paid_refunded",
  paid_expired: "paid_expired",
  promotional_granted: "promotional_granted",
  promotional_consumed: "promotional_consumed",
  promotional_refunded: "promotional_refunded",
  promotional_expired: "promotional_expired",
} as const;

/**
 * The statement, or null when D1 has no such account. `from` and `to` are whole UTC hours; an
 * edge that is not a whole day must have its day's hourly rows still kept.
 */
export async function statementReport(
  shards: readonly Shard[],
  accountId: string,
  from: string,
  to: string,
  hourlyKeptFrom: string,
): Promise<Statement | null> {
  const opening = coverPeriod(null, from);
  const period = coverPeriod(from, to);
  const closing = coverPeriod(null, to);
  for (const [field, segments] of [
    ["from", opening],
    ["to", closing],
  ] as [string, Segment[]][]) {
    if (prunedHours(segments, hourlyKeptFrom).length > 0) {
      throw new ReportRangeError(
        field,
        `hourly rollups are kept from ${hourlyKeptFrom}: before that, use whole UTC days (T00:00:00Z)`,
      );
    }
  }
  // One account: its shard holds every row the statement reads.
  const { db } = shardFor(shards, accountId);
  const [[open, close, sums, account], freshness] = await Promise.all([
    db.batch<Row>([
      balanceBefore(db, accountId, opening),
      balanceBefore(db, accountId, closing),
      movementSums(db, accountId, period),
      db.prepare("SELECT currency FROM accounts WHERE account_id = ?").bind(accountId),
    ]),
    asOf(db, accountId),
  ]);
  const currency = account?.results[0]?.currency;
  if (typeof currency !== "string") return null;
  const s = (name: keyof typeof SUMS) => exactInteger(sums?.results[0] ?? {}, name);
  const movement = (count: keyof typeof SUMS, amount: keyof typeof SUMS) => ({ count: s(count), amount: s(amount) });
  const direct = movement("direct", "direct_amount");
  const capture = movement("capture", "capture_amount");
  const expiry = movement("expiry", "expiry_amount");
  return {
    account_id: accountId,
    currency,
    from,
    to,
    opening_balance: balanceOf(open?.results[0]),
    closing_balance: balanceOf(close?.results[0]),
    movements: {
      credits: movement("credits", "credit_amount"),
      charges: {
        count: exact(BigInt(direct.count) + BigInt(capture.count) + BigInt(expiry.count)),
        amount: exact(BigInt(direct.amount) + BigInt(capture.amount) + BigInt(expiry.amount)),
        direct,
        capture,
        expiry,
      },
      refunds: movement("refunds", "refund_amount"),
      adjustments: {
        count: s("adjustments"),
        amount: exact(BigInt(s("increase_amount")) - BigInt(s("decrease_amount"))),
        increase_amount: s("increase_amount"),
        decrease_amount: s("decrease_amount"),
      },
      expired: { amount: s("expired_amount") },
    },
    lots: {
      paid: lotMovements(s, "paid"),
      promotional: lotMovements(s, "promotional"),
    },
    as_of: freshness,
  };
}

/** A kind of lot's movements in the period (issue 27). */
function lotMovements(s: (name: keyof typeof SUMS) => number, kind: "paid" | "promotional") {
  return {
    granted: s(`${kind}_granted`),
    consumed: s(`${kind}_consumed`),
    refunded: s(`${kind}_refunded`),
    expired: s(`${kind}_expired`),
  };
}

/** The account's newest rollup row in the cover: its balance_after is the balance at the cover's end. */
function balanceBefore(db: D1Database, accountId: string, segments: readonly Segment[]): D1PreparedStatement {
  const cover = coverCondition(segments);
  return db
    .prepare(
      `SELECT balance_after FROM rollups WHERE account_id = ? AND ${cover.sql} ORDER BY bucket DESC, seq DESC LIMIT 1`,
    )
    .bind(accountId, ...cover.binds);
}

function movementSums(db: D1Database, accountId: string, segments: readonly Segment[]): D1PreparedStatement {
  const cover = coverCondition(segments);
  const columns = Object.entries(SUMS).map(([name, expression]) => exactSumColumns(expression, name));
  return db
    .prepare(`SELECT ${columns.join(", ")} FROM rollups WHERE account_id = ? AND ${cover.sql}`)
    .bind(accountId, ...cover.binds);
}

/** Before the account's first event its balance is 0 (accounts open empty). */
function balanceOf(row: Row | undefined): number {
  return typeof row?.balance_after === "number" ? row.balance_after : 0;
}

function exactInteger(row: Row, name: string): number {
  return exact(exactSum(row, name));
}

/**
 * Per-account amounts are JSON integers. A period's total passes 2^53 only after about nine
 * credits of 10^15 (90 trillion in cents): such a period is refused rather than rounded.
 */
function exact(value: bigint): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) {
    throw new ReportRangeError("to", "a total of this period passes 2^53: ask for a shorter period");
  }
  return n;
}
