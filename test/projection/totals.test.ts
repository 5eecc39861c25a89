/**
 * Exact totals across accounts (issue 11). Each account's balance is bounded (2^51), but the
 * totals of the trial balance and of the usage report add up every account and every event:
 * they pass 2^53 (where a JSON number stops being exact) after about nine charges of 10^15, and
 * 2^63 (where SQLite's SUM fails with "integer overflow") after 9,224. These tests drive them
 * past both and expect exact decimal strings, `balanced: true`, and never a 500.
 *
 * Past 2^63 the read side is filled directly, as the projection would fill it: the events come
 * from the real decider (`decide`, `stamp`, `evolve` through test/domain/given.ts), the messages
 * from the projection's own builder (`messagesOfLog`, src/projection/producer/message.ts), and they are
 * applied by its own consumer code (`applyMessages`, src/projection/consumer/apply.ts), which writes the
 * sealed pages, tails and rollups that the reports read. Each account is opened with the largest
 * credit limit and charged the largest amount once, so each event moves the totals by the most
 * any single event can (10^15) and every account stays within its bounds; the minimum past 2^63
 * is then 9,224 charges. Those accounts are all ones that shard 0 holds, so that one database's
 * own SUM overflows; the reports read every shard.
 *
 * Storage is this file's own; each test reads only its own time range (or the difference of
 * the trial balance across it), so the tests do not depend on their order.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { Command } from "../../src/domain/commands";
import { AMOUNT_MINOR_MAX, CREDIT_LIMIT_MINOR_MAX } from "../../src/domain/limits";
import { applyMessages } from "../../src/projection/consumer/apply";
import { messagesOfLog } from "../../src/projection/producer/message";
import type { ProjectionMessage } from "../../src/projection/wire";
import { shardIndexOf, shardsOf } from "../../src/read-side/shards";
import { exactSum, exactSumColumns } from "../../src/reports/exact";
import { Ledger } from "../domain/given";
import {
  api,
  expectEveryAccountConsistent,
  MANUAL_CLOCK_AHEAD_MS,
  openAccount,
  stub,
  useManualClock,
} from "../helpers";

afterEach(expectEveryAccountConsistent);

// biome-ignore lint/suspicious/noExplicitAny: report rows are inspected field by field
type Row = Record<string, any>;

const HOUR_MS = 3_600_000;
const TWO_53 = 2n ** 53n;
const TWO_63 = 2n ** 63n;
const MAX = BigInt(AMOUNT_MINOR_MAX);
const brief = (body: unknown): string => JSON.stringify(body).slice(0, 400);

function url(path: string, params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) search.set(name, String(value));
  return `${path}?${search.toString()}`;
}

/** A report that must answer 200 (before issue 11 these answered 500 past 2^63). */
async function report(path: string, params: Record<string, string | number | undefined> = {}): Promise<Row> {
  const response = await api("GET", url(path, params));
  expect(response.status, `${path}: ${brief(response.body)}`).toBe(200);
  return response.body;
}

/** Every page of a paged report, following next_cursor. */
async function walk(path: string, params: Record<string, string | number | undefined>): Promise<Row[]> {
  const rows: Row[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = await report(path, { ...params, cursor });
    rows.push(...page.data);
    if (page.next_cursor === null) return rows;
    cursor = page.next_cursor;
  }
  throw new Error("pagination did not end");
}

/**
 * An exact amount: the value first (so that a report answering a rounded number shows the
 * rounding in the failure), then its form, a decimal string.
 */
function expectExact(value: unknown, expected: bigint, what: string): void {
  expect(String(value), what).toBe(expected.toString());
  expect(typeof value, `${what} is a decimal string`).toBe("string");
}

interface TrialBalanceLine {
  ledger_account: string;
  debit: string;
  credit: string;
  net_debit: string;
}

/** The trial balance's lines by ledger account, as BigInt, with its own consistency checked. */
function linesOf(tb: Row): Map<string, { debit: bigint; credit: bigint }> {
  const lines = new Map<string, { debit: bigint; credit: bigint }>();
  for (const l of tb.data as TrialBalanceLine[]) {
    const debit = BigInt(l.debit);
    const credit = BigInt(l.credit);
    expectExact(l.net_debit, debit - credit, `${l.ledger_account} net_debit`);
    lines.set(l.ledger_account, { debit, credit });
  }
  const totalDebit = [...lines.values()].reduce((s, l) => s + l.debit, 0n);
  const totalCredit = [...lines.values()].reduce((s, l) => s + l.credit, 0n);
  expectExact(tb.total_debit, totalDebit, "total_debit");
  expectExact(tb.total_credit, totalCredit, "total_credit");
  expect(tb.balanced).toBe(totalDebit === totalCredit);
  return lines;
}

/** How each ledger account moved between two trial balances. */
function moved(before: Row, after: Row): Map<string, { debit: bigint; credit: bigint }> {
  const then = linesOf(before);
  const now = linesOf(after);
  const out = new Map<string, { debit: bigint; credit: bigint }>();
  for (const [name, line] of now) {
    const old = then.get(name) ?? { debit: 0n, credit: 0n };
    out.set(name, { debit: line.debit - old.debit, credit: line.credit - old.credit });
  }
  return out;
}

