/**
 * Retention of the read side (issue 12, src/projection/consumer/retention.ts): the prune is bounded per
 * run and removes only whole sealed pages of raw events whose newest event is before the cutoff,
 * by days and by bytes, so no event at or after the cutoff ever leaves (and the events of a page
 * straddling the cutoff, or of an account's unsealed tail, stay); settled reservations leave with
 * their settlement event, open holds stay; hourly rollups go after their retention, daily ones
 * stay, and what reads them (statement, usage, reconciliation) still agrees with the logs; the
 * transactions report says which range it holds; the bytes-per-event constant bounds what D1
 * measures; the cron prunes every shard with the deployed configuration.
 *
 * The prune acts on whole databases: this file's storage is its own (two read-side shards, DB and
 * DB_1), and its tests run in order, each on a clock later than the data of the tests before it.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import { ManualClock, useClock } from "../../src/clock";
import {
  RAW_EVENTS_WINDOW_BYTES_MAX_DEFAULT,
  RAW_EVENTS_WINDOW_DAYS_DEFAULT,
  type RetentionConfig,
  ROLLUPS_HOURLY_RETENTION_DAYS_DEFAULT,
  retentionConfig,
} from "../../src/config";
import type { Command } from "../../src/domain/commands";
import type { LedgerEvent } from "../../src/domain/events";
import type { AccountState } from "../../src/domain/state";
import worker from "../../src/index";
import { applyMessages } from "../../src/projection/consumer/apply";
import {
  type PruneLimits,
  type PruneReport,
  pruneReadSide,
  RAW_EVENT_BYTES_PER_ROW,
  RAW_EVENTS_COMPLETE_FROM_KEY,
} from "../../src/projection/consumer/retention";
import { messagesOfLog, rollupCellsOf } from "../../src/projection/producer/message";
import { ROLLUP_COLUMNS, rollupsOfLog } from "../../src/projection/rollups";
import { PROJECTION_PAGE_EVENTS, pageEnd, pageStart } from "../../src/projection/wire";
import { type Shard, shardFor, shardIndexOf, shardsOf } from "../../src/read-side/shards";
import { printMeasurements } from "../budget";
import { api, expectEveryAccountConsistent, MANUAL_CLOCK_AHEAD_MS, stub, useManualClock } from "../helpers";
import { dbOf, drain, logOf } from "./support";
import { ceilDay, DAY_MS, HOUR_MS, iso, runTimed, type TimedStep } from "./timed";

afterEach(expectEveryAccountConsistent);

/** Where the next test's clock starts: after every event of the tests before it. */
let nextStartMs = ceilDay(Date.now() + MANUAL_CLOCK_AHEAD_MS);
/** Every account of this file, and its log once complete. */
const logs = new Map<string, LedgerEvent[]>();
/**
 * Per shard, the latest cutoff its prunes have reported so far: once they finished, every sealed
 * page of the shard whose newest event is before it is gone, and nothing else.
 */
const prunedBefore = new Map<number, string>();

const SETTLEMENTS = new Set(["ReservationCaptured", "ReservationReleased", "ReservationExpired"]);

const shards = (): Shard[] => shardsOf(env);
const shardOf = (accountId: string): number => shardFor(shards(), accountId).index;
const eventKey = (accountId: string, seq: number): string => `${accountId}#${seq}`;
const sorted = (keys: Iterable<string>): string[] => [...keys].sort();

/**
 * An account's history of `rounds` rounds, `gapMs` apart: a credit, a hold of a week, which is
 * captured, released or left open, a charge and a partial refund.
 */
