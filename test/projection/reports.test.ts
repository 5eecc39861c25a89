/**
 * The reporting API over the D1 read side, end to end through the Worker: every report's
 * filters, orders, keyset pagination and `as_of`, the trial balance's double-entry identity,
 * and a table of invalid queries. Expectations are computed from the commands each test sends
 * and from the accounts' own event logs (the source of truth), never from the reports.
 *
 * Storage (D1 and objects) is shared by the tests of this file, so each test uses its own
 * accounts and filters by them, or by a range of values only it uses.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import type { ManualClock } from "../../src/clock";
import {
  api,
  expectEveryAccountConsistent,
  MANUAL_CLOCK_AHEAD_MS,
  openAccount,
  stub,
  useManualClock,
} from "../helpers";
import { drain } from "./support";

afterEach(expectEveryAccountConsistent);

// ------------------------------------------------------------------ helpers

type Key = string | number;
// biome-ignore lint/suspicious/noExplicitAny: report rows are inspected field by field
type Row = Record<string, any>;

interface LedgerEventJson {
  seq: number;
  type: string;
  at: string;
  event_id: string;
  balance_after: number;
  reserved_after: number;
  [field: string]: unknown;
}

/** Every account this file opened, so the whole-read-side checks know what D1 must hold. */
const opened: string[] = [];

/**
 * While a test steps a ManualClock (`stepEachCommand`), each command (and each opening) happens
 * one millisecond after the one before, so event times are distinct and ordered without waiting.
 */
let stepping: ManualClock | null = null;
function stepEachCommand(manual: ManualClock): void {
  stepping = manual;
  onTestFinished(() => {
    stepping = null;
  });
}

async function open(balance = 0, creditLimit = 0): Promise<string> {
  stepping?.advance(1);
  const id = await openAccount(balance, creditLimit);
  opened.push(id);
  return id;
}

/** Brings D1 up to date for these accounts. */
async function project(...ids: string[]): Promise<void> {
  for (const id of ids) {
    const status = await stub(id).catchUp();
    expect(status.projected_seq).toBe(status.last_seq);
  }
}

/** A money command that must succeed; answers its body. */
async function send(method: string, path: string, body?: unknown): Promise<Row> {
  stepping?.advance(1);
  const response = await api(method, path, body);
  expect(response.status, `${method} ${path}: ${brief(response.body)}`).toBeLessThan(300);
  return response.body;
}

async function view(id: string): Promise<Row> {
  return send("GET", `/v1/accounts/${id}`);
}

async function eventsOf(id: string): Promise<LedgerEventJson[]> {
  const body = await send("GET", `/v1/accounts/${id}/events?limit=1000`);
  expect(body.next_after_seq).toBeNull();
  return body.events;
}

function url(path: string, params: Record<string, Key | undefined> = {}): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) search.set(name, String(value));
  const query = search.toString();
  return query === "" ? path : `${path}?${query}`;
}

/** One report page, which must be a 200 with the page shape. */
async function report(path: string, params: Record<string, Key | undefined> = {}): Promise<Row> {
  const response = await api("GET", url(path, params));
  expect(response.status, brief(response.body)).toBe(200);
  expect(response.body).toHaveProperty("data");
  expect(response.body).toHaveProperty("next_cursor");
  expect(response.body).toHaveProperty("as_of");
  return response.body;
}

/**
 * Follows next_cursor from the first page to the last: every page but the last is full, the
 * last one has next_cursor null, and no page is empty unless it is the only one.
 */
async function walk(path: string, params: Record<string, Key | undefined>, limit: number): Promise<Row[]> {
  const rows: Row[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 200; pages++) {
    const page = await report(path, { ...params, limit, cursor });
    expect(page.data.length).toBeLessThanOrEqual(limit);
    rows.push(...page.data);
    if (page.next_cursor === null) {
      if (pages > 0) expect(page.data.length).toBeGreaterThan(0);
      return rows;
    }
    expect(typeof page.next_cursor).toBe("string");
    expect(page.data.length).toBe(limit);
    cursor = page.next_cursor;
  }
  throw new Error("pagination did not end");
}

const compare = (a: Key, b: Key): number => (a < b ? -1 : a > b ? 1 : 0);
function byKeys<T>(keys: (item: T) => Key[]): (a: T, b: T) => number {
  return (a, b) => {
    const ka = keys(a);
    const kb = keys(b);
    for (let i = 0; i < ka.length; i++) {
      const c = compare(ka[i] as Key, kb[i] as Key);
      if (c !== 0) return c;
    }
    return 0;
  };
}

const HOUR_MS = 3_600_000;
/** The whole UTC hour at or after `ms`: reports over rollups take whole hours. */
const ceilHour = (ms: number): number => Math.ceil(ms / HOUR_MS) * HOUR_MS;
const floorHourIso = (time: string): string => new Date(Math.floor(Date.parse(time) / HOUR_MS) * HOUR_MS).toISOString();
const sum = (values: number[]): number => values.reduce((total, v) => total + v, 0);
const newest = (times: string[]): string | undefined => [...times].sort().at(-1);
const oldest = (times: string[]): string | undefined => [...times].sort()[0];
/** A failing status check shows the start of the body, not megabytes of rows. */
const brief = (body: unknown): string => JSON.stringify(body).slice(0, 400);

// ------------------------------------------------------------------ balances

