/**
 * The sharded read side (issue 12): where accounts live (a stable jump hash that spreads them
 * evenly and moves few when shards are added), and reports across shards that answer exactly
 * what one database holding every shard's rows answers, page by page: the same rows, order,
 * cursors and `as_of`.
 *
 * The one-database reference is REFERENCE_DB (vitest.config.ts), filled by copying the base
 * tables of both shards (accounts, event_pages, open_holds, rollup_rows) after the projection
 * wrote them; the reports read views over those tables (migrations/0005_pages.sql).
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { type Shard, shardIndexOf, shardsOf } from "../../src/read-side/shards";
import { hourlyKeptFrom } from "../../src/reports/periods";
import {
  balancesReport,
  compareSql,
  mergeRuns,
  type Page,
  refundsReport,
  reservationsReport,
  type TransactionsQuery,
  transactionsReport,
} from "../../src/reports/queries";
import { trialBalanceReport, type UsageGroup, usageReport } from "../../src/reports/rollups";
import { statementReport } from "../../src/reports/statement";
import { api, expectEveryAccountConsistent, MANUAL_CLOCK_AHEAD_MS, stub, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

// biome-ignore lint/suspicious/noExplicitAny: report rows are inspected field by field
type Row = Record<string, any>;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

// ------------------------------------------------------------------ placement

describe("shard placement", () => {
  it("is a pure function of the id (golden values)", () => {
    // Computed once from FNV-1a 64 and jump hash, then pinned: a change here moves accounts.
    const golden: [string, number[]][] = [
      ["acct_1", [0, 2, 7, 12]],
      ["acct_2", [0, 0, 6, 10]],
      ["acme", [0, 0, 7, 42]],
      ["user_42", [1, 1, 1, 40]],
      ["a", [1, 2, 2, 31]],
      ["", [1, 1, 1, 17]],
      ["ünïcödé", [1, 2, 7, 38]],
      ["acct_0123456789abcdef", [1, 1, 7, 22]],
    ];
    for (const [id, indexes] of golden) {
      expect(
        [2, 3, 8, 64].map((n) => shardIndexOf(id, n)),
        JSON.stringify(id),
      ).toEqual(indexes);
      expect(shardIndexOf(id, 1)).toBe(0);
    }
  });

  const ids = Array.from({ length: 10_000 }, (_, i) => `acct_${i}`);

  it("spreads 10,000 ids over 2 and 8 shards within 10% of even", () => {
    for (const count of [2, 8]) {
      const sizes = new Array<number>(count).fill(0);
      for (const id of ids) sizes[shardIndexOf(id, count)] = (sizes[shardIndexOf(id, count)] as number) + 1;
      const even = ids.length / count;
      for (const size of sizes) {
        expect(size, `${count} shards: ${sizes.join(", ")}`).toBeGreaterThanOrEqual(even * 0.9);
        expect(size, `${count} shards: ${sizes.join(", ")}`).toBeLessThanOrEqual(even * 1.1);
      }
    }
  });

  it("moves only the accounts that a new ninth shard takes, about a ninth of them", () => {
    let moved = 0;
    for (const id of ids) {
      const before = shardIndexOf(id, 8);
      const after = shardIndexOf(id, 9);
      if (after !== before) {
        expect(after, id).toBe(8);
        moved += 1;
      }
    }
    expect(moved).toBeGreaterThanOrEqual((ids.length / 9) * 0.9);
    expect(moved).toBeLessThanOrEqual((ids.length / 9) * 1.1);
  });
});

// ------------------------------------------------------------------ merge order

describe("merging shards' rows", () => {
  it("compares values as SQLite does: NULL, numbers, then text by code point", () => {
    const values: unknown[] = ["b", 10, null, "a", 2.5, "\u{1F600}", "\uFFFD", "", -3];
    // UTF-8 byte order puts U+1F600 (a surrogate pair in JavaScript) after U+FFFD.
    expect([...values].sort(compareSql)).toEqual([null, -3, 2.5, 10, "", "a", "b", "\uFFFD", "\u{1F600}"]);
  });

  it("merges ordered runs, combines rows of one key, and stops after `count` keys", () => {
    const keyOf = (row: { k: string; n: number }) => [row.k];
    const combine = (a: { k: string; n: number }, b: { k: string; n: number }) => ({ k: a.k, n: a.n + b.n });
    const runs = [
      [
        { k: "a", n: 1 },
        { k: "c", n: 1 },
        { k: "d", n: 1 },
      ],
      [
        { k: "b", n: 10 },
        { k: "c", n: 10 },
      ],
      [{ k: "c", n: 100 }],
    ];
    expect(mergeRuns(runs, { keyOf, combine }, 3)).toEqual([
      { k: "a", n: 1 },
      { k: "b", n: 10 },
      { k: "c", n: 111 },
    ]);
    expect(mergeRuns(runs, { keyOf }, 10).map((r) => r.k)).toEqual(["a", "b", "c", "c", "c", "d"]);
    const descending = runs.map((run) => [...run].reverse());
    expect(mergeRuns(descending, { keyOf, combine, descending: true }, 10).map((r) => r.n)).toEqual([1, 111, 10, 1]);
  });
});

// ------------------------------------------------------------------ reports across shards

/** A command that must succeed. */
async function send(method: string, path: string, body?: unknown): Promise<Row> {
  const response = await api(method, path, body);
  expect(response.status, `${method} ${path}: ${JSON.stringify(response.body).slice(0, 300)}`).toBeLessThan(300);
  return response.body;
}