function rounds(count: number, gapMs: number): TimedStep[] {
  const steps: TimedStep[] = [];
  const step = (command: Command, gap = 60_000) => steps.push({ command, gapMs: gap });
  for (let i = 0; i < count; i++) {
    step({ type: "CreditFunds", credit_id: `c${i}`, amount: 100, reason: null, metadata: {} }, gapMs);
    const context = { service_id: "chat", model: i % 2 === 0 ? "m1" : "m2", request_id: `req-${i}` };
    step({
      type: "ReserveFunds",
      reservation_id: `r${i}`,
      amount: 50,
      ttl_seconds: 604_800,
      on_expiry: "release",
      context,
      metadata: {},
    });
    if (i % 3 === 0)
      step({
        type: "CaptureReservation",
        reservation_id: `r${i}`,
        amount: 30,
        allow_overage: false,
        usage: { input_tokens: 10 },
        metadata: {},
      });
    if (i % 3 === 1) step({ type: "ReleaseReservation", reservation_id: `r${i}`, reason: null });
    step({ type: "ChargeAccount", charge_id: `x${i}`, amount: 20, context: { model: "m3" }, metadata: {} });
    step({ type: "RefundCharge", refund_id: `f${i}`, charge_id: `x${i}`, amount: 5, reason: null });
  }
  return steps;
}

/**
 * Opens account `id` at the clock's time and runs the steps through its object (as
 * test/projection/timed.ts `runTimed`, with an id of the test's choosing), then drains its
 * projection and records its log.
 */
async function runAs(time: ManualClock, id: string, steps: readonly TimedStep[]): Promise<void> {
  await runTimed(time, steps, undefined, { id, everyStepAccepted: true });
  await drain(id);
  logs.set(id, await logOf(id));
}

let named = 0;
/**
 * Runs one history per entry of `homes` (the shard its account lives in, so that the test does
 * not depend on where random ids land) on a clock from `nextStartMs`, interleaved in time;
 * returns the clock at their end and the new accounts.
 */
async function histories(homes: number[], count: number, gapMs: number) {
  const time = useManualClock(nextStartMs);
  let end = nextStartMs;
  const ids: string[] = [];
  for (const [a, home] of homes.entries()) {
    // Each account starts 20 minutes after the one before (a clock may be set back between accounts).
    time.set(nextStartMs + a * (HOUR_MS / 3));
    named += 1;
    const id = idInShard(home, `hist${named}`);
    await runAs(time, id, rounds(count, gapMs));
    ids.push(id);
    end = Math.max(end, time.now());
  }
  time.set(end + 1);
  nextStartMs = ceilDay(end + DAY_MS);
  return { time, ids };
}

/** The raw events each shard holds (`ledger_events`, the view over sealed pages and tails), by shard index. */
async function d1EventsByShard(): Promise<Map<number, Set<string>>> {
  const out = new Map<number, Set<string>>();
  for (const shard of shards()) {
    const rows = await shard.db
      .prepare("SELECT account_id, seq FROM ledger_events")
      .all<{ account_id: string; seq: number }>();
    out.set(shard.index, new Set(rows.results.map((r) => eventKey(r.account_id, r.seq))));
  }
  return out;
}

async function d1Events(): Promise<Set<string>> {
  const all = new Set<string>();
  for (const keys of (await d1EventsByShard()).values()) for (const key of keys) all.add(key);
  return all;
}

/** Events of every log of this file with `at` in [from, to). */
function eventsBetween(from: string, to = "9999"): string[] {
  return [...logs].flatMap(([id, log]) => log.filter((e) => e.at >= from && e.at < to).map((e) => eventKey(id, e.seq)));
}

/**
 * Whether event `seq` of `log` lies in a sealed page (the log reaches the page's last seq) whose
 * newest event is before `cutoff`: the only events a prune at that cutoff may remove.
 */
function prunable(log: readonly LedgerEvent[], seq: number, cutoff: string | undefined): boolean {
  if (cutoff === undefined) return false;
  const newest = log[pageEnd(seq) - 1];
  if (newest === undefined) return false;
  if (newest.seq !== pageEnd(seq)) throw new Error("a log is seqs 1..n in order");
  return newest.at < cutoff;
}

/** The raw events D1 must hold once every prune so far has finished: all but the prunable pages. */
function expectedEvents(): Set<string> {
  const kept = new Set<string>();
  for (const [id, log] of logs) {
    const cutoff = prunedBefore.get(shardOf(id));
    for (const e of log) if (!prunable(log, e.seq, cutoff)) kept.add(eventKey(id, e.seq));
  }
  return kept;
}

/**
 * After any run: every event outside a prunable page is in D1 (whatever its time), and what left
 * D1 left as whole sealed pages before the cutoff. One assertion, so the check stays cheap.
 */