describe("balances report", () => {
  it("filters by status and available range, sorts by available and updated_at, pages with limit=2", async () => {
    // A range of available amounts that only this test uses, so the filters isolate its accounts.
    const base = 7_100_000;
    const ids: string[] = [];
    for (const offset of [50, 10, 40, 30, 20]) ids.push(await open(base + offset));
    const [a0, a1, a2, a3] = ids as [string, string, string, string, string];
    // available = balance - reserved: a0 goes to base+5 by a hold, a3 to base+25 by a charge.
    await send("POST", `/v1/accounts/${a0}/reservations`, { reservation_id: "hold", amount: 45 });
    await send("POST", `/v1/accounts/${a3}/charges`, { charge_id: "c", amount: 5 });
    await send("PATCH", `/v1/accounts/${a1}`, { status: "frozen" });
    // Touch a2 last so that updated_at differs from the opening order.
    await send("POST", `/v1/accounts/${a2}/credits`, { credit_id: "late", amount: 1 });
    await project(...ids);

    const views = await Promise.all(ids.map(view));
    expect(views.map((v) => v.available)).toEqual([base + 5, base + 10, base + 41, base + 25, base + 20]);
    const range = { min_available: base, max_available: base + 1_000 };
    const byAvailable = [...views].sort(byKeys((v) => [v.available, v.account_id]));
    const byUpdated = [...views].sort(byKeys((v) => [v.updated_at, v.account_id]));
    const idsOf = (rows: Row[]) => rows.map((r) => r.account_id);

    // Rows carry the projected snapshot of each account.
    const all = await report("/v1/reports/balances", range);
    expect(all.next_cursor).toBeNull();
    expect(idsOf(all.data)).toEqual(idsOf(byAvailable));
    for (const row of all.data) {
      const v = views.find((x) => x.account_id === row.account_id) as Row;
      expect(row).toMatchObject({
        balance: v.balance,
        reserved: v.reserved,
        available: v.available,
        credit_limit: v.credit_limit,
        status: v.status,
        open_reservations: v.open_reservations,
        last_seq: v.last_seq,
        created_at: v.created_at,
        updated_at: v.updated_at,
        currency: "USD",
      });
    }

    // Status.
    const frozen = await report("/v1/reports/balances", { ...range, status: "frozen" });
    expect(idsOf(frozen.data)).toEqual([a1]);
    const active = await report("/v1/reports/balances", { ...range, status: "active" });
    expect(idsOf(active.data)).toEqual(idsOf(byAvailable.filter((v) => v.account_id !== a1)));

    // Both bounds are inclusive.
    const middle = await report("/v1/reports/balances", { min_available: base + 20, max_available: base + 25 });
    expect(idsOf(middle.data)).toEqual(
      idsOf(byAvailable.filter((v) => v.available >= base + 20 && v.available <= base + 25)),
    );
    expect(middle.data).toHaveLength(2);

    // Orders, each walked two rows at a time.
    const available = { ...range, sort: "available" };
    expect(idsOf(await walk("/v1/reports/balances", { ...available, order: "asc" }, 2))).toEqual(idsOf(byAvailable));
    expect(idsOf(await walk("/v1/reports/balances", { ...available, order: "desc" }, 2))).toEqual(
      idsOf([...byAvailable].reverse()),
    );
    const updated = { ...range, sort: "updated_at" };
    expect(idsOf(await walk("/v1/reports/balances", updated, 2))).toEqual(idsOf(byUpdated));
    expect(idsOf(await walk("/v1/reports/balances", { ...updated, order: "desc" }, 2))).toEqual(
      idsOf([...byUpdated].reverse()),
    );
    expect(idsOf(byUpdated).at(-1)).toBe(a2);
    // A filter and a cursor together.
    expect(idsOf(await walk("/v1/reports/balances", { ...available, status: "active", order: "desc" }, 2))).toEqual(
      idsOf([...byAvailable].reverse().filter((v) => v.account_id !== a1)),
    );
  });

  it("breaks ties in available by account_id in both orders, with negative bounds", async () => {
    // Three accounts at the same negative available (spent into their credit limit), one above.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = await open(0, 100);
      await send("POST", `/v1/accounts/${id}/charges`, { charge_id: "spend", amount: 37 });
      ids.push(id);
    }
    const above = await open(0, 100);
    await send("POST", `/v1/accounts/${above}/charges`, { charge_id: "spend", amount: 36 });
    await project(...ids, above);
    const tied = [...ids].sort();
    const range = { min_available: -37, max_available: -36 };
    expect((await walk("/v1/reports/balances", range, 1)).map((r) => [r.account_id, r.available])).toEqual([
      ...tied.map((id) => [id, -37]),
      [above, -36],
    ]);
    expect(
      (await walk("/v1/reports/balances", { ...range, order: "desc" }, 1)).map((r) => [r.account_id, r.available]),
    ).toEqual([[above, -36], ...[...tied].reverse().map((id) => [id, -37])]);
    expect(
      (await walk("/v1/reports/balances", { min_available: -37, max_available: -37 }, 2)).map((r) => r.account_id),
    ).toEqual(tied);
  });

  it("as_of counts every projected account and names the newest event time", async () => {
    await open(10);
    await project(...opened);
    const views = await Promise.all(opened.map(view));
    const page = await report("/v1/reports/balances", { limit: 1 });
    expect(page.as_of.accounts).toBe(opened.length);
    expect(page.as_of.newest_event_at).toBe(newest(views.map((v) => v.updated_at)));
    expect(page.as_of.worst_projection_lag_ms).toBeGreaterThanOrEqual(0);
    expect(typeof page.as_of.last_projected_at).toBe("string");
    expect(page.as_of).not.toHaveProperty("last_seq");
    // Every account is there once, walked across the whole table.
    const rows = await walk("/v1/reports/balances", {}, 3);
    expect(rows.map((r) => r.account_id).sort()).toEqual([...opened].sort());
    expect(sum(rows.map((r) => r.balance))).toBe(sum(views.map((v) => v.balance)));
  });
});

// ------------------------------------------------------------------ transactions

