/**
 * Retention of the read side (issue 12, src/projection/retention.ts): the prune is bounded per
 * run and never removes an event inside the window, by days and by bytes; settled reservations
 * leave with their settlement, open holds stay; hourly rollups go after their retention, daily
 * ones stay, and what reads them (statement, usage, reconciliation) still agrees with the logs;
 * the transactions report says which range it holds; the bytes-per-row constant bounds what D1
 * measures; the cron runs the prune.
 *
 * The prune acts on the whole database: this file's storage is its own, and its tests run in
 * order, each on a clock later than the data of the tests before it.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { Command } from "../../src/domain/commands";
import type { LedgerEvent } from "../../src/domain/events";
import worker from "../../src/index";
import { rollupCellStatements, rollupCells } from "../../src/projection/d1";
import {
  type PruneLimits,
  type PruneReport,
  pruneReadSide,
  RAW_EVENT_BYTES_PER_ROW,
  RAW_EVENTS_WINDOW_BYTES_MAX_DEFAULT,
  RAW_EVENTS_WINDOW_DAYS_DEFAULT,
  type RetentionConfig,
  ROLLUPS_HOURLY_RETENTION_DAYS_DEFAULT,
  retentionConfig,
} from "../../src/projection/retention";
import { rollupsOfLog } from "../../src/projection/rollups";
import { LEDGER_EVENT_COLUMNS, ledgerEventRow } from "../../src/projection/rows";
import { printMeasurements } from "../budget";
import { api, expectEveryAccountConsistent, MANUAL_CLOCK_AHEAD_MS, useManualClock } from "../helpers";
import { drain, logOf } from "./support";
import { ceilDay, DAY_MS, HOUR_MS, iso, runTimed, type TimedStep } from "./timed";

afterEach(expectEveryAccountConsistent);

/** Where the next test's clock starts: after every event of the tests before it. */
let nextStartMs = ceilDay(Date.now() + MANUAL_CLOCK_AHEAD_MS);
/** Every account of this file, and its log once complete. */
const logs = new Map<string, LedgerEvent[]>();

const SETTLEMENTS = new Set(["ReservationCaptured", "ReservationReleased", "ReservationExpired"]);

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

/** Runs `accounts` histories on a clock from `nextStartMs`, interleaved in time; returns the clock at their end. */
async function histories(accounts: number, count: number, gapMs: number) {
  const time = useManualClock(nextStartMs);
  let end = nextStartMs;
  for (let a = 0; a < accounts; a++) {
    // Each account starts 20 minutes after the one before (a clock may be set back between accounts).
    time.set(nextStartMs + a * (HOUR_MS / 3));
    const id = await runTimed(time, rounds(count, gapMs));
    await drain(id);
    logs.set(id, await logOf(id));
    end = Math.max(end, time.now());
  }
  time.set(end + 1);
  nextStartMs = ceilDay(end + DAY_MS);
  return time;
}

async function d1Events(): Promise<Set<string>> {
  const rows = await env.DB.prepare("SELECT account_id, seq FROM ledger_events").all<{
    account_id: string;
    seq: number;
  }>();
  return new Set(rows.results.map((r) => `${r.account_id}#${r.seq}`));
}

/** Events of every log of this file with `at` in [from, to). */
function eventsBetween(from: string, to = "9999"): string[] {
  return [...logs].flatMap(([id, log]) => log.filter((e) => e.at >= from && e.at < to).map((e) => `${id}#${e.seq}`));
}