async function expectWindowIntact(): Promise<void> {
  const kept = await d1Events();
  const wrong: string[] = [];
  for (const [id, log] of logs) {
    const cutoff = prunedBefore.get(shardOf(id));
    for (const e of log) {
      if (kept.has(eventKey(id, e.seq))) continue;
      if (!prunable(log, e.seq, cutoff)) wrong.push(`${eventKey(id, e.seq)} at ${e.at} left, cutoff ${cutoff}`);
      for (let seq = pageStart(e.seq); seq <= pageEnd(e.seq); seq++) {
        if (kept.has(eventKey(id, seq))) wrong.push(`${eventKey(id, seq)} stayed, but not the rest of its page`);
      }
    }
  }
  expect(wrong).toEqual([]);
}

/**
 * Prunes every shard until a run removes nothing, checking each run's bounds (events, whole
 * pages, hourly rows), that each shard keeps one cutoff, and that no run removes anything but
 * whole sealed pages before it. Returns each shard's reports and the events that left it.
 */
async function pruneUntilDone(
  config: RetentionConfig,
  nowMs: number,
  limits: PruneLimits,
): Promise<{ reports: Map<number, PruneReport[]>; deleted: Map<number, number> }> {
  const before = await d1EventsByShard();
  const reports = new Map<number, PruneReport[]>(shards().map((s) => [s.index, []]));
  let pending = shards();
  for (let run = 0; pending.length > 0; run++) {
    if (run >= 500) throw new Error("the prune did not finish");
    const next: Shard[] = [];
    for (const shard of pending) {
      const report = await pruneReadSide(shard.db, config, nowMs, limits);
      const mine = reports.get(shard.index) as PruneReport[];
      mine.push(report);
      expect(report.cutoff).toBe(mine[0]?.cutoff);
      expect(report.events_deleted).toBeLessThanOrEqual(limits.eventsPerRun);
      // Sealed pages only, whole: each holds PROJECTION_PAGE_EVENTS events.
      expect(report.events_deleted).toBe(report.pages_deleted * PROJECTION_PAGE_EVENTS);
      expect(report.hourly_rollups_deleted).toBeLessThanOrEqual(limits.hourlyRowsPerRun);
      const was = prunedBefore.get(shard.index);
      if (was === undefined || report.cutoff > was) prunedBefore.set(shard.index, report.cutoff);
      if (report.events_deleted > 0 || report.hourly_rollups_deleted > 0) next.push(shard);
    }
    await expectWindowIntact();
    pending = next;
  }
  const after = await d1EventsByShard();
  const deleted = new Map<number, number>();
  for (const [index, mine] of reports) {
    const gone = (before.get(index)?.size ?? 0) - (after.get(index)?.size ?? 0);
    expect(mine.reduce((n, r) => n + r.events_deleted, 0)).toBe(gone);
    // The bound held on every run, so removing them took at least this many runs.
    expect(mine.length).toBeGreaterThanOrEqual(Math.ceil(gone / limits.eventsPerRun));
    deleted.set(index, gone);
  }
  // Done: exactly the prunable pages left, every other event stayed.
  expect(sorted(await d1Events())).toEqual(sorted(expectedEvents()));
  return { reports, deleted };
}

describe("retention configuration", () => {
  it("defaults, reads each variable, and refuses malformed values", () => {
    expect(retentionConfig({})).toEqual({
      rawEventsWindowDays: RAW_EVENTS_WINDOW_DAYS_DEFAULT,
      rawEventsWindowBytesMax: RAW_EVENTS_WINDOW_BYTES_MAX_DEFAULT,
      hourlyRetentionDays: ROLLUPS_HOURLY_RETENTION_DAYS_DEFAULT,
    });
    expect(
      retentionConfig({
        RAW_EVENTS_WINDOW_DAYS: "10",
        RAW_EVENTS_WINDOW_BYTES_MAX: "5000000",
        ROLLUPS_HOURLY_RETENTION_DAYS: "3",
      }),
    ).toEqual({ rawEventsWindowDays: 10, rawEventsWindowBytesMax: 5_000_000, hourlyRetentionDays: 3 });
    expect(() => retentionConfig({ RAW_EVENTS_WINDOW_DAYS: "0" })).toThrow(/positive/);
    expect(() => retentionConfig({ RAW_EVENTS_WINDOW_BYTES_MAX: "2GB" })).toThrow(/positive/);
    // What wrangler.toml deploys is what the tests run with.
    expect(retentionConfig(env)).toEqual(retentionConfig({}));
  });
});