describe("transactions report", () => {
  it("lists one account in seq order, filters by type and time, and pages across accounts", async () => {
    const a = await open(1_000);
    await send("POST", `/v1/accounts/${a}/charges`, { charge_id: "c1", amount: 100 });
    await send("POST", `/v1/accounts/${a}/reservations`, { reservation_id: "r1", amount: 200 });
    await send("POST", `/v1/accounts/${a}/reservations/r1/capture`, { amount: 150 });
    await send("POST", `/v1/accounts/${a}/credits`, { credit_id: "top-2", amount: 500, reason: "card" });
    await send("POST", `/v1/accounts/${a}/charges`, { charge_id: "c2", amount: 50, metadata: { invoice: "i-2" } });
    await send("PATCH", `/v1/accounts/${a}`, { credit_limit: 25 });
    await send("POST", `/v1/accounts/${a}/adjustments`, { adjustment_id: "adj", amount: -7, reason: "fix" });
    const b = await open(300);
    await send("POST", `/v1/accounts/${b}/charges`, { charge_id: "c1", amount: 60 });
    await send("POST", `/v1/accounts/${b}/refunds`, { refund_id: "f1", charge_id: "c1", amount: 10 });
    await project(a, b);
    const eventsA = await eventsOf(a);
    const eventsB = await eventsOf(b);
    const lastSeqA = (await view(a)).last_seq;
    expect(eventsA.at(-1)?.seq).toBe(lastSeqA);

    // One account, by type, in seq order, with the event's own fields and no empty columns.
    const wanted = ["FundsCredited", "AccountCharged"];
    const typed = await report("/v1/reports/transactions", { account_id: a, type: wanted.join(",") });
    const expected = eventsA.filter((e) => wanted.includes(e.type));
    expect(typed.data.map((r: Row) => r.seq)).toEqual(expected.map((e) => e.seq));
    expect(typed.data).toHaveLength(4);
    typed.data.forEach((row: Row, i: number) => {
      const e = expected[i] as LedgerEventJson;
      expect(row).toMatchObject({
        account_id: a,
        seq: e.seq,
        type: e.type,
        event_id: e.event_id,
        created_at: e.at,
        amount: e.amount,
        balance_after: e.balance_after,
        reserved_after: e.reserved_after,
        balance_delta: e.type === "FundsCredited" ? e.amount : -(e.amount as number),
      });
      if (e.type === "FundsCredited") {
        expect(row.credit_id).toBe(e.credit_id);
        expect(row).not.toHaveProperty("charge_id");
      } else {
        expect(row.charge_id).toBe(e.charge_id);
        expect(row).not.toHaveProperty("credit_id");
      }
    });
    expect(typed.data.find((r: Row) => r.charge_id === "c2")?.metadata).toEqual({ invoice: "i-2" });
    expect(typed.as_of.last_seq).toBe(lastSeqA);
    expect(typed.as_of.accounts).toBe(1);
    expect(typed.as_of.newest_event_at).toBe(eventsA.at(-1)?.at);

    // The whole account, three at a time: 1..last_seq exactly once.
    const everything = await walk("/v1/reports/transactions", { account_id: a }, 3);
    expect(everything.map((r) => r.seq)).toEqual(eventsA.map((e) => e.seq));
    expect(everything.map((r) => r.type)).toEqual(eventsA.map((e) => e.type));

    // A time range [from, to) around events 3..6, also given with a +02:00 offset.
    const from = (eventsA[2] as LedgerEventJson).at;
    const to = (eventsA[6] as LedgerEventJson).at;
    const inRange = eventsA.filter((e) => e.at >= from && e.at < to).map((e) => e.seq);
    expect(inRange.length).toBeGreaterThan(0);
    const ranged = await report("/v1/reports/transactions", { account_id: a, from, to });
    expect(ranged.data.map((r: Row) => r.seq)).toEqual(inRange);
    const offset = (t: string) => new Date(Date.parse(t) + 2 * 3_600_000).toISOString().replace("Z", "+02:00");
    const rangedOffset = await report("/v1/reports/transactions", {
      account_id: a,
      from: offset(from),
      to: offset(to),
    });
    expect(rangedOffset.data.map((r: Row) => r.seq)).toEqual(inRange);
    const rangedTyped = await report("/v1/reports/transactions", { account_id: a, from, to, type: "AccountCharged" });
    expect(rangedTyped.data.map((r: Row) => r.seq)).toEqual(
      eventsA.filter((e) => e.at >= from && e.at < to && e.type === "AccountCharged").map((e) => e.seq),
    );

    // Across accounts: (created_at, account_id, seq) order, two at a time, every event once.
    const mine = new Set([a, b]);
    const start = oldest([eventsA, eventsB].map((es) => (es[0] as LedgerEventJson).at));
    const across = await walk("/v1/reports/transactions", { from: start }, 2);
    const keys = across.map((r) => `${r.account_id}#${r.seq}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(across).toEqual([...across].sort(byKeys((r) => [r.created_at, r.account_id, r.seq])));
    const expectedAcross = [
      ...eventsA.map((e) => ({ ...e, account_id: a })),
      ...eventsB.map((e) => ({ ...e, account_id: b })),
    ].sort(byKeys((e) => [e.at, e.account_id, e.seq]));
    expect(across.filter((r) => mine.has(r.account_id)).map((r) => `${r.account_id}#${r.seq}`)).toEqual(
      expectedAcross.map((e) => `${e.account_id}#${e.seq}`),
    );
    const acrossTyped = await walk("/v1/reports/transactions", { from: start, type: "ChargeRefunded" }, 1);
    expect(acrossTyped.filter((r) => mine.has(r.account_id)).map((r) => [r.account_id, r.refund_id])).toEqual([
      [b, "f1"],
    ]);
  });
});

// ------------------------------------------------------------------ usage

const GROUPS = ["day", "account", "service_id", "provider", "model", "alias"] as const;
type Group = (typeof GROUPS)[number];
interface UsageCharge {
  day: string;
  account: string;
  service_id: string | null;
  provider: string | null;
  model: string | null;
  alias: string | null;
  cost: number;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
}
type Context = Partial<Record<"service_id" | "provider" | "model" | "alias", string>>;
type Tokens = Partial<Record<"input_tokens" | "output_tokens" | "cached_tokens", number>>;

/** The usage report's sums are decimal strings (exact beyond 2^53, docs/api.md#reports); charges a number. */
const USAGE_SUMS = ["cost", "input_tokens", "output_tokens", "cached_tokens"] as const;
function usageRow(row: Row): Row {
  const out: Row = { ...row };
  for (const t of USAGE_SUMS) out[t] = String(row[t]);
  return out;
}

/** The usage report an independent reader would compute: group, total, order by keys ('' for none). */
function expectedUsage(charges: UsageCharge[], groups: Group[]): Row[] {
  const rows = new Map<string, { keys: string[]; row: Row }>();
  for (const c of charges) {
    const keys = groups.map((g) => c[g] ?? "");
    const id = JSON.stringify(keys);
    let entry = rows.get(id);
    if (entry === undefined) {
      const row: Row = {};
      groups.forEach((g, i) => {
        row[g] = keys[i] === "" ? null : keys[i];
      });
      Object.assign(row, { charges: 0, cost: 0, input_tokens: 0, output_tokens: 0, cached_tokens: 0 });
      entry = { keys, row };
      rows.set(id, entry);
    }
    entry.row.charges += 1;
    entry.row.cost += c.cost;
    entry.row.input_tokens += c.input_tokens;
    entry.row.output_tokens += c.output_tokens;
    entry.row.cached_tokens += c.cached_tokens;
  }
  return [...rows.values()].sort(byKeys((e) => e.keys)).map((e) => usageRow(e.row));
}