/** Ids that land on each of the two test shards, `perShard` each, in alternating order. */
function idsOnBothShards(perShard: number): string[] {
  const run = crypto.randomUUID().slice(0, 8);
  const byShard: string[][] = [[], []];
  for (let n = 0; byShard.some((ids) => ids.length < perShard); n++) {
    const id = `sh_${run}_${n}`;
    const ids = byShard[shardIndexOf(id, 2)] as string[];
    if (ids.length < perShard) ids.push(id);
  }
  return Array.from({ length: perShard * 2 }, (_, i) => byShard[i % 2]?.[Math.floor(i / 2)] as string);
}

const BASE_TABLES = ["accounts", "event_pages", "open_holds", "rollup_rows"] as const;

/** Copies every row of the base tables of `from` into `to`, a batch of statements at a time. */
async function copyBaseTables(from: D1Database, to: D1Database): Promise<number> {
  let copied = 0;
  for (const table of BASE_TABLES) {
    const rows = (await from.prepare(`SELECT * FROM ${table}`).all<Row>()).results;
    const statements = rows.map((row) => {
      const columns = Object.keys(row);
      return to
        .prepare(`INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`)
        .bind(...columns.map((c) => row[c]));
    });
    for (let i = 0; i < statements.length; i += 50) await to.batch(statements.slice(i, i + 50));
    copied += rows.length;
  }
  return copied;
}

type Report = (shards: readonly Shard[], limit: number, cursor: string | undefined) => Promise<Page>;

/** Every page of a report from the first to the last. */
async function pagesOf(report: Report, shards: readonly Shard[], limit: number): Promise<Page[]> {
  const pages: Page[] = [];
  let cursor: string | undefined;
  for (let n = 0; n < 100; n++) {
    const page = await report(shards, limit, cursor);
    pages.push(page);
    if (page.next_cursor === null) return pages;
    expect(page.data).toHaveLength(limit);
    cursor = page.next_cursor;
  }
  throw new Error("pagination did not end");
}