describe("pruning raw events by days", () => {
  it("is bounded per run, removes only whole sealed pages before the cutoff, keeps the rollups' answers", async () => {
    // Three accounts, two of them in shard 0, 30 rounds 8 hours apart: ten days of events.
    const { time } = await histories([0, 1, 0], 30, 8 * HOUR_MS);
    const now = time.now();
    const config: RetentionConfig = { rawEventsWindowDays: 4, rawEventsWindowBytesMax: 1e12, hourlyRetentionDays: 4 };
    // Three pages a run, one per statement.
    const limits: PruneLimits = {
      eventsPerRun: 3 * PROJECTION_PAGE_EVENTS,
      eventsPerStatement: PROJECTION_PAGE_EVENTS,
      hourlyRowsPerRun: 25,
    };
    const cutoff = iso(now - 4 * DAY_MS);
    const all = eventsBetween("").length;
    const { reports, deleted } = await pruneUntilDone(config, now, limits);
    for (const mine of reports.values()) expect(mine.every((r) => r.cutoff === cutoff && !r.bytes_bound)).toBe(true);
    const total = [...deleted.values()].reduce((n, d) => n + d, 0);
    expect(total).toBe(all - expectedEvents().size);
    expect(total).toBeGreaterThan(3 * limits.eventsPerRun);
    // Every event at or after the cutoff stayed; so did the older events of the pages that
    // straddle the cutoff (at most a page's worth less one per account).
    const kept = await d1Events();
    for (const event of eventsBetween(cutoff)) expect(kept.has(event), `${event} is inside the window`).toBe(true);
    const older = eventsBetween("", cutoff).filter((e) => kept.has(e));
    expect(older.length).toBeGreaterThan(0);
    for (const id of logs.keys()) {
      expect(older.filter((e) => e.startsWith(`${id}#`)).length).toBeLessThan(PROJECTION_PAGE_EVENTS);
    }
    await expectReservationsWindow();
    // Hourly rollups before the retention are gone (from every shard); daily rollups are whole.
    for (const shard of shards()) {
      const hourly = await shard.db
        .prepare("SELECT MIN(bucket) AS oldest FROM rollups WHERE grain = 'hour'")
        .first<{ oldest: string | null }>();
      expect((hourly?.oldest ?? "") >= iso(Math.floor((now - 4 * DAY_MS) / HOUR_MS) * HOUR_MS)).toBe(true);
    }
    const hourlyDeleted = [...reports.values()].map((mine) => mine.reduce((n, r) => n + r.hourly_rollups_deleted, 0));
    expect(Math.max(...hourlyDeleted)).toBeGreaterThan(limits.hourlyRowsPerRun);
    for (const [id, log] of logs) {
      const days = await dbOf(id)
        .prepare("SELECT * FROM rollups WHERE account_id = ? AND grain = 'day' ORDER BY bucket, model")
        .bind(id)
        .all();
      const expected = rollupsOfLog(log).filter((r) => r.grain === "day");
      expect(days.results.length).toBe(expected.length);
    }
    await expectReadsAfterPrune(cutoff, now);
  });
});

/**
 * Open holds stay; a settled reservation is read from its settlement event, so it is there
 * exactly while that event is (whether or not the hold's own FundsReserved event still is).
 */