describe("usage report", () => {
  it("totals captures (context from the reservation, tokens from usage) and direct charges by group", async () => {
    // The captures in one hour, the direct charges in the next: a range of whole hours splits them.
    const time = useManualClock(ceilHour(Date.now() + MANUAL_CLOCK_AHEAD_MS));
    const a = await open(100_000);
    const charges: UsageCharge[] = [];
    const record = (id: string, cost: number, context: Context, tokens: Tokens) => {
      charges.push({
        day: "",
        account: a,
        service_id: context.service_id ?? null,
        provider: context.provider ?? null,
        model: context.model ?? null,
        alias: context.alias ?? null,
        cost,
        input_tokens: tokens.input_tokens ?? 0,
        output_tokens: tokens.output_tokens ?? 0,
        cached_tokens: tokens.cached_tokens ?? 0,
      });
      return id;
    };
    const chargeIds: string[] = [];
    const captures: [string, number, Context, Tokens][] = [
      [
        "r1",
        120,
        { service_id: "chat", provider: "acme", model: "m-large", alias: "big" },
        { input_tokens: 1_000, output_tokens: 200, cached_tokens: 50 },
      ],
      [
        "r2",
        30,
        { service_id: "chat", provider: "acme", model: "m-small", alias: "small" },
        { input_tokens: 300, output_tokens: 40 },
      ],
      ["r3", 0, { service_id: "embed", provider: "zeta", model: "m-small" }, { input_tokens: 10 }],
      [
        "r4",
        80,
        { service_id: "chat", provider: "zeta", model: "m-large", alias: "big" },
        { input_tokens: 700, output_tokens: 90, cached_tokens: 600 },
      ],
    ];
    for (const [id, amount, context, usage] of captures) {
      await send("POST", `/v1/accounts/${a}/reservations`, { reservation_id: id, amount: 500, context });
      await send("POST", `/v1/accounts/${a}/reservations/${id}/capture`, { amount, usage });
      chargeIds.push(record(id, amount, context, usage));
    }
    time.advance(HOUR_MS);
    const direct: [string, number, Context | undefined][] = [
      ["c1", 70, { service_id: "chat", provider: "acme", model: "m-large" }],
      ["c2", 5, undefined],
      ["c3", 11, { provider: "zeta", alias: "small" }],
    ];
    for (const [id, amount, context] of direct) {
      await send("POST", `/v1/accounts/${a}/charges`, { charge_id: id, amount, ...(context ? { context } : {}) });
      chargeIds.push(record(id, amount, context ?? {}, {}));
    }
    // Not usage: a released hold, a credit, a refund (cost stays the charged amount).
    await send("POST", `/v1/accounts/${a}/reservations`, {
      reservation_id: "r-released",
      amount: 40,
      context: { model: "m-large" },
    });
    await send("POST", `/v1/accounts/${a}/reservations/r-released/release`);
    await send("POST", `/v1/accounts/${a}/refunds`, { refund_id: "f", charge_id: "c1", amount: 20 });
    await project(a);
    // Each charge's day is its event's date.
    const events = await eventsOf(a);
    const chargeEvents = events.filter((e) => e.type === "ReservationCaptured" || e.type === "AccountCharged");
    expect(chargeEvents.map((e) => e.reservation_id ?? e.charge_id)).toEqual(chargeIds);
    chargeEvents.forEach((e, i) => {
      (charges[i] as UsageCharge).day = e.at.slice(0, 10);
    });

    for (const groups of [
      [],
      ["model"],
      ["day", "provider"],
      ["service_id", "alias"],
      ["account", "model"],
    ] as Group[][]) {
      const page = await report("/v1/reports/usage", { account_id: a, group_by: groups.join(",") });
      expect(page.data, `group_by=${groups.join(",")}`).toEqual(expectedUsage(charges, groups));
      expect(page.next_cursor).toBeNull();
    }
    // No group_by: one row of totals equal to the sums sent.
    const totals = await report("/v1/reports/usage", { account_id: a });
    expect(totals.data).toEqual([
      usageRow({
        charges: 7,
        cost: 120 + 30 + 0 + 80 + 70 + 5 + 11,
        input_tokens: 1_000 + 300 + 10 + 700,
        output_tokens: 200 + 40 + 90,
        cached_tokens: 50 + 600,
      }),
    ]);
    // Groups paged one at a time.
    for (const groups of [["model"], ["day", "provider"], ["provider", "model", "alias"]] as Group[][]) {
      const rows = await walk("/v1/reports/usage", { account_id: a, group_by: groups.join(",") }, 1);
      expect(rows, `group_by=${groups.join(",")}`).toEqual(expectedUsage(charges, groups));
    }
    // A time range keeps the charges made in it: from the hour of the first direct charge.
    const from = floorHourIso((chargeEvents[4] as LedgerEventJson).at);
    expect(from > (chargeEvents[3] as LedgerEventJson).at).toBe(true);
    const ranged = await report("/v1/reports/usage", { account_id: a, group_by: "model", from });
    expect(ranged.data).toEqual(
      expectedUsage(
        charges.filter((_, i) => (chargeEvents[i] as LedgerEventJson).at >= from),
        ["model"],
      ),
    );
    const before = await report("/v1/reports/usage", {
      account_id: a,
      to: floorHourIso((events[0] as LedgerEventJson).at),
    });
    expect(before.data).toEqual([{ charges: 0, cost: "0", input_tokens: "0", output_tokens: "0", cached_tokens: "0" }]);
  });

  it("with account_id, as_of is that account's (last_seq), as for the other per-account reports", async () => {
    const a = await open(1_000);
    await send("POST", `/v1/accounts/${a}/charges`, { charge_id: "c", amount: 10, context: { model: "m" } });
    await project(a);
    const { last_seq } = await view(a);
    const transactions = await report("/v1/reports/transactions", { account_id: a, limit: 1 });
    expect(transactions.as_of).toMatchObject({ accounts: 1, last_seq });
    const usage = await report("/v1/reports/usage", { account_id: a, group_by: "model" });
    expect(usage.data).toEqual([
      { model: "m", charges: 1, cost: "10", input_tokens: "0", output_tokens: "0", cached_tokens: "0" },
    ]);
    // The transactions report reads the window of raw events and says which range it holds.
    const { window, ...position } = transactions.as_of;
    expect(window).toEqual({ from: null, to: position.newest_event_at });
    expect(usage.as_of, "usage as_of with account_id").toEqual(position);
  });
});

// ------------------------------------------------------------------ usage by caller (issue 28)