/** Prunes until a run removes nothing, checking every run's bound and that the window is intact. */
async function pruneUntilDone(config: RetentionConfig, nowMs: number, limits: PruneLimits): Promise<PruneReport[]> {
  const reports: PruneReport[] = [];
  for (let run = 0; run < 500; run++) {
    const report = await pruneReadSide(env.DB, config, nowMs, limits);
    reports.push(report);
    expect(report.events_deleted).toBeLessThanOrEqual(limits.eventsPerRun);
    expect(report.hourly_rollups_deleted).toBeLessThanOrEqual(limits.hourlyRowsPerRun);
    const kept = await d1Events();
    for (const event of eventsBetween(report.cutoff))
      expect(kept.has(event), `${event} is inside the window`).toBe(true);
    if (report.events_deleted === 0 && report.hourly_rollups_deleted === 0) return reports;
  }
  throw new Error("the prune did not finish");
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
  it("is bounded per run, never removes an event inside the window, and leaves the rollups' answers intact", async () => {
    // Three accounts, 30 rounds 8 hours apart: ten days of events.
    const time = await histories(3, 30, 8 * HOUR_MS);
    const now = time.now();
    const config: RetentionConfig = { rawEventsWindowDays: 4, rawEventsWindowBytesMax: 1e12, hourlyRetentionDays: 4 };
    const limits: PruneLimits = { eventsPerRun: 40, eventsPerStatement: 15, hourlyRowsPerRun: 25 };
    const cutoff = iso(now - 4 * DAY_MS);
    const old = eventsBetween("", cutoff).length;
    expect(old).toBeGreaterThan(3 * limits.eventsPerRun);
    const reports = await pruneUntilDone(config, now, limits);
    expect(reports.every((r) => r.cutoff === cutoff && !r.bytes_bound)).toBe(true);
    expect(reports.length).toBeGreaterThanOrEqual(Math.ceil(old / limits.eventsPerRun));
    expect(reports.reduce((n, r) => n + r.events_deleted, 0)).toBe(old);
    expect([...(await d1Events())].sort()).toEqual(eventsBetween(cutoff).sort());
    await expectReservationsWindow(cutoff);
    // Hourly rollups before the retention are gone; daily rollups are whole.
    const hourly = await env.DB.prepare("SELECT MIN(bucket) AS oldest FROM rollups WHERE grain = 'hour'").first<{
      oldest: string;
    }>();
    expect((hourly?.oldest ?? "") >= iso(Math.floor((now - 4 * DAY_MS) / HOUR_MS) * HOUR_MS)).toBe(true);
    expect(reports.reduce((n, r) => n + r.hourly_rollups_deleted, 0)).toBeGreaterThan(limits.hourlyRowsPerRun);
    for (const [id, log] of logs) {
      const days = await env.DB.prepare(
        "SELECT * FROM rollups WHERE account_id = ? AND grain = 'day' ORDER BY bucket, model",
      )
        .bind(id)
        .all();
      const expected = rollupsOfLog(log).filter((r) => r.grain === "day");
      expect(days.results.length).toBe(expected.length);
    }
    await expectReadsAfterPrune(cutoff, now);
  });
});