async function expectReservationsWindow(): Promise<void> {
  const kept = expectedEvents();
  const expected: string[] = [];
  let openOld = 0;
  for (const [id, log] of logs) {
    const cutoff = prunedBefore.get(shardOf(id)) ?? "";
    const settlement = new Map(
      log.filter((e) => SETTLEMENTS.has(e.type)).map((e) => [(e as { reservation_id: string }).reservation_id, e]),
    );
    for (const e of log) {
      if (e.type !== "FundsReserved") continue;
      const settled = settlement.get(e.reservation_id);
      if (settled === undefined && e.at < cutoff) openOld += 1;
      if (settled === undefined || kept.has(eventKey(id, settled.seq))) expected.push(`${id}#${e.reservation_id}`);
    }
  }
  // Open holds reserved before the cutoff are still there (one per account held a week).
  expect(openOld).toBeGreaterThan(0);
  const rows: string[] = [];
  for (const shard of shards()) {
    const result = await shard.db
      .prepare("SELECT account_id, reservation_id FROM reservations")
      .all<{ account_id: string; reservation_id: string }>();
    rows.push(...result.results.map((r) => `${r.account_id}#${r.reservation_id}`));
  }
  expect(sorted(rows)).toEqual(sorted(expected));
}

/** After a prune: reconciliation is clean, the transactions report states its window, the statement still equals the log. */
async function expectReadsAfterPrune(cutoff: string, now: number): Promise<void> {
  const ids = [...logs.keys()];
  const reconciled = await api("POST", "/v1/admin/reconcile", { account_ids: ids });
  expect(reconciled.body.results.map((r: { state: string; detail: string }) => `${r.state}: ${r.detail}`)).toEqual(
    ids.map(() => expect.stringMatching(/^ok: /)),
  );
  const id = ids[0] as string;
  const log = logs.get(id) as LedgerEvent[];
  const transactions = await api("GET", `/v1/reports/transactions?account_id=${id}&limit=1000`);
  expect(transactions.body.as_of.window).toEqual({ from: cutoff, to: log.at(-1)?.at });
  // Everything from the window's start, and the older events of the page that straddles it.
  const kept = expectedEvents();
  expect(transactions.body.data.map((r: { seq: number }) => r.seq)).toEqual(
    log.filter((e) => kept.has(eventKey(id, e.seq))).map((e) => e.seq),
  );
  expect(transactions.body.data.map((r: { seq: number }) => r.seq)).toEqual(
    expect.arrayContaining(log.filter((e) => e.at >= cutoff).map((e) => e.seq)),
  );
  // The whole history, from the rollups, though most of its events left D1.
  const from = iso(Math.floor(Date.parse((log[0] as LedgerEvent).at) / DAY_MS) * DAY_MS);
  const statement = await api("GET", `/v1/accounts/${id}/statement?from=${from}&to=${iso(ceilDay(now))}`);
  expect(statement.status).toBe(200);
  const credits = log.filter((e) => e.type === "FundsCredited").length;
  expect(statement.body).toMatchObject({
    opening_balance: 0,
    closing_balance: log.at(-1)?.balance_after,
    movements: { credits: { count: credits, amount: 100 * credits }, refunds: { count: credits, amount: 5 * credits } },
  });
  const usage = await api("GET", `/v1/reports/usage?account_id=${id}&group_by=model`);
  expect(usage.body.data.map((r: { model: string; charges: number }) => [r.model, r.charges])).toEqual([
    ["m1", log.filter((e) => e.type === "ReservationCaptured" && e.context.model === "m1").length],
    ["m2", log.filter((e) => e.type === "ReservationCaptured" && e.context.model === "m2").length],
    ["m3", credits],
  ]);
}

/**
 * The bytes rule for one shard, computed from the logs of its accounts: events per bucket,
 * newest first (hours from the first whole day whose hourly rollups are all kept, whole days
 * before), until the bound is passed.
 */
function expectedBytesCutoff(config: RetentionConfig, nowMs: number, shard: number): string | null {
  const windowFrom = nowMs - config.rawEventsWindowDays * DAY_MS;
  const hoursFrom = iso(
    Math.max(Math.floor(windowFrom / HOUR_MS) * HOUR_MS, ceilDay(nowMs - config.hourlyRetentionDays * DAY_MS)),
  );
  const counts = new Map<string, number>();
  for (const [id, log] of logs) {
    if (shardOf(id) !== shard) continue;
    for (const e of log) {
      const hour = `${e.at.slice(0, 13)}:00:00.000Z`;
      const bucket = hour >= hoursFrom ? hour : `${e.at.slice(0, 10)}T00:00:00.000Z`;
      counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
    }
  }
  let bytes = 0;
  for (const bucket of [...counts.keys()].sort().reverse()) {
    bytes += (counts.get(bucket) ?? 0) * RAW_EVENT_BYTES_PER_ROW;
    if (bytes > config.rawEventsWindowBytesMax) {
      return iso(Date.parse(bucket) + (bucket >= hoursFrom ? HOUR_MS : DAY_MS));
    }
  }
  return null;
}