describe("usage by caller", () => {
  it("groups charges and captures by the API key and the project they were made for", async () => {
    const a = await open(100_000);
    const created = await api("POST", "/v1/admin/api-keys", {
      name: "bound",
      scopes: ["ledger:write"],
      project_id: "p1",
    });
    expect(created.status).toBe(201);
    const bound = { authorization: `Bearer ${created.body.secret}` };
    const keyId = created.body.key.id as string;
    const post = (path: string, body: unknown, headers?: Record<string, string>) =>
      api("POST", `/v1/accounts/${a}${path}`, body, headers);
    expect((await post("/charges", { charge_id: "k1", amount: 10 }, bound)).status).toBe(201);
    expect((await post("/reservations", { reservation_id: "k2", amount: 50 }, bound)).status).toBe(201);
    expect((await post("/reservations/k2/capture", { amount: 20 })).status).toBe(200);
    expect((await post("/charges", { charge_id: "b1", amount: 5, context: { project_id: "p2" } })).status).toBe(201);
    expect((await post("/charges", { charge_id: "b2", amount: 7 })).status).toBe(201);
    await project(a);
    const usage = await report("/v1/reports/usage", { account_id: a, group_by: "api_key_id,project_id" });
    const totals = (usage.data as Row[]).map((r) => [r.api_key_id, r.project_id, r.charges, r.cost]);
    expect(totals).toEqual([
      ["bootstrap", null, 1, "7"],
      ["bootstrap", "p2", 1, "5"],
      [keyId, "p1", 2, "30"],
    ]);
    const byProject = await report("/v1/reports/usage", { account_id: a, group_by: "project_id" });
    expect((byProject.data as Row[]).map((r) => [r.project_id, r.cost])).toEqual([
      [null, "7"],
      ["p1", "30"],
      ["p2", "5"],
    ]);
  });
});

// ------------------------------------------------------------------ reservations

describe("reservations report", () => {
  it("lists open holds before expired_before in expiry order; captured and released move out; pages", async () => {
    const a = await open(10_000);
    const holds: Row[] = [];
    for (const [id, ttl] of [
      ["h1", 300],
      ["h2", 900],
      ["h3", 600],
      ["h4", 120],
    ] as const) {
      const body = await send("POST", `/v1/accounts/${a}/reservations`, {
        reservation_id: id,
        amount: 100 + ttl,
        ttl_seconds: ttl,
        context: { service_id: "svc", model: `m-${id}` },
      });
      holds.push(body.reservation);
    }
    await project(a);
    const byExpiry = (rows: Row[]) => [...rows].sort(byKeys((r) => [r.expires_at, r.reservation_id]));
    const idsOf = (rows: Row[]) => rows.map((r) => r.reservation_id);
    const future = new Date(Date.now() + 3_600_000).toISOString();

    const open1 = await report("/v1/reports/reservations", { account_id: a, status: "open", expired_before: future });
    expect(idsOf(open1.data)).toEqual(["h4", "h1", "h3", "h2"]);
    expect(idsOf(open1.data)).toEqual(idsOf(byExpiry(holds)));
    for (const row of open1.data) {
      const hold = holds.find((h) => h.reservation_id === row.reservation_id) as Row;
      expect(row).toMatchObject({
        account_id: a,
        status: "open",
        amount: hold.amount,
        expires_at: hold.expires_at,
        ttl_seconds: hold.ttl_seconds,
        on_expiry: "release",
        created_at: hold.created_at,
        settled_at: null,
        service_id: "svc",
        model: `m-${row.reservation_id}`,
      });
    }
    expect(open1.as_of.last_seq).toBe((await view(a)).last_seq);
    // expired_before is exclusive: only holds expiring strictly before h1's expiry.
    const h1 = holds.find((h) => h.reservation_id === "h1") as Row;
    const stale = await report("/v1/reports/reservations", {
      account_id: a,
      status: "open",
      expired_before: h1.expires_at,
    });
    expect(idsOf(stale.data)).toEqual(idsOf(holds.filter((h) => h.expires_at < h1.expires_at)));
    expect(idsOf(stale.data)).toEqual(["h4"]);
    const none = await report("/v1/reports/reservations", {
      account_id: a,
      expired_before: new Date(Date.parse(holds[0]?.created_at) - 60_000).toISOString(),
    });
    expect(none.data).toEqual([]);
    expect(idsOf(await walk("/v1/reports/reservations", { account_id: a, status: "open" }, 2))).toEqual([
      "h4",
      "h1",
      "h3",
      "h2",
    ]);

    // Capture h1, release h2, extend h4 past h3.
    const captured = await send("POST", `/v1/accounts/${a}/reservations/h1/capture`, { amount: 40 });
    const released = await send("POST", `/v1/accounts/${a}/reservations/h2/release`, { reason: "cancelled" });
    const extended = await send("POST", `/v1/accounts/${a}/reservations/h4/extend`, { ttl_seconds: 3_000 });
    await project(a);
    const capturedRows = await report("/v1/reports/reservations", { account_id: a, status: "captured" });
    expect(capturedRows.data).toHaveLength(1);
    expect(capturedRows.data[0]).toMatchObject({
      reservation_id: "h1",
      status: "captured",
      amount: h1.amount,
      captured_amount: 40,
      released_amount: h1.amount - 40,
      overage: 0,
      settled_at: captured.reservation.settled_at,
    });
    const releasedRows = await report("/v1/reports/reservations", { account_id: a, status: "released" });
    expect(releasedRows.data).toHaveLength(1);
    expect(releasedRows.data[0]).toMatchObject({
      reservation_id: "h2",
      status: "released",
      captured_amount: null,
      released_amount: released.reservation.amount,
      settled_at: released.reservation.settled_at,
    });
    const stillOpen = await walk(
      "/v1/reports/reservations",
      { account_id: a, status: "open", expired_before: future },
      1,
    );
    expect(idsOf(stillOpen)).toEqual(["h3", "h4"]);
    expect(stillOpen[1]?.expires_at).toBe(extended.reservation.expires_at);
    expect(stillOpen[1]?.ttl_seconds).toBe(3_000);
    expect(await report("/v1/reports/reservations", { account_id: a, status: "expired" })).toMatchObject({ data: [] });
    // Without a status: all four, by expiry, one page at a time.
    const every = await walk("/v1/reports/reservations", { account_id: a }, 1);
    expect(every.map((r) => [r.reservation_id, r.status])).toEqual(
      byExpiry(every).map((r) => [r.reservation_id, r.status]),
    );
    expect(every.map((r) => r.status).sort()).toEqual(["captured", "open", "open", "released"]);
  });

  it("shows holds settled by expiry; an expiry by capture is a charge in the usage report", async () => {
    const time = useManualClock();
    const a = await open(500);
    const context = { service_id: "batch", provider: "acme", model: "m-exp" };
    await send("POST", `/v1/accounts/${a}/reservations`, {
      reservation_id: "x-capture",
      amount: 100,
      ttl_seconds: 1,
      on_expiry: "capture",
      context,
    });
    await send("POST", `/v1/accounts/${a}/reservations`, { reservation_id: "x-release", amount: 50, ttl_seconds: 1 });
    // Their second passes and the alarm runs (only here: the ManualClock is a day ahead).
    time.advance(1_000);
    expect(await runDurableObjectAlarm(stub(a))).toBe(true);
    await project(a);
    expect(await view(a)).toMatchObject({ balance: 400, reserved: 0, open_reservations: 0 });
    const expired = await report("/v1/reports/reservations", { account_id: a, status: "expired" });
    expect(expired.data.map((r: Row) => [r.reservation_id, r.captured_amount, r.released_amount])).toEqual(
      [
        ["x-capture", 100, 0],
        ["x-release", null, 50],
      ].sort(byKeys((r) => [String(r[0])])),
    );
    const open1 = await report("/v1/reports/reservations", { account_id: a, status: "open" });
    expect(open1.data).toEqual([]);
    const usage = await report("/v1/reports/usage", { account_id: a, group_by: "service_id,provider,model" });
    expect(usage.data).toEqual([
      { ...context, charges: 1, cost: "100", input_tokens: "0", output_tokens: "0", cached_tokens: "0" },
    ]);
  });
});