describe("exact sums in SQL (src/reports/exact.ts)", () => {
  /** A SQL literal for any 64-bit integer (-2^63 written as a literal would be read as a REAL). */
  const literal = (v: bigint): string => (v === -TWO_63 ? `(${-TWO_63 + 1n} - 1)` : v.toString());
  async function sumInD1(values: (bigint | null)[]): Promise<bigint> {
    const rows = values.map((v) => `(${v === null ? "NULL" : literal(v)})`).join(", ");
    const row = await env.DB.prepare(
      `SELECT ${exactSumColumns("v", "v")} FROM (SELECT column1 AS v FROM (VALUES ${rows}))`,
    ).first<Row>();
    return exactSum(row ?? {}, "v");
  }

  it("sums any 64-bit integers exactly, negatives and both extremes included, where SUM overflows", async () => {
    const values = [
      -5n,
      0n,
      1n,
      2n ** 32n - 1n,
      2n ** 32n,
      -(2n ** 32n),
      -(2n ** 32n) - 1n,
      TWO_63 - 1n,
      -TWO_63,
      123_456_789_012_345_678n,
      -987_654_321_098_765_432n,
      TWO_63 - 1n,
      TWO_63 - 1n,
    ];
    for (const v of values) expect(await sumInD1([v]), `${v}`).toBe(v);
    const expected = values.reduce((s, v) => s + v, 0n);
    expect(expected > TWO_63).toBe(true);
    expect(await sumInD1(values)).toBe(expected);
    // NULLs are skipped as SUM skips them; no rows (or only NULLs) sum to 0.
    expect(await sumInD1([null, 7n, null])).toBe(7n);
    expect(await sumInD1([null])).toBe(0n);
    const none = await env.DB.prepare(`SELECT ${exactSumColumns("v", "v")} FROM (SELECT 1 AS v) WHERE 0`).first<Row>();
    expect(exactSum(none ?? {}, "v")).toBe(0n);
    // The plain SUM of the same values fails.
    const plain = `SELECT SUM(column1) FROM (VALUES ${values.map((v) => `(${literal(v)})`).join(", ")})`;
    await expect(env.DB.prepare(plain).first()).rejects.toThrow(/integer overflow/);
  });
});

describe("totals past 2^53", () => {
  it("through the real projection: usage and trial balance totals are exact decimal strings", async () => {
    // Reports over rollups take whole hours: this test's events have an hour of their own.
    const time = useManualClock(Math.ceil((Date.now() + MANUAL_CLOCK_AHEAD_MS) / HOUR_MS) * HOUR_MS);
    const start = new Date(time.now()).toISOString();
    const before = await report("/v1/reports/trial-balance", { at: start });
    time.advance(1);
    const from = start;
    // 11 accounts, each credited and charged 10^15 - 1: 11 * (10^15 - 1) is odd and above 2^53,
    // so no JSON number can carry it.
    const amount = AMOUNT_MINOR_MAX - 1;
    const accounts = 11;
    const ids: string[] = [];
    for (let i = 0; i < accounts; i++) {
      const id = await openAccount(amount);
      const charged = await api("POST", `/v1/accounts/${id}/charges`, {
        charge_id: "big",
        amount,
        context: { model: "m-past-2e53" },
      });
      expect(charged.status, brief(charged.body)).toBe(201);
      ids.push(id);
    }
    for (const id of ids) {
      const status = await stub(id).catchUp();
      expect(status.projected_seq).toBe(status.last_seq);
    }
    time.advance(HOUR_MS - 1);
    const to = new Date(time.now()).toISOString();
    const total = BigInt(accounts) * BigInt(amount);
    expect(total > TWO_53 && total % 2n === 1n).toBe(true);

    const usage = await report("/v1/reports/usage", { group_by: "model", from, to });
    expect(usage.data).toHaveLength(1);
    const [row] = usage.data as Row[];
    expect(row?.model).toBe("m-past-2e53");
    expect(row?.charges).toBe(accounts);
    expectExact(row?.cost, total, "usage cost");
    for (const tokens of ["input_tokens", "output_tokens", "cached_tokens"]) expectExact(row?.[tokens], 0n, tokens);

    const after = await report("/v1/reports/trial-balance", { at: to });
    expect(after.balanced).toBe(true);
    expect(after.total_debit).toBe(after.total_credit);
    const delta = moved(before, after);
    expect(delta.get("cash")).toEqual({ debit: total, credit: 0n });
    expect(delta.get("revenue")).toEqual({ debit: 0n, credit: total });
    expect(delta.get("customer_balances")).toEqual({ debit: total, credit: total });
  });
});

// ------------------------------------------------------------------ past 2^63, the read side filled directly

/** Accounts (one charge of 10^15 each) that take the totals past 2^63: 9,300 * 10^15 = 9.3e18. */
const BULK_ACCOUNTS = 9_300;
/** Their events lie on one day of their own, far from the other tests' clocks. */
const BULK_DAY = "2091-03-01";
const BULK_T0 = Date.parse(`${BULK_DAY}T00:00:00.000Z`);