/**
 * Prunes by bytes; returns the cutoff of each shard that holds one of `ids` (the test's new
 * accounts), whose newest buckets alone pass the bound. Each shard estimates its own window.
 */
async function expectBytesPrune(config: RetentionConfig, nowMs: number, ids: string[]): Promise<string[]> {
  const expected = new Map<number, string>();
  for (const index of new Set(ids.map(shardOf))) {
    const cutoff = expectedBytesCutoff(config, nowMs, index);
    if (cutoff === null) throw new Error("the history fits the cap: nothing to test");
    expected.set(index, cutoff);
  }
  // Four pages a run, two per statement.
  const limits: PruneLimits = {
    eventsPerRun: 4 * PROJECTION_PAGE_EVENTS,
    eventsPerStatement: 2 * PROJECTION_PAGE_EVENTS,
    hourlyRowsPerRun: 50,
  };
  const { reports } = await pruneUntilDone(config, nowMs, limits);
  for (const [index, cutoff] of expected) expect(reports.get(index)?.[0]).toMatchObject({ cutoff, bytes_bound: true });
  const kept = await d1Events();
  for (const [index, cutoff] of expected) {
    const inShard = [...logs.keys()].filter((id) => shardOf(id) === index);
    // The window the estimate bounds: every event from the cutoff on, all kept.
    const window = eventsBetween(cutoff).filter((e) => inShard.some((id) => e.startsWith(`${id}#`)));
    for (const event of window) expect(kept.has(event), `${event} is inside the window`).toBe(true);
    expect(window.length * RAW_EVENT_BYTES_PER_ROW).toBeLessThanOrEqual(config.rawEventsWindowBytesMax);
    // Beyond it, at most a page less one per account: the part of a page that straddles the cutoff, or a tail.
    for (const id of inShard) {
      const older = eventsBetween("", cutoff).filter((e) => e.startsWith(`${id}#`) && kept.has(e));
      expect(older.length).toBeLessThan(PROJECTION_PAGE_EVENTS);
    }
  }
  await expectReservationsWindow();
  return [...expected.values()];
}

describe("pruning raw events by bytes", () => {
  it("keeps at most the bound's estimated bytes, cut at a whole hour, never inside the window", async () => {
    // Two days of events, 2 hours apart, one account per shard; every hour's rollups kept.
    const { time, ids } = await histories([0, 1], 24, 2 * HOUR_MS);
    const config: RetentionConfig = {
      rawEventsWindowDays: 365,
      rawEventsWindowBytesMax: 50 * RAW_EVENT_BYTES_PER_ROW,
      hourlyRetentionDays: 365,
    };
    // Each shard cuts its own window (the two accounts' clocks differ: an hour apart here),
    // inside a day: a whole hour, which no count by days could give.
    const cutoffs = await expectBytesPrune(config, time.now(), ids);
    expect(new Set(cutoffs).size).toBe(2);
    for (const cutoff of cutoffs) {
      expect(Date.parse(cutoff) % HOUR_MS).toBe(0);
      expect(Date.parse(cutoff) % DAY_MS).not.toBe(0);
    }
  });

  it("counts by whole days where hourly rollups are no longer kept", async () => {
    // Five days of events, 5 hours apart, both accounts in one shard; hourly rollups kept for one
    // day only.
    const { time, ids } = await histories([1, 1], 24, 5 * HOUR_MS);
    const config: RetentionConfig = {
      rawEventsWindowDays: 365,
      rawEventsWindowBytesMax: 75 * RAW_EVENT_BYTES_PER_ROW,
      hourlyRetentionDays: 1,
    };
    // The bound was passed before the hourly rows: the cut is a whole day.
    for (const cutoff of await expectBytesPrune(config, time.now(), ids)) expect(Date.parse(cutoff) % DAY_MS).toBe(0);
  });
});