// ------------------------------------------------------------------ refunds

describe("refunds report", () => {
  it("lists partial refunds of a charge and of a capture with the charge's running and current totals", async () => {
    const a = await open(1_000);
    await send("POST", `/v1/accounts/${a}/charges`, { charge_id: "c1", amount: 200 });
    await send("POST", `/v1/accounts/${a}/reservations`, { reservation_id: "r1", amount: 300 });
    await send("POST", `/v1/accounts/${a}/reservations/r1/capture`, { amount: 150 });
    const refunds: [string, string, number][] = [
      ["f1", "c1", 50],
      ["f2", "r1", 100],
      ["f3", "c1", 30],
      ["f4", "r1", 50],
    ];
    for (const [refund_id, charge_id, amount] of refunds) {
      await send("POST", `/v1/accounts/${a}/refunds`, { refund_id, charge_id, amount, reason: `why ${refund_id}` });
    }
    await project(a);
    const chargeAmount: Record<string, number> = { c1: 200, r1: 150 };
    const expected = (list: [string, string, number][]) => {
      const after: Record<string, number> = {};
      const total = (charge: string) => sum(list.filter((f) => f[1] === charge).map((f) => f[2]));
      return list.map(([refund_id, charge_id, amount]) => {
        after[charge_id] = (after[charge_id] ?? 0) + amount;
        return {
          account_id: a,
          refund_id,
          charge_id,
          amount,
          reason: `why ${refund_id}`,
          charge_amount: chargeAmount[charge_id],
          charge_refunded_after: after[charge_id],
          charge_refunded_total: total(charge_id),
        };
      });
    };
    const first = await report("/v1/reports/refunds", { account_id: a });
    expect(first.data).toMatchObject(expected(refunds));
    expect(first.data).toHaveLength(4);
    expect(first.as_of.last_seq).toBe((await view(a)).last_seq);
    // The refund rows carry the event's seq and time.
    const events = (await eventsOf(a)).filter((e) => e.type === "ChargeRefunded");
    expect(first.data.map((r: Row) => [r.seq, r.created_at])).toEqual(events.map((e) => [e.seq, e.at]));

    // A later refund moves the current total of every row of its charge, not the running one.
    refunds.push(["f5", "c1", 120]);
    await send("POST", `/v1/accounts/${a}/refunds`, {
      refund_id: "f5",
      charge_id: "c1",
      amount: 120,
      reason: "why f5",
    });
    await project(a);
    const rows = await walk("/v1/reports/refunds", { account_id: a }, 2);
    expect(rows).toMatchObject(expected(refunds));
    expect(rows).toHaveLength(5);
    expect(rows.filter((r) => r.charge_id === "c1").map((r) => r.charge_refunded_total)).toEqual([200, 200, 200]);
    expect((await view(a)).balance).toBe(1_000 - 200 - 150 + sum(refunds.map((f) => f[2])));

    // A time range [from, to).
    const all = await eventsOf(a);
    const refundEvents = all.filter((e) => e.type === "ChargeRefunded");
    const from = (refundEvents[1] as LedgerEventJson).at;
    const to = (refundEvents[4] as LedgerEventJson).at;
    const ranged = await walk("/v1/reports/refunds", { account_id: a, from, to }, 1);
    expect(ranged.map((r) => r.refund_id)).toEqual(
      refundEvents.filter((e) => e.at >= from && e.at < to).map((e) => e.refund_id),
    );
    expect(ranged.map((r) => r.refund_id)).toContain("f2");
  });
});

// ------------------------------------------------------------------ trial balance

interface TrialBalanceBody {
  at: string;
  data: { ledger_account: string; debit: number; credit: number; net_debit: number }[];
  total_debit: number;
  total_credit: number;
  balanced: boolean;
  as_of: Row;
}

/**
 * The trial balance with its amounts as numbers. It answers them as decimal strings (totals across
 * accounts are exact beyond 2^53, docs/api.md#reports); the amounts of this file are far below
 * that, so the arithmetic below stays in numbers. test/projection/totals.test.ts goes past 2^63.
 */
async function trialBalance(at?: string): Promise<TrialBalanceBody> {
  const response = await api("GET", url("/v1/reports/trial-balance", { at }));
  expect(response.status, brief(response.body)).toBe(200);
  const body = response.body;
  const amount = (value: unknown): number => {
    expect(value).toMatch(/^-?\d+$/);
    const n = Number(value);
    expect(Number.isSafeInteger(n)).toBe(true);
    return n;
  };
  return {
    ...body,
    data: body.data.map((l: Row) => ({
      ledger_account: l.ledger_account,
      debit: amount(l.debit),
      credit: amount(l.credit),
      net_debit: amount(l.net_debit),
    })),
    total_debit: amount(body.total_debit),
    total_credit: amount(body.total_credit),
  };
}

function line(tb: TrialBalanceBody, ledgerAccount: string) {
  return tb.data.find((l) => l.ledger_account === ledgerAccount) ?? { debit: 0, credit: 0, net_debit: 0 };
}