/** The ids of the bulk accounts: the first BULK_ACCOUNTS `bulk_nnnnn` that shard 0 holds. */
function bulkIds(): string[] {
  const count = shardsOf(env).length;
  const ids: string[] = [];
  for (let i = 0; ids.length < BULK_ACCOUNTS; i++) {
    const id = `bulk_${String(i).padStart(5, "0")}`;
    if (shardIndexOf(id, count) === 0) ids.push(id);
  }
  return ids;
}

/** The projection messages of these accounts' logs (one message each: a tail of two events). */
function bulkMessages(): ProjectionMessage[] {
  return bulkIds().flatMap((accountId, i) => {
    const ledger = new Ledger();
    ledger.now = BULK_T0 + i;
    const commands: Command[] = [
      {
        type: "OpenAccount",
        account_id: accountId,
        currency: "USD",
        credit_limit: CREDIT_LIMIT_MINOR_MAX,
        metadata: {},
      },
      {
        type: "ChargeAccount",
        charge_id: "bulk",
        amount: AMOUNT_MINOR_MAX,
        context: { service_id: "bulk", provider: "p-bulk", model: "m-bulk" },
        metadata: {},
      },
    ];
    ledger.given(...commands);
    expect(ledger.account.balance).toBe(-AMOUNT_MINOR_MAX);
    return messagesOfLog(ledger.account, ledger.log);
  });
}

describe("totals past 2^63", () => {
  it("usage and trial balance answer exact strings where SQLite's SUM overflows", async () => {
    const from = `${BULK_DAY}T00:00:00.000Z`;
    const to = "2091-03-02T00:00:00.000Z";
    const before = await report("/v1/reports/trial-balance", { at: "2091-02-28T00:00:00.000Z" });
    const messages = bulkMessages();
    expect(await applyMessages(shardsOf(env), messages)).toEqual(messages.map(() => "applied"));
    const total = BigInt(BULK_ACCOUNTS) * MAX;
    expect(total > TWO_63).toBe(true);
    // All in shard 0: the other shards hold none of them.
    for (const shard of shardsOf(env)) {
      const held = await shard.db
        .prepare("SELECT COUNT(*) AS n FROM accounts WHERE account_id LIKE 'bulk_%'")
        .first<{ n: number }>();
      expect(held?.n).toBe(shard.index === 0 ? BULK_ACCOUNTS : 0);
    }

    // The data really is past what SQLite's integer SUM can hold, in one database.
    await expect(
      env.DB.prepare("SELECT SUM(cost) AS cost FROM usage_log WHERE created_at >= ? AND created_at < ?")
        .bind(from, to)
        .first(),
    ).rejects.toThrow(/integer overflow/);
    await expect(
      env.DB.prepare("SELECT SUM(credit) FROM journal_entries WHERE ledger_account = 'revenue'").first(),
    ).rejects.toThrow(/integer overflow/);

    // Usage, ungrouped and by day: one row of exact totals.
    const totals = { charges: BULK_ACCOUNTS, cost: total.toString() };
    const zeroTokens = { input_tokens: "0", output_tokens: "0", cached_tokens: "0" };
    const all = await report("/v1/reports/usage", { from, to });
    expectExact(all.data[0]?.cost, total, "usage cost");
    expect(all.data).toEqual([{ ...totals, ...zeroTokens }]);
    const byDay = await report("/v1/reports/usage", { group_by: "day,model", from, to });
    expect(byDay.data).toEqual([{ day: BULK_DAY, model: "m-bulk", ...totals, ...zeroTokens }]);

    // By account: pages of at most 1,000 groups, each account's own cost; their sum is the total.
    const byAccount = await walk("/v1/reports/usage", { group_by: "account", from, to, limit: 1_000 });
    expect(byAccount).toHaveLength(BULK_ACCOUNTS);
    for (const r of byAccount) expect(r.cost).toBe(MAX.toString());
    expect(byAccount.reduce((s, r) => s + BigInt(r.cost), 0n)).toBe(total);

    // Trial balance: each charge credits revenue and debits the overage receivable by 10^15.
    const after = await report("/v1/reports/trial-balance", { at: to });
    expect(after.balanced).toBe(true);
    expect(after.total_debit).toBe(after.total_credit);
    expect(BigInt(after.total_debit) > TWO_63).toBe(true);
    const delta = moved(before, after);
    expect(delta.get("revenue")).toEqual({ debit: 0n, credit: total });
    expect(delta.get("overage_receivable")).toEqual({ debit: total, credit: 0n });
    const revenue = (after.data as TrialBalanceLine[]).find((l) => l.ledger_account === "revenue");
    expect(BigInt(revenue?.net_debit ?? "0") <= -total).toBe(true);
    // The balances report still answers each account's own (bounded) balance as a number.
    const balances = await report("/v1/reports/balances", { max_available: -AMOUNT_MINOR_MAX, limit: 1 });
    expect(balances.data[0]?.balance).toBe(-AMOUNT_MINOR_MAX);
  });
});