describe("the bytes per raw event", () => {
  it("bound what D1 measures for events with a full context (meta.size_after)", async () => {
    // A database of its own: DB and DB_1 have pages the prunes above freed, which new rows would
    // reuse without the file growing. Written as the projection writes them, in one shard.
    const db = env.REFERENCE_DB;
    const one: Shard[] = [{ index: 0, db }];
    const size = async () => (await db.prepare("SELECT 1").run()).meta.size_after;
    // 10 accounts of 200 captures: 12 sealed pages each and a tail of 8 in its accounts row.
    const accounts = 10;
    const perAccount = 200;
    const n = accounts * perAccount;
    const messages = Array.from({ length: accounts }, (_, a) => {
      const id = `acct_measure_${a}`;
      const log = Array.from({ length: perAccount }, (_, i) => measuredEvent(i));
      return messagesOfLog(measuredHead(id, log), log);
    }).flat();
    const before = await size();
    expect(await applyMessages(one, messages)).toEqual(messages.map(() => "applied"));
    const perEvent = ((await size()) - before) / n;
    // And a closed rollup row (for docs/read-side.md's arithmetic): the hour and day rows of captures.
    const beforeRollups = await size();
    const rows = Array.from({ length: n / 2 }, (_, i) =>
      rollupsOfLog([measuredEvent(i)]).map((r) => [`acct_measure_r${i}`, ...rollupCellsOf(r)]),
    ).flat();
    const insert = `INSERT INTO rollup_rows (${ROLLUP_COLUMNS.join(", ")})
      SELECT ${ROLLUP_COLUMNS.map((_, i) => `value ->> '$[${i}]'`).join(", ")} FROM json_each(?)`;
    const statements: D1PreparedStatement[] = [];
    for (let i = 0; i < rows.length; i += 500) {
      statements.push(db.prepare(insert).bind(JSON.stringify(rows.slice(i, i + 500))));
    }
    await db.batch(statements);
    const perRollup = ((await size()) - beforeRollups) / rows.length;
    if (printMeasurements())
      console.log(JSON.stringify({ d1_bytes_per_raw_event: perEvent, d1_bytes_per_rollup_row: perRollup }));
    await db.batch(
      ["event_pages", "open_holds", "rollup_rows", "accounts"].map((table) =>
        db.prepare(`DELETE FROM ${table} WHERE account_id LIKE 'acct_measure_%'`),
      ),
    );
    expect(perEvent).toBeLessThanOrEqual(RAW_EVENT_BYTES_PER_ROW);
    expect(perEvent).toBeGreaterThan(RAW_EVENT_BYTES_PER_ROW * 0.7);
  });
});

/** A capture as a gateway records it: request id, service, provider, model, alias, usage. */
function measuredEvent(i: number): LedgerEvent {
  return {
    type: "ReservationCaptured",
    seq: i + 1,
    event_id: "01JAZ3ABCDEFGHJKMNPQRSTVWX",
    at: new Date(Date.parse("2027-01-01T00:00:00.000Z") + i * 1_000).toISOString(),
    balance_after: 100_000 - i,
    reserved_after: 10,
    hash: "0".repeat(64),
    reservation_id: `res_${i}_0123456789`,
    reserved_amount: 500,
    amount: 420,
    released_amount: 80,
    overage: 0,
    allow_overage: false,
    context: {
      request_id: `req_0123456789abcdef_${i}`,
      service_id: "chat",
      provider: "openai",
      model: "gpt-4o-mini",
      alias: "default",
    },
    usage: { input_tokens: 1_234, output_tokens: 567, latency_ms: 850 },
    metadata: {},
  };
}