describe("trial balance", () => {
  it("balances debits and credits; liabilities minus receivables equal the sum of all balances", async () => {
    // Make sure everything of earlier tests is projected and strictly before `before`.
    await project(...opened);
    const earlier = await Promise.all(opened.map(view));
    const startBalances = sum(earlier.map((v) => v.balance));
    // `before` is later than every earlier event (some tests ran on a clock a day ahead), and
    // this test's events come after it, a millisecond apart. It is a whole hour: the trial
    // balance reads the rollups.
    const newestEarlier = Date.parse(newest(earlier.map((v) => v.updated_at)) ?? "1970-01-01T00:00:00Z");
    const time = useManualClock(ceilHour(Math.max(Date.now(), newestEarlier) + 1_000));
    const before = new Date(time.now()).toISOString();
    stepEachCommand(time);

    const credits: number[] = [];
    const revenue: number[] = [];
    const refunds: number[] = [];
    const adjustments: number[] = [];
    // a: credits, a charge, a capture, a refund, adjustments both ways; stays positive.
    const a = await open(1_000);
    credits.push(1_000);
    await send("POST", `/v1/accounts/${a}/charges`, { charge_id: "c", amount: 200 });
    revenue.push(200);
    await send("POST", `/v1/accounts/${a}/reservations`, { reservation_id: "r", amount: 300 });
    await send("POST", `/v1/accounts/${a}/reservations/r/capture`, { amount: 250 });
    revenue.push(250);
    await send("POST", `/v1/accounts/${a}/refunds`, { refund_id: "f", charge_id: "c", amount: 50 });
    refunds.push(50);
    await send("POST", `/v1/accounts/${a}/refunds`, { refund_id: "g", charge_id: "r", amount: 25 });
    refunds.push(25);
    await send("POST", `/v1/accounts/${a}/adjustments`, { adjustment_id: "plus", amount: 25, reason: "goodwill" });
    adjustments.push(25);
    await send("POST", `/v1/accounts/${a}/adjustments`, { adjustment_id: "minus", amount: -10, reason: "fee" });
    adjustments.push(-10);
    // b: an overage capture takes it negative, a top-up pays part of the receivable back.
    const b = await open(100);
    credits.push(100);
    await send("POST", `/v1/accounts/${b}/reservations`, { reservation_id: "r", amount: 100 });
    const over = await send("POST", `/v1/accounts/${b}/reservations/r/capture`, { amount: 180, allow_overage: true });
    expect(over.charge.overage).toBe(80);
    expect(over.account.balance).toBe(-80);
    revenue.push(180);
    await send("POST", `/v1/accounts/${b}/credits`, { credit_id: "repay", amount: 30 });
    credits.push(30);
    // c: negative by overage, then a top-up that crosses back above zero, then an adjustment below it.
    const c = await open(50);
    credits.push(50);
    await send("POST", `/v1/accounts/${c}/reservations`, { reservation_id: "r", amount: 10 });
    await send("POST", `/v1/accounts/${c}/reservations/r/capture`, { amount: 70, allow_overage: true });
    revenue.push(70);
    // The rest happens from the next whole hour on: the trial balance there is a point in the middle.
    const middleAt = ceilHour(time.now() + 1);
    time.advance(middleAt - time.now());
    await send("POST", `/v1/accounts/${c}/credits`, { credit_id: "back", amount: 100 });
    credits.push(100);
    await send("POST", `/v1/accounts/${c}/adjustments`, { adjustment_id: "claw", amount: -120, reason: "chargeback" });
    adjustments.push(-120);
    await send("POST", `/v1/accounts/${c}/refunds`, { refund_id: "f", charge_id: "r", amount: 5 });
    refunds.push(5);
    // d: a refund that moves a negative balance towards zero without crossing it.
    const d = await open(20);
    credits.push(20);
    await send("POST", `/v1/accounts/${d}/reservations`, { reservation_id: "r", amount: 20 });
    await send("POST", `/v1/accounts/${d}/reservations/r/capture`, { amount: 60, allow_overage: true });
    revenue.push(60);
    await send("POST", `/v1/accounts/${d}/refunds`, { refund_id: "f", charge_id: "r", amount: 15 });
    refunds.push(15);
    await project(...opened);

    const mine = await Promise.all([a, b, c, d].map(view));
    expect(mine.map((v) => v.balance)).toEqual([1_000 - 200 - 250 + 50 + 25 + 25 - 10, -50, -35, -25]);
    const views = await Promise.all(opened.map(view));
    const balances = views.map((v) => v.balance as number);
    const positive = sum(balances.map((x) => Math.max(x, 0)));
    const negative = sum(balances.map((x) => Math.max(-x, 0)));

    const now = await trialBalance();
    expect(now.total_debit).toBe(now.total_credit);
    expect(now.total_debit).toBe(sum(now.data.map((l) => l.debit)));
    expect(now.total_credit).toBe(sum(now.data.map((l) => l.credit)));
    expect(now.balanced).toBe(true);
    for (const l of now.data) expect(l.net_debit).toBe(l.debit - l.credit);
    expect(now.data.map((l) => l.ledger_account)).toEqual(now.data.map((l) => l.ledger_account).sort());
    expect(now.as_of.accounts).toBe(opened.length);
    const customer = line(now, "customer_balances");
    const receivable = line(now, "overage_receivable");
    expect(customer.credit - customer.debit - (receivable.debit - receivable.credit)).toBe(sum(balances));
    expect(customer.credit - customer.debit).toBe(positive);
    expect(receivable.debit - receivable.credit).toBe(negative);
    // The same total from the balances report.
    const reported = await walk("/v1/reports/balances", {}, 1_000);
    expect(sum(reported.map((r) => r.balance))).toBe(sum(balances));

    // What this test moved, ledger account by ledger account, between `before` and now.
    const then = await trialBalance(before);
    expect(then.at).toBe(before);
    expect(then.balanced).toBe(true);
    const moved = (name: string) => line(now, name).net_debit - line(then, name).net_debit;
    expect(moved("cash")).toBe(sum(credits));
    expect(moved("revenue")).toBe(-sum(revenue));
    expect(moved("refunds")).toBe(sum(refunds));
    expect(moved("adjustments")).toBe(sum(adjustments));
    expect(-moved("customer_balances") - moved("overage_receivable")).toBe(sum(balances) - startBalances);
    expect(-moved("customer_balances") - moved("overage_receivable")).toBe(sum(mine.map((v) => v.balance)));
    expect(moved("overage_receivable")).toBe(50 + 35 + 25);

    // At a point in the middle (the hour after c's overage capture): the lines equal the balances then.
    const logs = await Promise.all([a, b, c, d].map(eventsOf));
    const middleIso = new Date(middleAt).toISOString();
    const balancesAt = logs.map((log) => log.filter((e) => e.at < middleIso).at(-1)?.balance_after ?? 0);
    const middle = await trialBalance(middleIso);
    expect(middle.balanced).toBe(true);
    expect(middle.total_debit).toBe(middle.total_credit);
    expect(line(middle, "customer_balances").credit - line(middle, "customer_balances").debit).toBe(
      line(then, "customer_balances").credit -
        line(then, "customer_balances").debit +
        sum(balancesAt.map((x) => Math.max(x, 0))),
    );
    expect(line(middle, "overage_receivable").net_debit).toBe(
      line(then, "overage_receivable").net_debit + sum(balancesAt.map((x) => Math.max(-x, 0))),
    );
    expect(balancesAt[2]).toBe(-20);

    // Before the first event: nothing.
    const empty = await trialBalance("2000-01-01T00:00:00Z");
    expect(empty).toMatchObject({ at: "2000-01-01T00:00:00.000Z", total_debit: 0, total_credit: 0, balanced: true });
    expect(empty.data.every((l) => l.debit === 0 && l.credit === 0)).toBe(true);
  });
});