describe("reports across shards", () => {
  it("answer the rows, order, cursors and as_of of one database holding both shards", async () => {
    const time = useManualClock(Math.ceil((Date.now() + MANUAL_CLOCK_AHEAD_MS) / DAY_MS) * DAY_MS + HOUR_MS);
    const ids = idsOnBothShards(4);
    const models = ["m-large", "m-small", "m-mini"];
    const tick = () => time.advance(1);

    // Day one. Each step runs in every account at the same instant (then the clock moves 1 ms),
    // so event times tie across accounts and shards, and available amounts tie too.
    for (const [i, id] of ids.entries()) {
      await send("POST", "/v1/accounts", { account_id: id, currency: "USD" });
      await send("POST", `/v1/accounts/${id}/credits`, { credit_id: "top", amount: 1_000 + (i % 3) * 100 });
    }
    tick();
    for (const [i, id] of ids.entries()) {
      const context = { service_id: i % 2 === 0 ? "chat" : "embed", provider: "acme", model: models[i % 3] };
      await send("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "h1", amount: 100, context });
    }
    tick();
    for (const [i, id] of ids.entries()) {
      await send("POST", `/v1/accounts/${id}/reservations/h1/capture`, {
        amount: 40 + (i % 4),
        usage: { input_tokens: 100 * i, output_tokens: 10 * i, cached_tokens: i },
      });
      const context = i % 4 === 3 ? undefined : { model: models[(i + 1) % 3], provider: "zeta" };
      await send("POST", `/v1/accounts/${id}/charges`, {
        charge_id: "c1",
        amount: 10 * ((i % 2) + 1),
        ...(context === undefined ? {} : { context }),
      });
    }
    tick();
    for (const [i, id] of ids.entries()) {
      if (i % 2 === 0)
        await send("POST", `/v1/accounts/${id}/refunds`, { refund_id: "f1", charge_id: "c1", amount: 5 });
      if (i % 4 === 1) {
        await send("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "h3", amount: 30 });
        await send("POST", `/v1/accounts/${id}/reservations/h3/release`);
      }
      if (i === 3)
        await send("POST", `/v1/accounts/${id}/adjustments`, { adjustment_id: "up", amount: 25, reason: "x" });
    }
    // Day two: more usage, and holds left open with expiry times that tie across accounts.
    time.advance(DAY_MS);
    for (const [i, id] of ids.entries()) {
      await send("POST", `/v1/accounts/${id}/charges`, {
        charge_id: "c2",
        amount: 7,
        context: { model: models[i % 2] },
      });
      if (i % 3 !== 2) {
        await send("POST", `/v1/accounts/${id}/reservations`, {
          reservation_id: "h2",
          amount: 50,
          ttl_seconds: 300 + (i % 2) * 60,
        });
      }
      if (i === 5) await send("PATCH", `/v1/accounts/${id}`, { status: "frozen" });
      // A balance below zero: the trial balance has an overage receivable.
      if (i === 6)
        await send("POST", `/v1/accounts/${id}/adjustments`, { adjustment_id: "claw", amount: -2_000, reason: "y" });
    }
    for (const id of ids) {
      const status = await stub(id).catchUp();
      expect(status.projected_seq).toBe(status.last_seq);
    }

    // Both shards hold some of the accounts, each account only in its own shard.
    const shards = shardsOf(env);
    expect(shards.map((s) => s.index)).toEqual([0, 1]);
    for (const shard of shards) {
      const held = await shard.db.prepare("SELECT account_id FROM accounts ORDER BY account_id").all<Row>();
      const expected = ids.filter((id) => shardIndexOf(id, 2) === shard.index).sort();
      expect(held.results.map((r) => r.account_id)).toEqual(expected);
      expect(expected).toHaveLength(4);
    }

    // The reference: one database with every shard's rows.
    let copied = 0;
    for (const shard of shards) copied += await copyBaseTables(shard.db, env.REFERENCE_DB);
    expect(copied).toBeGreaterThan(ids.length);
    const reference: Shard[] = [{ index: 0, db: env.REFERENCE_DB }];

    const kept = hourlyKeptFrom(time.now(), 7);
    const reports: [string, Report][] = [
      ...(
        [
          { sort: "available", order: "asc" },
          { sort: "available", order: "desc" },
          { sort: "updated_at", order: "asc" },
          { sort: "updated_at", order: "desc" },
          { sort: "available", order: "desc", status: "active", min_available: 900 },
        ] as const
      ).map((q): [string, Report] => [
        `balances ${JSON.stringify(q)}`,
        (s, limit, cursor) => balancesReport(s, { ...q, limit, cursor }),
      ]),
      ...(
        [
          {},
          { types: ["ReservationCaptured", "AccountCharged"] },
          { from: new Date(time.now() - DAY_MS).toISOString() },
        ] as Omit<TransactionsQuery, "limit">[]
      ).map((q): [string, Report] => [
        `transactions ${JSON.stringify(q)}`,
        (s, limit, cursor) => transactionsReport(s, { ...q, limit, cursor }),
      ]),
      ...[{}, { status: "open" as const }, { status: "captured" as const }].map((q): [string, Report] => [
        `reservations ${JSON.stringify(q)}`,
        (s, limit, cursor) => reservationsReport(s, { ...q, limit, cursor }),
      ]),
      ["refunds", (s, limit, cursor) => refundsReport(s, { limit, cursor })],
      ...([[], ["model"], ["day"], ["day", "model"], ["account"], ["provider", "model"]] as UsageGroup[][]).map(
        (group_by): [string, Report] => [
          `usage ${group_by.join(",")}`,
          (s, limit, cursor) => usageReport(s, { group_by, limit, cursor }, kept),
        ],
      ),
      // One account's report reads its own shard only.
      ...ids
        .slice(0, 2)
        .map((id): [string, Report] => [
          `transactions of ${id}`,
          (s, limit, cursor) => transactionsReport(s, { account_id: id, limit, cursor }),
        ]),
      [
        `usage of ${ids[1]}`,
        (s, limit, cursor) => usageReport(s, { group_by: ["model"], account_id: ids[1], limit, cursor }, kept),
      ],
    ];
    for (const [name, report] of reports) {
      for (const limit of [2, 3]) {
        const sharded = await pagesOf(report, shards, limit);
        expect(sharded, `${name}, limit ${limit}`).toEqual(await pagesOf(report, reference, limit));
      }
    }
    // The walks were not trivial: groups spanning shards were added, and rows came from both.
    const byModel = (await pagesOf(reports.find(([n]) => n === "usage model")?.[1] as Report, shards, 10))[0] as Page;
    expect(byModel.data.map((r: Row) => r.model)).toEqual([null, ...models].sort(compareSql));
    expect(byModel.data.find((r: Row) => r.model === "m-large")?.charges).toBeGreaterThan(4);
    const everything = await pagesOf(reports[0]?.[1] as Report, shards, 1_000);
    expect(everything[0]?.data.map((r: Row) => r.account_id).sort()).toEqual([...ids].sort());

    // The trial balance, now and at the hour before day two, and a statement.
    const midway = `${new Date(time.now() - DAY_MS + HOUR_MS).toISOString().slice(0, 13)}:00:00.000Z`;
    for (const at of [null, midway]) {
      const sharded = await trialBalanceReport(shards, at, time.now(), kept);
      expect(sharded, `trial balance at ${at}`).toEqual(await trialBalanceReport(reference, at, time.now(), kept));
      expect(sharded.balanced).toBe(true);
    }
    const lines = (await trialBalanceReport(shards, null, time.now(), kept)).data.map((l) => l.ledger_account);
    expect(lines).toEqual(["adjustments", "cash", "customer_balances", "overage_receivable", "refunds", "revenue"]);
    const from = `${new Date(time.now() - 2 * DAY_MS).toISOString().slice(0, 10)}T00:00:00.000Z`;
    const to = `${new Date(time.now() + DAY_MS).toISOString().slice(0, 10)}T00:00:00.000Z`;
    for (const id of ids.slice(0, 2)) {
      const statement = await statementReport(shards, id, from, to, kept);
      expect(statement).toEqual(await statementReport(reference, id, from, to, kept));
      expect(statement?.closing_balance).toBe((await send("GET", `/v1/accounts/${id}`)).balance);
    }
  });

  it("as_of across shards: counts summed, the latest window start of any shard", async () => {
    const shards = shardsOf(env);
    const key = "raw_events_complete_from";
    const set = (db: D1Database, value: string) =>
      db.prepare("INSERT OR REPLACE INTO sweep_state (key, value) VALUES (?, ?)").bind(key, value).run();
    const unset = (db: D1Database) => db.prepare("DELETE FROM sweep_state WHERE key = ?").bind(key).run();
    const [zero, one] = shards as [Shard, Shard];
    const page = () => transactionsReport(shards, { limit: 1 });
    try {
      expect((await page()).as_of.window?.from).toBeNull();
      await set(one.db, "2026-01-02T00:00:00.000Z");
      expect((await page()).as_of.window?.from).toBe("2026-01-02T00:00:00.000Z");
      await set(zero.db, "2026-01-03T00:00:00.000Z");
      const both = (await page()).as_of;
      expect(both.window?.from).toBe("2026-01-03T00:00:00.000Z");
      const parts = await Promise.all(shards.map((s) => transactionsReport([s], { limit: 1 })));
      expect(both.accounts).toBe(parts.reduce((total, p) => total + p.as_of.accounts, 0));
      expect(both.newest_event_at).toBe(
        parts
          .map((p) => p.as_of.newest_event_at)
          .sort()
          .at(-1),
      );
      expect(both).not.toHaveProperty("last_seq");
    } finally {
      await unset(zero.db);
      await unset(one.db);
    }
  });
});