/** The account at the end of a measured log. */
function measuredHead(accountId: string, log: readonly LedgerEvent[]): AccountState {
  const first = log[0] as LedgerEvent;
  const last = log.at(-1) as LedgerEvent;
  return {
    account_id: accountId,
    currency: "USD",
    credit_limit: 0,
    status: "active",
    balance: last.balance_after,
    reserved: last.reserved_after,
    open_reservations: 1,
    last_seq: last.seq,
    head_hash: last.hash,
    created_at: first.at,
    updated_at: last.at,
    metadata: {},
    low_balance_threshold: null,
  };
}

/** An account id that the read side keeps in shard `index`. */
function idInShard(index: number, prefix: string): string {
  for (let k = 0; k < 1_000; k++) {
    const id = `${prefix}_${k}`;
    if (shardIndexOf(id, shards().length) === index) return id;
  }
  throw new Error(`no id for shard ${index}`);
}

interface ShardCounts {
  pages: number;
  hours: number;
  closedHours: number;
  days: number;
  completeFrom: string | null;
}

async function shardCounts(db: D1Database): Promise<ShardCounts> {
  const row = await db
    .prepare(
      `SELECT (SELECT COUNT(*) FROM event_pages) AS pages,
        (SELECT COUNT(*) FROM rollups WHERE grain = 'hour') AS hours,
        (SELECT COUNT(*) FROM rollup_rows WHERE grain = 'hour') AS closedHours,
        (SELECT COUNT(*) FROM rollups WHERE grain = 'day') AS days,
        (SELECT value FROM sweep_state WHERE key = ?) AS completeFrom`,
    )
    .bind(RAW_EVENTS_COMPLETE_FROM_KEY)
    .first<ShardCounts>();
  if (row === null) throw new Error("no counts");
  return row;
}

describe("the cron", () => {
  it("prunes every shard's raw events and hourly rollups with the deployed configuration", async () => {
    // One more account in each shard, so every shard has sealed pages and closed hourly rows to
    // prune: 40 events over 78 minutes (two hours), two sealed pages and a tail of eight.
    // The clock goes back to the real one before the cron: the sweep it starts catches accounts up,
    // which would settle their week-long holds at a clock past their expiry.
    const time = new ManualClock(nextStartMs);
    const restore = useClock(time);
    onTestFinished(restore);
    for (const shard of shards()) {
      const id = idInShard(shard.index, `cron${shard.index}`);
      const s = stub(id);
      const open = await s.execute({
        type: "OpenAccount",
        account_id: id,
        currency: "USD",
        credit_limit: 0,
        metadata: {},
      });
      expect(open.ok).toBe(true);
      for (let i = 0; i < 39; i++) {
        time.advance(2 * 60_000);
        const credit: Command = { type: "CreditFunds", credit_id: `c${i}`, amount: 100, reason: null, metadata: {} };
        expect((await s.execute(credit)).ok).toBe(true);
      }
      await drain(id);
      logs.set(id, await logOf(id));
      expect(logs.get(id)).toHaveLength(40);
    }
    restore();
    const before = await Promise.all(shards().map((shard) => shardCounts(shard.db)));
    for (const counts of before) {
      expect(counts.pages).toBeGreaterThan(0);
      expect(counts.closedHours).toBeGreaterThan(0);
    }
    // A year after every event here: all of them are out of the window (35 days).
    const scheduledTime = nextStartMs + 365 * DAY_MS;
    const controller = createScheduledController({ scheduledTime });
    const ctx = createExecutionContext();
    await worker.scheduled(controller, env, ctx);
    await waitOnExecutionContext(ctx);
    const cutoff = iso(scheduledTime - RAW_EVENTS_WINDOW_DAYS_DEFAULT * DAY_MS);
    for (const shard of shards()) prunedBefore.set(shard.index, cutoff);
    // Every sealed page is gone from every shard; each account's tail stays.
    expect(sorted(await d1Events())).toEqual(sorted(expectedEvents()));
    const after = await Promise.all(shards().map((shard) => shardCounts(shard.db)));
    expect(after).toEqual(
      before.map((b) => ({
        pages: 0,
        // The open hourly buckets ride in the accounts rows; the closed ones are all past retention.
        hours: b.hours - b.closedHours,
        closedHours: 0,
        days: b.days,
        completeFrom: cutoff,
      })),
    );
  });
});