// ------------------------------------------------------------------ invalid queries

describe("invalid report queries", () => {
  const wrongArity = btoa(JSON.stringify(["only-one-key"])).replace(/=+$/, "");
  it.each([
    ["/v1/reports/balances?unknown=1", "unknown field"],
    ["/v1/reports/balances?limit=0", "limit 0"],
    ["/v1/reports/balances?limit=1001", "limit 1001"],
    ["/v1/reports/balances?limit=abc", "limit not a number"],
    ["/v1/reports/balances?limit=2.5", "limit not an integer"],
    ["/v1/reports/balances?cursor=not-a-cursor", "bad cursor string"],
    [`/v1/reports/balances?cursor=${wrongArity}`, "cursor with the wrong number of keys"],
    ["/v1/reports/balances?status=closed", "unknown status"],
    ["/v1/reports/balances?sort=balance", "unknown sort"],
    ["/v1/reports/balances?order=up", "unknown order"],
    ["/v1/reports/balances?min_available=1.5", "fractional amount"],
    ["/v1/reports/transactions?type=Bogus", "unknown type"],
    ["/v1/reports/transactions?type=FundsCredited,Nope", "one unknown type of two"],
    ["/v1/reports/transactions?type=", "empty type"],
    ["/v1/reports/transactions?from=yesterday", "bad time"],
    ["/v1/reports/transactions?to=2026-13-01T00:00:00Z", "month 13"],
    ["/v1/reports/transactions?from=2026-01-01", "date without time"],
    ["/v1/reports/transactions?account_id=bad%20id!", "bad account id"],
    ["/v1/reports/transactions?cursor=%7B%7D", "cursor that is not base64 JSON"],
    ["/v1/reports/usage?group_by=week", "unknown group"],
    ["/v1/reports/usage?group_by=model,week", "one unknown group of two"],
    ["/v1/reports/usage?limit=1001", "usage limit 1001"],
    ["/v1/reports/usage?group_by=model&cursor=%%%", "usage bad cursor"],
    ["/v1/reports/reservations?status=pending", "unknown reservation status"],
    ["/v1/reports/reservations?expired_before=soon", "bad expired_before"],
    ["/v1/reports/reservations?limit=0", "reservations limit 0"],
    ["/v1/reports/refunds?from=2026-01-01T00:00:00", "time without offset"],
    ["/v1/reports/refunds?cursor=bm9wZQ", "refunds cursor of plain text"],
    ["/v1/reports/trial-balance?at=now", "bad at"],
    ["/v1/reports/trial-balance?limit=10", "trial balance takes no limit"],
    // Reports over rollups take whole hours, and whole days before the hourly retention.
    ["/v1/reports/trial-balance?at=2026-01-01T05:30:00Z", "at not a whole hour"],
    ["/v1/reports/trial-balance?at=2020-01-01T05:00:00Z", "at in a day whose hours are pruned"],
    ["/v1/reports/usage?to=2026-01-01T05:00:00.001Z", "usage to not a whole hour"],
    ["/v1/reports/usage?from=2020-01-01T05:00:00Z", "usage from in a day whose hours are pruned"],
  ])("%s (%s) is 400 invalid_request", async (path) => {
    const response = await api("GET", path);
    expect(response.status, brief(response.body)).toBe(400);
    expect(response.body.code).toBe("invalid_request");
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(response.body.errors?.length).toBeGreaterThan(0);
  });

  // Times that match the RFC 3339 pattern but name no real instant. Date.parse rolls them over
  // (30 February is 2 March), so a report silently answers for another time than the one asked.
  it.each([
    ["/v1/reports/trial-balance?at=2026-02-30T00:00:00Z", "30 February"],
    ["/v1/reports/trial-balance?at=2026-04-31T12:00:00Z", "31 April"],
    ["/v1/reports/trial-balance?at=2026-01-01T24:00:00Z", "hour 24"],
    ["/v1/reports/transactions?from=2026-02-30T00:00:00Z", "30 February in from"],
  ])("%s (%s, not an RFC 3339 time) is 400 invalid_request", async (path) => {
    const response = await api("GET", path);
    const answered =
      response.status === 200 ? { at: response.body.at, rows: response.body.data.length } : response.body;
    expect(response.status, `answered ${JSON.stringify(answered)}`).toBe(400);
    expect(response.body.code).toBe("invalid_request");
  });

  it("requires the bearer key", async () => {
    for (const path of ["/v1/reports/balances", "/v1/reports/trial-balance"]) {
      const response = await api("GET", path, undefined, { authorization: "Bearer wrong" });
      expect(response.status).toBe(401);
      expect(response.body.code).toBe("unauthorized");
    }
  });
});

describe("usage over open and closed buckets", () => {
  it("counts an idle account's still-open day in past periods, and a closed day once", async () => {
    // Two days in the future, far from every other test's events.
    const day = Math.ceil((Date.now() + 400 * 86_400_000) / 86_400_000) * 86_400_000;
    const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", "Z");
    const time = useManualClock(day + 3_600_000);
    const idle = await openAccount(1_000);
    const busy = await openAccount(1_000);
    const charge = (id: string, key: string) =>
      api("POST", `/v1/accounts/${id}/charges`, { charge_id: key, amount: 7, context: { model: "open-day" } });
    await charge(idle, "a");
    await charge(busy, "a");
    // The next day: only `busy` moves on, which closes its first day bucket; `idle`'s stays open.
    time.advance(86_400_000);
    await charge(busy, "b");
    await drain(idle);
    await drain(busy);
    const usage = async (from: number, to: number) =>
      (await report("/v1/reports/usage", { group_by: "account", from: iso(from), to: iso(to) })).data as Row[];
    const first = await usage(day, day + 86_400_000);
    expect(first.map((r) => [r.account, r.charges]).sort()).toEqual(
      [
        [busy, 1],
        [idle, 1],
      ].sort(),
    );
    const second = await usage(day + 86_400_000, day + 2 * 86_400_000);
    expect(second.map((r) => [r.account, r.charges])).toEqual([[busy, 1]]);
    expect(await usage(day - 86_400_000, day)).toEqual([]);
    const both = await usage(day, day + 2 * 86_400_000);
    expect(both.map((r) => [r.account, r.charges]).sort()).toEqual(
      [
        [busy, 2],
        [idle, 1],
      ].sort(),
    );
  });
});