/** Settled reservations whose settlement is before the cutoff are gone; every other one stays. */
async function expectReservationsWindow(cutoff: string): Promise<void> {
  const expected: string[] = [];
  let openOld = 0;
  for (const [id, log] of logs) {
    const settledAt = new Map(
      log.filter((e) => SETTLEMENTS.has(e.type)).map((e) => [(e as { reservation_id: string }).reservation_id, e.at]),
    );
    for (const e of log) {
      if (e.type !== "FundsReserved") continue;
      const at = settledAt.get(e.reservation_id);
      if (at === undefined && e.at < cutoff) openOld += 1;
      if (at === undefined || at >= cutoff) expected.push(`${id}#${e.reservation_id}`);
    }
  }
  // Open holds reserved before the cutoff are still there (one per account held a week).
  expect(openOld).toBeGreaterThan(0);
  const rows = await env.DB.prepare("SELECT account_id, reservation_id FROM reservations").all<{
    account_id: string;
    reservation_id: string;
  }>();
  expect(rows.results.map((r) => `${r.account_id}#${r.reservation_id}`).sort()).toEqual(expected.sort());
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
  expect(transactions.body.data.map((r: { seq: number }) => r.seq)).toEqual(
    log.filter((e) => e.at >= cutoff).map((e) => e.seq),
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
 * The bytes rule, computed from the logs: events per bucket, newest first (hours from the first
 * whole day whose hourly rollups are all kept, whole days before), until the bound is passed.
 */
function expectedBytesCutoff(config: RetentionConfig, nowMs: number): string | null {
  const windowFrom = nowMs - config.rawEventsWindowDays * DAY_MS;
  const hoursFrom = iso(
    Math.max(Math.floor(windowFrom / HOUR_MS) * HOUR_MS, ceilDay(nowMs - config.hourlyRetentionDays * DAY_MS)),
  );
  const counts = new Map<string, number>();
  for (const log of logs.values()) {
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

async function expectBytesPrune(config: RetentionConfig, nowMs: number, cap: number): Promise<string> {
  const cutoff = expectedBytesCutoff(config, nowMs);
  if (cutoff === null) throw new Error("the history fits the cap: nothing to test");
  const limits = { eventsPerRun: 50, eventsPerStatement: 20, hourlyRowsPerRun: 50 };
  const reports = await pruneUntilDone(config, nowMs, limits);
  expect(reports[0]).toMatchObject({ cutoff, bytes_bound: true });
  const kept = await d1Events();
  expect([...kept].sort()).toEqual(eventsBetween(cutoff).sort());
  expect(kept.size * RAW_EVENT_BYTES_PER_ROW).toBeLessThanOrEqual(cap);
  await expectReservationsWindow(cutoff);
  return cutoff;
}

describe("pruning raw events by bytes", () => {
  it("keeps at most the bound's estimated bytes, cut at a whole hour, never inside the window", async () => {
    // Two days of events, 2 hours apart; every hour's rollups kept.
    const time = await histories(2, 24, 2 * HOUR_MS);
    const cap = 60 * RAW_EVENT_BYTES_PER_ROW;
    const config: RetentionConfig = {
      rawEventsWindowDays: 365,
      rawEventsWindowBytesMax: cap,
      hourlyRetentionDays: 365,
    };
    const cutoff = await expectBytesPrune(config, time.now(), cap);
    expect(Date.parse(cutoff) % DAY_MS).not.toBe(0);
  });

  it("counts by whole days where hourly rollups are no longer kept", async () => {
    // Five days of events, 5 hours apart; hourly rollups kept for one day only.
    const time = await histories(2, 24, 5 * HOUR_MS);
    const cap = 150 * RAW_EVENT_BYTES_PER_ROW;
    const config: RetentionConfig = { rawEventsWindowDays: 365, rawEventsWindowBytesMax: cap, hourlyRetentionDays: 1 };
    const cutoff = await expectBytesPrune(config, time.now(), cap);
    // The bound was passed before the hourly rows: the cut is a whole day.
    expect(Date.parse(cutoff) % DAY_MS).toBe(0);
  });
});

describe("the bytes per raw event", () => {
  it("bound what D1 measures for events with a full context (meta.size_after)", async () => {
    const size = async () => (await env.DB.prepare("SELECT 1").run()).meta.size_after;
    const before = await size();
    const n = 2_000;
    const statements: D1PreparedStatement[] = [];
    const columns = LEDGER_EVENT_COLUMNS.join(", ");
    const sql = `INSERT INTO ledger_events (${columns}) SELECT ${LEDGER_EVENT_COLUMNS.map((c) => `json_extract(value, '$.${c}')`).join(", ")} FROM json_each(?)`;
    const rows = Array.from({ length: n }, (_, i) => ledgerEventRow(`acct_measure_${i % 50}`, measuredEvent(i)));
    for (let i = 0; i < n; i += 500) statements.push(env.DB.prepare(sql).bind(JSON.stringify(rows.slice(i, i + 500))));
    await env.DB.batch(statements);
    const perEvent = ((await size()) - before) / n;
    // And a rollup row (for docs/read-side.md's arithmetic): the hour and day rows of each capture.
    const beforeRollups = await size();
    const cells = Array.from({ length: n / 2 }, (_, i) =>
      rollupsOfLog([measuredEvent(i)]).map((r) => rollupCells(`acct_measure_${i}`, r)),
    ).flat();
    await env.DB.batch(rollupCellStatements(env.DB, cells));
    const perRollup = ((await size()) - beforeRollups) / cells.length;
    if (printMeasurements())
      console.log(JSON.stringify({ d1_bytes_per_raw_event: perEvent, d1_bytes_per_rollup_row: perRollup }));
    await env.DB.prepare("DELETE FROM rollups WHERE account_id LIKE 'acct_measure_%'").run();
    await env.DB.prepare("DELETE FROM ledger_events WHERE account_id LIKE 'acct_measure_%'").run();
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

describe("the cron", () => {
  it("prunes raw events and hourly rollups with the deployed configuration", async () => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM ledger_events").first<{ n: number }>();
    expect(before?.n).toBeGreaterThan(0);
    const days = await env.DB.prepare("SELECT COUNT(*) AS n FROM rollups WHERE grain = 'day'").first<{ n: number }>();
    // A year after every event here: all of them are out of the window (35 days).
    const controller = createScheduledController({ scheduledTime: nextStartMs + 365 * DAY_MS });
    const ctx = createExecutionContext();
    await worker.scheduled(controller, env, ctx);
    await waitOnExecutionContext(ctx);
    const after = await env.DB.prepare(
      "SELECT (SELECT COUNT(*) FROM ledger_events) AS events, (SELECT COUNT(*) FROM rollups WHERE grain = 'hour') AS hours, (SELECT COUNT(*) FROM rollups WHERE grain = 'day') AS days",
    ).first<{ events: number; hours: number; days: number }>();
    expect(after).toEqual({ events: 0, hours: 0, days: days?.n });
  });
});
